use super::{Answer, parse_response, percent_encode};

fn check(response: &str, expected: Option<(u16, bool)>) {
    let actual = parse_response(response.as_bytes()).expect("a valid response");
    let expected = expected.map(|(status, close)| Answer { status, close });
    assert_eq!(actual, expected, "response: {response:?}");
}

#[test]
fn reads_status_and_body_end() {
    check("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n", None);
    check("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{", None);
    check(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}",
        Some((200, false)),
    );
    check("HTTP/1.1 413 Payload Too Large\r\n\r\n", Some((413, false)));
    check(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n",
        None,
    );
    check(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        Some((200, false)),
    );
    check(
        "HTTP/1.1 500 Oops\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        Some((500, true)),
    );
}

#[test]
fn refuses_what_is_no_response() {
    assert!(parse_response(b"garbage\r\n\r\n").is_err());
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
}

#[test]
fn percent_encodes_reserved_characters() {
    assert_eq!(percent_encode("app-key_1.0~"), "app-key_1.0~");
    assert_eq!(percent_encode("a b/c=d&"), "a%20b%2Fc%3Dd%26");
}
