//! The upstream HTTP client: one pooled reqwest client per connection's settings, the headers its
//! dialect adds, deadlines, and retries with exponential backoff and full jitter.
//!
//! Secrets (the API key, proxy passwords) live here only as `Redacted` values and in request
//! headers; they never reach a log line or an error.

use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use http::HeaderValue;
use rand::Rng;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;
use zeroize::Zeroizing;

use super::dialect::{Credentials, Dialect};
use super::error::UpstreamError;
use super::form;
use super::retry::{self, Decision};
use super::transport::{self, Transport};
use crate::connections::model::LogLevel;
use crate::engine::error::EngineError;
use crate::engine::request::UpstreamRequest;
use crate::spec::model::HttpMethod;

/// A secret string whose Debug and Display never show the value, wiped from memory on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Redacted(Zeroizing<String>);

impl Redacted {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Zeroizing::new(value.into()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&crate::secrets::Secret> for Redacted {
    fn from(secret: &crate::secrets::Secret) -> Self {
        Self::new(secret.expose())
    }
}

/// A header value carrying a secret (`prefix` + `secret`, e.g. `Bearer sk_…`), marked sensitive
/// so the HTTP stack never logs it; the text it is made from is wiped as soon as the header holds
/// it. `None` when the secret holds characters a header cannot carry (refused when the client is
/// built, see [`UpstreamClient::new`]).
pub fn secret_header_value(prefix: &str, secret: &str) -> Option<HeaderValue> {
    let text = Zeroizing::new(format!("{prefix}{secret}"));
    let mut value = HeaderValue::from_str(&text).ok()?;
    value.set_sensitive(true);
    Some(value)
}

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Proxy settings with the password already resolved.
#[derive(Debug, Clone)]
pub struct ProxyOptions {
    /// `http://host:port` or `https://host:port` (TLS to the proxy).
    pub url: String,
    pub basic_auth: Option<(String, Redacted)>,
}

/// How to reach the upstream and how hard to try.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub base_url: String,
    pub api_key: Redacted,
    /// The account acted on, for upstreams where one key reaches several (sent by the dialect).
    pub account_id: Option<String>,
    /// The API version the connector spec describes (sent by dialects that pin one).
    pub api_version: String,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_cap: Duration,
    pub proxy: Option<ProxyOptions>,
    /// Extra CA certificate (PEM) trusted besides the system's roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// 1–5: how much of each exchange is logged (secrets always redacted).
    pub verbosity: u8,
    /// The connection's log level: lines below it are not emitted.
    pub log_level: LogLevel,
    /// The connection's id, carried by every log line.
    pub connection: String,
}

/// Per-call options.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Sent in the dialect's idempotency header on POST, the same on every retry of this call.
    pub idempotency_key: Option<String>,
    /// The caller's deadline; no attempt or backoff runs past it.
    pub deadline: Option<Instant>,
}

/// A successful (2xx) upstream answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: u16,
    /// The body as received: JSON text, or empty (a 204). Read it with [`Self::json`] or decode
    /// it straight into another type.
    pub body: bytes::Bytes,
    pub request_id: Option<String>,
    /// The upstream replayed a stored response for the idempotency key.
    pub replayed: bool,
    /// Attempts made (1 = no retry).
    pub attempts: u32,
}

impl UpstreamResponse {
    /// The body as JSON; an empty body (204 No Content to a DELETE) is `null`, not a bad one.
    pub fn json(&self) -> Result<Value, EngineError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&self.body).map_err(|e| self.not_json(&e))
    }

    /// The error for a body that does not parse as what was expected.
    pub fn not_json(&self, error: &serde_json::Error) -> EngineError {
        EngineError::BadResponse(format!("HTTP {} body is not JSON: {error}", self.status))
    }
}

/// Installs rustls' ring provider once per process (reqwest is built without a default provider).
pub fn ensure_crypto_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Err means another provider was installed first, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The client of one connection.
#[derive(Debug, Clone)]
pub struct UpstreamClient {
    transport: Transport,
    /// `base_url` parsed once; a request's URL is this with its path appended.
    base: reqwest::Url,
    /// The headers every request carries, built once: the dialect's authorising ones (from the
    /// key; secret values sensitive) and the User-Agent.
    headers: http::HeaderMap,
    options: ClientOptions,
    dialect: Arc<dyn Dialect>,
}

/// Error building a client from its options.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error("invalid proxy settings: {0}")]
    Proxy(String),
    #[error("invalid extra CA certificate: {0}")]
    Certificate(String),
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
    #[error("the API key holds characters an HTTP header cannot carry")]
    ApiKey,
    #[error("invalid base URL: {0}")]
    BaseUrl(String),
}

