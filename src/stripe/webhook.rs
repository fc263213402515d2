//! Stripe's webhook signature scheme: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`, where each
//! `v1` is HMAC-SHA256 with an endpoint secret (`whsec_…`) over `"<t>.<raw body>"`. Any `v1` may
//! match any of the endpoint's secrets (several exist while a secret is rotated); comparison is in
//! constant time; the timestamp must lie within a tolerance (300 s by default) of the caller's
//! clock. Pure: the clock is an argument, no I/O, and no error ever carries a secret or a signature.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The header Stripe signs webhooks with.
pub const SIGNATURE_HEADER: &str = "stripe-signature";

/// Stripe's default timestamp tolerance, in seconds.
pub const DEFAULT_TOLERANCE_SECS: u64 = 300;

/// The prefix of an endpoint signing secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// Why a webhook was refused. Says what was wrong, never with which secret or signature.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the Stripe-Signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature matches the endpoint's signing secrets")]
    Mismatch,
    #[error(
        "the signature timestamp is {age_secs} s away from now, beyond the {tolerance_secs} s tolerance"
    )]
    Stale { age_secs: u64, tolerance_secs: u64 },
    #[error("no signing secret is configured for this endpoint")]
    NoSecret,
}

/// A parsed `Stripe-Signature` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    /// The signing time, unix seconds.
    pub timestamp: i64,
    /// Every `v1` signature, decoded from hex.
    pub signatures: Vec<Vec<u8>>,
}

/// Longest header accepted; Stripe's carry one or two signatures (~150 bytes).
const MAX_HEADER_LEN: usize = 4096;

impl SignatureHeader {
    /// Parses `t=<unix>,v1=<hex>[,v1=<hex>…]`; unknown schemes (`v0`) are ignored, as Stripe's
    /// libraries do.
    pub fn parse(header: &str) -> Result<Self, SignatureError> {
        if header.len() > MAX_HEADER_LEN {
            return Err(SignatureError::Malformed("too long"));
        }
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for item in header.split(',') {
            let (key, value) = item
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed("an item is not key=value"))?;
            match key {
                "t" => {
                    let t = value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t is not a unix time"))?;
                    timestamp = Some(t);
                }
                "v1" => {
                    let bytes = hex::decode(value)
                        .map_err(|_| SignatureError::Malformed("v1 is not hexadecimal"))?;
                    signatures.push(bytes);
                }
                _ => {}
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed("no timestamp t"))?;
        if signatures.is_empty() {
            return Err(SignatureError::NoSignature);
        }
        Ok(Self {
            timestamp,
            signatures,
        })
    }
}

fn mac(secret: &str, timestamp: i64, payload: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    mac
}

/// The hex `v1` signature of `payload` at `timestamp` with `secret`.
pub fn signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, payload).finalize().into_bytes())
}

/// A complete `Stripe-Signature` value: one `v1` per secret (as Stripe sends during rotation).
pub fn sign_header(secrets: &[&str], timestamp: i64, payload: &[u8]) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&signature(secret, timestamp, payload));
    }
    header
}

