//! The registry of one node: which connections an app has, which channels they joined, who is
//! present on each presence channel and which connections belong to each signed-in user.
//!
//! The entry type is [`Registry`]; each app's state is an [`AppChannels`]. Connections are held
//! as [`Outbox`] trait objects, so the registry hands frames to them without knowing how they
//! are written.
//!
//! This crate does no I/O: no sockets, no tasks and no clock (times are passed in). It takes no
//! global lock: apps, channels and users sit in sharded concurrent maps, and publishing to a
//! channel holds only that channel's read lock while frames are queued.
//!
//! # Example
//!
//! A connection subscribes to a channel, and a publish queues one frame on it:
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use bytes::Bytes;
//! use soketi_channels::{Outbox, Registry};
//! use soketi_protocol::{CloseCode, SocketId};
//!
//! /// A connection that keeps the frames it is sent; a server's writes them to its socket.
//! struct Inbox {
//!     id: SocketId,
//!     frames: Mutex<Vec<Bytes>>,
//! }
//!
//! impl Outbox for Inbox {
//!     fn socket_id(&self) -> &SocketId {
//!         &self.id
//!     }
//!     fn send(&self, frame: Bytes) {
//!         self.frames.lock().unwrap().push(frame);
//!     }
//!     fn close(&self, _code: CloseCode, _reason: &str) {}
//! }
//!
//! let registry = Registry::new();
//! let app = registry.app("app-id");
//! let inbox = Arc::new(Inbox { id: SocketId::from_parts(1, 2), frames: Mutex::default() });
//! app.add_connection(None)?;
//! // The channel's first subscriber on this node.
//! assert_eq!(app.subscribe("news", inbox.clone()), Some(true));
//!
//! // One encoded frame, shared by every subscriber.
//! let frame = soketi_protocol::ws::text(br#"{"event":"update","channel":"news","data":"{}"}"#);
//! assert_eq!(app.publish("news", &frame, None), 1);
//! assert_eq!(inbox.frames.lock().unwrap()[..], [frame]);
//! assert_eq!(app.channel_counts("news").subscription_count, 1);
//! # Ok::<(), soketi_channels::ChannelsError>(())
//! ```

mod error;
mod registry;

pub use error::ChannelsError;
pub use registry::{AppChannels, ChannelCounts, Joined, Left, Outbox, Registry, SocketRef};

/// Runs the README's example as a doctest, so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
