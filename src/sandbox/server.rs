//! Serving the sandbox over HTTP/1.1: an accept loop on hyper (so a fault can close a connection
//! without answering), an axum router for `/_sandbox/*`, and the request pipeline for `/v1/*`:
//! auth → rate limit → faults before → route → parameters → idempotency → latency → execute →
//! faults after → slow response.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use base64::Engine as _;
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use rand::Rng;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::config::{SandboxConfig, SimulatedClock};
use super::error::ApiError;
use super::execute::{self, Call, Ctx};
use super::faults::{Fault, FaultInjector};
use super::form::{self, Declared, FormError};
use super::idempotency::{Begin, IdempotencyStore};
use super::rate_limit::RateLimiter;
use super::routes::{Matched, RouteTable, Target};
use super::store::Store;
use crate::spec::model::{ConnectorSpec, HttpMethod, OperationKind, OperationSpec, ParamLocation};

/// Largest request body accepted (Stripe's own limit is far below this).
const MAX_BODY: usize = 16 * 1024 * 1024;

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Request counters, by route template and status.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Stats {
    pub requests: u64,
    /// `"POST /v1/customers"` → `{"200": 3, "400": 1}`; `"dropped"` counts closed connections.
    pub by_route: BTreeMap<String, BTreeMap<String, u64>>,
    /// Injected faults by kind.
    pub faults: BTreeMap<String, u64>,
    /// Requests refused by the rate limiter.
    pub rate_limited: u64,
    pub idempotent_replays: u64,
}

/// Schemas of the parameters every list and search endpoint understands.
struct Builtins {
    integer: Value,
    string: Value,
    strings: Value,
    range: Value,
}

impl Builtins {
    fn new() -> Self {
        Self {
            integer: json!({"type": "integer"}),
            string: json!({"type": "string"}),
            strings: json!({"type": "array", "items": {"type": "string"}}),
            range: json!({"anyOf": [{"type": "object", "properties": {"gt": {"type": "integer"}, "gte": {"type": "integer"}, "lt": {"type": "integer"}, "lte": {"type": "integer"}}}, {"type": "integer"}]}),
        }
    }
}

/// The shared state of one running sandbox.
pub(crate) struct Sandbox {
    spec: Arc<ConnectorSpec>,
    routes: RouteTable,
    builtins: Builtins,
    pub store: Mutex<Store>,
    pub config: Mutex<SandboxConfig>,
    pub limiter: Mutex<RateLimiter>,
    pub faults: Mutex<FaultInjector>,
    pub idempotency: Mutex<IdempotencyStore>,
    pub stats: Mutex<Stats>,
    /// Ids of objects a write is working on; a concurrent write to one gets `lock_timeout`.
    locked: Mutex<HashSet<String>>,
    /// WebhookEndpoints' secrets and the deliveries of recorded events.
    pub webhooks: super::webhooks::Webhooks,
}

/// Holds an object's write lock until dropped.
struct ObjectLock {
    sandbox: Arc<Sandbox>,
    id: String,
}

impl ObjectLock {
    fn acquire(sandbox: &Arc<Sandbox>, id: &str) -> Option<Self> {
        lock(&sandbox.locked).insert(id.to_owned()).then(|| Self {
            sandbox: Arc::clone(sandbox),
            id: id.to_owned(),
        })
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        lock(&self.sandbox.locked).remove(&self.id);
    }
}

/// Closes the connection a request arrived on, without a response.
#[derive(Clone)]
struct ConnectionKill(Arc<Notify>);

/// The result of the pipeline, before it becomes a response.
struct Outcome {
    status: StatusCode,
    body: Bytes,
    label: String,
    replayed: bool,
    drop: bool,
    slow: Option<Duration>,
    fault: Option<Fault>,
    idempotency_key: Option<String>,
}

impl Outcome {
    fn error(error: &ApiError, label: &str) -> Self {
        Self {
            status: error.status,
            body: to_json_bytes(&error.body()),
            label: label.to_owned(),
            replayed: false,
            drop: false,
            slow: None,
            fault: None,
            idempotency_key: None,
        }
    }

    fn fault(fault: Fault, label: &str) -> Self {
        let error = match fault {
            Fault::ServerError | Fault::Drop => ApiError::server_error(),
            Fault::RateLimit => ApiError::rate_limited(),
            Fault::LockTimeout => ApiError::lock_timeout(),
        };
        let mut outcome = Self::error(&error, label);
        outcome.drop = fault == Fault::Drop;
        outcome.fault = Some(fault);
        outcome
    }
}

