//! Opaque page tokens, bound to the request that made them (AIP-158). Pure.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

/// What a ListEntities page token carries: the upstream cursor and a fingerprint of the request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageToken {
    /// Last upstream id examined; the next page starts after it.
    #[serde(rename = "a")]
    pub after: String,
    /// Fingerprint of the request's connection, type, conditions and sort.
    #[serde(rename = "f")]
    pub fingerprint: String,
    /// Sort key of the last row returned, for orders sorted here (the row's id is `after`).
    #[serde(rename = "k", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<serde_json::Value>,
    /// Stripe Search's `page` cursor of the page to read next (`after` then names the last row
    /// already returned from it).
    #[serde(rename = "p", default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

impl PageToken {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(token: &str) -> Result<Self, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(token)
            .map_err(|_| "is not a token this service issued".to_owned())?;
        serde_json::from_slice(&bytes).map_err(|_| "is not a token this service issued".to_owned())
    }
}

/// A stable 64-bit FNV-1a fingerprint of the parts (not for security; for binding tokens).
pub fn fingerprint(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain(std::iter::once(0xff)) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = PageToken {
            after: "cus_1".to_owned(),
            fingerprint: fingerprint(&["a", "b"]),
            key: Some(serde_json::json!("jen@example.com")),
            page: Some("page_100".to_owned()),
        };
        assert_eq!(PageToken::decode(&token.encode()).unwrap(), token);
        assert!(PageToken::decode("not-a-token!").is_err());
    }

    #[test]
    fn fingerprints_tell_requests_apart() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
