//! The JSON bodies of the key-value routes, shared by the server ([`crate::http`]) and the
//! client ([`crate::client`]) so that the two cannot drift apart. The shared routes'
//! bodies (status, admin) are re-exported from [`raft_service::api`].
//!
//! | request | body | success |
//! |---|---|---|
//! | `PUT /kv/{key}` | the value, raw bytes | `200` [`PreviousResponse`] |
//! | `GET /kv/{key}` | | `200` [`ValueResponse`]; `404` if absent |
//! | `DELETE /kv/{key}` | | `200` [`PreviousResponse`] |
//! | `POST /kv/{key}/cas` | [`CasRequest`] | `200` [`CasResponse`] (swapped or not) |
//! | `GET /kv?start=&end=&prefix=&limit=` | | `200` [`ScanResponse`] |
//!
//! # Values in JSON
//!
//! Values are bytes. In JSON, a value that is UTF-8 text is a string (`"blue"`), and any
//! other value an object holding its bytes in standard base64 (`{"base64": "AAEC"}`); an
//! absent value is `null`. The same forms are accepted in requests ([`CasRequest`]), where
//! a string stands for its UTF-8 bytes.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use raft_service::api::*;

/// The header a node sets when it passes an admin request on to the leader (see
/// [`forwarded_header`]).
pub const FORWARDED_HEADER: &str = "x-kv-forwarded";

/// A value, written in JSON as a string if it is UTF-8 text and as `{"base64": "..."}`
/// otherwise.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Value(pub Bytes);

/// How a [`Value`] is written in JSON.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Repr {
    Text(String),
    Binary(Binary),
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Binary {
    base64: String,
}

impl Value {
    /// The value's bytes.
    pub fn bytes(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for Value {
    fn from(bytes: Bytes) -> Value {
        Value(bytes)
    }
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value(Bytes::copy_from_slice(text.as_bytes()))
    }
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Display for Value {
    /// The value as JSON: `"text"` or `{"base64":"..."}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => Repr::Binary(Binary {
                base64: BASE64.encode(&self.0),
            })
            .serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        match Repr::deserialize(deserializer)
            .map_err(|_| serde::de::Error::custom(r#"a value is a string or {"base64": "..."}"#))?
        {
            Repr::Text(text) => Ok(Value(Bytes::from(text))),
            Repr::Binary(Binary { base64 }) => BASE64
                .decode(base64.as_bytes())
                .map(|bytes| Value(bytes.into()))
                .map_err(|e| serde::de::Error::custom(format!("invalid base64 value: {e}"))),
        }
    }
}

/// The JSON form of an optional value: a [`Value`], or `null`.
pub fn optional(value: Option<&Bytes>) -> String {
    match value {
        Some(v) => Value(v.clone()).to_string(),
        None => "null".into(),
    }
}

/// `GET /kv/{key}`: the key's value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueResponse {
    /// The value.
    pub value: Value,
}

/// `PUT` and `DELETE /kv/{key}`: the key's value before the write, if it had one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousResponse {
    /// The value before, `null` if the key was absent.
    pub previous: Option<Value>,
}

/// `POST /kv/{key}/cas`: set the key to `new` (remove it if `null`) if its value is
/// `expected` (absent if `null`). A field left out is `null`; an unknown field is refused,
/// so that a misspelt one cannot pass for an absent value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasRequest {
    /// The value the key must have, `null` for "absent".
    #[serde(default)]
    pub expected: Option<Value>,
    /// The value to set, `null` to remove the key.
    #[serde(default)]
    pub new: Option<Value>,
}

/// The answer to a compare-and-swap, whether it swapped or not.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CasResponse {
    /// Whether the value was `expected`, and so was replaced by `new`.
    pub swapped: bool,
    /// The key's value now: `new` if it swapped, the value that did not match otherwise.
    pub current: Option<Value>,
}

/// One key and its value in a [`ScanResponse`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Value,
}

/// `GET /kv`: a page of keys in key order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanResponse {
    /// The keys and their values.
    pub entries: Vec<Entry>,
    /// The first key after this page, to pass as `start` for the next one; `null` once the
    /// scan reached its end.
    pub next: Option<String>,
}

#[cfg(test)]
mod tests {
    use raft_service::Service;
    use serde_json::json;

    use super::*;

    #[test]
    fn text_values_are_strings_and_others_base64() {
        let text = Value::from("blue");
        assert_eq!(serde_json::to_value(&text).unwrap(), json!("blue"));
        let binary = Value(Bytes::from_static(&[0, 1, 0xff]));
        assert_eq!(serde_json::to_value(&binary).unwrap(), json!({"base64": "AAH/"}));
        for v in [text, binary] {
            let back: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
            assert_eq!(back, v);
        }
        let e = serde_json::from_value::<Value>(json!({"base64": "%%"})).unwrap_err();
        assert!(e.to_string().contains("invalid base64"), "{e}");
        let e = serde_json::from_value::<Value>(json!(7)).unwrap_err();
        assert!(e.to_string().contains("a value is a string"), "{e}");
        assert_eq!(optional(None), "null");
        assert_eq!(optional(Some(&Bytes::from_static(b"x"))), "\"x\"");
    }

    #[test]
    fn a_cas_request_refuses_unknown_fields_and_defaults_to_null() {
        let r: CasRequest = serde_json::from_value(json!({"new": "x"})).unwrap();
        assert_eq!(r.expected, None);
        assert!(serde_json::from_value::<CasRequest>(json!({"expect": "x"})).is_err());
    }

    #[test]
    fn the_forwarded_header_is_named_after_the_service() {
        assert_eq!(forwarded_header(crate::node::KvService::NAME), FORWARDED_HEADER);
    }
}
