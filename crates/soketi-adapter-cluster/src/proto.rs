//! The discovery format, generated from `proto/soketi/cluster/v1/cluster.proto`.

#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/soketi.cluster.v1.rs"));

/// The version this build writes and reads.
pub(crate) const VERSION: u32 = 1;