fn to_json_bytes(value: &Value) -> Bytes {
    Bytes::from(serde_json::to_vec_pretty(value).unwrap_or_else(|_| b"{}".to_vec()))
}

/// What an idempotency key allows.
enum Claim {
    /// First use: execute, then store the result.
    Fresh(Reservation),
    /// Replay this stored status and body.
    Replay(u16, Bytes),
}

/// Releases an idempotency reservation if the request ends before storing a result.
struct Reservation {
    sandbox: Arc<Sandbox>,
    api_key: String,
    key: String,
    finished: bool,
}

impl Reservation {
    fn finish(mut self, status: StatusCode, body: Bytes) {
        lock(&self.sandbox.idempotency).finish(&self.api_key, &self.key, status.as_u16(), body);
        self.finished = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.finished {
            lock(&self.sandbox.idempotency).abandon(&self.api_key, &self.key);
        }
    }
}

fn random_request_id() -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..14)
        .map(|_| char::from(CHARS[rng.random_range(0..CHARS.len())]))
        .collect();
    format!("req_{suffix}")
}

/// The API key from `Authorization` (Bearer, or Basic with the key as user). Only test-mode
/// secret and restricted keys pass; nothing of a rejected key is echoed beyond its kind.
fn authenticate(headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(value) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization \
             header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = if let Some(token) = value.strip_prefix("Bearer ") {
        token.trim().to_owned()
    } else if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&decoded).into_owned();
        text.split(':').next().unwrap_or_default().to_owned()
    } else {
        String::new()
    };
    if key.starts_with("sk_test_") || key.starts_with("rk_test_") {
        return Ok(key);
    }
    let kind = ["sk_live_", "rk_live_", "pk_test_", "pk_live_"]
        .into_iter()
        .find(|p| key.starts_with(p));
    Err(ApiError::unauthorized(match kind {
        Some(prefix) => format!(
            "Invalid API Key provided: {prefix}****. The sandbox accepts only test-mode secret keys (sk_test_...)."
        ),
        None => "Invalid API Key provided. The sandbox accepts only test-mode secret keys (sk_test_...).".to_owned(),
    }))
}

/// What a request brings besides its call: ids, the pinned API version, the sandbox's own URL.
struct RequestMeta<'a> {
    request_id: &'a str,
    idempotency_key: Option<&'a str>,
    search_delay: Duration,
    api_version: &'a str,
    base_url: &'a str,
    clock: Option<SimulatedClock>,
}

/// The `Stripe-Version` a request pins, when it looks like one (`2023-08-16`).
fn requested_api_version(headers: &HeaderMap) -> Option<&str> {
    let version = headers.get("stripe-version")?.to_str().ok()?.trim();
    let date = version.split('.').next().unwrap_or(version);
    let well_formed = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    well_formed.then_some(version)
}

/// `http://<Host>`: where the sandbox serves its hosted pages (invoices, receipts), as the
/// caller reached it.
fn own_base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes().all(|b| {
                    b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']')
                })
        })
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

fn http_method(method: &Method) -> Option<HttpMethod> {
    match *method {
        Method::GET => Some(HttpMethod::Get),
        Method::POST => Some(HttpMethod::Post),
        Method::DELETE => Some(HttpMethod::Delete),
        _ => None,
    }
}

fn form_error(error: FormError) -> ApiError {
    match &error {
        FormError::Unknown(param) => ApiError::parameter_unknown(param),
        _ => ApiError::invalid(error.to_string())
            .with_code(error.code())
            .with_param(error.param()),
    }
}

impl Sandbox {
    pub fn new(spec: Arc<ConnectorSpec>, config: SandboxConfig) -> Self {
        Self {
            routes: RouteTable::new(&spec),
            builtins: Builtins::new(),
            store: Mutex::new(Store::new()),
            limiter: Mutex::new(RateLimiter::new(config.effective_rate_limit())),
            faults: Mutex::new(FaultInjector::new(config.seed)),
            idempotency: Mutex::new(IdempotencyStore::default()),
            stats: Mutex::new(Stats::default()),
            locked: Mutex::new(HashSet::new()),
            webhooks: super::webhooks::Webhooks::new(config.seed),
            config: Mutex::new(config),
            spec,
        }
    }

    /// Replaces the configuration; a new seed restarts the fault sequence.
    pub fn reconfigure(&self, config: SandboxConfig) {
        let mut current = lock(&self.config);
        if current.effective_rate_limit() != config.effective_rate_limit() {
            lock(&self.limiter).set_rate(config.effective_rate_limit());
        }
        if current.seed != config.seed {
            *lock(&self.faults) = FaultInjector::new(config.seed);
        }
        *current = config;
    }

