//! JSON as the stores keep it: [`to_string`] refuses what JSON cannot hold.
//!
//! `serde_json` writes a NaN or an infinite float as `null`. Stored that way, an event no longer
//! decodes into its `f64` field (`invalid type: null, expected f64`), so the stream it is in can
//! never be loaded again; inside an `Option<f64>` it comes back as `None`, silently changed. Every
//! event, view and snapshot the framework stores is written through [`to_string`], which fails on
//! a non-finite float before anything is stored.

use std::fmt::Display;

use serde::ser::{self, Serialize, Serializer};

/// `value` as compact JSON, refusing a NaN or infinite float anywhere inside it.
///
/// Hand-written [`Event::encode`](crate::Event::encode) implementations should call it too; the
/// derived ones do.
///
/// # Examples
///
/// ```
/// #[derive(serde::Serialize)]
/// struct Reading { celsius: Option<f64> }
///
/// assert_eq!(eventloom_core::json::to_string(&Reading { celsius: Some(21.5) }).unwrap(), r#"{"celsius":21.5}"#);
/// let error = eventloom_core::json::to_string(&Reading { celsius: Some(f64::NAN) }).unwrap_err();
/// assert!(error.to_string().contains("NaN"));
/// ```
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(128);
    value.serialize(Finite(&mut serde_json::Serializer::new(&mut out)))?;
    // serde_json writes only valid UTF-8.
    String::from_utf8(out).map_err(|_| <serde_json::Error as ser::Error>::custom("serializer wrote invalid UTF-8"))
}

/// A serializer that passes everything to `S` but refuses non-finite floats.
struct Finite<S>(S);

/// A value serialized through [`Finite`].
struct Checked<'a, T: ?Sized>(&'a T);

impl<T: Serialize + ?Sized> Serialize for Checked<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(Finite(serializer))
    }
}

fn non_finite<E: ser::Error>(value: impl Display) -> E {
    E::custom(format_args!("{value} cannot be stored as JSON (NaN and infinities are refused)"))
}

macro_rules! forward {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {
        $(fn $method(self, $($arg: $ty),*) -> Result<S::Ok, S::Error> {
            self.0.$method($($arg),*)
        })*
    };
}

impl<S: Serializer> Serializer for Finite<S> {
    type Ok = S::Ok;
    type Error = S::Error;
    type SerializeSeq = Finite<S::SerializeSeq>;
    type SerializeTuple = Finite<S::SerializeTuple>;
    type SerializeTupleStruct = Finite<S::SerializeTupleStruct>;
    type SerializeTupleVariant = Finite<S::SerializeTupleVariant>;
    type SerializeMap = Finite<S::SerializeMap>;
    type SerializeStruct = Finite<S::SerializeStruct>;
    type SerializeStructVariant = Finite<S::SerializeStructVariant>;

    forward! {
        serialize_bool(v: bool);
        serialize_i8(v: i8);
        serialize_i16(v: i16);
        serialize_i32(v: i32);
        serialize_i64(v: i64);
        serialize_i128(v: i128);
        serialize_u8(v: u8);
        serialize_u16(v: u16);
        serialize_u32(v: u32);
        serialize_u64(v: u64);
        serialize_u128(v: u128);
        serialize_char(v: char);
        serialize_str(v: &str);
        serialize_bytes(v: &[u8]);
        serialize_none();
        serialize_unit();
        serialize_unit_struct(name: &'static str);
        serialize_unit_variant(name: &'static str, index: u32, variant: &'static str);
    }

    fn serialize_f32(self, v: f32) -> Result<S::Ok, S::Error> {
        if v.is_finite() { self.0.serialize_f32(v) } else { Err(non_finite(v)) }
    }

    fn serialize_f64(self, v: f64) -> Result<S::Ok, S::Error> {
        if v.is_finite() { self.0.serialize_f64(v) } else { Err(non_finite(v)) }
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_some(&Checked(value))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, name: &'static str, value: &T) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_struct(name, &Checked(value))
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<S::Ok, S::Error> {
        self.0.serialize_newtype_variant(name, index, variant, &Checked(value))
    }

    fn serialize_seq(self, len: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        self.0.serialize_seq(len).map(Finite)
    }

    fn serialize_tuple(self, len: usize) -> Result<Self::SerializeTuple, S::Error> {
        self.0.serialize_tuple(len).map(Finite)
    }

    fn serialize_tuple_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        self.0.serialize_tuple_struct(name, len).map(Finite)
    }

    fn serialize_tuple_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        self.0.serialize_tuple_variant(name, index, variant, len).map(Finite)
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        self.0.serialize_map(len).map(Finite)
    }

