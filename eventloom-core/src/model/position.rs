//! Positions in the store's total order.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Error;

/// A place in the store-wide order of all events.
///
/// Every store defines positions so that they are totally ordered and so that every subscriber
/// sees events in increasing position. A position is the pair (transaction, sequence): on
/// PostgreSQL the writing transaction's id and the event's sequence number, which is what
/// gap-free reading needs; in memory a counter of appends and a counter of events.
///
/// [`Position::ZERO`] comes before every event: reading "after zero" reads everything.
///
/// A position has one string encoding, `"<transaction>.<sequence>"`, used for checkpoints,
/// read-your-writes and HTTP. Treat it as opaque.
///
/// # Examples
///
/// ```
/// use eventloom_core::Position;
///
/// let p = Position::new(7, 42);
/// assert_eq!(p.to_string(), "7.42");
/// assert_eq!("7.42".parse::<Position>().unwrap(), p);
/// assert!(Position::ZERO < p);
/// assert!(Position::new(7, 42) < Position::new(8, 1));
/// assert!("7;42".parse::<Position>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Position {
    transaction: u64,
    sequence: u64,
}

impl Position {
    /// Before every event.
    pub const ZERO: Position = Position { transaction: 0, sequence: 0 };

    /// A position from its two parts.
    pub const fn new(transaction: u64, sequence: u64) -> Self {
        Position { transaction, sequence }
    }

    /// The transaction part: the id of the transaction (or append) that wrote the event.
    pub const fn transaction(&self) -> u64 {
        self.transaction
    }

    /// A fixed-width text that sorts byte-wise like the position: a sort key for
    /// [`IndexEntry::ordered_by`](crate::IndexEntry::ordered_by), say to list views in the order
    /// they were created.
    ///
    /// ```
    /// use eventloom_core::Position;
    /// assert!(Position::new(999, 5).sort_key() < Position::new(1000, 1).sort_key());
    /// ```
    pub fn sort_key(&self) -> String {
        format!("{:020}.{:020}", self.transaction, self.sequence)
    }

    /// The sequence part: unique per event, increasing within a transaction.
    pub const fn sequence(&self) -> u64 {
        self.sequence
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.transaction, self.sequence)
    }
}

impl FromStr for Position {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || Error::InvalidPosition(s.chars().take(64).collect());
        let (tx, seq) = s.split_once('.').ok_or_else(invalid)?;
        let digits = |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !digits(tx) || !digits(seq) {
            return Err(invalid());
        }
        Ok(Position { transaction: tx.parse().map_err(|_| invalid())?, sequence: seq.parse().map_err(|_| invalid())? })
    }
}

impl Serialize for Position {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Position {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_orders() {
        for p in [Position::ZERO, Position::new(1, 1), Position::new(u64::MAX, u64::MAX)] {
            assert_eq!(p.to_string().parse::<Position>().unwrap(), p);
            let json = serde_json::to_string(&p).unwrap();
            assert_eq!(serde_json::from_str::<Position>(&json).unwrap(), p);
        }
        assert!(Position::new(1, 9) < Position::new(2, 3));
        assert!(Position::new(2, 3) < Position::new(2, 4));
    }

    #[test]
    fn refuses_garbage() {
        for bad in ["", ".", "1.", ".1", "1.2.3", "-1.2", "1.+2", "a.b", "99999999999999999999999.1", "1 .2"] {
            assert!(bad.parse::<Position>().is_err(), "{bad:?} parsed");
        }
    }
}
