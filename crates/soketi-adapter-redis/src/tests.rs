use super::redact;

fn check(url: &str, expected: &str) {
    assert_eq!(redact(url), expected, "redact({url:?})");
}

#[test]
fn redact_masks_only_the_password() {
    check(
        "redis://user:secret@127.0.0.1:6379/3",
        "redis://user:***@127.0.0.1:6379/3",
    );
    check("redis://:secret@host:1/0", "redis://:***@host:1/0");
    check("redis://user@host:1/0", "redis://user@host:1/0");
    check("redis://host:1/0", "redis://host:1/0");
    // An '@' of the password itself (the server percent-encodes it, but a hand-written URL
    // may not): everything up to the last '@' of the authority is user info.
    check("redis://u:p@ss@host:1/0", "redis://u:***@host:1/0");
    // An '@' after the authority is not user info.
    check("redis://host:1/0?x=a@b", "redis://host:1/0?x=a@b");
    check("not a url", "not a url");
}
