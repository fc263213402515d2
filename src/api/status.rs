//! Every domain error becomes a `tonic::Status` here, and only here (AIP-193): a code, a message,
//! `ErrorInfo{reason, domain, metadata}` always, `BadRequest` field violations on validation, and
//! `RetryInfo` (+ `QuotaFailure`) when a retry can succeed.

use std::collections::HashMap;
use std::time::Duration;

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::auth::AuthError;
use crate::engine::EngineError;
use crate::events::EventsError;
use crate::registry::RegistryError;
use crate::spec::naming::pascal_case;
use crate::throttle::{ThrottleReason, Throttled};
use crate::tools::PolicyRefusal;
use crate::upstream::error::UpstreamError;
use crate::violation::{FieldViolation, INVALID_ARGUMENT};

/// The `ErrorInfo.domain` of every error this service returns.
pub const DOMAIN: &str = "connector-runtime";

// Bounds on what one error carries. The message and the details travel as HTTP/2 headers
// (`grpc-message`, `grpc-status-details-bin`, base64); gRPC's Python and C++ clients accept 16 KB
// of metadata by default and report RESOURCE_EXHAUSTED beyond it. With these bounds the largest
// status stays well under 8 KB on the wire, whatever the input (tests/engine_requests.rs measures).
/// Longest message, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 768;
/// Most field violations in a BadRequest; the rest are counted in one more.
pub const MAX_VIOLATIONS: usize = 8;
/// Longest violation field path, in bytes (an unknown key is echoed back).
const MAX_FIELD_BYTES: usize = 96;
/// Longest violation description or metadata value, in bytes.
const MAX_TEXT_BYTES: usize = 256;

/// `text` cut to at most `max` bytes on a character boundary, marked with `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn bounded(metadata: HashMap<String, String>) -> HashMap<String, String> {
    metadata
        .into_iter()
        .map(|(key, value)| (key, clip(&value, MAX_TEXT_BYTES)))
        .collect()
}

/// Adds at most MAX_VIOLATIONS violations, each clipped, and counts the rest in one more.
fn add_violations(details: &mut ErrorDetails, violations: &[FieldViolation]) {
    for violation in violations.iter().take(MAX_VIOLATIONS) {
        details.add_bad_request_violation(
            clip(&violation.field, MAX_FIELD_BYTES),
            clip(&violation.description, MAX_TEXT_BYTES),
        );
    }
    if violations.len() > MAX_VIOLATIONS {
        details.add_bad_request_violation(
            "…",
            format!("and {} more violations", violations.len() - MAX_VIOLATIONS),
        );
    }
}

/// A status with ErrorInfo and nothing else.
pub fn status(
    code: Code,
    reason: &str,
    message: impl Into<String>,
    metadata: HashMap<String, String>,
) -> Status {
    Status::with_error_details(
        code,
        clip(&message.into(), MAX_MESSAGE_BYTES),
        ErrorDetails::with_error_info(reason, DOMAIN, bounded(metadata)),
    )
}

/// INVALID_ARGUMENT with a field violation for each problem.
pub fn invalid_argument(message: impl Into<String>, violations: &[FieldViolation]) -> Status {
    bad_request(INVALID_ARGUMENT, HashMap::new(), message, violations)
}

/// INVALID_ARGUMENT with its own reason and metadata, and a field violation for each problem.
pub fn bad_request(
    reason: &str,
    metadata: HashMap<String, String>,
    message: impl Into<String>,
    violations: &[FieldViolation],
) -> Status {
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, bounded(metadata));
    add_violations(&mut details, violations);
    Status::with_error_details(
        Code::InvalidArgument,
        clip(&message.into(), MAX_MESSAGE_BYTES),
        details,
    )
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
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, bounded(metadata));
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    Status::with_error_details(code, clip(&message, MAX_MESSAGE_BYTES), details)
}

fn upstream_metadata(error: &UpstreamError, vendor: &str) -> HashMap<String, String> {
    let mut metadata = HashMap::new();
    metadata.insert("http_status".to_owned(), error.http_status.to_string());
    metadata.insert(format!("{vendor}_error_type"), error.error_type.clone());
    let optional = [
        ("code", &error.code),
        ("decline_code", &error.decline_code),
        ("param", &error.param),
        ("request_id", &error.request_id),
    ];
    for (key, value) in optional {
        if let Some(value) = value {
            metadata.insert(format!("{vendor}_{key}"), value.clone());
        }
    }
    // The objects the error concerns (`payment_intent`, `charge`), by kind.
    metadata.extend(error.objects.clone());
    metadata
}