impl UpstreamClient {
    /// A client speaking `dialect` (the connector spec's) to the upstream.
    pub fn new(
        options: ClientOptions,
        dialect: Arc<dyn Dialect>,
    ) -> Result<Self, ClientBuildError> {
        ensure_crypto_provider();
        let base = reqwest::Url::parse(&options.base_url)
            .ok()
            .filter(|url| !url.cannot_be_a_base())
            .ok_or_else(|| ClientBuildError::BaseUrl(options.base_url.clone()))?;
        let transport = Transport::new(&options)?;
        let mut headers = dialect
            .auth_headers(&Credentials {
                api_key: options.api_key.expose(),
                account_id: options.account_id.as_deref(),
                api_version: &options.api_version,
            })
            .ok_or(ClientBuildError::ApiKey)?;
        headers.insert(
            http::header::USER_AGENT,
            HeaderValue::from_static(transport::USER_AGENT),
        );
        Ok(Self {
            transport,
            base,
            headers,
            options,
            dialect,
        })
    }

    /// The upstream's rules this client follows.
    pub fn dialect(&self) -> &dyn Dialect {
        self.dialect.as_ref()
    }

    /// True when the connection's log level lets lines of `level` through.
    pub fn logs(&self, level: LogLevel) -> bool {
        fn rank(level: LogLevel) -> u8 {
            match level {
                LogLevel::Error => 0,
                LogLevel::Warning => 1,
                LogLevel::Info => 2,
                LogLevel::Debug => 3,
            }
        }
        rank(level) <= rank(self.options.log_level)
    }

    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Sends the request, retrying what is safe to retry within the deadline.
    pub async fn send(
        &self,
        request: &UpstreamRequest,
        call: &CallOptions,
    ) -> Result<UpstreamResponse, EngineError> {
        let is_post = request.method == HttpMethod::Post;
        // A POST is only ever retried with an Idempotency-Key.
        let may_retry = !is_post || call.idempotency_key.is_some();
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            let timeout = self.attempt_timeout(request, call, attempt)?;
            let result = self.observed_attempt(request, call, timeout, attempt).await;
            let (decision, error) = match result {
                Ok(Attempt::Success(mut response)) => {
                    response.attempts = attempt;
                    return Ok(response);
                }
                Ok(Attempt::Failure { error, decision }) => {
                    (decision, EngineError::Upstream(Box::new(error)))
                }
                // Wrong proxy credentials do not get better by trying again.
                Err(error @ EngineError::ProxyAuthentication(_)) => return Err(error),
                Err(error) => (retry::decide(retry::Outcome::Transport), error),
            };
            let Decision::Retry { at_least } = decision else {
                return Err(error);
            };
            if !may_retry || attempt > self.options.max_retries {
                return Err(error);
            }
            let unit: f64 = rand::rng().random();
            let wait = retry::backoff(
                attempt - 1,
                self.options.backoff_base,
                self.options.backoff_cap,
                at_least,
                unit,
            );
            if let Some(deadline) = call.deadline
                && Instant::now() + wait >= deadline
            {
                return Err(error);
            }
            self.note_retry(request, attempt, wait, &error);
            tokio::time::sleep(wait).await;
        }
    }

    /// How long attempt number `attempt` may take: the request timeout, or less when the call's
    /// deadline is nearer; an error once the deadline has passed.
    fn attempt_timeout(
        &self,
        request: &UpstreamRequest,
        call: &CallOptions,
        attempt: u32,
    ) -> Result<Duration, EngineError> {
        let Some(deadline) = call.deadline else {
            return Ok(self.options.request_timeout);
        };
        let now = Instant::now();
        if now >= deadline {
            return Err(EngineError::DeadlineExceeded(format!(
                "{} {} not completed before the deadline ({} attempts)",
                method_name(request.method),
                request.operation_id,
                attempt - 1
            )));
        }
        Ok((deadline - now).min(self.options.request_timeout))
    }

    /// A retry in the log (as the connection's verbosity asks), the metrics and the call's span.
    fn note_retry(
        &self,
        request: &UpstreamRequest,
        attempt: u32,
        wait: Duration,
        error: &EngineError,
    ) {
        if self.options.verbosity >= 2 && self.logs(LogLevel::Warning) {
            tracing::warn!(
                connection = %self.options.connection,
                operation = %request.operation_id,
                attempt,
                wait_ms = wait.as_millis() as u64,
                error = %error,
                "retrying upstream call"
            );
        }
        crate::telemetry::record_retry(&self.options.connection);
        tracing::debug!(target: crate::telemetry::SPAN_EVENTS, attempt, wait_ms = wait.as_secs_f64() * 1e3, "retrying");
    }

    /// One attempt inside its `upstream` span (method, path template — never ids —, status,
    /// the upstream's request id, attempt number), recorded in the upstream metrics.
    async fn observed_attempt(
        &self,
        request: &UpstreamRequest,
        call: &CallOptions,
        timeout: Duration,
        attempt: u32,
    ) -> Result<Attempt, EngineError> {
        let method = method_name(request.method);
        let span = if !crate::telemetry::call_traced() {
            tracing::Span::none()
        } else {
            tracing::info_span!(
                "upstream",
                otel.name = %format_args!("{method} {}", request.path_template),
                otel.kind = "client",
                otel.status_code = tracing::field::Empty,
                http.request.method = method,
                url.template = %request.path_template,
                connector.operation = %request.operation_id,
                attempt = i64::from(attempt),
                http.response.status_code = tracing::field::Empty,
                stripe.request_id = tracing::field::Empty,
                error.type = tracing::field::Empty,
            )
        };
        let started = Instant::now();
        let result = self
            .attempt(request, call, timeout)
            .instrument(span.clone())
            .await;
        let (status, request_id) = match &result {
            Ok(Attempt::Success(response)) => {
                (Some(response.status), response.request_id.as_deref())
            }
            Ok(Attempt::Failure { error, .. }) => {
                (Some(error.http_status), error.request_id.as_deref())
            }
            Err(_) => (None, None),
        };
        match status {
            Some(code) => span.record("http.response.status_code", i64::from(code)),
            None => span.record("error.type", "transport"),
        };
        if let Some(id) = request_id {
            span.record("stripe.request_id", id);
        }
        if status.is_none_or(|code| code >= 400) {
            span.record("otel.status_code", "ERROR");
        }
        crate::telemetry::record_upstream(
            &self.options.connection,
            method,
            status,
            started.elapsed(),
        );
        result
    }

    async fn attempt(
        &self,
        request: &UpstreamRequest,
        call: &CallOptions,
        timeout: Duration,
    ) -> Result<Attempt, EngineError> {
        self.log_request(request);
        let answer = self
            .transport
            .send(self.request(request, call)?, timeout)
            .await?;
        let status = answer.status.as_u16();
        let meta = self.dialect.response_meta(&answer.headers);
        let request_id = meta.request_id;
        let decision =
            (!(200..300).contains(&status)).then(|| self.dialect.classify(status, &answer.headers));
        let bytes = answer.body;
        if self.options.verbosity >= 5 && self.logs(LogLevel::Debug) {
            tracing::debug!(connection = %self.options.connection, status, request_id = ?request_id, body = %redact_body(&bytes), "upstream response detail");
        }
        if self.options.proxy.is_some() && self.dialect.answered_by_proxy(status, &bytes) {
            // Forwarded through the proxy, and the proxy itself answered, not the upstream.
            return Err(EngineError::ProxyAuthentication(format!(
                "HTTP {status} from the proxy"
            )));
        }
        match decision {
            None => Ok(Attempt::Success(UpstreamResponse {
                status,
                body: bytes,
                request_id,
                replayed: meta.replayed,
                attempts: 1,
            })),
            Some(decision) => Ok(Attempt::Failure {
                error: self.dialect.error(status, &bytes, request_id),
                decision,
            }),
        }
    }

    /// The HTTP request: the base URL with the request's path and query, the dialect's
    /// authorising headers, a POST's body (JSON or form, always with a content type) and its
    /// idempotency key.
    fn request(
        &self,
        request: &UpstreamRequest,
        call: &CallOptions,
    ) -> Result<http::Request<Bytes>, EngineError> {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}{}",
            self.base.path().trim_end_matches('/'),
            request.path
        ));
        if !request.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&request.query);
        }
        let method = match request.method {
            HttpMethod::Get => http::Method::GET,
            HttpMethod::Post => http::Method::POST,
            HttpMethod::Delete => http::Method::DELETE,
        };
        let mut headers = self.headers.clone();
        let body = if request.method == HttpMethod::Post {
            if let (Some(key), Some(idempotency)) =
                (&call.idempotency_key, self.dialect.idempotency())
            {
                let value = HeaderValue::from_str(key).map_err(|_| {
                    EngineError::invalid("request_id", "cannot be sent in an HTTP header")
                })?;
                headers.insert(idempotency.header, value);
            }
            // Always send a content type, even with an empty body: strict servers reject none.
            let (content_type, body) = match &request.json {
                Some(object) => (
                    "application/json",
                    Bytes::from(serde_json::to_vec(object).unwrap_or_default()),
                ),
                None => (
                    "application/x-www-form-urlencoded",
                    Bytes::from(form::encode(&request.form)),
                ),
            };
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
            body
        } else {
            Bytes::new()
        };
        let mut built = http::Request::new(body);
        *built.method_mut() = method;
        *built.uri_mut() = http::Uri::try_from(String::from(url))
            .map_err(|e| EngineError::invalid("name", format!("not a request URL: {e}")))?;
        *built.headers_mut() = headers;
        Ok(built)
    }

    /// Logs the request as the connection's verbosity and log level ask (secrets redacted).
    fn log_request(&self, request: &UpstreamRequest) {
        if self.options.verbosity >= 3 && self.logs(LogLevel::Info) {
            tracing::info!(
                connection = %self.options.connection,
                operation = %request.operation_id,
                method = method_name(request.method),
                path = %request.path,
                "upstream request"
            );
        }
        if self.options.verbosity >= 5 && self.logs(LogLevel::Debug) {
            tracing::debug!(
                connection = %self.options.connection,
                operation = %request.operation_id,
                query = %redact_pairs(&request.query),
                form = %redact_pairs(&request.form),
                json = %request.json.as_ref().map_or_else(String::new, redact_object),
                "upstream request detail"
            );
        }
    }
}

