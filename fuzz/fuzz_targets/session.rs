//! A whole connection without sockets: any bytes a client may send after its upgrade, read as
//! WebSocket frames and acted on by the session (subscriptions, presence, sign-in, client
//! events), against a server whose app allows client events. Each input is one connection;
//! once it ends the server holds nothing of it.
//!
//! The first byte picks how the rest is read. Even: raw bytes off the socket. Odd: one text
//! message per line, framed as a client would; an `"auth":"sign"` or `"auth":"sign-user"` in a
//! message is replaced with a valid signature, so that the fuzzer reaches private and presence
//! channels and sign-in, which it could not by guessing an HMAC.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use soketi_protocol::{SocketId, auth};
use soketi_server::Config;
use soketi_server::fuzzing::Node;

const KEY: &str = "app-key";
const SECRET: &str = "app-secret";

struct Server {
    runtime: tokio::runtime::Runtime,
    node: Node,
}

static SERVER: OnceLock<Server> = OnceLock::new();

fn server() -> &'static Server {
    SERVER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let config = Config::load_from(None, |name| match name {
            "SOKETI_DEFAULT_APP_ENABLE_CLIENT_MESSAGES" => Some("true".into()),
            "SOKETI_PRESENCE_MAX_MEMBERS" => Some("3".into()),
            _ => None,
        })
        .expect("the fuzz configuration");
        let node = runtime
            .block_on(Node::new(config))
            .expect("a server without listeners");
        Server { runtime, node }
    })
}

/// A masked text frame, as a client sends it; the mask is zero, so the payload reads as is.
fn client_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(payload);
}

/// The message with its `"sign"` placeholders replaced by what the app's auth endpoint would
/// answer; any other message as it is.
fn signed(line: &[u8], socket_id: &str) -> Vec<u8> {
    let Ok(mut msg) = serde_json::from_slice::<Value>(line) else {
        return line.to_vec();
    };
    let Some(data) = msg.get_mut("data").and_then(Value::as_object_mut) else {
        return line.to_vec();
    };
    let to_sign = match data.get("auth").and_then(Value::as_str) {
        Some("sign") => {
            let channel = data.get("channel").and_then(Value::as_str).unwrap_or("");
            let channel_data = data.get("channel_data").and_then(Value::as_str);
            auth::channel_string_to_sign(socket_id, channel, channel_data)
        }
        Some("sign-user") => {
            let user_data = data.get("user_data").and_then(Value::as_str).unwrap_or("");
            auth::user_string_to_sign(socket_id, user_data)
        }
        _ => return line.to_vec(),
    };
    data.insert("auth".into(), Value::from(auth::sign(KEY, SECRET, &to_sign)));
    msg.to_string().into_bytes()
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let server = server();
    let socket_id = SocketId::from_parts(1, 1);
    let input = if mode % 2 == 0 {
        rest.to_vec()
    } else {
        let mut frames = Vec::new();
        for line in rest.split(|b| *b == b'\n') {
            client_frame(&signed(line, socket_id.as_str()), &mut frames);
        }
        frames
    };
    server.runtime.block_on(async {
        server.node.connect(KEY, socket_id, input).await;
        // Work the session handed to other tasks (webhooks, fleet messages) runs now.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    });
    assert_eq!(server.node.connections(), 0, "a connection outlived its end");
});
