//! JSON objects parsed strictly: a member named twice, at any depth, is an error. RFC 7515
//! and RFC 8259 leave duplicates to the parser, and parsers disagree on which value wins, so a
//! token with one means different things to different readers: it is refused.

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// Not JSON, or not an object at the top.
    Invalid,
    /// This member name occurs twice in one object.
    Duplicate(String),
}

/// Parse `bytes` as one JSON object.
pub fn parse_object(bytes: &[u8]) -> Result<Map<String, Value>, Error> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match de.deserialize_any(StrictVisitor) {
        Ok(v) => v,
        Err(e) => {
            let text = e.to_string();
            return Err(match text.strip_prefix(DUPLICATE) {
                Some(rest) => Error::Duplicate(rest.split(" at line ").next().unwrap_or("").into()),
                None => Error::Invalid,
            });
        }
    };
    de.end().map_err(|_| Error::Invalid)?;
    match value {
        Value::Object(m) => Ok(m),
        _ => Err(Error::Invalid),
    }
}

const DUPLICATE: &str = "duplicate member: ";

struct StrictVisitor;

/// One value, with the same duplicate check inside.
struct Strict(Value);

impl<'de> de::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(name) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if out.contains_key(&name) {
                return Err(de::Error::custom(format!("{DUPLICATE}{name}")));
            }
            out.insert(name, value);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_at_any_depth_are_refused() {
        assert_eq!(
            parse_object(br#"{"alg":"RS256","alg":"none"}"#),
            Err(Error::Duplicate("alg".into()))
        );
        assert_eq!(
            parse_object(br#"{"a":{"b":1,"b":2}}"#),
            Err(Error::Duplicate("b".into()))
        );
        assert_eq!(
            parse_object(br#"{"a":[{"x":1,"x":1}]}"#),
            Err(Error::Duplicate("x".into()))
        );
        // The same name in two different objects is fine; escapes name the same member.
        assert!(parse_object(br#"{"a":{"x":1},"b":{"x":2}}"#).is_ok());
        assert_eq!(
            parse_object(br#"{"alg":1,"\u0061lg":2}"#),
            Err(Error::Duplicate("alg".into()))
        );
    }

    #[test]
    fn only_one_object_is_accepted() {
        assert_eq!(parse_object(b"[1]"), Err(Error::Invalid));
        assert_eq!(parse_object(b"{} {}"), Err(Error::Invalid));
        assert_eq!(parse_object(b"{\"a\":1"), Err(Error::Invalid));
        let m = parse_object(br#"{"n":1.5,"i":-3,"s":"x","l":[true,null]}"#).unwrap();
        assert_eq!(m["i"], -3);
        assert_eq!(m["n"], 1.5);
    }
}
