//! Small blocking HTTP helpers (reqwest) for talking to the test servers directly.

use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::Method;

/// A blocking client with a 30 s timeout and no proxy.
pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(30))
        .no_proxy()
        .build()
        .expect("cannot build the HTTP client")
}

/// The PROPFIND method.
pub fn propfind_method() -> Method {
    Method::from_bytes(b"PROPFIND").expect("PROPFIND is a valid method")
}

/// Sends `PROPFIND url` with `Depth: depth` (allprop) and returns (status, body).
pub fn propfind(url: &str, depth: &str, auth: Option<(&str, &str)>) -> (u16, String) {
    let mut req = client()
        .request(propfind_method(), url)
        .header("Depth", depth)
        .header("Content-Type", "application/xml")
        .body(
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\
             <D:propfind xmlns:D=\"DAV:\"><D:allprop/></D:propfind>",
        );
    if let Some((u, p)) = auth {
        req = req.basic_auth(u, Some(p));
    }
    let resp = req
        .send()
        .unwrap_or_else(|e| panic!("PROPFIND {url} failed: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().unwrap_or_default())
}
