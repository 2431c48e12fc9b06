use super::*;

fn check(host: &str, port: u16, expected: &str) {
    let mut config = Config::default();
    config.metrics.host = host.to_owned();
    config.metrics.port = port;
    assert_eq!(ready_url(&config), expected, "host {host:?}");
}

#[test]
fn ready_urls() {
    check("0.0.0.0", 9601, "http://127.0.0.1:9601/ready");
    check("", 9601, "http://127.0.0.1:9601/ready");
    check("::", 9602, "http://[::1]:9602/ready");
    check("10.0.0.5", 9601, "http://10.0.0.5:9601/ready");
    check("fd00::5", 9601, "http://[fd00::5]:9601/ready");
    check("soketi.internal", 9601, "http://soketi.internal:9601/ready");
}

#[tokio::test]
async fn urls_that_cannot_be_asked() {
    for url in [
        "not a url",
        "https://127.0.0.1:9601/ready",
        "127.0.0.1:9601",
    ] {
        let err = ready(url, Duration::from_secs(1)).await.unwrap_err();
        assert!(matches!(err, ProbeError::InvalidUrl { .. }), "{url}: {err}");
    }
}
