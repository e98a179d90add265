//! A client of the key-value HTTP API that knows a list of nodes and tries them in turn:
//! the shared client ([`raft_service::client`]) and its retry rule, plus the key-value
//! requests. Reads are retried on other nodes whatever happened; a write whose outcome is
//! unknown is not sent again (a compare-and-swap sent twice could see its own write).

use bytes::Bytes;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use raft_service::client::{Body, Method, Retry};

use crate::api::{CasRequest, CasResponse, PreviousResponse, ScanResponse, Value, ValueResponse};
use crate::http::Consistency;

pub use raft_service::client::ClientError;

/// What a key's path segment leaves as it is: the characters RFC 3986 leaves unreserved.
const KEY_SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// What a scan asks for (see `GET /kv` in [`crate::http`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// The first key (included); from the first key if `None`.
    pub start: Option<String>,
    /// The key to stop before (excluded); to the last key if `None`.
    pub end: Option<String>,
    /// Only keys that begin with this.
    pub prefix: Option<String>,
    /// At most this many keys; the server's default (100) if `None`.
    pub limit: Option<usize>,
}

raft_service::service_client! {
    /// A client of a key-value cluster. It derefs to the shared client, for the status and
    /// admin requests.
    pub struct Client;
}

impl Client {
    /// Sets `key` to `value`; returns the value it had before.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<Option<Bytes>, ClientError> {
        let r: PreviousResponse = self
            .0
            .call(
                Method::PUT,
                &key_path(key, ""),
                Some(Body::raw(value)),
                Retry::IfNotApplied,
            )
            .await?;
        Ok(r.previous.map(|v| v.0))
    }

    /// The value of `key`, read at `consistency`; `None` if the key is absent.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Bytes>, ClientError> {
        let path = format!(
            "{}{}",
            key_path(key, ""),
            query(&[("consistency", Some(consistency.name()))])
        );
        let r: Option<ValueResponse> = self
            .0
            .call_optional(Method::GET, &path, None, Retry::Always)
            .await?;
        Ok(r.map(|r| r.value.0))
    }

    /// Removes `key`; returns the value it had.
    pub async fn delete(&self, key: &str) -> Result<Option<Bytes>, ClientError> {
        let r: PreviousResponse = self
            .0
            .call(Method::DELETE, &key_path(key, ""), None, Retry::IfNotApplied)
            .await?;
        Ok(r.previous.map(|v| v.0))
    }

    /// Sets `key` to `new` (removes it if `None`) if its value is `expected` (absent if
    /// `None`); answers whether it swapped, and the value now.
    pub async fn cas(
        &self,
        key: &str,
        expected: Option<Bytes>,
        new: Option<Bytes>,
    ) -> Result<CasResponse, ClientError> {
        let body = CasRequest {
            expected: expected.map(Value),
            new: new.map(Value),
        };
        self.0
            .call(
                Method::POST,
                &key_path(key, "/cas"),
                Some(Body::json(&body)),
                Retry::IfNotApplied,
            )
            .await
    }

    /// One page of the keys `scan` asks for, read at `consistency`.
    pub async fn scan(&self, scan: &Scan, consistency: Consistency) -> Result<ScanResponse, ClientError> {
        let limit = scan.limit.map(|l| l.to_string());
        let path = format!(
            "/kv{}",
            query(&[
                ("start", scan.start.as_deref()),
                ("end", scan.end.as_deref()),
                ("prefix", scan.prefix.as_deref()),
                ("limit", limit.as_deref()),
                ("consistency", Some(consistency.name())),
            ])
        );
        self.0.call(Method::GET, &path, None, Retry::Always).await
    }
}

/// `/kv/{key}` then `suffix`, the key percent-encoded.
fn key_path(key: &str, suffix: &str) -> String {
    format!("/kv/{}{suffix}", utf8_percent_encode(key, KEY_SEGMENT))
}

/// `?name=value&...` for the parameters that have a value, encoded.
fn query(params: &[(&str, Option<&str>)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        if let Some(value) = value {
            query.append_pair(name, value);
        }
    }
    format!("?{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_parameters_are_percent_encoded() {
        assert_eq!(key_path("a b/c?d%é", "/cas"), "/kv/a%20b%2Fc%3Fd%25%C3%A9/cas");
        assert_eq!(key_path("x-y_z.~1", ""), "/kv/x-y_z.~1");
        assert_eq!(
            query(&[("start", Some("a&b")), ("end", None), ("limit", Some("5"))]),
            "?start=a%26b&limit=5"
        );
    }
}
