//! Stripe's error objects: `{"error": {type, code, decline_code, message, param, doc_url, ...}}`.

use serde::Deserialize;
use serde_json::Value;

/// One Stripe error, with everything needed to tell a decline from a bad parameter, an unknown id,
/// an auth failure and a rate limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StripeError {
    /// HTTP status of the response.
    pub http_status: u16,
    /// `api_error`, `card_error`, `idempotency_error`, `invalid_request_error`, ...
    pub error_type: String,
    /// e.g. `resource_missing`, `card_declined`, `rate_limit`, `lock_timeout`.
    pub code: Option<String>,
    /// e.g. `insufficient_funds`, for card errors.
    pub decline_code: Option<String>,
    /// The request parameter at fault, in Stripe's naming.
    pub param: Option<String>,
    /// Stripe's message (never contains the caller's key).
    pub message: String,
    /// Stripe's `Request-Id` header.
    pub request_id: Option<String>,
    /// The PaymentIntent the error concerns, if Stripe embedded one.
    pub payment_intent_id: Option<String>,
    /// The Charge the error concerns, if any.
    pub charge_id: Option<String>,
}

#[derive(Deserialize)]
struct Envelope {
    error: Body,
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "type", default)]
    error_type: Option<String>,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    decline_code: Option<String>,
    #[serde(default)]
    param: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    payment_intent: Option<Value>,
    #[serde(default)]
    charge: Option<Value>,
}

fn id_of(value: Option<Value>) -> Option<String> {
    match value? {
        Value::String(id) => Some(id),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

impl StripeError {
    /// Parses an error response. A body that is not Stripe's shape still yields an error that says
    /// so, with the HTTP status, rather than being lost.
    pub fn from_response(http_status: u16, body: &[u8], request_id: Option<String>) -> Self {
        match serde_json::from_slice::<Envelope>(body) {
            Ok(Envelope { error }) => Self {
                http_status,
                error_type: error.error_type.unwrap_or_else(|| "api_error".to_owned()),
                code: error.code,
                decline_code: error.decline_code,
                param: error.param,
                message: error.message.unwrap_or_default(),
                request_id,
                payment_intent_id: id_of(error.payment_intent),
                charge_id: id_of(error.charge),
            },
            Err(_) => Self {
                http_status,
                error_type: "api_error".to_owned(),
                message: format!(
                    "upstream answered HTTP {http_status} without a Stripe error body"
                ),
                request_id,
                ..Self::default()
            },
        }
    }

    /// True for declines and other card errors (HTTP 402).
    pub fn is_card_error(&self) -> bool {
        self.error_type == "card_error"
    }

    /// True for Stripe's rate limiting (429 `rate_limit`) and object lock contention (`lock_timeout`).
    pub fn is_rate_limited(&self) -> bool {
        self.http_status == 429
    }
}

impl std::fmt::Display for StripeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Stripe {} ({}", self.error_type, self.http_status)?;
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        if let Some(decline) = &self.decline_code {
            write!(f, ", {decline}")?;
        }
        write!(f, "): {}", self.message)
    }
}

impl std::error::Error for StripeError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_card_decline_with_its_payment_intent() {
        let body = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds",
            "message":"Your card has insufficient funds.","payment_intent":{"id":"pi_1","status":"requires_payment_method"}}}"#;
        let error = StripeError::from_response(402, body, Some("req_1".to_owned()));
        assert!(error.is_card_error());
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(error.payment_intent_id.as_deref(), Some("pi_1"));
        assert_eq!(error.request_id.as_deref(), Some("req_1"));
    }

    #[test]
    fn keeps_a_non_stripe_body_as_an_api_error() {
        let error = StripeError::from_response(502, b"<html>bad gateway</html>", None);
        assert_eq!(error.error_type, "api_error");
        assert!(error.message.contains("502"));
    }
}