    /// Forgets every object, event, idempotency key and counter; restarts the seeded sequences.
    pub fn reset(&self) {
        let config = lock(&self.config).clone();
        *lock(&self.store) = Store::new();
        *lock(&self.faults) = FaultInjector::new(config.seed);
        lock(&self.limiter).set_rate(config.effective_rate_limit());
        lock(&self.idempotency).clear();
        *lock(&self.stats) = Stats::default();
        self.webhooks.reset(config.seed);
    }

    fn operation(&self, target: Target) -> Option<&OperationSpec> {
        match target {
            Target::Entity { entity, kind } => self.spec.entities.get(entity)?.operations.get(kind),
            Target::Action { action } => Some(&self.spec.actions.get(action)?.operation),
            Target::Search { .. } | Target::EventList | Target::EventGet => None,
        }
    }

    fn builtin(&self, target: Target, name: &str) -> Option<&Value> {
        let list = matches!(
            target,
            Target::Entity {
                kind: OperationKind::List,
                ..
            } | Target::EventList
        );
        let search = matches!(target, Target::Search { .. });
        match name {
            "expand" => Some(&self.builtins.strings),
            "limit" if list || search => Some(&self.builtins.integer),
            "starting_after" | "ending_before" if list => Some(&self.builtins.string),
            "query" | "page" if search => Some(&self.builtins.string),
            "created" if matches!(target, Target::EventList) => Some(&self.builtins.range),
            "type" if matches!(target, Target::EventList) => Some(&self.builtins.string),
            "types" if matches!(target, Target::EventList) => Some(&self.builtins.strings),
            _ => None,
        }
    }

    /// Decodes the query (and, for POST, the body) against the operation's declared parameters.
    fn parameters(
        &self,
        matched: &Matched,
        query: &str,
        body: &[u8],
    ) -> Result<Map<String, Value>, ApiError> {
        let operation = self.operation(matched.target);
        let declared = |name: &str| {
            let from_spec = operation.and_then(|op| {
                op.params
                    .iter()
                    .find(|p| p.source == name && p.location != ParamLocation::Path)
            });
            match (from_spec, self.builtin(matched.target, name)) {
                (Some(param), _) => Declared::Schema(&param.json_schema),
                (None, Some(schema)) => Declared::Schema(schema),
                (None, None) => Declared::Unknown,
            }
        };
        let mut params = form::decode(query.as_bytes(), declared).map_err(form_error)?;
        params.extend(form::decode(body, declared).map_err(form_error)?);
        if let Some(operation) = operation {
            for param in operation
                .params
                .iter()
                .filter(|p| p.required && p.location != ParamLocation::Path)
            {
                if params.get(&param.source).is_none_or(Value::is_null) {
                    return Err(ApiError::parameter_missing(&param.source));
                }
            }
        }
        Ok(params)
    }

    /// Claims an idempotency key: a fresh reservation, a stored response to replay, or Stripe's
    /// error for a key in use or used with other parameters.
    fn claim(
        self: &Arc<Self>,
        api_key: &str,
        key: &str,
        fingerprint: &str,
    ) -> Result<Claim, ApiError> {
        if key.len() > 255 {
            return Err(
                ApiError::invalid("Idempotency keys can be at most 255 characters long.")
                    .with_param("Idempotency-Key"),
            );
        }
        match lock(&self.idempotency).begin(api_key, key, fingerprint) {
            Begin::Proceed => Ok(Claim::Fresh(Reservation {
                sandbox: Arc::clone(self),
                api_key: api_key.to_owned(),
                key: key.to_owned(),
                finished: false,
            })),
            Begin::Replay { status, body } => Ok(Claim::Replay(status, body)),
            Begin::InUse => Err(ApiError::idempotency_in_use()),
            Begin::Mismatch => Err(ApiError::idempotency_mismatch(key)),
        }
    }

    /// Executes a decoded call under the state lock; the JSON answer and its status.
    fn run(&self, call: &Call, request: &RequestMeta<'_>) -> (StatusCode, Bytes) {
        let faults = lock(&self.config).webhooks.clone();
        let mut store = lock(&self.store);
        let mark = super::webhooks::Webhooks::mark(&store);
        let mut ctx = Ctx {
            spec: &self.spec,
            store: &mut store,
            request_id: request.request_id,
            idempotency_key: request.idempotency_key,
            search_delay: request.search_delay,
            api_version: request.api_version,
            base_url: request.base_url,
            clock: request.clock,
        };
        match execute::execute(&mut ctx, call) {
            Ok(mut value) => {
                let spec = &self.spec;
                let (mark, faults) = (mark.as_deref(), &faults);
                self.webhooks
                    .after_call(spec, &mut store, call, &mut value, mark, faults);
                (StatusCode::OK, to_json_bytes(&value))
            }
            Err(error) => (error.status, to_json_bytes(&error.body())),
        }
    }

