use super::*;

/// A masked client frame, as a browser would send it.
fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
    let mask = [0x37, 0xfa, 0x21, 0x3d];
    let mut out = vec![first];
    let len = payload.len();
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 126);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

/// Reads every frame of `input` with a limit of 1000 bytes, and lists what came out: the
/// messages, or the error that stopped the reading, or `Incomplete` with the bytes left.
fn check(input: &[u8], expected: &[Result<Incoming, FrameError>], left: usize) {
    let mut reader = FrameReader::new(1000);
    let mut at = 0;
    let mut actual = Vec::new();
    loop {
        match reader.next(&input[at..]) {
            Ok(Some(step)) => {
                at += step.consumed;
                actual.extend(step.message.map(Ok));
            }
            Ok(None) => break,
            Err(e) => {
                actual.push(Err(e));
                break;
            }
        }
    }
    assert_eq!(actual, expected, "input {input:02x?}");
    if actual.last().is_none_or(Result::is_ok) {
        assert_eq!(input.len() - at, left, "bytes left unread");
    }
}

fn text(s: &str) -> Result<Incoming, FrameError> {
    Ok(Incoming::Text(s.as_bytes().to_vec()))
}

#[test]
fn whole_messages_of_each_length_class() {
    check(&masked(0x81, b"hello"), &[text("hello")], 0);
    let medium = "m".repeat(300);
    check(&masked(0x81, medium.as_bytes()), &[text(&medium)], 0);
    check(
        &masked(0x82, &[1, 2, 3]),
        &[Ok(Incoming::Binary(vec![1, 2, 3]))],
        0,
    );
    check(&masked(0x81, b""), &[text("")], 0);
}

#[test]
fn frames_split_anywhere_wait_for_the_rest() {
    let frame = masked(0x81, &[b'x'; 200]);
    for cut in 0..frame.len() {
        check(&frame[..cut], &[], cut);
    }
    let mut two = masked(0x81, b"a");
    two.extend(masked(0x81, b"b"));
    two.extend(&masked(0x81, b"c")[..3]);
    check(&two, &[text("a"), text("b")], 3);
}

#[test]
fn fragments_join_and_control_frames_may_come_between() {
    let mut input = masked(0x01, b"hel");
    input.extend(masked(0x89, b"p"));
    input.extend(masked(0x00, b"l"));
    input.extend(masked(0x80, b"o"));
    check(
        &input,
        &[Ok(Incoming::Ping(b"p".to_vec())), text("hello")],
        0,
    );
}

#[test]
fn control_frames() {
    check(&masked(0x8a, b"x"), &[Ok(Incoming::Pong)], 0);
    check(&masked(0x88, b""), &[Ok(Incoming::Close(None))], 0);
    check(
        &masked(0x88, b"\x03\xe8bye"),
        &[Ok(Incoming::Close(Some(1000)))],
        0,
    );
    check(
        &masked(0x88, b"\x0f\xa0"),
        &[Ok(Incoming::Close(Some(4000)))],
        0,
    );
}

#[test]
fn protocol_violations_are_refused() {
    let err = |e| [Err(e)];
    check(b"\x81\x01a", &err(FrameError::Unmasked), 0);
    check(&masked(0xc1, b"a"), &err(FrameError::ReservedBits), 0);
    check(&masked(0x83, b"a"), &err(FrameError::UnknownOpcode(3)), 0);
    check(&masked(0x09, b"a"), &err(FrameError::BadControlFrame), 0);
    check(
        &masked(0x89, &[0; 126]),
        &err(FrameError::BadControlFrame),
        0,
    );
    check(&masked(0x80, b"a"), &err(FrameError::BadFragments), 0);
    let mut two_starts = masked(0x01, b"a");
    two_starts.extend(masked(0x81, b"b"));
    check(&two_starts, &err(FrameError::BadFragments), 0);
    check(&masked(0x88, b"\x03"), &err(FrameError::BadClose), 0);
    check(&masked(0x88, b"\x03\xed"), &err(FrameError::BadClose), 0);
    check(
        &masked(0x88, b"\x03\xe8\xff"),
        &err(FrameError::BadClose),
        0,
    );
}

#[test]
fn messages_over_the_limit_are_refused_before_their_payload() {
    check(&masked(0x81, &[b'a'; 1000]), &[text(&"a".repeat(1000))], 0);
    // The header alone is enough to refuse it.
    check(&masked(0x81, &[b'a'; 1001])[..8], &err_too_large(), 0);
    check(
        b"\x81\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        &err_too_large(),
        0,
    );
    // Fragments count together.
    let mut input = masked(0x01, &[b'a'; 600]);
    input.extend(masked(0x80, &[b'a'; 401]));
    check(&input, &err_too_large(), 0);
    assert_eq!(FrameError::TooLarge(1).close_code(), 1009);
    assert_eq!(FrameError::Unmasked.close_code(), 1002);
}

fn err_too_large() -> [Result<Incoming, FrameError>; 1] {
    [Err(FrameError::TooLarge(1000))]
}
