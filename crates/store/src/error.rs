//! The store's one error type. Messages never carry a database password: every URL in them
//! goes through [`crate::redact`] first.

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Could not reach or open the database (the URL is redacted).
    #[error("cannot open the database {url}: {reason}")]
    Connect { url: String, reason: String },
    /// A query failed.
    #[error("database error: {0}")]
    Db(String),
    /// A migration failed (version, name, why).
    #[error("migration {version} ({name}) failed: {reason}")]
    Migrate {
        version: i64,
        name: String,
        reason: String,
    },
    /// The database has migrations this build does not know (a newer hlbot wrote it).
    #[error("the database is at schema version {found}, newer than this hlbot's {known}")]
    TooNew { found: i64, known: i64 },
    /// A bad argument (export format, time span, …).
    #[error("{0}")]
    Invalid(String),
    /// Waiting for another worker's claim on a source took too long.
    #[error("gave up waiting for another worker processing {0}")]
    ClaimTimeout(String),
    /// Writing an export or creating the data directory failed.
    #[error("{0}")]
    Io(String),
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        // sqlx's own messages may echo a connection string; strip any password from them.
        Error::Db(crate::config::redact_text(&e.to_string()))
    }
}

/// The store's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
