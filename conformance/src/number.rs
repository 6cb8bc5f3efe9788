//! Numbers that survive JSON. serde_json writes NaN and the infinities as `null`, which an `f64`
//! field cannot read back (the whole record is lost) and an `Option<f64>` reads back as "absent"
//! (the failure is lost). Every float a record holds goes through these instead: finite values stay
//! JSON numbers, the others are the strings `"NaN"`, `"inf"` and `"-inf"`, and both read back.
//!
//! ```ignore
//! #[serde(with = "webq_conformance::number")]            pub worst_ratio: f64,
//! #[serde(with = "webq_conformance::number::option", default)] pub gpu_us: Option<f64>,
//! ```

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// The JSON text of a non-finite value, or `None` for a finite one.
pub fn non_finite_name(v: f64) -> Option<&'static str> {
    if v.is_nan() {
        Some("NaN")
    } else if v == f64::INFINITY {
        Some("inf")
    } else if v == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

/// Reads the strings [`non_finite_name`] writes (and the common spellings of them).
pub fn parse_non_finite(s: &str) -> Option<f64> {
    match s {
        "NaN" | "nan" => Some(f64::NAN),
        "inf" | "+inf" | "Infinity" | "+Infinity" => Some(f64::INFINITY),
        "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
        _ => None,
    }
}

pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    match non_finite_name(*v) {
        Some(name) => s.serialize_str(name),
        None => s.serialize_f64(*v),
    }
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    d.deserialize_any(NumberVisitor)
}

struct NumberVisitor;

impl Visitor<'_> for NumberVisitor {
    type Value = f64;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a number, or one of the strings \"NaN\", \"inf\", \"-inf\"")
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
        Ok(v)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
        Ok(v as f64)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<f64, E> {
        parse_non_finite(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

/// The same for optional values: `None` is `null`, `Some(NaN)` is `"NaN"`.
pub mod option {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => super::serialize(v, s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_option(OptionVisitor)
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<f64>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("null, a number, or one of the strings \"NaN\", \"inf\", \"-inf\"")
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Serialize, Deserialize)]
    struct Holder {
        #[serde(with = "super")]
        a: f64,
        #[serde(with = "super::option", default)]
        b: Option<f64>,
    }

    fn round_trip(a: f64, b: Option<f64>) -> (String, Holder) {
        let text = serde_json::to_string(&Holder { a, b }).unwrap();
        let back = serde_json::from_str(&text).unwrap();
        (text, back)
    }

    #[test]
    fn non_finite_values_round_trip_as_strings() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.0, -0.0, 1.5e-300, f64::MAX] {
            let (text, back) = round_trip(v, Some(v));
            assert_eq!(back.a.to_bits(), v.to_bits(), "{text}");
            assert_eq!(back.b.map(f64::to_bits), Some(v.to_bits()), "{text}");
        }
        let (text, _) = round_trip(f64::NAN, Some(f64::NEG_INFINITY));
        assert_eq!(text, r#"{"a":"NaN","b":"-inf"}"#);
        let (text, back) = round_trip(1.0, None);
        assert_eq!(text, r#"{"a":1.0,"b":null}"#);
        assert!(back.b.is_none());
        // Older records left the field out, or wrote integers.
        let old: Holder = serde_json::from_str(r#"{"a":3}"#).unwrap();
        assert_eq!((old.a, old.b), (3.0, None));
    }

    #[test]
    fn other_strings_and_null_for_a_plain_number_are_refused() {
        let e = serde_json::from_str::<Holder>(r#"{"a":"fast"}"#).unwrap_err().to_string();
        assert!(e.contains("fast") && e.contains("NaN"), "{e}");
        assert!(serde_json::from_str::<Holder>(r#"{"a":null}"#).is_err());
    }
}