/// Checks a webhook: the header parses, its timestamp is within `tolerance_secs` of `now`
/// (unix seconds), and some `v1` signature matches some secret (constant-time comparison).
pub fn verify<S: AsRef<str>>(
    header: Option<&str>,
    payload: &[u8],
    secrets: &[S],
    now: i64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let header = SignatureHeader::parse(header.ok_or(SignatureError::Missing)?)?;
    if secrets.is_empty() {
        return Err(SignatureError::NoSecret);
    }
    let matched = secrets.iter().any(|secret| {
        header.signatures.iter().any(|candidate| {
            mac(secret.as_ref(), header.timestamp, payload)
                .verify_slice(candidate)
                .is_ok()
        })
    });
    if !matched {
        return Err(SignatureError::Mismatch);
    }
    let age_secs = now.abs_diff(header.timestamp);
    if age_secs > tolerance_secs {
        return Err(SignatureError::Stale {
            age_secs,
            tolerance_secs,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret_0123456789";
    const BODY: &[u8] = br#"{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_764_000_000;

    #[test]
    fn matches_the_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently with Python's hmac module:
        //   hmac.new(SECRET, b"1764000000." + BODY, hashlib.sha256).hexdigest()
        assert_eq!(
            signature(SECRET, NOW, BODY),
            "e1580c5b4e223a49749ef0fcce9d34294d5b0fe07e548a63be3cb43f8e2d0f0d"
        );
    }

    #[test]
    fn accepts_a_fresh_correct_signature() {
        let header = sign_header(&[SECRET], NOW, BODY);
        assert_eq!(
            verify(Some(&header), BODY, &[SECRET], NOW + 10, 300),
            Ok(())
        );
    }

    #[test]
    fn any_v1_may_match_any_secret_during_rotation() {
        let header = sign_header(&["whsec_old", "whsec_new"], NOW, BODY);
        assert_eq!(
            verify(Some(&header), BODY, &["whsec_new"], NOW, 300),
            Ok(())
        );
        assert_eq!(
            verify(Some(&header), BODY, &["whsec_old"], NOW, 300),
            Ok(())
        );
        let one = sign_header(&["whsec_new"], NOW, BODY);
        assert_eq!(
            verify(Some(&one), BODY, &["whsec_old", "whsec_new"], NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn refuses_a_wrong_secret_or_a_changed_body() {
        let header = sign_header(&[SECRET], NOW, BODY);
        assert_eq!(
            verify(Some(&header), BODY, &["whsec_other"], NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), b"{\"id\":\"evt_2\"}", &[SECRET], NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_timestamp_changed_after_signing() {
        let header = sign_header(&[SECRET], NOW, BODY).replacen(&NOW.to_string(), "1764000001", 1);
        assert_eq!(
            verify(Some(&header), BODY, &[SECRET], NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn refuses_a_stale_or_future_timestamp_beyond_the_tolerance() {
        let header = sign_header(&[SECRET], NOW, BODY);
        assert_eq!(
            verify(Some(&header), BODY, &[SECRET], NOW + 300, 300),
            Ok(())
        );
        assert_eq!(
            verify(Some(&header), BODY, &[SECRET], NOW + 301, 300),
            Err(SignatureError::Stale {
                age_secs: 301,
                tolerance_secs: 300
            })
        );
        assert!(matches!(
            verify(Some(&header), BODY, &[SECRET], NOW - 400, 300),
            Err(SignatureError::Stale { age_secs: 400, .. })
        ));
    }

    #[test]
    fn refuses_missing_and_malformed_headers() {
        assert_eq!(
            verify(None, BODY, &[SECRET], NOW, 300),
            Err(SignatureError::Missing)
        );
        for (header, expected) in [
            ("", SignatureError::Malformed("an item is not key=value")),
            (
                "t=abc,v1=00",
                SignatureError::Malformed("t is not a unix time"),
            ),
            (
                "t=1,v1=zz",
                SignatureError::Malformed("v1 is not hexadecimal"),
            ),
            ("v1=00", SignatureError::Malformed("no timestamp t")),
            ("t=1764000000", SignatureError::NoSignature),
            ("t=1764000000,v0=abcd", SignatureError::NoSignature),
        ] {
            assert_eq!(
                verify(Some(header), BODY, &[SECRET], NOW, 300),
                Err(expected),
                "{header}"
            );
        }
    }

    #[test]
    fn a_truncated_signature_does_not_match() {
        let full = signature(SECRET, NOW, BODY);
        let header = format!("t={NOW},v1={}", &full[..32]);
        assert_eq!(
            verify(Some(&header), BODY, &[SECRET], NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn without_secrets_nothing_verifies() {
        let header = sign_header(&[SECRET], NOW, BODY);
        let none: [&str; 0] = [];
        assert_eq!(
            verify(Some(&header), BODY, &none, NOW, 300),
            Err(SignatureError::NoSecret)
        );
    }

    #[test]
    fn errors_never_show_the_secret_or_the_signature() {
        let header = sign_header(&[SECRET], NOW, BODY);
        let sig = signature(SECRET, NOW, BODY);
        for error in [
            verify(Some(&header), BODY, &["whsec_other"], NOW, 300).unwrap_err(),
            verify(Some(&header), BODY, &[SECRET], NOW + 1000, 300).unwrap_err(),
        ] {
            let text = error.to_string();
            assert!(!text.contains(SECRET) && !text.contains(&sig), "{text}");
        }
    }
}
