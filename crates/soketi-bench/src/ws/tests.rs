use super::{Frame, encode_masked, encode_unmasked, parse_frame};

fn check(bytes: &[u8], expected: Option<(bool, u8, &[u8], usize)>) {
    let actual = parse_frame(bytes).expect("a valid frame");
    let expected = expected.map(|(fin, opcode, payload, len)| Frame {
        fin,
        opcode,
        payload,
        len,
    });
    assert_eq!(actual, expected, "bytes: {bytes:?}");
}

#[test]
fn parses_frames_of_each_length_form() {
    check(&[], None);
    check(&[0x81], None);
    check(&[0x81, 0x02, b'h'], None);
    check(&[0x81, 0x02, b'h', b'i', 0xff], Some((true, 1, b"hi", 4)));
    check(&[0x01, 0x00], Some((false, 1, b"", 2)));

    let long = vec![b'a'; 300];
    let framed = encode_unmasked(1, &long);
    assert_eq!(&framed[..4], &[0x81, 126, 0x01, 0x2c]);
    check(&framed, Some((true, 1, &long, 304)));
    check(&framed[..100], None);

    let huge = vec![b'b'; 70_000];
    let framed = encode_unmasked(2, &huge);
    assert_eq!(framed[1], 127);
    check(&framed, Some((true, 2, &huge, 70_010)));
}

#[test]
fn refuses_masked_and_oversized_frames() {
    assert!(parse_frame(&[0x81, 0x81, 1, 2, 3, 4, 5]).is_err());
    let mut oversized = vec![0x82, 127];
    oversized.extend_from_slice(&(1u64 << 40).to_be_bytes());
    assert!(parse_frame(&oversized).is_err());
}

#[test]
fn masks_what_it_sends() {
    let frame = encode_masked(1, b"abcd", [1, 2, 3, 4]);
    assert_eq!(
        frame,
        [
            0x81,
            0x84,
            1,
            2,
            3,
            4,
            b'a' ^ 1,
            b'b' ^ 2,
            b'c' ^ 3,
            b'd' ^ 4
        ]
    );
    let long = encode_masked(1, &[0; 200], [0; 4]);
    assert_eq!(&long[..4], &[0x81, 0x80 | 126, 0, 200]);
}
