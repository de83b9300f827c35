//! Deserialising the crate's string types without a copy per value.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserializer;
use serde::de::{Error, Visitor};

/// Deserialises a string with `parse`, borrowing it where the input allows: a value such as a
/// digest or a path is checked straight from the JSON (or the parsed `Value`) instead of being
/// copied into a `String` first, once per field of every file of a manifest.
pub(crate) fn parse_str<'de, D, T, E>(
    deserializer: D,
    parse: fn(&str) -> Result<T, E>,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    E: fmt::Display,
{
    struct Parse<T, E>(fn(&str) -> Result<T, E>, PhantomData<fn() -> T>);

    impl<T, E: fmt::Display> Visitor<'_> for Parse<T, E> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }

        fn visit_str<V: Error>(self, text: &str) -> Result<T, V> {
            (self.0)(text).map_err(V::custom)
        }
    }

    deserializer.deserialize_str(Parse(parse, PhantomData))
}
