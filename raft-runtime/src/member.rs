//! What the replicated configuration records about each member.

use std::collections::BTreeMap;

/// What the replicated configuration records about a member: the address its transport
/// listens on, and attributes the application attaches (for example a client-facing address).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MemberInfo {
    /// The address peers' transports use to reach the member.
    pub address: String,
    /// Application attributes, replicated with the membership.
    pub attributes: BTreeMap<String, String>,
}

impl MemberInfo {
    /// A member reachable at `address`, with no attributes.
    pub fn new(address: impl Into<String>) -> Self {
        MemberInfo {
            address: address.into(),
            attributes: BTreeMap::new(),
        }
    }

    /// Adds an attribute.
    pub fn with(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(key.into(), value.into());
        self
    }

    pub(crate) fn encode(&self) -> bytes::Bytes {
        crate::codec::encode(self).expect("member info always encodes")
    }

    /// Decodes what the configuration stores; bytes written by something else are taken as a
    /// bare address.
    pub(crate) fn decode(raw: &[u8]) -> MemberInfo {
        crate::codec::decode(raw).unwrap_or_else(|_| MemberInfo::new(String::from_utf8_lossy(raw)))
    }
}

impl From<String> for MemberInfo {
    fn from(address: String) -> Self {
        MemberInfo::new(address)
    }
}

impl From<&str> for MemberInfo {
    fn from(address: &str) -> Self {
        MemberInfo::new(address)
    }
}
