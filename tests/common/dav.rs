//! "Another client": direct WebDAV requests to a test server (blocking reqwest), the way a
//! colleague's web browser or sync client changes the share.

use reqwest::Method;

use super::http::client;

fn method(name: &str) -> Method {
    Method::from_bytes(name.as_bytes()).expect("valid method")
}

fn url(base: &str, rel: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), rel_path(rel))
}

fn rel_path(rel: &str) -> String {
    let parts: Vec<String> = rel
        .split('/')
        .filter(|p| !p.is_empty())
        .map(|p| p.replace(' ', "%20"))
        .collect();
    format!("/{}", parts.join("/"))
}

/// PUT `data` at `rel`; panics unless the server accepted it.
pub fn put(base: &str, rel: &str, data: &[u8]) {
    let r = client()
        .put(url(base, rel))
        .body(data.to_vec())
        .send()
        .unwrap_or_else(|e| panic!("PUT {rel}: {e}"));
    assert!(r.status().is_success(), "PUT {rel}: {}", r.status());
}

/// DELETE `rel`; panics unless the server deleted it.
pub fn delete(base: &str, rel: &str) {
    let r = client()
        .delete(url(base, rel))
        .send()
        .unwrap_or_else(|e| panic!("DELETE {rel}: {e}"));
    assert!(r.status().is_success(), "DELETE {rel}: {}", r.status());
}

/// MOVE `from` to `to` (no overwrite); panics unless the server moved it.
pub fn mv(base: &str, from: &str, to: &str) {
    let r = client()
        .request(method("MOVE"), url(base, from))
        .header("Destination", url(base, to))
        .header("Overwrite", "F")
        .send()
        .unwrap_or_else(|e| panic!("MOVE {from}: {e}"));
    assert!(r.status().is_success(), "MOVE {from} {to}: {}", r.status());
}

/// GET `rel`: `None` if the server has no such file.
pub fn get(base: &str, rel: &str) -> Option<Vec<u8>> {
    let r = client()
        .get(url(base, rel))
        .send()
        .unwrap_or_else(|e| panic!("GET {rel}: {e}"));
    match r.status().as_u16() {
        404 => None,
        s if (200..300).contains(&s) => Some(r.bytes().expect("body").to_vec()),
        s => panic!("GET {rel}: {s}"),
    }
}

/// Takes an exclusive write lock on `rel` as `owner`; returns the lock token.
pub fn lock(base: &str, rel: &str, owner: &str) -> String {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
         <D:lockinfo xmlns:D=\"DAV:\"><D:lockscope><D:exclusive/></D:lockscope>\
         <D:locktype><D:write/></D:locktype><D:owner>{owner}</D:owner></D:lockinfo>"
    );
    let r = client()
        .request(method("LOCK"), url(base, rel))
        .header("Timeout", "Second-600")
        .header("Depth", "0")
        .header("Content-Type", "application/xml")
        .body(body)
        .send()
        .unwrap_or_else(|e| panic!("LOCK {rel}: {e}"));
    assert!(r.status().is_success(), "LOCK {rel}: {}", r.status());
    let token = r
        .headers()
        .get("Lock-Token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("LOCK {rel}: no Lock-Token header"))
        .to_string();
    token
}

/// Releases the lock `token` on `rel`.
pub fn unlock(base: &str, rel: &str, token: &str) {
    let r = client()
        .request(method("UNLOCK"), url(base, rel))
        .header("Lock-Token", token)
        .send()
        .unwrap_or_else(|e| panic!("UNLOCK {rel}: {e}"));
    assert!(r.status().is_success(), "UNLOCK {rel}: {}", r.status());
}