/// The prefix of an upstream error's reason and metadata keys: the upstream's name in lower case
/// (`Stripe` → `STRIPE_CARD_ERROR`, `stripe_code`), `upstream` when it has none.
fn vendor(error: &UpstreamError) -> String {
    let name: String = error
        .upstream
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "upstream".to_owned()
    } else {
        name
    }
}

/// Stripe's `payment_method_data[card][number]` → `PaymentMethodData.card.number`.
fn caller_field(param: &str) -> String {
    let mut parts = param.split('[').map(|p| p.trim_end_matches(']'));
    let head = parts.next().map(pascal_case).unwrap_or_default();
    parts.fold(head, |acc, part| format!("{acc}.{part}"))
}

/// Maps an upstream error: a decline, a bad parameter, an unknown id, an auth failure and a
/// rate limit each get their own code and reason, with the upstream's detail in the metadata.
/// Reasons and metadata keys carry the upstream's name (`STRIPE_RESOURCE_MISSING`,
/// `stripe_request_id`; a connector to another API gets its own).
pub fn upstream_error(error: &UpstreamError) -> Status {
    let vendor = vendor(error);
    let message = format!(
        "{}: {}",
        error.upstream,
        if error.message.is_empty() {
            &error.error_type
        } else {
            &error.message
        }
    );
    let (code, kind, retry) = upstream_class(error);
    let reason = format!("{}_{kind}", vendor.to_ascii_uppercase());
    let metadata = upstream_metadata(error, &vendor);
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, bounded(metadata));
    if retry.is_some() {
        details.set_retry_info(retry);
    }
    if code == Code::InvalidArgument
        && let Some(param) = &error.param
    {
        let violation = FieldViolation::new(&caller_field(param), error.message.clone());
        add_violations(&mut details, &[violation]);
    }
    Status::with_error_details(code, clip(&message, MAX_MESSAGE_BYTES), details)
}

/// An upstream error's status code, the kind its reason names, and when to retry if it is worth
/// retrying.
fn upstream_class(error: &UpstreamError) -> (Code, &'static str, Option<Duration>) {
    let code = error.code.as_deref().unwrap_or_default();
    let soon = Some(Duration::from_secs(1));
    match (error.http_status, error.error_type.as_str()) {
        (_, "card_error") | (402, _) => (Code::FailedPrecondition, "CARD_ERROR", None),
        (_, "idempotency_error") => (Code::FailedPrecondition, "IDEMPOTENCY_ERROR", None),
        (401, _) => (Code::FailedPrecondition, "AUTHENTICATION_FAILED", None),
        (403, _) => (Code::PermissionDenied, "PERMISSION_DENIED", None),
        (404, _) => (Code::NotFound, "RESOURCE_MISSING", None),
        (409, _) => (Code::Aborted, "CONFLICT", None),
        (429, _) if code == "lock_timeout" => (Code::Aborted, "LOCK_TIMEOUT", soon),
        (429, _) => (Code::ResourceExhausted, "RATE_LIMITED", soon),
        (status_code, _) if status_code >= 500 => (Code::Unavailable, "API_ERROR", soon),
        (400, _) if code.ends_with("_unexpected_state") || code == "resource_already_exists" => {
            (Code::FailedPrecondition, "INVALID_STATE", None)
        }
        (400, _) => (Code::InvalidArgument, "INVALID_REQUEST", None),
        _ => (Code::FailedPrecondition, "ERROR", None),
    }
}

/// RESOURCE_EXHAUSTED with RetryInfo (when capacity frees) and QuotaFailure (which limit); or,
/// when the fleet's shared budget is unreachable and fails closed, UNAVAILABLE with RetryInfo.
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
    let mut details = ErrorDetails::with_error_info(reason, DOMAIN, bounded(metadata));
    details.set_retry_info(Some(throttled.retry_after));
    if throttled.reason == ThrottleReason::SharedBudgetUnavailable {
        return Status::with_error_details(Code::Unavailable, throttled.to_string(), details);
    }
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
        EngineError::Upstream(upstream) => upstream_error(upstream),
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
        EngineError::TooManyToSort { limit, .. } => status(
            Code::FailedPrecondition,
            "TOO_MANY_TO_SORT",
            error.to_string(),
            one("limit", &limit.to_string()),
        ),
        EngineError::NotReady(_) => status(
            Code::FailedPrecondition,
            "CONNECTION_NOT_READY",
            error.to_string(),
            HashMap::new(),
        ),
    }
}

