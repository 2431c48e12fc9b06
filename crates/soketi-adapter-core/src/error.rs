//! Errors of adapters.

/// Why an adapter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The transport to the other nodes failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// Other nodes did not answer in time; the answer would be partial.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// This node's registry refused the operation: the app's connection quota, a full
    /// presence channel.
    #[error(transparent)]
    Channels(#[from] soketi_channels::ChannelsError),
}
