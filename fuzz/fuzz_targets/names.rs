//! Channel names and socket ids from clients and API callers.

#![no_main]

use libfuzzer_sys::fuzz_target;
use soketi_protocol::{ChannelName, SocketId};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(channel) = ChannelName::parse(text, 200) {
        assert!(text.len() <= 200);
        let _ = (
            channel.kind(),
            channel.needs_auth(),
            channel.is_presence(),
            channel.is_cache(),
        );
        let _ = channel.server_to_user_id();
    }
    let _ = ChannelName::classify(text).allows_client_events();
    if let Ok(id) = SocketId::parse(text) {
        // What parses prints back as itself.
        assert_eq!(SocketId::parse(&id.to_string()).ok(), Some(id));
    }
});
