//! The gRPC call layer: one span per call (connection, entity type or action, operation, gRPC
//! status, error reason), the caller's W3C `traceparent` honoured, and the call's metrics recorded
//! when the response leaves. Handlers name the connection with [`note_connection`] once it is
//! known to exist, so metric labels only ever hold real connection ids.

use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::time::Instant;
use tonic_types::StatusExt;
use tower::{Layer, Service};
use tracing::Instrument;
use tracing::field::Empty;

use super::metrics::record_call;
use super::otel;

/// gRPC status code names, by number.
const CODES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Throttle reasons counted by `connector_throttled_calls_total`.
const THROTTLE_REASONS: [&str; 2] = ["NODE_CAPACITY", "STRIPE_RATE_BUDGET"];

/// The number of a gRPC status code name.
pub fn code_number(name: &str) -> Option<u8> {
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| u8::try_from(i).ok())
}

fn code_name(number: i32) -> &'static str {
    usize::try_from(number)
        .ok()
        .and_then(|i| CODES.get(i))
        .copied()
        .unwrap_or("UNKNOWN")
}

/// Codes that mean the server failed (OpenTelemetry's rule for gRPC server spans).
fn is_server_error(code: i32) -> bool {
    matches!(code, 2 | 4 | 12 | 13 | 14 | 15)
}

#[derive(Debug, Default)]
struct CallNote {
    connection: OnceLock<String>,
    /// Whether the call's spans are exported.
    sampled: bool,
    /// Whether the call has spans at all: exported, or shown as context of log lines.
    traced: bool,
}

tokio::task_local! {
    static CALL: Arc<CallNote>;
}

/// Names the connection the current call uses (call it once the connection is known to exist).
pub fn note_connection(id: &str) {
    let _ = CALL.try_with(|note| note.connection.set(id.to_owned()));
    tracing::Span::current().record("connection", id);
}

/// Whether the current task serves a call whose spans are exported; `None` outside calls.
pub(super) fn current_call_sampled() -> Option<bool> {
    CALL.try_with(|note| note.sampled).ok()
}

/// Whether spans inside the current call are wanted (exported or giving log lines their
/// context); true outside calls. A call that is neither sampled nor logged builds no span.
pub fn call_traced() -> bool {
    CALL.try_with(|note| note.traced).unwrap_or(true)
}

/// Names the entity type the current call works on.
pub fn note_entity_type(name: &str) {
    tracing::Span::current().record("entity_type", name);
}

/// Names the action the current call runs.
pub fn note_action(name: &str) {
    tracing::Span::current().record("action", name);
}

/// The trace id of a valid W3C `traceparent` (`00-<trace id>-<span id>-<flags>`).
pub fn traceparent_trace_id(value: &str) -> Option<&str> {
    traceparent(value).map(|(trace, _)| trace)
}

/// `(trace id, flags)` of a valid W3C `traceparent`.
fn traceparent(value: &str) -> Option<(&str, &str)> {
    let mut parts = value.trim().split('-');
    let (version, trace, span, flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len: usize| {
        s.len() == len
            && s.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    };
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(span, 16)
        && span.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then_some((trace, flags))
}

/// `(service, method)` of a gRPC path; unknown services get `unknown` so labels stay bounded.
fn operation(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    let (service, method) = trimmed.split_once('/').unwrap_or((trimmed, ""));
    let known = service.starts_with("connectors.v1.") || service.starts_with("grpc.");
    let plain = !method.is_empty()
        && method.len() <= 64
        && method.bytes().all(|b| b.is_ascii_alphanumeric());
    if known && plain {
        (service, method)
    } else {
        ("unknown", "unknown")
    }
}

/// Wraps every gRPC call (put it outside authentication so refused calls count too).
#[derive(Debug, Clone, Default)]
pub struct CallLayer;

impl<S> Layer<S> for CallLayer {
    type Service = CallService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CallService { inner }
    }
}