    async fn process(self: &Arc<Self>, request: Request, request_id: &str) -> Outcome {
        let (parts, body) = request.into_parts();
        let path = parts.uri.path().to_owned();
        let unrecognized = format!("{} (unrecognized)", parts.method);
        let api_key = match self.admit(&parts.headers) {
            Ok(key) => key,
            Err(error) => return Outcome::error(&error, &unrecognized),
        };
        let config = lock(&self.config).clone();
        let plan = lock(&self.faults).plan(&config.faults);
        let Some((method, matched)) = self.route(&parts.method, &path) else {
            return Outcome::error(
                &ApiError::unrecognized_url(parts.method.as_str(), &path),
                &unrecognized,
            );
        };
        let label = format!("{} {}", parts.method, matched.template);
        if let Some(fault) = plan.before {
            return Outcome::fault(fault, &label);
        }
        let params = match self.read_params(&matched, parts.uri.query(), body).await {
            Ok(params) => params,
            Err(error) => return Outcome::error(&error, &label),
        };
        let idempotency_key = idempotency_key(&parts.headers, method);
        let claim = match &idempotency_key {
            Some(key) => {
                let fingerprint =
                    format!("{} {path} {}", parts.method, Value::Object(params.clone()));
                match self.claim(&api_key, key, &fingerprint) {
                    Ok(claim) => Some(claim),
                    Err(error) => return Outcome::error(&error, &label),
                }
            }
            None => None,
        };
        let replaying = matches!(claim, Some(Claim::Replay(..)));
        let _object_lock = match self.lock_object(replaying, method, &matched) {
            Ok(held) => held,
            Err(error) => return Outcome::error(&error, &label),
        };
        if !plan.latency.is_zero() {
            tokio::time::sleep(plan.latency).await;
        }
        let call = Call {
            matched,
            path,
            params,
        };
        let meta = RequestMeta {
            request_id,
            idempotency_key: idempotency_key.as_deref(),
            search_delay: config.search_delay,
            api_version: requested_api_version(&parts.headers)
                .unwrap_or(&self.spec.connector.api_version),
            base_url: &own_base_url(&parts.headers),
            clock: config.clock,
        };
        let (status, body, replayed) = self.answer(claim, &call, &meta);
        if let Some(fault) = plan.after {
            let mut outcome = Outcome::fault(fault, &label);
            outcome.idempotency_key = idempotency_key;
            return outcome;
        }
        Outcome {
            status,
            body,
            label,
            replayed,
            drop: false,
            slow: plan.slow,
            fault: None,
            idempotency_key,
        }
    }

    /// The stored answer of a replayed idempotency key, or the call run now (its answer stored
    /// under a fresh key); whether it was a replay.
    fn answer(
        &self,
        claim: Option<Claim>,
        call: &Call,
        meta: &RequestMeta,
    ) -> (StatusCode, Bytes, bool) {
        match claim {
            Some(Claim::Replay(status, body)) => {
                lock(&self.stats).idempotent_replays += 1;
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                (status, body, true)
            }
            fresh => {
                let (status, body) = self.run(call, meta);
                if let Some(Claim::Fresh(reservation)) = fresh {
                    reservation.finish(status, body.clone());
                }
                (status, body, false)
            }
        }
    }

    /// Writes to one object are serialised as in Stripe: a write arriving while another is still
    /// working on the object (only possible with added latency) gets `lock_timeout`. A replayed
    /// answer touches nothing and takes no lock.
    fn lock_object(
        self: &Arc<Self>,
        replaying: bool,
        method: HttpMethod,
        matched: &Matched,
    ) -> Result<Option<ObjectLock>, ApiError> {
        let object_id = matched.params.last().map(|(_, id)| id.as_str());
        match (replaying, method, object_id) {
            (false, HttpMethod::Post | HttpMethod::Delete, Some(id)) => {
                ObjectLock::acquire(self, id)
                    .map(Some)
                    .ok_or_else(ApiError::lock_timeout)
            }
            _ => Ok(None),
        }
    }

    /// The caller's API key, if it is valid and within the rate limit.
    fn admit(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        let api_key = authenticate(headers)?;
        if lock(&self.limiter).check(&api_key, Instant::now()).is_err() {
            lock(&self.stats).rate_limited += 1;
            return Err(ApiError::rate_limited());
        }
        Ok(api_key)
    }

