use super::*;

fn p(s: &str) -> VirtPath {
    VirtPath::parse(s)
}

fn created(s: &str) -> Notification {
    Notification::NewFileCreated {
        path: p(s),
        is_dir: false,
    }
}

fn closed_modified(s: &str) -> Notification {
    Notification::HandleClosed {
        path: p(s),
        is_dir: false,
        modified: true,
        deleted: false,
    }
}

fn closed_deleted(s: &str) -> Notification {
    Notification::HandleClosed {
        path: p(s),
        is_dir: false,
        modified: false,
        deleted: true,
    }
}

fn renamed(a: &str, b: &str) -> Notification {
    Notification::FileRenamed {
        from: Some(p(a)),
        to: Some(p(b)),
        is_dir: false,
    }
}

fn run(t: &mut Tracker, seq: &[Notification]) -> Vec<CoreOp> {
    seq.iter().flat_map(|n| t.observe(n)).collect()
}

#[test]
fn transient_names() {
    for n in [
        "~$Report.docx",
        "~WRD0001.tmp",
        "~WRL0002.TMP",
        "ppt5A3.tmp",
        "3A1F09C2",
        ".~lock.a.odt#",
    ] {
        assert!(is_transient(n), "{n}");
    }
    for n in [
        "Report.docx",
        "tmp",
        ".tmp",
        "3A1F09C2.xlsx",
        "deadbeefx",
        "notes.txt",
    ] {
        assert!(!is_transient(n), "{n}");
    }
}

#[test]
fn word_save_becomes_one_upload() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            // Opening the document: Word's owner file.
            created("Docs\\~$Report.docx"),
            closed_modified("Docs\\~$Report.docx"),
            // Save: write a temp file, move the original aside, move the temp over it.
            created("Docs\\~WRD0001.tmp"),
            closed_modified("Docs\\~WRD0001.tmp"),
            renamed("Docs\\Report.docx", "Docs\\~WRL0002.tmp"),
            renamed("Docs\\~WRD0001.tmp", "Docs\\Report.docx"),
            closed_deleted("Docs\\~WRL0002.tmp"),
            // Closing the document.
            closed_deleted("Docs\\~$Report.docx"),
        ],
    );
    assert_eq!(
        ops,
        [CoreOp::Upload {
            path: p("Docs\\Report.docx")
        }]
    );
    assert!(t.deferred().is_empty());
}

#[test]
fn excel_save_with_hex_temp_names_becomes_one_upload() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            created("Budget\\8A3F2B1C"),
            closed_modified("Budget\\8A3F2B1C"),
            renamed("Budget\\Q1.xlsx", "Budget\\1D2E3F4A"),
            renamed("Budget\\8A3F2B1C", "Budget\\q1.XLSX"),
            closed_deleted("Budget\\1D2E3F4A"),
        ],
    );
    assert_eq!(
        ops,
        [CoreOp::Upload {
            path: p("Budget\\q1.XLSX")
        }]
    );
    assert!(t.deferred().is_empty());
}

#[test]
fn replace_file_over_the_original_is_an_upload() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            created("a.txt.tmp"),
            closed_modified("a.txt.tmp"),
            renamed("a.txt.tmp", "a.txt"),
        ],
    );
    assert_eq!(ops, [CoreOp::Upload { path: p("a.txt") }]);
}

#[test]
fn in_place_edit_new_file_rename_and_delete() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            Notification::FileOverwritten {
                path: p("notes.txt"),
            },
            Notification::HandleClosed {
                path: p("notes.txt"),
                is_dir: false,
                modified: false,
                deleted: false,
            },
            created("New Text Document.txt"),
            closed_modified("New Text Document.txt"),
            renamed("New Text Document.txt", "todo.txt"),
            Notification::NewFileCreated {
                path: p("Photos"),
                is_dir: true,
            },
            closed_deleted("old.log"),
            Notification::HandleClosed {
                path: p("Archive"),
                is_dir: true,
                modified: false,
                deleted: true,
            },
        ],
    );
    assert_eq!(
        ops,
        [
            CoreOp::Upload {
                path: p("notes.txt")
            },
            CoreOp::CreateFile {
                path: p("New Text Document.txt")
            },
            CoreOp::Upload {
                path: p("New Text Document.txt")
            },
            CoreOp::Rename {
                from: p("New Text Document.txt"),
                to: p("todo.txt")
            },
            CoreOp::CreateDir { path: p("Photos") },
            CoreOp::Delete {
                path: p("old.log"),
                is_dir: false
            },
            CoreOp::Delete {
                path: p("Archive"),
                is_dir: true
            },
        ]
    );
}