/// Maps every events error.
pub fn events_error(error: &EventsError) -> Status {
    let one = |key: &str, value: &str| HashMap::from([(key.to_owned(), value.to_owned())]);
    match error {
        EventsError::NotFound(name) => status(
            Code::NotFound,
            "EVENT_SUBSCRIPTION_NOT_FOUND",
            error.to_string(),
            one("event_subscription", name),
        ),
        EventsError::AlreadyExists(name) => status(
            Code::AlreadyExists,
            "EVENT_SUBSCRIPTION_ALREADY_EXISTS",
            error.to_string(),
            one("event_subscription", name),
        ),
        EventsError::Invalid(problems) => {
            let violations: Vec<FieldViolation> = problems
                .iter()
                .map(|(field, description)| FieldViolation::new(field, description.clone()))
                .collect();
            invalid_argument(error.to_string(), &violations)
        }
        EventsError::BadResumeToken(why) => invalid_field("resume_token", *why),
        EventsError::NotAStream(name) | EventsError::NoDeadLetters(name) => status(
            Code::FailedPrecondition,
            "WRONG_DESTINATION",
            error.to_string(),
            one("event_subscription", name),
        ),
        EventsError::Store(_) => status(
            Code::Internal,
            "EVENT_STORE_FAILED",
            error.to_string(),
            HashMap::new(),
        ),
    }
}

/// Maps every refusal of a connection change: unknown or existing ids, broken rules (each a
/// field violation of `connection`), the read-only embedded connection, a failed write.
pub fn registry_error(error: &RegistryError) -> Status {
    let one = |value: &str| HashMap::from([("connection".to_owned(), value.to_owned())]);
    match error {
        RegistryError::NotFound(id) => status(
            Code::NotFound,
            "CONNECTION_NOT_FOUND",
            error.to_string(),
            one(id),
        ),
        RegistryError::AlreadyExists(id) => status(
            Code::AlreadyExists,
            "CONNECTION_ALREADY_EXISTS",
            error.to_string(),
            one(id),
        ),
        RegistryError::Invalid(violations) => invalid_connection(violations),
        RegistryError::ReadOnly(id) => status(
            Code::FailedPrecondition,
            "CONNECTION_READ_ONLY",
            error.to_string(),
            one(id),
        ),
        RegistryError::Store(_) => status(
            Code::Internal,
            "PERSISTENCE_FAILED",
            error.to_string(),
            HashMap::new(),
        ),
    }
}

/// INVALID_ARGUMENT with each broken rule of a connection as a field violation of
/// `connection.<field>`; the first rule's reason leads and every reason is listed in `reasons`.
fn invalid_connection(violations: &[FieldViolation]) -> Status {
    let reason = violations.first().map_or(INVALID_ARGUMENT, |v| v.reason);
    let reasons: Vec<&str> = violations.iter().map(|v| v.reason).collect();
    let fields: Vec<FieldViolation> = violations
        .iter()
        .map(|v| FieldViolation::new(&format!("connection.{}", v.field), v.description.clone()))
        .collect();
    let message = violations
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    bad_request(
        reason,
        HashMap::from([("reasons".to_owned(), reasons.join(","))]),
        format!("invalid connection: {message}"),
        &fields,
    )
}

/// Maps an authentication failure: UNAUTHENTICATED without a valid token, PERMISSION_DENIED for a
/// valid token with the wrong role.
pub fn auth_error(error: &AuthError) -> Status {
    match error {
        AuthError::MissingToken => status(
            Code::Unauthenticated,
            "MISSING_TOKEN",
            error.to_string(),
            HashMap::new(),
        ),
        AuthError::UnknownToken => status(
            Code::Unauthenticated,
            "INVALID_TOKEN",
            error.to_string(),
            HashMap::new(),
        ),
        AuthError::Forbidden { needs, .. } => status(
            Code::PermissionDenied,
            "ROLE_REQUIRED",
            error.to_string(),
            HashMap::from([(
                "required_role".to_owned(),
                format!("{needs:?}").to_lowercase(),
            )]),
        ),
    }
}

