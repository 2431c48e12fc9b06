//! The limiter's messages, generated from `proto/soketi/ratelimit/v1/ratelimit.proto`.

#![allow(missing_docs, unreachable_pub, clippy::all)]

include!(concat!(env!("OUT_DIR"), "/soketi.ratelimit.v1.rs"));