/// See [`CallLayer`].
#[derive(Debug, Clone)]
pub struct CallService<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for CallService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let (service, method) = operation(request.uri().path());
        let (service, method) = (service.to_owned(), method.to_owned());
        let (span, sampled, traced) = call_span(request.headers(), &service, &method);
        let note = Arc::new(CallNote {
            sampled,
            traced,
            ..CallNote::default()
        });
        let inner = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let watched = Arc::clone(&note);
        let finished_span = span.clone();
        Box::pin(
            CALL.scope(
                note,
                async move {
                    let result = inner.await;
                    let (code, reason) = match &result {
                        Ok(response) => outcome(response.headers()),
                        Err(_) => (2, None),
                    };
                    finished(&finished_span, code, reason.as_deref());
                    let throttle = reason
                        .as_deref()
                        .filter(|r| code == 8 && THROTTLE_REASONS.contains(r));
                    let connection = watched.connection.get().map_or("", String::as_str);
                    record_call(
                        connection,
                        &method,
                        code_name(code),
                        throttle,
                        start.elapsed(),
                    );
                    result
                }
                .instrument(span),
            ),
        )
    }
}

/// The call's span and whether it is sampled (exported) and traced (exported, or context of log
/// lines). The caller's W3C trace context is read once: its trace id for log lines, its flags for
/// sampling. An untraced call gets no span at all.
fn call_span(
    headers: &http::HeaderMap,
    service: &str,
    method: &str,
) -> (tracing::Span, bool, bool) {
    let parent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(traceparent);
    let sampled =
        otel::sample_call(parent.and_then(|(_, flags)| u8::from_str_radix(flags, 16).ok()));
    let traced = sampled || super::logs_show_calls();
    let span = if !traced {
        tracing::Span::none()
    } else {
        otel::starting_call(sampled, || {
            tracing::info_span!(
                "grpc.call",
                otel.name = %format_args!("{service}/{method}"),
                otel.kind = "server",
                otel.status_code = Empty,
                rpc.system = "grpc",
                rpc.service = %service,
                rpc.method = %method,
                rpc.grpc.status_code = Empty,
                connection = Empty,
                entity_type = Empty,
                action = Empty,
                error.reason = Empty,
                trace_id = Empty,
            )
        })
    };
    let exported_trace = if sampled {
        otel::adopt_parent(&span, headers)
    } else {
        None
    };
    let trace_id = exported_trace.or_else(|| parent.map(|(trace, _)| trace.to_owned()));
    if let Some(id) = &trace_id {
        span.record("trace_id", id.as_str());
    }
    (span, sampled, traced)
}

/// Records the call's gRPC status and error reason on its span.
fn finished(span: &tracing::Span, code: i32, reason: Option<&str>) {
    span.record("rpc.grpc.status_code", i64::from(code));
    if let Some(reason) = reason {
        span.record("error.reason", reason);
    }
    if is_server_error(code) {
        span.record("otel.status_code", "ERROR");
    }
}

/// The gRPC status code of a response (absent from the headers means it is in the trailers: a
/// unary call that succeeded), and the `ErrorInfo.reason` of an error.
fn outcome(headers: &http::HeaderMap) -> (i32, Option<String>) {
    let code = headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(0);
    if code == 0 {
        return (0, None);
    }
    let reason = tonic::Status::from_header_map(headers)
        .and_then(|status| status.get_details_error_info())
        .map(|info| info.reason);
    (code, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_trace_id_of_a_valid_traceparent_only() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            traceparent_trace_id(&format!("00-{id}-00f067aa0ba902b7-01")),
            Some(id)
        );
        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f35-00f067aa0ba902b7-01",
            "garbage",
        ] {
            assert_eq!(traceparent_trace_id(bad), None, "{bad}");
        }
    }

    #[test]
    fn labels_only_known_services_with_plain_method_names() {
        assert_eq!(
            operation("/connectors.v1.EntityService/GetEntity"),
            ("connectors.v1.EntityService", "GetEntity")
        );
        assert_eq!(operation("/evil.Service/Anything"), ("unknown", "unknown"));
        assert_eq!(
            operation("/connectors.v1.EntityService/Get%20it"),
            ("unknown", "unknown")
        );
        assert_eq!(code_number("RESOURCE_EXHAUSTED"), Some(8));
        assert_eq!(code_name(16), "UNAUTHENTICATED");
        assert_eq!(code_name(99), "UNKNOWN");
    }
}
