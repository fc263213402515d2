//! Stripe-shaped API errors: `{"error": {type, code, decline_code, param, message, doc_url}}` with
//! Stripe's HTTP statuses. Only what the sandbox answers to callers; start-up errors live in
//! `SandboxError`.

use axum::http::StatusCode;
use serde_json::{Map, Value};

/// One error answer of the sandbox's Stripe API.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    /// `api_error`, `card_error`, `idempotency_error` or `invalid_request_error`.
    pub error_type: &'static str,
    pub code: Option<&'static str>,
    pub decline_code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    /// Objects Stripe embeds in some errors: `payment_intent`, `charge`, `payment_method`.
    pub extra: Box<Map<String, Value>>,
}

impl ApiError {
    fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            code: None,
            decline_code: None,
            param: None,
            message: message.into(),
            extra: Box::default(),
        }
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_param(mut self, param: &str) -> Self {
        self.param = Some(param.to_owned());
        self
    }

    pub fn with_extra(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_owned(), value);
        self
    }

    /// HTTP 400 `invalid_request_error`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_request_error", message)
    }

    pub fn parameter_unknown(param: &str) -> Self {
        Self::invalid(format!("Received unknown parameter: {param}"))
            .with_code("parameter_unknown")
            .with_param(param)
    }

    pub fn parameter_missing(param: &str) -> Self {
        Self::invalid(format!("Missing required param: {param}."))
            .with_code("parameter_missing")
            .with_param(param)
    }

    /// HTTP 404 `resource_missing`, e.g. `No such customer: 'cus_x'`.
    pub fn no_such(object: &str, id: &str, param: Option<&str>) -> Self {
        let mut error = Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("No such {object}: '{id}'"),
        )
        .with_code("resource_missing");
        error.param = param.map(str::to_owned);
        error
    }

    pub fn unrecognized_url(method: &str, path: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("Unrecognized request URL ({method}: {path})."),
        )
    }

    /// HTTP 402 `card_error`.
    pub fn card(code: &'static str, decline_code: Option<&str>, message: &str) -> Self {
        let mut error =
            Self::new(StatusCode::PAYMENT_REQUIRED, "card_error", message).with_code(code);
        error.decline_code = decline_code.map(str::to_owned);
        error
    }

    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "Request rate limit exceeded. You can learn more about rate limits here \
             https://stripe.com/docs/rate-limits.",
        )
        .with_code("rate_limit")
    }

    pub fn lock_timeout() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            "This object cannot be accessed right now because another API request or Stripe \
             process is currently accessing it. If you see this error intermittently, retry the \
             request.",
        )
        .with_code("lock_timeout")
    }

    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "An unknown error occurred (injected by the sandbox's fault settings).",
        )
    }

    pub fn idempotency_mismatch(key: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were \
                 first used with. Try using a key other than '{key}' if you meant to execute a \
                 different request."
            ),
        )
    }

    pub fn idempotency_in_use() -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            "There is currently another in-progress request using this Idempotent Key (that \
             probably means you submitted twice, and the other request is still going through). \
             Please retry your request at a later time.",
        )
        .with_code("idempotency_key_in_use")
    }

    /// The JSON body: `{"error": {...}}`.
    pub fn body(&self) -> Value {
        let mut error = Map::new();
        if let Some(code) = self.code {
            error.insert("code".into(), Value::String(code.to_owned()));
        }
        if let Some(decline_code) = &self.decline_code {
            error.insert("decline_code".into(), Value::String(decline_code.clone()));
        }
        if let Some(code) = self.code {
            error.insert(
                "doc_url".into(),
                Value::String(format!(
                    "https://stripe.com/docs/error-codes/{}",
                    code.replace('_', "-")
                )),
            );
        }
        error.insert("message".into(), Value::String(self.message.clone()));
        if let Some(param) = &self.param {
            error.insert("param".into(), Value::String(param.clone()));
        }
        for (key, value) in self.extra.iter() {
            error.insert(key.clone(), value.clone());
        }
        error.insert("type".into(), Value::String(self.error_type.to_owned()));
        let mut body = Map::new();
        body.insert("error".into(), Value::Object(error));
        Value::Object(body)
    }

    /// The error as it appears in `last_payment_error` of a PaymentIntent.
    pub fn as_last_payment_error(&self) -> Value {
        let mut body = self.body();
        match body.get_mut("error").map(Value::take) {
            Some(Value::Object(mut error)) => {
                error.remove("payment_intent");
                Value::Object(error)
            }
            _ => Value::Null,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_errors_carry_decline_code_and_doc_url() {
        let body = ApiError::card(
            "card_declined",
            Some("insufficient_funds"),
            "Your card has insufficient funds.",
        )
        .body();
        assert_eq!(body["error"]["type"], "card_error");
        assert_eq!(body["error"]["decline_code"], "insufficient_funds");
        assert_eq!(
            body["error"]["doc_url"],
            "https://stripe.com/docs/error-codes/card-declined"
        );
    }

    #[test]
    fn unknown_parameter_names_the_param() {
        let error = ApiError::parameter_unknown("colour");
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(error.body()["error"]["param"], "colour");
        assert_eq!(error.body()["error"]["code"], "parameter_unknown");
    }
}