#[test]
fn unmodified_close_uploads_nothing() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[Notification::HandleClosed {
            path: p("a.pdf"),
            is_dir: false,
            modified: false,
            deleted: false,
        }],
    );
    assert!(ops.is_empty());
}

#[test]
fn delete_through_a_temp_name_deletes_the_server_file() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            renamed("big.iso", "big.iso.tmp"),
            closed_deleted("big.iso.tmp"),
        ],
    );
    assert_eq!(
        ops,
        [CoreOp::Delete {
            path: p("big.iso"),
            is_dir: false
        }]
    );
}

#[test]
fn shadow_renamed_back_is_nothing_and_crash_leaves_it_listed() {
    let mut t = Tracker::new();
    assert!(run(
        &mut t,
        &[
            renamed("doc.docx", "~WRL0001.tmp"),
            renamed("~WRL0001.tmp", "DOC.docx")
        ]
    )
    .is_empty());
    assert!(t.deferred().is_empty());
    assert!(run(&mut t, &[renamed("doc.docx", "~WRL0003.tmp")]).is_empty());
    assert_eq!(
        t.deferred(),
        [(
            p("~WRL0003.tmp"),
            Deferred::Shadow {
                remote: p("doc.docx")
            }
        )]
    );
    assert!(t.is_dirty(&p("~wrl0003.TMP")));
}

#[test]
fn folder_rename_and_moves_across_the_root() {
    let mut t = Tracker::new();
    let ops = run(
        &mut t,
        &[
            created("Work\\draft.tmp"),
            Notification::FileRenamed {
                from: Some(p("Work")),
                to: Some(p("Done")),
                is_dir: true,
            },
            renamed("Done\\draft.tmp", "Done\\final.txt"),
            Notification::FileRenamed {
                from: None,
                to: Some(p("incoming.zip")),
                is_dir: false,
            },
            Notification::FileRenamed {
                from: Some(p("outgoing.zip")),
                to: None,
                is_dir: false,
            },
        ],
    );
    assert_eq!(
        ops,
        [
            CoreOp::Rename {
                from: p("Work"),
                to: p("Done")
            },
            CoreOp::Upload {
                path: p("Done\\final.txt")
            },
            CoreOp::Upload {
                path: p("incoming.zip")
            },
            CoreOp::Delete {
                path: p("outgoing.zip"),
                is_dir: false
            },
        ]
    );
}

#[test]
fn read_only_mode_protects_server_files_only() {
    let mut t = Tracker::new();
    let ro = WriteMode::ReadOnly;
    let pre_delete = |s: &str| Notification::PreDelete {
        path: p(s),
        is_dir: false,
    };
    assert!(!t.permits(&Notification::PreConvertToFull { path: p("a.txt") }, ro));
    assert!(!t.permits(&pre_delete("a.txt"), ro));
    assert!(!t.permits(
        &Notification::PreRename {
            from: p("a.txt"),
            to: Some(p("b.txt"))
        },
        ro
    ));
    t.observe(&Notification::NewFileCreated {
        path: p("Scratch"),
        is_dir: true,
    });
    t.observe(&created("mine.txt"));
    assert!(t.permits(&pre_delete("MINE.txt"), ro));
    assert!(
        t.permits(&pre_delete("scratch\\x.txt"), ro),
        "inside a local folder"
    );
    assert!(t.permits(
        &Notification::PreRename {
            from: p("mine.txt"),
            to: None
        },
        ro
    ));
    assert!(t.permits(&pre_delete("a.txt"), WriteMode::ReadWrite));
    assert!(t.permits(
        &Notification::PreConvertToFull { path: p("a.txt") },
        WriteMode::ReadWrite
    ));
}
