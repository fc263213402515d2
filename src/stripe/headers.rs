//! Request headers Stripe expects, and the response headers that carry its hints.

use http::HeaderMap;

/// The API version whose shapes the connector spec describes.
pub const HEADER_STRIPE_VERSION: &str = "Stripe-Version";
/// Acts on a connected account.
pub const HEADER_STRIPE_ACCOUNT: &str = "Stripe-Account";
/// Makes a POST safe to retry.
pub const HEADER_IDEMPOTENCY_KEY: &str = "Idempotency-Key";
/// Stripe's request id, worth surfacing in every error.
pub const HEADER_REQUEST_ID: &str = "Request-Id";
/// Stripe's explicit retry advice, which overrides every other rule.
pub const HEADER_SHOULD_RETRY: &str = "Stripe-Should-Retry";
/// Set when Stripe replayed a stored response for an idempotency key.
pub const HEADER_IDEMPOTENT_REPLAYED: &str = "Idempotent-Replayed";

/// Longest idempotency key Stripe accepts.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// Stripe's request id of a response, if any.
pub fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get(HEADER_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `Stripe-Should-Retry: true|false`, when present.
pub fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get(HEADER_SHOULD_RETRY)?.to_str().ok()? {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// True for Stripe test-mode keys, whose account rate limit is lower.
pub fn is_test_key(key: &str) -> bool {
    key.starts_with("sk_test_") || key.starts_with("rk_test_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_retry_hints() {
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_SHOULD_RETRY, "false".parse().unwrap());
        assert_eq!(should_retry(&headers), Some(false));
        headers.insert(HEADER_SHOULD_RETRY, "maybe".parse().unwrap());
        assert_eq!(should_retry(&headers), None);
    }

    #[test]
    fn tells_test_keys_from_live_ones() {
        assert!(is_test_key("sk_test_123"));
        assert!(is_test_key("rk_test_123"));
        assert!(!is_test_key("sk_live_123"));
    }
}
