use super::*;

// The worked example of Pusher's HTTP API documentation.
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
const BODY: &str = r#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
const TIMESTAMP: u64 = 1_353_088_179;

fn documented_query() -> Vec<(String, String)> {
    [
        ("auth_key", KEY),
        ("auth_timestamp", "1353088179"),
        ("auth_version", "1.0"),
        ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
        (
            "auth_signature",
            "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn check(query: &[(String, String)], body: &str, now: u64) -> Result<(), HttpAuthError> {
    let req = SignedRequest {
        method: "POST",
        path: "/apps/3/events",
        query,
        body: body.as_bytes(),
    };
    verify(&req, KEY, SECRET, now)
}

fn with(query: &[(String, String)], key: &str, value: Option<&str>) -> Vec<(String, String)> {
    let mut q: Vec<_> = query.iter().filter(|(k, _)| k != key).cloned().collect();
    if let Some(v) = value {
        q.push((key.to_owned(), v.to_owned()));
    }
    q
}

#[test]
fn documented_example_verifies() {
    assert_eq!(
        body_md5(BODY.as_bytes()),
        "ec365a775a4cd0599faeb73354201b6f"
    );
    assert_eq!(check(&documented_query(), BODY, TIMESTAMP), Ok(()));
    assert_eq!(check(&documented_query(), BODY, TIMESTAMP + 600), Ok(()));
}

#[test]
fn sign_reproduces_the_documented_signature() {
    let signed = sign(
        "POST",
        "/apps/3/events",
        &[],
        BODY.as_bytes(),
        KEY,
        SECRET,
        TIMESTAMP,
    );
    let mut expected = documented_query();
    let mut actual = signed.clone();
    expected.sort();
    actual.sort();
    assert_eq!(actual, expected);
    assert_eq!(check(&signed, BODY, TIMESTAMP), Ok(()));
}

#[test]
fn refusals() {
    let q = documented_query();
    type Case<'a> = (Vec<(String, String)>, &'a str, u64, HttpAuthError);
    let cases: Vec<Case<'_>> = vec![
        (
            q.clone(),
            BODY,
            TIMESTAMP + 601,
            HttpAuthError::ExpiredTimestamp,
        ),
        (
            q.clone(),
            BODY,
            TIMESTAMP - 601,
            HttpAuthError::ExpiredTimestamp,
        ),
        (q.clone(), "{}", TIMESTAMP, HttpAuthError::BodyMd5Mismatch),
        // The signature covers body_md5: dropping it breaks the signature first.
        (
            with(&q, "body_md5", None),
            BODY,
            TIMESTAMP,
            HttpAuthError::InvalidSignature,
        ),
        (
            with(&q, "auth_key", Some("other")),
            BODY,
            TIMESTAMP,
            HttpAuthError::WrongKey,
        ),
        (
            with(&q, "auth_key", None),
            BODY,
            TIMESTAMP,
            HttpAuthError::MissingParameter("auth_key"),
        ),
        (
            with(&q, "auth_version", Some("2.0")),
            BODY,
            TIMESTAMP,
            HttpAuthError::UnsupportedVersion("2.0".into()),
        ),
        (
            with(&q, "auth_timestamp", Some("soon")),
            BODY,
            TIMESTAMP,
            HttpAuthError::InvalidTimestamp,
        ),
        (
            with(&q, "auth_signature", None),
            BODY,
            TIMESTAMP,
            HttpAuthError::MissingParameter("auth_signature"),
        ),
        (
            with(&q, "auth_signature", Some("00")),
            BODY,
            TIMESTAMP,
            HttpAuthError::InvalidSignature,
        ),
        (
            with(&q, "extra", Some("1")),
            BODY,
            TIMESTAMP,
            HttpAuthError::InvalidSignature,
        ),
    ];
    for (query, body, now, expected) in cases {
        assert_eq!(
            check(&query, body, now),
            Err(expected.clone()),
            "{expected}"
        );
    }
}

#[test]
fn the_query_verifies_before_the_body_is_read() {
    let q = documented_query();
    let path = "/apps/3/events";
    assert_eq!(
        verify_query("POST", path, &q, KEY, SECRET, TIMESTAMP),
        Ok(())
    );
    assert_eq!(verify_body(&q, BODY.as_bytes()), Ok(()));
    assert_eq!(verify_body(&q, b"{}"), Err(HttpAuthError::BodyMd5Mismatch));
    let unsigned = with(&q, "auth_signature", Some("00"));
    assert_eq!(
        verify_query("POST", path, &unsigned, KEY, SECRET, TIMESTAMP),
        Err(HttpAuthError::InvalidSignature)
    );
    // A body without body_md5 in the query is refused; no body needs none.
    let bare = with(&q, "body_md5", None);
    assert_eq!(
        verify_body(&bare, BODY.as_bytes()),
        Err(HttpAuthError::BodyMd5Mismatch)
    );
    assert_eq!(verify_body(&bare, b""), Ok(()));
}

#[test]
fn query_is_sorted_and_lowercased() {
    let q = vec![
        ("b".to_owned(), "2".to_owned()),
        ("A".to_owned(), "1".to_owned()),
        ("auth_signature".to_owned(), "x".to_owned()),
    ];
    assert_eq!(string_to_sign("get", "/p", &q), "GET\n/p\na=1&b=2");
}

#[test]
fn a_request_signed_with_the_secret_alone() {
    let path = "/console/key";
    let params = |timestamp: u64| {
        vec![
            ("app_id".to_owned(), "3".to_owned()),
            ("auth_timestamp".to_owned(), timestamp.to_string()),
        ]
    };
    let signed = |timestamp: u64, secret: &str| {
        let mut query = params(timestamp);
        let signature =
            crate::auth::hmac_sha256_hex(secret, string_to_sign("GET", path, &query).as_bytes());
        query.push(("auth_signature".to_owned(), signature));
        query
    };
    let check =
        |query: &[(String, String)]| verify_secret_only("GET", path, query, SECRET, TIMESTAMP);
    assert_eq!(check(&signed(TIMESTAMP, SECRET)), Ok(()));
    assert_eq!(
        check(&signed(TIMESTAMP, "another secret")),
        Err(HttpAuthError::InvalidSignature)
    );
    assert_eq!(
        check(&signed(TIMESTAMP - TIMESTAMP_WINDOW_SECS - 1, SECRET)),
        Err(HttpAuthError::ExpiredTimestamp)
    );
    assert_eq!(
        check(&params(TIMESTAMP)),
        Err(HttpAuthError::MissingParameter("auth_signature"))
    );
    let mut moved = signed(TIMESTAMP, SECRET);
    moved[0].1 = "4".to_owned();
    assert_eq!(
        check(&moved),
        Err(HttpAuthError::InvalidSignature),
        "the app id is signed"
    );
}
