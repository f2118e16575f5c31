use super::dolphin::exec_quote;
use super::thunar::merge;
use super::*;

const USER_UCA: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<actions>\n\
<action>\n\
\t<icon>utilities-terminal</icon>\n\
\t<name>Open Terminal Here</name>\n\
\t<unique-id>1697000000000000-1</unique-id>\n\
\t<command>exo-open --working-directory %f --launch TerminalEmulator</command>\n\
\t<description>Mine &amp; only mine</description>\n\
\t<patterns>*</patterns>\n\
\t<startup-notify/>\n\
\t<directories/>\n\
</action>\n\
<!-- a comment the user keeps -->\n\
</actions>\n";

fn dirs(root: &Path) -> Dirs {
    Dirs {
        data_home: root.join("data"),
        config_home: root.join("config"),
        edrive: PathBuf::from("/opt/my edrive/bin/edrive"),
    }
}

#[test]
fn thunar_merge_keeps_the_users_actions_and_replaces_only_ours() {
    let ours = "<action>\n\t<unique-id>edrive-pin</unique-id>\n</action>\n";
    let (once, removed) = merge(USER_UCA, Some(ours)).unwrap();
    assert_eq!(removed, 0);
    assert!(once.starts_with(USER_UCA.trim_end_matches("</actions>\n")));
    assert!(once.ends_with(&format!("{ours}</actions>\n")), "{once}");
    // Installing again replaces ours instead of adding a second copy.
    let (twice, removed) = merge(&once, Some(ours)).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(twice, once);
    // Uninstalling gives the user's file back byte for byte.
    let (back, removed) = merge(&twice, None).unwrap();
    assert_eq!(removed, 1);
    assert_eq!(back, USER_UCA);
}

#[test]
fn thunar_merge_fills_an_empty_root_and_refuses_what_is_not_uca_xml() {
    let (out, _) = merge("<actions/>\n", Some("<action>x</action>\n")).unwrap();
    assert_eq!(out, "<actions>\n<action>x</action>\n</actions>\n");
    for bad in [
        "<actions><action></actions>",
        "<other/>",
        "not xml at all",
        "",
        "<actions></actions><actions></actions>",
    ] {
        assert!(merge(bad, Some("<action/>")).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn install_and_uninstall_leave_the_users_thunar_actions_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let uca = d.config_home.join("Thunar/uca.xml");
    std::fs::create_dir_all(uca.parent().unwrap()).unwrap();
    std::fs::write(&uca, USER_UCA).unwrap();
    for piece in pieces() {
        piece.install(&d).unwrap();
        piece.install(&d).unwrap();
    }
    let text = std::fs::read_to_string(&uca).unwrap();
    assert_eq!(text.matches("<unique-id>edrive-").count(), 4, "{text}");
    assert!(text.contains("1697000000000000-1"));
    assert!(
        text.contains("<command>'/"),
        "the script path is shell-quoted: {text}"
    );
    let script = std::fs::read_to_string(d.action_script()).unwrap();
    assert!(
        script.contains("EDRIVE='/opt/my edrive/bin/edrive'"),
        "{script}"
    );
    let dolphin =
        std::fs::read_to_string(d.data_home.join("kio/servicemenus/edrive.desktop")).unwrap();
    assert!(dolphin.contains("Exec=\""), "{dolphin}");
    for piece in pieces() {
        assert!(piece.uninstall(&d).unwrap(), "{}", piece.what());
        assert!(!piece.uninstall(&d).unwrap(), "{}", piece.what());
    }
    assert_eq!(std::fs::read_to_string(&uca).unwrap(), USER_UCA);
    assert!(!d.action_script().exists());
}

#[test]
fn a_broken_uca_xml_is_left_unchanged() {
    let tmp = tempfile::tempdir().unwrap();
    let d = dirs(tmp.path());
    let uca = d.config_home.join("Thunar/uca.xml");
    std::fs::create_dir_all(uca.parent().unwrap()).unwrap();
    std::fs::write(&uca, "<actions><action>").unwrap();
    let err = ThunarActions.install(&d).unwrap_err();
    assert!(matches!(err, DesktopError::BadUcaXml { .. }), "{err}");
    assert_eq!(std::fs::read_to_string(&uca).unwrap(), "<actions><action>");
}

#[test]
fn exec_arguments_are_quoted_as_the_desktop_entry_spec_says() {
    assert_eq!(exec_quote("/a b/c"), "\"/a b/c\"");
    assert_eq!(exec_quote("/a$b\"c"), "\"/a\\\\$b\\\\\"c\"");
    assert_eq!(exec_quote("/100%"), "\"/100%%\"");
    assert_eq!(shell_quote("it's"), "'it'\\''s'");
}

#[test]
fn paths_with_control_characters_are_refused() {
    assert!(utf8(Path::new("/a\nb")).is_err());
    assert_eq!(utf8(Path::new("/a b")).unwrap(), "/a b");
}
