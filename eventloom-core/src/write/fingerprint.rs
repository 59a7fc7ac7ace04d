//! The fingerprint of a command's request, kept with its idempotency key.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Command, Error};

/// The version of the canonical encoding, hashed first: a new encoding gets a new number, so
/// that fingerprints of one encoding are never compared with another's by accident.
const ENCODING: u32 = 1;

/// The SHA-256 of a command's request: its aggregate type, its name, its aggregate id and its
/// fields as canonical JSON.
///
/// The engine takes one for every command executed with a command id (an idempotency key) and
/// the store keeps it with the command's outcome: sent again with the same id, a command with
/// the same fingerprint gets the first outcome back
/// ([`CommandOutcome::replayed`](crate::CommandOutcome::replayed)); one with another fingerprint
/// is refused with [`Error::CommandIdReused`].
///
/// The encoding is fixed, so a fingerprint is the same in every process, release and platform:
/// the JSON array `[1, aggregate type, command name, aggregate id, fields]`, where the fields are
/// the command serialized with `serde`, objects with their keys sorted (by their UTF-8 bytes),
/// no whitespace, numbers as `serde_json` writes them. Renaming a command, or a field, or changing
/// how a field serializes changes the fingerprints of its requests: a retry sent across such a
/// release is refused as a different request, never executed twice.
///
/// # Examples
///
/// ```
/// use eventloom_core::prelude::*;
/// use eventloom_core::write::Fingerprint;
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Event)] enum CounterEvent { Incremented { by: u64 } }
/// # #[derive(Debug, Default)] struct Counter;
/// # impl Aggregate for Counter { const TYPE: &'static str = "counter"; type Event = CounterEvent;
/// #   type Error = std::convert::Infallible; fn apply(&mut self, _: &CounterEvent) {} }
///
/// #[derive(Debug, Serialize, Command)]
/// #[command(aggregate = Counter)]
/// struct Increment { #[command(id)] counter: String, by: u64 }
///
/// let a = Fingerprint::of(&Increment { counter: "c-1".into(), by: 3 }).unwrap();
/// let b = Fingerprint::of(&Increment { counter: "c-1".into(), by: 4 }).unwrap();
/// assert_ne!(a, b);
/// assert_eq!(a.to_string().len(), 64);
/// assert_eq!(a.to_string().parse::<Fingerprint>().unwrap(), a);
/// assert!(a.to_string().starts_with(&a.short()));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 32]);

impl Fingerprint {
    /// The fingerprint of `command`'s request. Fails with [`Error::Encode`] when the command does
    /// not serialize, or holds a NaN or an infinite float (refused as everywhere in the crate, see
    /// [`json`](crate::json)).
    pub fn of<C: Command + Serialize>(command: &C) -> Result<Self, Error> {
        let encode = |source| Error::Encode { event_type: format!("command {}", C::NAME), source };
        // Through the crate's writer, which refuses non-finite floats, then parsed back to sort
        // the keys whatever `serde_json`'s map preserves.
        let fields: serde_json::Value =
            serde_json::from_str(&crate::json::to_string(command).map_err(encode)?).map_err(encode)?;
        let mut text = String::with_capacity(128);
        text.push_str(&format!("[{ENCODING},"));
        for part in [<C::Aggregate as crate::Aggregate>::TYPE, C::NAME, &command.aggregate_id()] {
            write_string(&mut text, part);
            text.push(',');
        }
        write_canonical(&mut text, &fields);
        text.push(']');
        Ok(Fingerprint::of_canonical(&text))
    }

    fn of_canonical(text: &str) -> Self {
        Fingerprint(Sha256::digest(text.as_bytes()).into())
    }

    /// The first 12 hex digits, for messages and logs.
    pub fn short(&self) -> String {
        self.to_string()[..12].to_owned()
    }

    /// The 32 bytes of the hash.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// `text` as a JSON string.
fn write_string(out: &mut String, text: &str) {
    out.push_str(&serde_json::Value::from(text).to_string());
}

/// `value` as JSON with every object's keys sorted by their bytes, no whitespace.
fn write_canonical(out: &mut String, value: &serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push('[');
            for (n, item) in items.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_canonical(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push('{');
            for (n, (key, item)) in entries.into_iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_canonical(out, item);
            }
            out.push('}');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

impl fmt::Display for Fingerprint {
    /// The 64 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.short())
    }
}

impl FromStr for Fingerprint {
    type Err = Error;

    /// Reads the 64 hex digits [`Display`](fmt::Display) writes (either case).
    fn from_str(text: &str) -> Result<Self, Error> {
        let invalid = || Error::InvalidId { what: "fingerprint", reason: format!("{text:?} is not 64 hex digits") };
        if text.len() != 64 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut bytes = [0u8; 32];
        for (n, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * n..2 * n + 2], 16).map_err(|_| invalid())?;
        }
        Ok(Fingerprint(bytes))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_encoding_sorts_keys_at_every_depth_and_escapes_strings() {
        let value = serde_json::json!({"b": [1, {"z": null, "a": 2.5}], "a": "\"q\"\n", "é": true, "Z": -3});
        let mut text = String::new();
        write_canonical(&mut text, &value);
        assert_eq!(text, r#"{"Z":-3,"a":"\"q\"\n","b":[1,{"a":2.5,"z":null}],"é":true}"#);
    }

    #[test]
    fn fingerprints_round_trip_as_hex() {
        let print = Fingerprint::of_canonical("x");
        assert_eq!(print.to_string(), "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
        assert_eq!(print.to_string().to_uppercase().parse::<Fingerprint>().expect("hex"), print);
        assert!("2d71".parse::<Fingerprint>().is_err());
        assert!("zz".repeat(32).parse::<Fingerprint>().is_err());
        assert!("é".repeat(32).parse::<Fingerprint>().is_err());
        let json = serde_json::to_string(&print).expect("json");
        assert_eq!(serde_json::from_str::<Fingerprint>(&json).expect("back"), print);
        assert_eq!(format!("{print:?}"), "Fingerprint(2d711642b726)");
    }
}
