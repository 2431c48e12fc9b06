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

/// A Redis that answers `+OK` to every command but `PUBLISH`, which it takes and never answers
/// (a Redis stalled after the connection's set-up), and counts the `PUBLISH`es it was sent.
async fn stalled_redis() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a listener");
    let port = listener.local_addr().expect("its address").port();
    let publishes = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = publishes.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = Vec::new();
                let mut chunk = [0u8; 4096];
                while let Ok(n) = stream.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buffer.extend_from_slice(&chunk[..n]);
                    // Each whole command: `*<n>\r\n` then n bulk strings `$<len>\r\n<bytes>\r\n`.
                    while let Some((words, used)) = command(&buffer) {
                        buffer.drain(..used);
                        if words
                            .first()
                            .is_some_and(|w| w.eq_ignore_ascii_case(b"PUBLISH"))
                        {
                            counted.fetch_add(1, Ordering::SeqCst);
                        } else if stream.write_all(b"+OK\r\n").await.is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    (port, publishes)
}

/// The words of the first whole RESP command in `bytes`, and how many bytes it took.
fn command(bytes: &[u8]) -> Option<(Vec<Vec<u8>>, usize)> {
    fn line(bytes: &[u8], at: usize) -> Option<(usize, usize)> {
        let end = at + bytes.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
        let value = std::str::from_utf8(&bytes[at + 1..end])
            .ok()?
            .parse()
            .ok()?;
        Some((value, end + 2))
    }
    let (count, mut at) = line(bytes, 0)?;
    let mut words = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, start) = line(bytes, at)?;
        words.push(bytes.get(start..start + len)?.to_vec());
        at = start + len + 2;
        if bytes.len() < at {
            return None;
        }
    }
    Some((words, at))
}

#[tokio::test]
async fn publishes_that_a_stalled_redis_took_are_not_sent_again() {
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    let (port, publishes) = stalled_redis().await;
    let (out, rx) = tokio::sync::mpsc::channel(100);
    let connector = super::RedisEndpoint::from_url(&format!("redis://127.0.0.1:{port}"))
        .expect("a URL")
        .connector()
        .expect("a connector");
    let writer = tokio::spawn(super::write_loop(connector, rx));
    for n in 0..3u8 {
        out.send(super::Outgoing {
            channel: "fleet".into(),
            frame: bytes::Bytes::from(vec![n]),
            sent: None,
        })
        .await
        .expect("the writer runs");
        // Past the connection's response timeout (500 ms): each batch times out unanswered.
        tokio::time::sleep(Duration::from_millis(800)).await;
    }
    writer.abort();
    assert_eq!(
        publishes.load(Ordering::SeqCst),
        3,
        "each frame was sent once, none again after its timeout"
    );
}

fn check_neighbour(payload: &[u8], expected: Option<super::Neighbour>) {
    assert_eq!(
        super::neighbour(payload),
        expected,
        "neighbour({:?})",
        String::from_utf8_lossy(payload)
    );
}

#[test]
fn neighbours_are_told_by_their_frames() {
    use super::Neighbour::{EarlierBuild, Soketi};
    use soketi_adapter_core::membership::{Frame, Kind};

    // soketi 1.x's broadcast, request and response, as its horizontal adapter writes them.
    check_neighbour(
        br#"{"uuid":"u","appId":"app-id","channel":"c","data":{"event":"e","channel":"c","data":"{}"}}"#,
        Some(Soketi),
    );
    check_neighbour(
        br#"{"requestId":"r","appId":"app-id","type":4,"opts":{}}"#,
        Some(Soketi),
    );
    check_neighbour(b" {\"requestId\":\"r\",\"totalCount\":1}\n", Some(Soketi));
    // A frame of a node of an earlier build, which used soketi's channel.
    check_neighbour(
        &Frame::encode(Kind::Heartbeat, "1-00ab", &[]),
        Some(EarlierBuild),
    );
    check_neighbour(
        &Frame::encode(Kind::Message, "1-00ab", b"{\"x\":1}"),
        Some(EarlierBuild),
    );
    // Anything else is nobody known.
    for other in [&b""[..], b"hello", b"[1,2]", b"{", b"\x09\x00"] {
        check_neighbour(other, None);
    }
}

#[test]
fn channel_names_keep_clear_of_soketis() {
    use super::{SoketiChannels, fleet_channel};

    assert_eq!(fleet_channel("p"), "p#soketi-rs");
    assert_eq!(fleet_channel(""), "#soketi-rs");
    assert_eq!(
        SoketiChannels::new("p"),
        SoketiChannels {
            broadcast: "p#redis-adapter".into(),
            requests: "p#redis-adapter#comms#req".into(),
            responses: "p#redis-adapter#comms#res".into(),
        }
    );
    assert_eq!(SoketiChannels::new("").broadcast, "redis-adapter");
    // soketi pattern-subscribes to its broadcast channel followed by anything: none of this
    // node's channels (the fleet's, or a node's, which extends it) may match.
    for prefix in ["", "p", "app#1"] {
        let soketi = SoketiChannels::new(prefix).broadcast;
        let ours = fleet_channel(prefix);
        assert!(!ours.starts_with(&soketi), "{ours} under {soketi}*");
    }
}

#[test]
fn watched_channels_include_the_earlier_builds_fleet_channel() {
    let check = |prefix: &str, expected: &[&str]| {
        let watch = super::Watch::new(prefix, &super::fleet_channel(prefix));
        assert_eq!(watch.channels(), expected, "prefix {prefix:?}");
        for channel in expected {
            assert!(watch.is_watched(channel), "{channel}");
        }
        assert!(!watch.is_watched(&super::fleet_channel(prefix)));
    };
    // With a prefix, earlier builds used soketi's broadcast channel; without, `#redis-adapter`.
    check("p", &["p#redis-adapter", "p#redis-adapter#comms#res"]);
    check(
        "",
        &["redis-adapter", "redis-adapter#comms#res", "#redis-adapter"],
    );
    // Once soketi is heard, nothing is watched any more, and it is said once.
    let watch = super::Watch::new("p", "p#soketi-rs");
    assert!(watch.heard("p#redis-adapter", br#"{"uuid":"u"}"#));
    assert!(!watch.heard("p#redis-adapter", br#"{"uuid":"u"}"#));
    assert!(watch.channels().is_empty());
}
