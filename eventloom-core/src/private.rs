//! Support for the derive macros. Not a public API: it changes without notice.

use std::borrow::Cow;
use std::fmt::Display;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};
use serde::{Deserializer, Serialize};

pub use serde;
pub use serde_json;

pub use crate::json::to_string as to_json;
pub use crate::model::{DecodeError, EventType, RecordedEvent};
pub use crate::read::event_set::unknown_category;
pub use crate::write::Upcasters;

/// Wraps a command's id field for [`ViaAsRef`] / [`ViaDisplay`] dispatch.
pub struct IdRef<'a, T: ?Sized>(pub &'a T);

/// Ids that are strings are borrowed.
pub trait ViaAsRef<'a> {
    /// The id.
    fn stream_id_cow(&self) -> Cow<'a, str>;
}

impl<'a, T: ?Sized + AsRef<str>> ViaAsRef<'a> for IdRef<'a, T> {
    fn stream_id_cow(&self) -> Cow<'a, str> {
        Cow::Borrowed(self.0.as_ref())
    }
}

/// Any other id is formatted with `Display`.
pub trait ViaDisplay<'a> {
    /// The id.
    fn stream_id_cow(&self) -> Cow<'a, str>;
}

impl<'a, T: ?Sized + Display> ViaDisplay<'a> for &IdRef<'a, T> {
    fn stream_id_cow(&self) -> Cow<'a, str> {
        Cow::Owned(self.0.to_string())
    }
}

fn custom(msg: &str) -> serde_json::Error {
    <serde_json::Error as serde::ser::Error>::custom(msg)
}

/// Serializes an externally tagged enum value and keeps only the variant's content:
/// `{"Variant":{...}}` becomes `{...}`, and a unit variant `"Variant"` becomes `null`.
pub fn encode_variant<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut json = crate::json::to_string(value)?;
    let bytes = json.as_bytes();
    if bytes.first() == Some(&b'"') {
        return Ok("null".to_owned());
    }
    if bytes.len() < 4 || bytes[0] != b'{' || bytes[1] != b'"' || bytes[bytes.len() - 1] != b'}' {
        return Err(custom("an event enum must serialize externally tagged (no #[serde(tag)] or untagged)"));
    }
    let mut i = 2;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => break,
            _ => i += 1,
        }
    }
    if bytes.get(i + 1) != Some(&b':') {
        return Err(custom("an event enum must serialize externally tagged"));
    }
    json.pop();
    json.drain(..i + 2);
    Ok(json)
}

/// Deserializes variant number `index` of an enum from the variant's content alone.
pub fn decode_variant<T: DeserializeOwned>(index: u32, payload: &str) -> Result<T, serde_json::Error> {
    T::deserialize(VariantDe { index, payload })
}

struct VariantDe<'de> {
    index: u32,
    payload: &'de str,
}

impl<'de> VariantDe<'de> {
    fn json(&self) -> serde_json::Deserializer<serde_json::de::StrRead<'de>> {
        serde_json::Deserializer::from_str(self.payload)
    }
}

impl<'de> Deserializer<'de> for VariantDe<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("an event payload decodes only into an enum variant"))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_enum(self)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct identifier
        ignored_any
    }
}

impl<'de> de::EnumAccess<'de> for VariantDe<'de> {
    type Error = serde_json::Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Self::Error> {
        let variant = seed.deserialize(IntoDeserializer::<serde_json::Error>::into_deserializer(self.index))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for VariantDe<'de> {
    type Error = serde_json::Error;

    fn unit_variant(self) -> Result<(), Self::Error> {
        // A unit variant is stored as `null`; `{}` is accepted too. Anything else is a payload
        // this variant cannot hold.
        match serde_json::from_str::<serde_json::Value>(self.payload)? {
            serde_json::Value::Null => Ok(()),
            serde_json::Value::Object(map) if map.is_empty() => Ok(()),
            _ => Err(de::Error::invalid_type(de::Unexpected::Other("a non-empty payload"), &"null")),
        }
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Self::Error> {
        let mut de = self.json();
        let value = seed.deserialize(&mut de)?;
        de.end()?;
        Ok(value)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Self::Error> {
        let mut de = self.json();
        let value = (&mut de).deserialize_seq(visitor)?;
        de.end()?;
        Ok(value)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        let mut de = self.json();
        let value = (&mut de).deserialize_struct("", fields, visitor)?;
        de.end()?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    enum E {
        Unit,
        New(u32),
        Tup(u32, String),
        Named {
            a: String,
            #[serde(default)]
            b: Option<u8>,
        },
    }

    #[test]
    fn round_trips_every_variant_shape() {
        let cases = [
            (E::Unit, 0, "null"),
            (E::New(7), 1, "7"),
            (E::Tup(1, "x".into()), 2, r#"[1,"x"]"#),
            (E::Named { a: "q\"\\:}".into(), b: None }, 3, r#"{"a":"q\"\\:}","b":null}"#),
        ];
        for (value, index, payload) in cases {
            assert_eq!(encode_variant(&value).unwrap(), payload);
            assert_eq!(decode_variant::<E>(index, payload).unwrap(), value);
        }
    }

    #[test]
    fn refuses_bad_payloads() {
        assert!(decode_variant::<E>(3, r#"{"a":1}"#).is_err());
        assert!(decode_variant::<E>(3, r#"{"a":"x"} trailing"#).is_err());
        assert!(decode_variant::<E>(1, "not json").is_err());
        assert!(decode_variant::<E>(9, "null").is_err());
        assert_eq!(decode_variant::<E>(0, "{}").unwrap(), E::Unit);
        assert!(decode_variant::<E>(0, r#"{"a":1}"#).is_err());
        assert!(decode_variant::<E>(0, "3").is_err());
        assert_eq!(decode_variant::<E>(3, r#"{"a":"x"}"#).unwrap(), E::Named { a: "x".into(), b: None });
    }
}
