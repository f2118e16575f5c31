use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("config.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn unknown_keys_and_bad_syntax_name_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "[drives.work]\nurl = \"http://h/\"\nmountpoint = \"/mnt/w\"\ncache_sise = \"1G\"\n",
    );
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("line 4") && e.contains("cache_sise"), "{e}");
    assert!(e.contains(&p.display().to_string()), "{e}");
    let p = write(
        dir.path(),
        "[drives.work]\nurl = \"http://h/\"\nmountpoint = \n",
    );
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("line 3"), "{e}");
    let p = write(
        dir.path(),
        "[drives.work]\nurl = \"http://h/\"\nmountpoint = \"/m\"\ncache_size = \"lots\"\n",
    );
    let e = load(&p).unwrap_err().to_string();
    assert!(e.contains("work") && e.contains("--cache-size"), "{e}");
}

#[test]
fn drives_round_trip_into_mount_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    std::fs::write(&p, "# my drives\n").unwrap();
    let d = DriveConfig {
        url: "http://h/dav/".into(),
        mountpoint: "/mnt/w".into(),
        user: Some("alice".into()),
        cache_size: Some(Scalar::Text("20G".into())),
        ignore: vec!["*.bak".into(), "x y".into()],
        read_only: true,
        download_streams: Some(Scalar::Int(2)),
        ..DriveConfig::default()
    };
    add(&p, "work", &d).unwrap();
    assert!(add(&p, "work", &d).is_err());
    assert!(add(&p, "../x", &d).is_err());
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains("# my drives"), "{text}");
    let f = load(&p).unwrap();
    assert_eq!(f.drive(&p, "work").unwrap(), &d);
    let args = d.mount_args(&p, "work").unwrap();
    assert_eq!(args.cache_size, 20 << 30);
    assert_eq!(args.ignore, vec!["*.bak".to_string(), "x y".to_string()]);
    assert_eq!(args.user.as_deref(), Some("alice"));
    assert_eq!(args.download_streams, 2);
    assert_eq!(remove(&p, "work").unwrap(), d);
    assert!(load(&p).unwrap().drives.is_empty());
    assert!(remove(&p, "work").is_err());
}

/// The S3 options of `edrive add` are kept as typed and given back to `edrive mount`.
#[test]
fn s3_options_round_trip() {
    use clap::CommandFactory;
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.toml");
    let matches = crate::cli::Cli::command()
        .try_get_matches_from([
            "edrive",
            "add",
            "photos",
            "s3://bucket/pre/fix",
            "/mnt/p",
            "--endpoint",
            "http://127.0.0.1:8333",
            "--region=eu-west-3",
            "--path-style",
            "--cache-size=1G",
        ])
        .unwrap();
    let add_matches = matches.subcommand_matches("add").unwrap();
    let d =
        DriveConfig::from_matches("s3://bucket/pre/fix", Path::new("/mnt/p"), add_matches).unwrap();
    assert_eq!(d.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(d.region.as_deref(), Some("eu-west-3"));
    assert!(d.path_style && !d.virtual_hosted);
    assert_eq!(d.user, None);
    add(&p, "photos", &d).unwrap();
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(
        text.contains("endpoint = \"http://127.0.0.1:8333\""),
        "{text}"
    );
    assert!(text.contains("region = \"eu-west-3\""), "{text}");
    assert!(text.contains("path_style = true"), "{text}");
    assert!(!text.contains("virtual_hosted"), "{text}");
    let f = load(&p).unwrap();
    assert_eq!(f.drive(&p, "photos").unwrap(), &d);
    let args = d.mount_args(&p, "photos").unwrap();
    assert_eq!(args.url, "s3://bucket/pre/fix");
    assert_eq!(args.s3.endpoint.as_deref(), Some("http://127.0.0.1:8333"));
    assert_eq!(args.s3.region.as_deref(), Some("eu-west-3"));
    assert!(args.s3.path_style && !args.s3.virtual_hosted);
    assert_eq!(args.cache_size, 1 << 30);
    // As the daemon child is given them.
    assert_eq!(
        args.s3.to_args(),
        [
            "--endpoint=http://127.0.0.1:8333",
            "--region=eu-west-3",
            "--path-style"
        ]
    );

    let v = DriveConfig {
        virtual_hosted: true,
        path_style: false,
        ..d.clone()
    };
    assert!(v.mount_args(&p, "v").unwrap().s3.virtual_hosted);
    // Both addressings at once is what `edrive mount` refuses: named in the error.
    let p2 = write(
        dir.path(),
        "[drives.b]\nurl = \"s3://b\"\nmountpoint = \"/m\"\npath_style = true\n\
         virtual_hosted = true\n",
    );
    let e = load(&p2).unwrap_err().to_string();
    assert!(e.contains("drive 'b'") && e.contains("--path-style"), "{e}");
}
