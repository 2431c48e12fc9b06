//! The HTTP API's signed query and body: any query string and body, checked as the server
//! checks them (the query before the body), against a fixed app.

#![no_main]

use libfuzzer_sys::fuzz_target;
use soketi_protocol::http_auth;

fuzz_target!(|data: &[u8]| {
    // The query string, then the body after the first NUL.
    let (query, body) = match data.iter().position(|b| *b == 0) {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[][..]),
    };
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query).into_owned().collect();
    let checked = http_auth::verify_query(
        "POST",
        "/apps/app-id/events",
        &pairs,
        "app-key",
        "app-secret",
        1_700_000_000,
    );
    // No input passes but a correctly signed one, which a fuzzer does not find; the body is
    // checked all the same, as the server checks it after a query that passes.
    assert!(checked.is_err() || pairs.iter().any(|(k, _)| k == "auth_signature"));
    let _ = http_auth::verify_body(&pairs, body);
    let _ = http_auth::body_md5(body);
    let _ = serde_json::from_slice::<serde_json::Value>(body);
});
