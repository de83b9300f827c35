//! Canonical JSON: the one byte form that is hashed and signed.
//!
//! It is the JSON Canonicalization Scheme (RFC 8785) restricted to a subset where every choice
//! is trivial, so that a port to another language needs no float formatting:
//!
//! - numbers are integers in ±(2^53 − 1) (exactly representable as an IEEE double), written in
//!   plain decimal; fractions and exponents are refused, so `1.0`, `1e2` and `-0` are not numbers
//!   here;
//! - object keys are unique (a duplicate is an error, not "last one wins") and sorted by their
//!   UTF-16 code units;
//! - strings escape only `"`, `\` and the control characters below U+0020 (`\b \t \n \f \r` by
//!   name, others as `\u00xx` in lower case); every other character is written as raw UTF-8;
//! - no white space outside strings.
//!
//! [`parse_strict`] reads any JSON text of the subset (white space allowed), refusing duplicate
//! keys and out-of-range numbers, so what was signed is exactly what every parser sees.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserializer, Serialize};
use serde_json::{Map, Number, Value};

use crate::error::{Error, Result};

/// The largest integer magnitude canonical JSON allows: 2^53 − 1.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// Parses JSON of the canonical subset, in any layout.
///
/// # Errors
/// [`Error::Json`] for malformed JSON, a duplicate key, a fraction or exponent, an integer
/// beyond ±(2^53 − 1), nesting deeper than 128, or trailing bytes.
pub fn parse_strict(bytes: &[u8]) -> Result<Value> {
    parse_with(bytes, Numbers::Canonical)
}

/// Parses JSON whose numbers need not be canonical, for what is read but never signed (device
/// reports): numbers are read as JSON Schema reads them, so a whole number is an integer however
/// it is written (`12`, `12.0`, `1.2e1`) and other numbers stay floats, for the typed fields to
/// accept or refuse. Duplicate keys and trailing bytes are still refused.
///
/// # Errors
/// [`Error::Json`] for malformed JSON, a duplicate key, nesting deeper than 128, or trailing
/// bytes.
pub(crate) fn parse_lenient(bytes: &[u8]) -> Result<Value> {
    parse_with(bytes, Numbers::Any)
}

fn parse_with(bytes: &[u8], numbers: Numbers) -> Result<Value> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = StrictSeed(numbers)
        .deserialize(&mut deserializer)
        .map_err(json_error)?;
    deserializer.end().map_err(json_error)?;
    Ok(value)
}

/// The canonical bytes of a JSON value.
///
/// # Errors
/// [`Error::NotCanonical`] if the value holds a float or an integer beyond ±(2^53 − 1).
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(256);
    write_value(value, &mut out, At::Root)?;
    Ok(out)
}

/// The canonical bytes of any serialisable value.
///
/// # Errors
/// [`Error::NotCanonical`] as for [`to_canonical_bytes`], or if serialisation itself fails.
pub fn to_canonical<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).map_err(|e| Error::NotCanonical {
        at: format!("$ ({e})"),
        reason: "value does not serialise to JSON",
    })?;
    to_canonical_bytes(&value)
}

/// Re-writes JSON text in canonical form.
///
/// # Errors
/// As [`parse_strict`].
pub fn canonicalize(bytes: &[u8]) -> Result<Vec<u8>> {
    to_canonical_bytes(&parse_strict(bytes)?)
}

pub(crate) fn json_error(e: serde_json::Error) -> Error {
    Error::Json {
        line: e.line(),
        column: e.column(),
        reason: strip_position(&e.to_string()),
    }
}

/// serde_json appends " at line L column C"; the position has fields of its own.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Where the writer is, kept as a chain of steps and put into words only for an error: naming
/// the location of every key as the writer passes it would cost more than writing the value.
#[derive(Clone, Copy)]
enum At<'a> {
    Root,
    Key(&'a At<'a>, &'a str),
    Item(&'a At<'a>, usize),
}

