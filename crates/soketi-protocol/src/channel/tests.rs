use super::*;

fn check(name: &str, expected: &str) {
    let actual = match ChannelName::parse(name, 200) {
        Ok(c) => format!(
            "{:?}{}{}",
            c.kind(),
            if c.is_cache() { " cache" } else { "" },
            if c.allows_client_events() {
                " client-events"
            } else {
                ""
            }
        ),
        Err(e) => format!("error: {e}"),
    };
    assert_eq!(actual, expected, "for {name:?}");
}

#[test]
fn kinds() {
    check("my-channel", "Public");
    check("private-chat", "Private client-events");
    check("presence-room", "Presence client-events");
    check("private-encrypted-x", "PrivateEncrypted");
    check("cache-news", "Public cache");
    check("private-cache-a", "Private cache client-events");
    check("presence-cache-a", "Presence cache client-events");
    check("private-encrypted-cache-a", "PrivateEncrypted cache");
    check("#server-to-user-42", "ServerToUser");
    check("a_b=c@d,e.f;g-h", "Public");
}

#[test]
fn invalid_names() {
    check("", "error: invalid channel name: ");
    check("with space", "error: invalid channel name: with space");
    check("#other", "error: invalid channel name: #other");
    check(
        "#server-to-user-",
        "error: invalid channel name: #server-to-user-",
    );
    check("é", "error: invalid channel name: é");
    check("a*b", "error: invalid channel name: a*b");
    check(
        &"a".repeat(201),
        "error: channel name is longer than 200 characters",
    );
    check(&"a".repeat(200), "Public");
}

#[test]
fn server_to_user_id() {
    let c = ChannelName::parse("#server-to-user-u1", 200).unwrap();
    assert_eq!(c.server_to_user_id(), Some("u1"));
    assert_eq!(server_to_user_channel("u1"), "#server-to-user-u1");
}
