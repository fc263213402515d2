//! Stripe's specifics, kept small: the dialect the generic engine calls (`dialect`: request
//! headers for auth, version, account and idempotency, error bodies, retry hints, cursor lists,
//! deleted stubs, the rate-limit account), the gated parameters the pinned API version
//! leaves out, webhook signatures and the event shape, and the search query language filter
//! clauses are pushed down to. Everything else in the engine, the event store and the
//! subscriptions is generic.

pub mod dialect;
pub mod error;
pub mod event;
pub mod gated;
pub mod headers;
pub mod search;
pub mod verbs;
pub mod webhook;

/// Whether a Stripe secret or restricted key is a live-mode key (`sk_live_…`, `rk_live_…`), whose
/// account budget is Stripe's live-mode rate. Anything else (test keys, unknown shapes) counts as
/// test mode, the stricter budget.
pub fn is_live_key(api_key: &str) -> bool {
    api_key.starts_with("sk_live_") || api_key.starts_with("rk_live_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_live_keys_by_prefix() {
        assert!(is_live_key("sk_live_abc"));
        assert!(is_live_key("rk_live_abc"));
        assert!(!is_live_key("sk_test_abc"));
        assert!(!is_live_key("rk_test_abc"));
        assert!(!is_live_key("pk_live_abc"));
    }
}