enum Attempt {
    Success(UpstreamResponse),
    Failure {
        error: UpstreamError,
        /// Whether the dialect says it is worth trying again.
        decision: Decision,
    },
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "GET",
        HttpMethod::Post => "POST",
        HttpMethod::Delete => "DELETE",
    }
}

/// Names whose values are never logged, in form pairs or JSON bodies.
const SENSITIVE: [&str; 8] = [
    "number",
    "cvc",
    "client_secret",
    "password",
    "secret",
    "token",
    "exp_month",
    "exp_year",
];

fn is_sensitive(key: &str) -> bool {
    let leaf = key
        .rsplit(['[', '.'])
        .next()
        .unwrap_or(key)
        .trim_end_matches(']');
    SENSITIVE
        .iter()
        .any(|s| leaf.eq_ignore_ascii_case(s) || leaf.ends_with("_secret"))
}

/// Form pairs for logs, with sensitive values replaced.
pub fn redact_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            if is_sensitive(k) {
                format!("{k}=[redacted]")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn redact_value(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if is_sensitive(key) && !inner.is_null() {
                    *inner = Value::String("[redacted]".to_owned());
                } else {
                    redact_value(inner);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_value),
        _ => {}
    }
}

/// A JSON request body for logs, with sensitive values replaced.
pub fn redact_object(object: &serde_json::Map<String, Value>) -> String {
    let mut value = Value::Object(object.clone());
    redact_value(&mut value);
    value.to_string()
}

