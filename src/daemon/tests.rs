use super::split_userinfo;

#[test]
fn credentials_are_taken_out_of_urls() {
    assert_eq!(
        split_userinfo("https://bob:p%40ss@host:8443/dav/x@y"),
        (
            "https://host:8443/dav/x@y".into(),
            Some("bob".into()),
            Some("p@ss".into())
        )
    );
    assert_eq!(
        split_userinfo("http://h/dav/"),
        ("http://h/dav/".into(), None, None)
    );
    assert_eq!(
        split_userinfo("http://al@h/"),
        ("http://h/".into(), Some("al".into()), None)
    );
}