impl fmt::Display for At<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Root => f.write_str("$"),
            At::Key(parent, key) => write!(f, "{parent}[{key:?}]"),
            At::Item(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>, at: At<'_>) -> Result<()> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(n, out, at)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out, At::Item(&at, i))?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| utf16_order(a, b));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out, At::Key(&at, key))?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

/// The order of keys: by UTF-16 code units. It is the byte order of UTF-8 unless a character
/// beyond U+FFFF (four UTF-8 bytes, led by 0xF0 to 0xF4) meets one of U+E000 to U+FFFF, so the
/// code units are compared only when such a character is there.
fn utf16_order(a: &str, b: &str) -> std::cmp::Ordering {
    let astral = |s: &str| s.bytes().any(|byte| byte >= 0xf0);
    if astral(a) || astral(b) {
        a.encode_utf16().cmp(b.encode_utf16())
    } else {
        a.as_bytes().cmp(b.as_bytes())
    }
}

fn write_number(n: &Number, out: &mut Vec<u8>, at: At<'_>) -> Result<()> {
    let in_range = if let Some(u) = n.as_u64() {
        u <= MAX_SAFE_INTEGER
    } else if let Some(i) = n.as_i64() {
        i.unsigned_abs() <= MAX_SAFE_INTEGER
    } else {
        return Err(Error::NotCanonical {
            at: at.to_string(),
            reason: "fractions and exponents are not allowed",
        });
    };
    if !in_range {
        return Err(Error::NotCanonical {
            at: at.to_string(),
            reason: "integer beyond ±(2^53 - 1)",
        });
    }
    // Integers print as plain decimal; that is the canonical form.
    let mut digits = itoa::Buffer::new();
    let text = match n.as_u64() {
        Some(u) => digits.format(u),
        None => digits.format(n.as_i64().unwrap_or_default()),
    };
    out.extend_from_slice(text.as_bytes());
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// Which numbers a parse accepts.
#[derive(Clone, Copy)]
enum Numbers {
    /// Integers within ±(2^53 − 1), written without fraction or exponent.
    Canonical,
    /// Any JSON number; a whole one within ±(2^53 − 1) becomes an integer.
    Any,
}

/// Builds a [`Value`] while refusing duplicate keys and, with [`Numbers::Canonical`], what
/// canonical JSON cannot hold.
struct StrictSeed(Numbers);

impl<'de> DeserializeSeed<'de> for StrictSeed {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(StrictVisitor(self.0))
    }
}

struct StrictVisitor(Numbers);

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        if matches!(self.0, Numbers::Canonical) && v > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is beyond 2^53 - 1")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        if matches!(self.0, Numbers::Canonical) && v.unsigned_abs() > MAX_SAFE_INTEGER {
            return Err(E::custom(format!("integer {v} is beyond -(2^53 - 1)")));
        }
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        match self.0 {
            Numbers::Canonical => Err(E::custom(format!(
                "number {v} is not an integer within ±(2^53 - 1) (fractions and exponents are not allowed)"
            ))),
            // Within ±2^53 every whole f64 is exact, so the cast loses nothing.
            #[allow(clippy::cast_possible_truncation)]
            Numbers::Any if v.fract() == 0.0 && v.abs() <= MAX_SAFE_INTEGER as f64 => {
                Ok(Value::Number((v as i64).into()))
            }
            Numbers::Any => Number::from_f64(v)
                .map(Value::Number)
                .ok_or_else(|| E::custom(format!("number {v} is not finite"))),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(StrictSeed(self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            let value = map.next_value_seed(StrictSeed(self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod order_tests {
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn keys_sort_by_utf16_code_units(
            a in "[a\u{e000}-\u{e0ff}\u{fff0}-\u{ffff}\u{10000}-\u{10100}é]{0,6}",
            b in "[a\u{e000}-\u{e0ff}\u{fff0}-\u{ffff}\u{10000}-\u{10100}é]{0,6}",
        ) {
            prop_assert_eq!(super::utf16_order(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
        }
    }
}
