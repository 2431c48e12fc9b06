//! Errors of the registry.

/// Why the registry refused a change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelsError {
    /// The app already has as many connections as it may.
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