    /// The route a method and path name, if any.
    fn route(&self, method: &Method, path: &str) -> Option<(HttpMethod, Matched)> {
        let method = http_method(method)?;
        Some((method, self.routes.find(method, path)?))
    }

    /// The request's parameters, from its query and its form body.
    async fn read_params(
        &self,
        matched: &Matched,
        query: Option<&str>,
        body: Body,
    ) -> Result<Map<String, Value>, ApiError> {
        let body = to_bytes(body, MAX_BODY)
            .await
            .map_err(|_| ApiError::invalid("The request body could not be read."))?;
        self.parameters(matched, query.unwrap_or_default(), &body)
    }
}

/// A POST's `Idempotency-Key`, when given and not empty.
fn idempotency_key(headers: &HeaderMap, method: HttpMethod) -> Option<String> {
    if method != HttpMethod::Post {
        return None;
    }
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .filter(|key| !key.is_empty())
        .map(str::to_owned)
}

/// `/v1/*`: the Stripe API.
async fn handle_api(State(sandbox): State<Arc<Sandbox>>, request: Request) -> Response {
    let request_id = random_request_id();
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let api_version = requested_api_version(request.headers())
        .unwrap_or(&sandbox.spec.connector.api_version)
        .to_owned();
    let outcome = sandbox.process(request, &request_id).await;
    {
        let mut stats = lock(&sandbox.stats);
        stats.requests += 1;
        let status = if outcome.drop {
            "dropped".to_owned()
        } else {
            outcome.status.as_u16().to_string()
        };
        *stats
            .by_route
            .entry(outcome.label.clone())
            .or_default()
            .entry(status)
            .or_default() += 1;
        if let Some(fault) = outcome.fault {
            let name = serde_json::to_value(fault)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            *stats.faults.entry(name).or_default() += 1;
        }
        if outcome.slow.is_some() {
            *stats.faults.entry("slow".into()).or_default() += 1;
        }
    }
    if outcome.drop
        && let Some(ConnectionKill(notify)) = kill
    {
        notify.notify_one();
        std::future::pending::<()>().await;
    }
    if let Some(delay) = outcome.slow {
        tokio::time::sleep(delay).await;
    }
    let mut response = Response::new(Body::from(outcome.body));
    *response.status_mut() = outcome.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("request-id", value);
    }
    if let Ok(value) = HeaderValue::from_str(&api_version) {
        headers.insert("stripe-version", value);
    }
    if let Some(key) = outcome
        .idempotency_key
        .as_deref()
        .and_then(|k| HeaderValue::from_str(k).ok())
    {
        headers.insert("idempotency-key", key);
    }
    if outcome.replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

pub(crate) fn router(sandbox: Arc<Sandbox>) -> Router {
    super::admin::routes()
        .merge(super::pages::routes())
        .fallback(handle_api)
        .with_state(sandbox)
}

/// Accepts connections until `shutdown` fires (or its sender is dropped); then closes them all.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                Err(error) => {
                    tracing::warn!(%error, "sandbox: accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

async fn serve_connection(stream: tokio::net::TcpStream, router: Router) {
    let kill = Arc::new(Notify::new());
    let handle = ConnectionKill(Arc::clone(&kill));
    let service =
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(handle.clone());
            router.clone().oneshot(request.map(Body::new))
        });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        result = connection => {
            if let Err(error) = result {
                tracing::debug!(%error, "sandbox: connection ended with an error");
            }
        }
        // Dropping the connection closes the socket without a response.
        _ = kill.notified() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn only_well_formed_api_versions_are_taken_from_requests() {
        let pinned = headers(&[("stripe-version", "2022-11-15")]);
        assert_eq!(requested_api_version(&pinned), Some("2022-11-15"));
        let named = headers(&[("stripe-version", "2024-09-30.acacia")]);
        assert_eq!(requested_api_version(&named), Some("2024-09-30.acacia"));
        let junk = headers(&[("stripe-version", "latest")]);
        assert_eq!(requested_api_version(&junk), None);
        assert_eq!(requested_api_version(&HeaderMap::new()), None);
    }

    #[test]
    fn hosted_page_urls_use_a_plausible_host_only() {
        assert_eq!(
            own_base_url(&headers(&[("host", "127.0.0.1:12111")])),
            "http://127.0.0.1:12111"
        );
        assert_eq!(
            own_base_url(&headers(&[("host", "evil.example/<script>")])),
            "http://127.0.0.1"
        );
    }
}