    fn serialize_struct(self, name: &'static str, len: usize) -> Result<Self::SerializeStruct, S::Error> {
        self.0.serialize_struct(name, len).map(Finite)
    }

    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        self.0.serialize_struct_variant(name, index, variant, len).map(Finite)
    }

    fn collect_str<T: Display + ?Sized>(self, value: &T) -> Result<S::Ok, S::Error> {
        self.0.collect_str(value)
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! compound {
    ($trait:ident, $method:ident) => {
        impl<S: ser::$trait> ser::$trait for Finite<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
                self.0.$method(&Checked(value))
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    };
}

compound!(SerializeSeq, serialize_element);
compound!(SerializeTuple, serialize_element);
compound!(SerializeTupleStruct, serialize_field);
compound!(SerializeTupleVariant, serialize_field);

macro_rules! compound_struct {
    ($trait:ident) => {
        impl<S: ser::$trait> ser::$trait for Finite<S> {
            type Ok = S::Ok;
            type Error = S::Error;

            fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), S::Error> {
                self.0.serialize_field(key, &Checked(value))
            }

            fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
                self.0.skip_field(key)
            }

            fn end(self) -> Result<S::Ok, S::Error> {
                self.0.end()
            }
        }
    };
}

compound_struct!(SerializeStruct);
compound_struct!(SerializeStructVariant);

impl<S: ser::SerializeMap> ser::SerializeMap for Finite<S> {
    type Ok = S::Ok;
    type Error = S::Error;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), S::Error> {
        self.0.serialize_key(&Checked(key))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), S::Error> {
        self.0.serialize_value(&Checked(value))
    }

    fn serialize_entry<K: Serialize + ?Sized, V: Serialize + ?Sized>(
        &mut self,
        key: &K,
        value: &V,
    ) -> Result<(), S::Error> {
        self.0.serialize_entry(&Checked(key), &Checked(value))
    }

    fn end(self) -> Result<S::Ok, S::Error> {
        self.0.end()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use serde::Serialize;

    use super::to_string;

    #[derive(Serialize)]
    enum Shape {
        Unit,
        New(f64),
        Tuple(u8, f32),
        Named { x: Vec<Option<f64>> },
    }

    #[derive(Serialize)]
    struct Wrapper(f64);

    #[test]
    fn writes_what_serde_json_writes_for_finite_values() {
        let mut map = BTreeMap::new();
        map.insert("k", vec![1.5, -0.0]);
        let values: Vec<String> = vec![
            to_string(&Shape::Unit).unwrap(),
            to_string(&Shape::New(1e300)).unwrap(),
            to_string(&Shape::Tuple(1, 2.5)).unwrap(),
            to_string(&Shape::Named { x: vec![None, Some(3.0)] }).unwrap(),
            to_string(&map).unwrap(),
            to_string(&(Wrapper(0.1), "é\u{0}", 7u128)).unwrap(),
        ];
        let expected: Vec<String> = vec![
            serde_json::to_string(&Shape::Unit).unwrap(),
            serde_json::to_string(&Shape::New(1e300)).unwrap(),
            serde_json::to_string(&Shape::Tuple(1, 2.5)).unwrap(),
            serde_json::to_string(&Shape::Named { x: vec![None, Some(3.0)] }).unwrap(),
            serde_json::to_string(&map).unwrap(),
            serde_json::to_string(&(Wrapper(0.1), "é\u{0}", 7u128)).unwrap(),
        ];
        assert_eq!(values, expected);
    }

    #[test]
    fn refuses_non_finite_floats_wherever_they_are() {
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            assert!(to_string(&bad).is_err());
            assert!(to_string(&Some(bad)).is_err(), "inside an Option, where null would read back as None");
            assert!(to_string(&Shape::New(bad)).is_err());
            assert!(to_string(&Shape::Named { x: vec![None, Some(bad)] }).is_err());
            assert!(to_string(&Wrapper(bad)).is_err());
            assert!(to_string(&HashMap::from([("k", bad)])).is_err());
            assert!(to_string(&serde_json::json!({ "k": [1] })).is_ok());
        }
        assert!(to_string(&Shape::Tuple(1, f32::NAN)).is_err());
        assert!(to_string(&[f32::INFINITY]).is_err());
    }
}
