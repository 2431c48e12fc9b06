use super::{Latency, Mark, SeqSet, histogram, record};

fn check(frame: &str, expected: Option<(u32, u32, u64, u32)>) {
    let actual = Mark::find(frame.as_bytes());
    let expected = expected.map(|(step, seq, micros, publisher)| Mark {
        step,
        seq,
        micros,
        publisher,
    });
    assert_eq!(actual, expected, "frame: {frame}");
}

#[test]
fn finds_marks_in_frames_of_any_server() {
    let mark = Mark {
        step: 2,
        seq: 41,
        micros: 1_700_000_000_123_456,
        publisher: 7,
    };
    let data = mark.data(40);
    assert_eq!(data, "B|2|41|1700000000123456|7|xxxxxxxxxxxxxx");
    check(
        &format!(r#"{{"event":"bench","channel":"bench-0","data":"{data}"}}"#),
        Some((2, 41, 1_700_000_000_123_456, 7)),
    );
    check(
        &format!(r#"{{"channel":"bench-0","data":"{data}","event":"bench"}}"#),
        Some((2, 41, 1_700_000_000_123_456, 7)),
    );
    check(r#"{"event":"pusher:pong","data":{}}"#, None);
    check(r#"{"data":"B|1|2|"}"#, None);
    check(r#"{"data":"B|1|2|3|"}"#, None);
    check(r#"{"data":"B|1|x|3|0|"}"#, None);
    check(r#"{"data":"B|99999999999|1|3|0|"}"#, None);
}

#[test]
fn counts_duplicates() {
    let mut seen = SeqSet::default();
    let new: Vec<bool> = [0, 1, 1, 500, 64, 500, 0]
        .into_iter()
        .map(|seq| seen.insert(seq))
        .collect();
    assert_eq!(new, [true, true, false, true, true, false, false]);
    assert_eq!((seen.unique, seen.duplicates), (4, 3));
}

#[test]
fn summarises_in_milliseconds() {
    assert_eq!(Latency::of(&histogram()), Latency::default());
    let mut micros = histogram();
    for value in 1..=1000 {
        record(&mut micros, value * 10);
    }
    record(&mut micros, 120_000_000);
    let latency = Latency::of(&micros);
    assert_eq!(latency.count, 1001);
    assert!((latency.p50 - 5.0).abs() < 0.02, "{latency:?}");
    assert!((latency.p99 - 9.9).abs() < 0.02, "{latency:?}");
    assert!((latency.max - 60_000.0).abs() < 60.0, "{latency:?}");
}
