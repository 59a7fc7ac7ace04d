//! Stream identity and expected versions.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

impl StreamId {
    /// The longest aggregate id a stream accepts, in bytes.
    pub const MAX_ID_LEN: usize = 1024;
    /// The longest category (aggregate type) a stream accepts, in bytes.
    pub const MAX_CATEGORY_LEN: usize = 128;
}

/// Names one event stream: the aggregate's type (the stream's *category*) and its id.
///
/// Ids are validated once, here, so that every store can take them as they are: between 1 and
/// [`StreamId::MAX_ID_LEN`] bytes, with no control characters (PostgreSQL text cannot hold NUL, and control
/// characters make logs lie). Quotes, semicolons, slashes and any other Unicode are fine: stores
/// pass ids as parameters, never as SQL or key syntax. Cloning is cheap.
///
/// # Examples
///
/// ```
/// use eventloom_core::StreamId;
///
/// let s = StreamId::new("task", "t-'1'; DROP TABLE events;--").unwrap();
/// assert_eq!(s.category(), "task");
/// assert_eq!(s.id(), "t-'1'; DROP TABLE events;--");
/// assert!(StreamId::new("task", "").is_err());
/// assert!(StreamId::new("task", "a\0b").is_err());
/// assert!(StreamId::new("a/b", "c").is_err());
/// assert!(StreamId::new("task", "x".repeat(10_000)).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StreamId {
    /// `category/id` in one allocation.
    full: Arc<str>,
    /// Where the category ends in `full`.
    split: usize,
}

fn check(what: &'static str, value: &str, max: usize) -> Result<()> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.len() > max {
        format!("is {} bytes long, at most {max} are allowed", value.len())
    } else if value.chars().any(char::is_control) {
        "must not contain control characters".to_owned()
    } else {
        return Ok(());
    };
    Err(Error::InvalidId { what, reason })
}

/// Checks a command id as every store does: 1 to [`crate::Metadata::MAX_COMMAND_ID_LEN`] bytes, no control
/// characters.
///
/// # Examples
///
/// ```
/// assert!(eventloom_core::model::validate_command_id("req-42").is_ok());
/// assert!(eventloom_core::model::validate_command_id("").is_err());
/// assert!(eventloom_core::model::validate_command_id("a\nb").is_err());
/// ```
pub fn validate_command_id(id: &str) -> Result<()> {
    check("command id", id, crate::Metadata::MAX_COMMAND_ID_LEN)
}

impl StreamId {
    /// A stream id from a category (the aggregate's `TYPE`) and an id; refuses empty, oversized
    /// or control-character ids with [`Error::InvalidId`].
    pub fn new(category: impl AsRef<str>, id: impl AsRef<str>) -> Result<Self> {
        let (category, id) = (category.as_ref(), id.as_ref());
        check("stream category", category, StreamId::MAX_CATEGORY_LEN)?;
        if category.contains('/') {
            return Err(Error::InvalidId { what: "stream category", reason: "must not contain '/'".to_owned() });
        }
        check("stream id", id, StreamId::MAX_ID_LEN)?;
        let mut full = String::with_capacity(category.len() + 1 + id.len());
        full.push_str(category);
        full.push('/');
        full.push_str(id);
        Ok(StreamId { full: full.into(), split: category.len() })
    }

    /// The stream's category: the aggregate type.
    pub fn category(&self) -> &str {
        &self.full[..self.split]
    }

    /// The aggregate's id within its category.
    pub fn id(&self) -> &str {
        &self.full[self.split + 1..]
    }

    /// `category/id`, as shown by `Display`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamId({:?}/{:?})", self.category(), self.id())
    }
}

impl Serialize for StreamId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        (self.category(), self.id()).serialize(s)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (category, id) = <(String, String)>::deserialize(d)?;
        StreamId::new(category, id).map_err(serde::de::Error::custom)
    }
}

/// What an append expects of its stream's version; the store refuses the append with
/// [`Error::Conflict`] when the expectation does not hold.
///
/// Versions count events in a stream from 1: a stream with three events is at version 3.
///
/// # Examples
///
/// ```
/// use eventloom_core::model::ExpectedVersion;
///
/// assert!(ExpectedVersion::Any.matches(7));
/// assert!(ExpectedVersion::NoStream.matches(0));
/// assert!(ExpectedVersion::Exact(3).matches(3));
/// assert!(!ExpectedVersion::Exact(3).matches(4));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ExpectedVersion {
    /// Append whatever the stream's version.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version (0 means it must not exist).
    Exact(u64),
}

impl ExpectedVersion {
    /// Whether a stream at `actual` satisfies this expectation.
    pub fn matches(self, actual: u64) -> bool {
        match self {
            ExpectedVersion::Any => true,
            ExpectedVersion::NoStream => actual == 0,
            ExpectedVersion::Exact(v) => actual == v,
        }
    }
}

impl fmt::Display for ExpectedVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedVersion::Any => f.write_str("any version"),
            ExpectedVersion::NoStream => f.write_str("no stream"),
            ExpectedVersion::Exact(v) => write!(f, "version {v}"),
        }
    }
}
