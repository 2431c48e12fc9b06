use soketi_protocol::ws;

use super::*;

fn check(payload: usize) {
    let frame = ws::text(&vec![b'x'; payload]);
    assert_eq!(payload_len(&frame), payload, "a {payload}-byte text frame");
}

#[test]
fn payload_lengths_leave_out_the_header() {
    // Each size class of the WebSocket length field, at its edges.
    for payload in [0, 1, 125, 126, 127, 65_535, 65_536, 70_000] {
        check(payload);
    }
    assert_eq!(payload_len(&ws::close(4200, "bye")), 2 + 3);
    assert_eq!(payload_len(&[]), 0);
    assert_eq!(payload_len(&[0x81]), 0);
}
