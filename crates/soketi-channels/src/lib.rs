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
#![warn(missing_docs)]

mod error;
mod registry;

pub use error::ChannelsError;
pub use registry::{AppChannels, ChannelCounts, Joined, Left, Outbox, Registry, SocketRef};
