//! An error the upstream answered, in vendor-neutral terms: the connector's dialect reads the
//! error body into it (`Dialect::error`), `api::status` maps it to a gRPC status.

use std::collections::BTreeMap;

/// One upstream error response, with what it takes to tell a decline from a bad parameter, an
/// unknown id, an auth failure and a rate limit. Fields an upstream does not have stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpstreamError {
    /// Who answered: the dialect's display name, e.g. `Stripe`, for messages and as the prefix
    /// of the status's reason and metadata keys (`STRIPE_RESOURCE_MISSING`, `stripe_code`).
    pub upstream: String,
    /// HTTP status of the response.
    pub http_status: u16,
    /// The upstream's error category, e.g. Stripe's `card_error` or `invalid_request_error`.
    pub error_type: String,
    /// The upstream's error code, e.g. `resource_missing`, `card_declined`, `rate_limit`.
    pub code: Option<String>,
    /// Why a payment was declined, for upstreams that say so (e.g. `insufficient_funds`).
    pub decline_code: Option<String>,
    /// The request parameter at fault, in the upstream's naming.
    pub param: Option<String>,
    /// The upstream's message (never contains the caller's key).
    pub message: String,
    /// The upstream's request id, worth surfacing in every error.
    pub request_id: Option<String>,
    /// Ids of the objects the error concerns, by kind (e.g. `payment_intent` → `pi_1`).
    pub objects: BTreeMap<String, String>,
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}",
            self.upstream, self.error_type, self.http_status
        )?;
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        if let Some(decline) = &self.decline_code {
            write!(f, ", {decline}")?;
        }
        write!(f, "): {}", self.message)
    }
}

impl std::error::Error for UpstreamError {}
