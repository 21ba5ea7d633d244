//! Task states as Celery names them, including custom states such as `PROGRESS`.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// A task state. `Custom` covers user states like `PROGRESS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum State {
    Pending,
    Received,
    Started,
    Success,
    Failure,
    Retry,
    Revoked,
    Rejected,
    Custom(String),
}

impl State {
    pub fn as_str(&self) -> &str {
        match self {
            State::Pending => "PENDING",
            State::Received => "RECEIVED",
            State::Started => "STARTED",
            State::Success => "SUCCESS",
            State::Failure => "FAILURE",
            State::Retry => "RETRY",
            State::Revoked => "REVOKED",
            State::Rejected => "REJECTED",
            State::Custom(s) => s,
        }
    }

    pub fn parse(s: &str) -> Self {
        match s {
            "PENDING" => State::Pending,
            "RECEIVED" => State::Received,
            "STARTED" => State::Started,
            "SUCCESS" => State::Success,
            "FAILURE" => State::Failure,
            "RETRY" => State::Retry,
            "REVOKED" => State::Revoked,
            "REJECTED" => State::Rejected,
            other => State::Custom(other.to_string()),
        }
    }

    /// SUCCESS, FAILURE, REVOKED: a waiter stops here (Celery's READY_STATES).
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Success | State::Failure | State::Revoked)
    }

    /// States carrying an exception dict in `result`.
    pub fn is_exception(&self) -> bool {
        matches!(self, State::Failure | State::Retry | State::Revoked)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for State {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for State {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(State::parse(&s))
    }
}
