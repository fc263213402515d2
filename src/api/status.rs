//! Every domain error becomes a `tonic::Status` here, and only here (AIP-193): a code, a message,
//! `ErrorInfo{reason, domain, metadata}` always, `BadRequest` field violations on validation, and
//! `RetryInfo` (+ `QuotaFailure`) when a retry can succeed.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::engine::result::pascal_case;
use crate::engine::{EngineError, FieldViolation};
use crate::stripe::error::StripeError;
use crate::throttle::Throttled;
use crate::tools::PolicyRefusal;

/// The `ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: &str = "connector-runtime";

/// A status with ErrorInfo and nothing else.
pub fn status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, DOMAIN, metadata),
    )
}

/// INVALID_ARGUMENT with a field violation for each problem.
pub fn invalid_argument(message: impl Into<String>, violations: &[FieldViolation]) -> Status {
    let mut details = ErrorDetails::with_error_info("INVALID_ARGUMENT", DOMAIN, HashMap::new());
    for violation in violations {
        details.add_bad_request_violation(violation.field.clone(), violation.description.clone());
    }
    Status::with_error_details(Code::InvalidArgument, message, details)
}

/// INVALID_ARGUMENT on one field.
pub fn invalid_field(field: &str, description: impl Into<String>) -> Status {
    let violation = FieldViolation::new(field, description.into());
    invalid_argument(
        format!("{}: {}", violation.field, violation.description),
        &[violation],
    )
}

fn with_retry(
    code: Code,
    reason: &str,
    message: String,
    metadata: HashMap<String, String>,
    retry: Option<Duration>,
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    Status::with_error_details(code, message, details)
}

fn stripe_metadata(error: &StripeError) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    metadata.insert("http_status".to_owned(), error.http_status.to_string());
    metadata.insert("stripe_error_type".to_owned(), error.error_type.clone());
    let optional = [
        ("stripe_code", &error.code),
        ("stripe_decline_code", &error.decline_code),
        ("stripe_param", &error.param),
        ("stripe_request_id", &error.request_id),
        ("payment_intent", &error.payment_intent_id),
        ("charge", &error.charge_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            metadata.insert(key.to_owned(), value.clone());
        }
    }
    metadata
}

/// Stripe's `payment_method_data[card][number]` → `PaymentMethodData.card.number`.
fn caller_field(param: &str) -> String {
    let mut parts = param.split('[').map(|p| p.trim_end_matches(']'));
    let head = parts.next().map(pascal_case).unwrap_or_default();
    parts.fold(head, |acc, part| format!("{acc}.{part}"))
}

/// Maps a Stripe error object: a decline, a bad parameter, an unknown id, an auth failure and a
/// rate limit each get their own code and reason, with Stripe's detail in the metadata.
pub fn stripe_error(error: &StripeError) -> Status {
    let metadata = stripe_metadata(error);
    let message = format!(
        "Stripe: {}",
        if error.message.is_empty() {
            &error.error_type
        } else {
            &error.message
        }
    );
    let code = error.code.as_deref().unwrap_or_default();
    match (error.http_status, error.error_type.as_str()) {
        (_, "card_error") | (402, _) => status(
            Code::FailedPrecondition,
            "STRIPE_CARD_ERROR",
            message,
            metadata,
        ),
        (_, "idempotency_error") => status(
            Code::FailedPrecondition,
            "STRIPE_IDEMPOTENCY_ERROR",
            message,
            metadata,
        ),
        (401, _) => status(
            Code::FailedPrecondition,
            "STRIPE_AUTHENTICATION_FAILED",
            message,
            metadata,
        ),
        (403, _) => status(
            Code::PermissionDenied,
            "STRIPE_PERMISSION_DENIED",
            message,
            metadata,
        ),
        (404, _) => status(Code::NotFound, "STRIPE_RESOURCE_MISSING", message, metadata),
        (409, _) => status(Code::Aborted, "STRIPE_CONFLICT", message, metadata),
        (429, _) if code == "lock_timeout" => with_retry(
            Code::Aborted,
            "STRIPE_LOCK_TIMEOUT",
            message,
            metadata,
            Some(Duration::from_secs(1)),
        ),
        (429, _) => with_retry(
            Code::ResourceExhausted,
            "STRIPE_RATE_LIMITED",
            message,
            metadata,
            Some(Duration::from_secs(1)),
        ),
        (status_code, _) if status_code >= 500 => with_retry(
            Code::Unavailable,
            "STRIPE_API_ERROR",
            message,
            metadata,
            Some(Duration::from_secs(1)),
        ),
        (400, _) if code.ends_with("_unexpected_state") || code == "resource_already_exists" => {
            status(
                Code::FailedPrecondition,
                "STRIPE_INVALID_STATE",
                message,
                metadata,
            )
        }
        (400, _) => {
            let mut details =
                ErrorDetails::with_error_info("STRIPE_INVALID_REQUEST", DOMAIN, metadata);
            if let Some(param) = &error.param {
                details.add_bad_request_violation(caller_field(param), error.message.clone());
            }
            Status::with_error_details(Code::InvalidArgument, message, details)
        }
        _ => status(Code::FailedPrecondition, "STRIPE_ERROR", message, metadata),
    }
}

/// RESOURCE_EXHAUSTED with RetryInfo (when capacity frees) and QuotaFailure (which limit).
pub fn throttled_status(throttled: &Throttled) -> Status {
    let reason = throttled.reason.as_str();
    let metadata = HashMap::from([
        ("limit".to_owned(), throttled.limit.clone()),
        ("cause".to_owned(), throttled.cause.to_string()),
        (
            "retry_after_ms".to_owned(),
            throttled.retry_after.as_millis().max(1).to_string(),
        ),
    ]);
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, metadata);
    details.set_retry_info(Some(throttled.retry_after));
    details.add_quota_failure_violation(reason, throttled.limit.clone());
    Status::with_error_details(Code::ResourceExhausted, throttled.to_string(), details)
}

