//! The node-to-node wire format, generated from `proto/soketi/v1/node.proto`.

#![allow(missing_docs, unreachable_pub, clippy::all)]

/// Version 1 of the wire format.
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/soketi.v1.rs"));
}

/// The version this build writes and reads.
pub const VERSION: u32 = 1;
