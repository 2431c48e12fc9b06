//! The WebSocket frame reader over any bytes a client may send: every step consumes what it
//! says, a message never exceeds the limit, and nothing panics.

#![no_main]

use libfuzzer_sys::fuzz_target;
use soketi_protocol::ws::{FrameReader, Incoming};

const LIMIT: usize = 128 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut reader = FrameReader::new(LIMIT);
    let mut at = 0;
    while at < data.len() {
        match reader.next(&data[at..]) {
            Ok(Some(step)) => {
                assert!(step.consumed > 0 && at + step.consumed <= data.len());
                if let Some(Incoming::Text(bytes) | Incoming::Binary(bytes)) = &step.message {
                    assert!(bytes.len() <= LIMIT);
                }
                at += step.consumed;
            }
            Ok(None) | Err(_) => break,
        }
    }
});