// Typed errors travel up to the handlers, which return them with `?`.

impl From<EngineError> for Status {
    fn from(error: EngineError) -> Self {
        engine_error(&error)
    }
}

impl From<EventsError> for Status {
    fn from(error: EventsError) -> Self {
        events_error(&error)
    }
}

impl From<RegistryError> for Status {
    fn from(error: RegistryError) -> Self {
        registry_error(&error)
    }
}

impl From<AuthError> for Status {
    fn from(error: AuthError) -> Self {
        auth_error(&error)
    }
}

impl From<PolicyRefusal> for Status {
    fn from(refusal: PolicyRefusal) -> Self {
        tool_refused(&refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stripe(http_status: u16, error_type: &str, code: Option<&str>) -> UpstreamError {
        UpstreamError {
            upstream: "Stripe".to_owned(),
            http_status,
            error_type: error_type.to_owned(),
            code: code.map(str::to_owned),
            message: "m".to_owned(),
            ..UpstreamError::default()
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
    fn reasons_and_metadata_keys_name_the_upstream_that_answered() {
        let stripe_missing = upstream_error(&UpstreamError {
            request_id: Some("req_1".to_owned()),
            ..stripe(404, "invalid_request_error", Some("resource_missing"))
        });
        assert_eq!(reason(&stripe_missing), "STRIPE_RESOURCE_MISSING");
        let metadata = stripe_missing
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .clone();
        assert_eq!(metadata["stripe_code"], "resource_missing");
        assert_eq!(metadata["stripe_request_id"], "req_1");

        let other = upstream_error(&UpstreamError {
            upstream: "Acme Billing".to_owned(),
            ..stripe(429, "rate_limit", Some("too_many"))
        });
        assert_eq!(reason(&other), "ACME_BILLING_RATE_LIMITED");
        let metadata = other
            .get_error_details()
            .error_info()
            .unwrap()
            .metadata
            .clone();
        assert_eq!(metadata["acme_billing_code"], "too_many");
        assert!(metadata.keys().all(|key| !key.starts_with("stripe")));

        let nameless = upstream_error(&UpstreamError {
            upstream: String::new(),
            ..stripe(500, "api_error", None)
        });
        assert_eq!(reason(&nameless), "UPSTREAM_API_ERROR");
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
            let status = upstream_error(&error);
            assert_eq!(status.code(), code, "{expected}");
            assert_eq!(reason(&status), expected);
        }
    }

    #[test]
    fn many_or_long_violations_are_capped_and_counted() {
        let violations: Vec<FieldViolation> = (0..500)
            .map(|i| FieldViolation::new(&format!("Field{i}{}", "é".repeat(400)), "x".repeat(5000)))
            .collect();
        let status = engine_error(&EngineError::InvalidInput(violations));
        assert!(status.message().len() <= MAX_MESSAGE_BYTES);
        assert!(status.message().ends_with('…'));
        let details = status.get_error_details();
        let listed = &details.bad_request().unwrap().field_violations;
        assert_eq!(listed.len(), MAX_VIOLATIONS + 1);
        assert_eq!(
            listed[MAX_VIOLATIONS].description,
            "and 492 more violations"
        );
        assert!(listed.iter().all(|v| v.field.len() <= MAX_FIELD_BYTES));
        assert!(listed.iter().all(|v| v.description.len() <= MAX_TEXT_BYTES));
        assert!(
            status.details().len() < 4 * 1024,
            "{}",
            status.details().len()
        );
    }

    #[test]
    fn names_stripe_params_the_way_callers_do() {
        let mut error = stripe(
            400,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
        );
        error.param = Some("payment_method_data[card][number]".to_owned());
        let status = upstream_error(&error);
        let details = status.get_error_details();
        let violations = &details.bad_request().unwrap().field_violations;
        assert_eq!(violations[0].field, "PaymentMethodData.card.number");
    }

    #[test]
    fn retryable_errors_carry_retry_info() {
        let status = upstream_error(&stripe(503, "api_error", None));
        assert!(status.get_error_details().retry_info().is_some());
    }
}
