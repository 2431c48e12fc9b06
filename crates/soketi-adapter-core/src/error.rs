//! Errors of adapters.

use soketi_channels::ChannelsError;

/// Why an adapter operation failed.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The transport to the other nodes failed.
    #[error("transport error: {0}")]
    Transport(String),
    /// Other nodes did not answer in time; the answer would be partial.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The app already has as many connections on this node as it may.
    #[error("the app has reached its limit of {max} connections")]
    ConnectionLimit {
        /// The app's limit.
        max: u64,
    },
    /// The presence channel already has as many members as it may.
    #[error("the presence channel has reached its limit of {max} members")]
    PresenceFull {
        /// The app's limit.
        max: usize,
    },
}

impl From<ChannelsError> for AdapterError {
    fn from(e: ChannelsError) -> Self {
        match e {
            ChannelsError::ConnectionLimit { max } => Self::ConnectionLimit { max },
            ChannelsError::PresenceFull { max } => Self::PresenceFull { max },
        }
    }
}
