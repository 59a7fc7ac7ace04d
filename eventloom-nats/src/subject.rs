//! Subjects: `<prefix>.<category token>.<type token>`, with tokens that are safe for any name.

use crate::{Error, Result};

/// Encodes a name (a category or an event type) as one NATS subject token.
///
/// ASCII letters, digits and `-` stay as they are; every other byte of the name's UTF-8 (`.`,
/// `*`, `>`, spaces, `_`, non-ASCII, control characters) becomes `_` and two upper-case hex
/// digits; the empty name is `_` alone. So a token never holds a character NATS gives a meaning
/// to, and two names never share a token (each `_` of a non-empty name's token is followed by
/// two hex digits, which `_` alone is not). A name of letters, digits and `-` is its own token,
/// so subjects stay readable for the usual names: filter one type with
/// `<prefix>.order.OrderPlaced`, one category with `<prefix>.order.*`.
///
/// # Examples
///
/// ```
/// use eventloom_nats::{decode_token, encode_token};
///
/// assert_eq!(encode_token("OrderPlaced"), "OrderPlaced");
/// assert_eq!(encode_token("order.v2"), "order_2Ev2");
/// assert_eq!(encode_token("a b*>"), "a_20b_2A_3E");
/// assert_eq!(encode_token(""), "_");
/// assert_eq!(encode_token("é"), "_C3_A9");
/// assert_eq!(decode_token("order_2Ev2").unwrap(), "order.v2");
/// ```
pub fn encode_token(name: &str) -> String {
    if name.is_empty() {
        return "_".to_owned();
    }
    let mut token = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            token.push(char::from(byte));
        } else {
            token.push('_');
            token.push(char::from(HEX[usize::from(byte >> 4)]));
            token.push(char::from(HEX[usize::from(byte & 0xF)]));
        }
    }
    token
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// The name a token of [`encode_token`] encodes; [`Error::Config`] for a token it cannot have
/// made.
///
/// # Examples
///
/// ```
/// assert_eq!(eventloom_nats::decode_token("_").unwrap(), "");
/// assert!(eventloom_nats::decode_token("a.b").is_err());
/// assert!(eventloom_nats::decode_token("_2e").is_err(), "lower-case hex is not ours");
/// ```
pub fn decode_token(token: &str) -> Result<String> {
    if token == "_" {
        return Ok(String::new());
    }
    let bad = || Error::Config(format!("{token:?} is not a subject token of eventloom-nats"));
    let bytes = token.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(byte);
            i += 1;
        } else if byte == b'_' {
            let digit = |b: u8| HEX.iter().position(|&h| h == b).ok_or_else(bad);
            let (hi, lo) = (bytes.get(i + 1).copied().ok_or_else(bad)?, bytes.get(i + 2).copied().ok_or_else(bad)?);
            let decoded = u8::try_from(digit(hi)? * 16 + digit(lo)?).map_err(|_| bad())?;
            if decoded.is_ascii_alphanumeric() || decoded == b'-' {
                return Err(bad()); // never escaped by encode_token
            }
            out.push(decoded);
            i += 3;
        } else {
            return Err(bad());
        }
    }
    if out.is_empty() {
        return Err(bad());
    }
    String::from_utf8(out).map_err(|_| bad())
}

/// Checks a subject prefix: one or more tokens of letters, digits, `-` and `_`, separated by
/// `.`.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    let fine = !prefix.is_empty()
        && prefix.len() <= 200
        && prefix
            .split('.')
            .all(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    if fine {
        Ok(())
    } else {
        Err(Error::Config(format!(
            "subject prefix {prefix:?} must be tokens of letters, digits, - and _ separated by ."
        )))
    }
}

/// Checks a stream or consumer name: letters, digits, `-` and `_`, at most 200 bytes.
pub(crate) fn check_name(what: &str, name: &str) -> Result<()> {
    if !name.is_empty()
        && name.len() <= 200
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(())
    } else {
        Err(Error::Config(format!("{what} {name:?} must be 1 to 200 letters, digits, - and _")))
    }
}

/// The subject of an event of `category` and `event_type` under `prefix`.
pub(crate) fn subject(prefix: &str, category: &str, event_type: &str) -> String {
    format!("{prefix}.{}.{}", encode_token(category), encode_token(event_type))
}

/// The (category, type) a subject under `prefix` names, when it is one of ours.
pub(crate) fn parse_subject(prefix: &str, subject: &str) -> Option<(String, String)> {
    let rest = subject.strip_prefix(prefix)?.strip_prefix('.')?;
    let (category, event_type) = rest.split_once('.')?;
    Some((decode_token(category).ok()?, decode_token(event_type).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_are_safe() {
        let names =
            ["", "_", "__", "a", "A-b", "a.b", "a_2Eb", "*", ">", " ", "a b", "é", "日本", "\0", "\u{7f}", "_5F"];
        let mut seen = std::collections::HashSet::new();
        for name in names {
            let token = encode_token(name);
            assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
            assert!(!token.is_empty());
            assert_eq!(decode_token(&token).unwrap(), name);
            assert!(seen.insert(token), "two names share a token");
        }
    }

    #[test]
    fn subjects() {
        let s = subject("bus.orders", "order.x", "Placed*");
        assert_eq!(s, "bus.orders.order_2Ex.Placed_2A");
        assert_eq!(parse_subject("bus.orders", &s), Some(("order.x".into(), "Placed*".into())));
        assert_eq!(parse_subject("bus.other", &s), None);
        assert!(check_prefix("bus.orders").is_ok());
        for bad in ["", "a..b", "a.*", "a b", ".a", "a.>"] {
            assert!(check_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