/// A tool the connection's tool policy refuses: PERMISSION_DENIED, naming the setting that would
/// allow it.
pub fn tool_refused(refusal: &PolicyRefusal) -> Status {
    status(
        Code::PermissionDenied,
        "TOOL_NOT_ALLOWED",
        refusal.to_string(),
        HashMap::from([
            ("tool".to_owned(), refusal.tool().to_owned()),
            ("setting".to_owned(), refusal.setting().to_owned()),
        ]),
    )
}

/// No tool of that name.
pub fn tool_not_found(tool: &str) -> Status {
    status(
        Code::NotFound,
        "TOOL_NOT_FOUND",
        format!("no tool named {tool:?}"),
        HashMap::from([("tool".to_owned(), tool.to_owned())]),
    )
}

/// Maps every engine error.
pub fn engine_error(error: &EngineError) -> Status {
    let one = |key: &str, value: &str| HashMap::from([(key.to_owned(), value.to_owned())]);
    match error {
        EngineError::InvalidInput(violations) => invalid_argument(error.to_string(), violations),
        EngineError::ConnectionNotFound(id) => status(
            Code::NotFound,
            "CONNECTION_NOT_FOUND",
            error.to_string(),
            one("connection", id),
        ),
        EngineError::EntityTypeNotFound(name) => status(
            Code::NotFound,
            "ENTITY_TYPE_NOT_FOUND",
            error.to_string(),
            one("entity_type", name),
        ),
        EngineError::ActionNotFound(name) => status(
            Code::NotFound,
            "ACTION_NOT_FOUND",
            error.to_string(),
            one("action", name),
        ),
        EngineError::OperationNotSupported { entity, operation } => {
            let mut metadata = one("entity_type", entity);
            metadata.insert(
                "operation".to_owned(),
                format!("{operation:?}").to_uppercase(),
            );
            status(
                Code::Unimplemented,
                "OPERATION_NOT_SUPPORTED",
                error.to_string(),
                metadata,
            )
        }
        EngineError::Upstream(stripe) => stripe_error(stripe),
        EngineError::Unavailable { retry_after, .. } => with_retry(
            Code::Unavailable,
            "UPSTREAM_UNAVAILABLE",
            error.to_string(),
            HashMap::new(),
            Some(retry_after.unwrap_or(Duration::from_secs(1))),
        ),
        EngineError::DeadlineExceeded(_) => status(
            Code::DeadlineExceeded,
            "DEADLINE_EXCEEDED",
            error.to_string(),
            HashMap::new(),
        ),
        EngineError::BadResponse(_) => status(
            Code::Unknown,
            "UPSTREAM_BAD_RESPONSE",
            error.to_string(),
            HashMap::new(),
        ),
        EngineError::ProxyAuthentication(_) => status(
            Code::FailedPrecondition,
            "PROXY_AUTHENTICATION_FAILED",
            error.to_string(),
            HashMap::new(),
        ),
        EngineError::Throttled(throttled) => throttled_status(throttled),
        EngineError::NotReady(_) => status(
            Code::FailedPrecondition,
            "CONNECTION_NOT_READY",
            error.to_string(),
            HashMap::new(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe(http_status: u16, error_type: &str, code: Option<&str>) -> StripeError {
        StripeError {
            http_status,
            error_type: error_type.to_owned(),
            code: code.map(str::to_owned),
            message: "m".to_owned(),
            ..StripeError::default()
        }
    }

    fn reason(status: &Status) -> String {
        status
            .get_error_details()
            .error_info()
            .map(|i| i.reason.clone())
            .unwrap_or_default()
    }

    #[test]
    fn tells_declines_bad_params_missing_ids_auth_and_rate_limits_apart() {
        let cases = [
            (
                stripe(402, "card_error", Some("card_declined")),
                Code::FailedPrecondition,
                "STRIPE_CARD_ERROR",
            ),
            (
                stripe(400, "invalid_request_error", Some("parameter_unknown")),
                Code::InvalidArgument,
                "STRIPE_INVALID_REQUEST",
            ),
            (
                stripe(404, "invalid_request_error", Some("resource_missing")),
                Code::NotFound,
                "STRIPE_RESOURCE_MISSING",
            ),
            (
                stripe(401, "invalid_request_error", None),
                Code::FailedPrecondition,
                "STRIPE_AUTHENTICATION_FAILED",
            ),
            (
                stripe(429, "invalid_request_error", Some("rate_limit")),
                Code::ResourceExhausted,
                "STRIPE_RATE_LIMITED",
            ),
            (
                stripe(500, "api_error", None),
                Code::Unavailable,
                "STRIPE_API_ERROR",
            ),
        ];
        for (error, code, expected) in cases {
            let status = stripe_error(&error);
            assert_eq!(status.code(), code, "{expected}");
            assert_eq!(reason(&status), expected);
        }
    }

    #[test]
    fn names_stripe_params_the_way_callers_do() {
        let mut error = stripe(
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
        );
        error.param = Some("payment_method_data[card][number]".to_owned());
        let status = stripe_error(&error);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "PaymentMethodData.card.number");
    }

    #[test]
    fn retryable_errors_carry_retry_info() {
        let status = stripe_error(&stripe(503, "api_error", None));
        assert!(status.get_error_details().retry_info().is_some());
    }
}
