//! Saying in words what waits for the user (`edrive status`, `edrive sync`): held
//! deletions, changes the server refused, conflicts.

/// What waits for the user according to a status reply's `sync` object, e.g.
/// `500 deletion(s) held (edrive deletions)`; empty if nothing does.
pub fn describe(sync: &serde_json::Value) -> String {
    let a = &sync["attention"];
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let mut parts = Vec::new();
    if n("held") > 0 {
        parts.push(format!(
            "{} deletion(s) held: `edrive deletions` lists them, --confirm sends, --restore brings back",
            n("held")
        ));
    }
    if n("refused") > 0 {
        parts.push(format!(
            "{} change(s) refused by the server: `edrive resolve PATH --discard` or --save-as LOCAL_PATH",
            n("refused")
        ));
    }
    if n("conflicts") > 0 {
        parts.push(format!(
            "{} conflict(s): `edrive conflicts`, `edrive resolve`",
            n("conflicts")
        ));
    }
    parts.join("; ")
}
