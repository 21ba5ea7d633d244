//! The web crate's one error type.

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Refused to start (auth missing off loopback, bad hash, …).
    #[error("dashboard configuration: {0}")]
    Config(String),
    #[error("cannot listen on {address}: {reason}")]
    Bind { address: String, reason: String },
    #[error(transparent)]
    Engine(#[from] hlbot_engine::Error),
    #[error(transparent)]
    Store(#[from] hlbot_store::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}
