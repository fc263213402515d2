//! Stripe's error objects, `{"error": {type, code, decline_code, message, param, doc_url, ...}}`,
//! read into the vendor-neutral `UpstreamError`. Pure, no I/O.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::upstream::error::UpstreamError;

/// How errors name the upstream.
pub const UPSTREAM: &str = "Stripe";

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

/// Parses an error response. A body that is not Stripe's shape still yields an error that says
/// so, with the HTTP status, rather than being lost.
pub fn from_response(http_status: u16, body: &[u8], request_id: Option<String>) -> UpstreamError {
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope { error }) => {
            let objects: BTreeMap<String, String> = [
                ("payment_intent", id_of(error.payment_intent)),
                ("charge", id_of(error.charge)),
            ]
            .into_iter()
            .filter_map(|(kind, id)| Some((kind.to_owned(), id?)))
            .collect();
            UpstreamError {
                upstream: UPSTREAM.to_owned(),
                http_status,
                error_type: error.error_type.unwrap_or_else(|| "api_error".to_owned()),
                code: error.code,
                decline_code: error.decline_code,
                param: error.param,
                message: error.message.unwrap_or_default(),
                request_id,
                objects,
            }
        }
        Err(_) => UpstreamError {
            upstream: UPSTREAM.to_owned(),
            http_status,
            error_type: "api_error".to_owned(),
            message: format!("upstream answered HTTP {http_status} without a Stripe error body"),
            request_id,
            ..UpstreamError::default()
        },
    }
}

/// Whether a body is Stripe's error object (Stripe's own 401 always carries one; a proxy's does not).
pub fn is_error_body(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .is_ok_and(|v| v.get("error").is_some_and(Value::is_object))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_card_decline_with_its_payment_intent() {
        let body = br#"{"error":{"type":"card_error","code":"card_declined","decline_code":"insufficient_funds",
            "message":"Your card has insufficient funds.","payment_intent":{"id":"pi_1","status":"requires_payment_method"}}}"#;
        let error = from_response(402, body, Some("req_1".to_owned()));
        assert_eq!(error.error_type, "card_error");
        assert_eq!(error.decline_code.as_deref(), Some("insufficient_funds"));
        assert_eq!(
            error.objects.get("payment_intent").map(String::as_str),
            Some("pi_1")
        );
        assert_eq!(error.request_id.as_deref(), Some("req_1"));
    }

    #[test]
    fn keeps_a_non_stripe_body_as_an_api_error() {
        let error = from_response(502, b"<html>bad gateway</html>", None);
        assert!(!is_error_body(b"<html>bad gateway</html>"));
        assert_eq!(error.error_type, "api_error");
        assert!(error.message.contains("502"));
    }
}