/// A response body for logs, with sensitive values replaced.
pub fn redact_body(bytes: &[u8]) -> String {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(mut value) => {
            redact_value(&mut value);
            value.to_string()
        }
        Err(_) => format!("<{} bytes, not JSON>", bytes.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_card_numbers_and_client_secrets() {
        let pairs = vec![
            ("card[number]".to_owned(), "4242424242424242".to_owned()),
            ("card[cvc]".to_owned(), "123".to_owned()),
            ("amount".to_owned(), "100".to_owned()),
        ];
        let text = redact_pairs(&pairs);
        assert!(
            !text.contains("4242424242424242") && !text.contains("=123"),
            "{text}"
        );
        assert!(text.contains("amount=100"));
        let body = redact_body(br#"{"id":"pi_1","client_secret":"pi_1_secret_abc","nested":{"webhook_secret":"whsec_x"}}"#);
        assert!(
            !body.contains("pi_1_secret_abc") && !body.contains("whsec_x"),
            "{body}"
        );
    }

    #[test]
    fn redacted_values_do_not_print() {
        let key = Redacted::new("sk_test_very_secret");
        assert_eq!(format!("{key:?}"), "[redacted]");
    }

    #[test]
    fn the_authorization_header_is_sensitive_and_does_not_print() {
        let header = secret_header_value("Bearer ", "sk_test_very_secret").unwrap();
        assert!(header.is_sensitive());
        assert_eq!(header.as_bytes(), b"Bearer sk_test_very_secret");
        assert!(!format!("{header:?}").contains("sk_test"));
        assert!(secret_header_value("Bearer ", "sk_test_\n").is_none());
    }
}
