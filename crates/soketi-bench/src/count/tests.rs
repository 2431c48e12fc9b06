use super::count_of;

fn check(frame: &str, expected: Option<u64>) {
    assert_eq!(count_of(frame.as_bytes()), expected, "frame: {frame}");
}

#[test]
fn finds_the_count_in_frames_of_any_shape() {
    // As soketi-rs and Pusher send it: `data` is a JSON string.
    check(
        r#"{"event":"pusher_internal:subscription_count","channel":"bench-0","data":"{\"subscription_count\":10000}"}"#,
        Some(10_000),
    );
    // The event's name after the data, and `data` as an object.
    check(
        r#"{"channel":"bench-0","data":{"subscription_count": 7},"event":"pusher_internal:subscription_count"}"#,
        Some(7),
    );
    check(
        r#"{"data":"{\"subscription_count\":1}","event":"pusher_internal:subscription_count"}"#,
        Some(1),
    );
    // Other events, and a count event without a number.
    check(
        r#"{"event":"pusher_internal:subscription_succeeded","channel":"bench-0","data":"{}"}"#,
        None,
    );
    check(
        r#"{"event":"bench","channel":"bench-0","data":"{\"subscription_count\":3}"}"#,
        None,
    );
    check(
        r#"{"event":"pusher_internal:subscription_count","channel":"bench-0","data":"{}"}"#,
        None,
    );
}
