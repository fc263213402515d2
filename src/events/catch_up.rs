//! Catch-up from the upstream event log: webhooks are neither guaranteed nor ordered, so at start
//! and then every `catch_up_interval` each connection with subscriptions reads the log
//! (`GET /v1/events`, created after its cursor minus `catch_up_overlap`, narrowed to the
//! subscribed types) through its node pool like any other call, and stores what it finds. Events
//! are keyed by id, so one seen both ways is stored once. Each pass also applies the retention.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::EventHub;
use super::store::NewEvent;
use crate::engine::ConnectionRuntime;
use crate::engine::EngineError;
use crate::registry::Registry;
use crate::spec::model::{ConnectorSpec, OperationKind, OperationSpec};
use crate::stripe::event::{self, EventSummary};
use crate::upstream::client::CallOptions;

/// Events asked for per page of the log.
const PAGE_SIZE: u64 = 100;

/// Most log pages one pass reads per connection.
const MAX_PAGES: usize = 1000;

/// Longest one log read may take, retries included.
const CALL_DEADLINE: Duration = Duration::from_secs(60);

/// Why a connection's catch-up failed.
#[derive(Debug, thiserror::Error)]
pub enum CatchUpError {
    #[error("the connector has no list operation for events")]
    NoEventLog,
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Events(#[from] super::EventsError),
    #[error("invalid event-log request: {0}")]
    Request(String),
}

/// The running catch-up task.
#[derive(Debug)]
pub struct CatchUp {
    task: JoinHandle<()>,
    requests: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl CatchUp {
    /// Runs a pass now, without waiting for the interval; returns once a pass that started after
    /// the call has finished.
    pub async fn run_now(&self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(done).is_ok() {
            let _ = finished.await;
        }
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

/// Starts the catch-up: a pass now, then one every `catch_up_interval` (or on [`CatchUp::run_now`]).
pub fn start(hub: Arc<EventHub>, registry: Arc<Registry>, spec: Arc<ConnectorSpec>) -> CatchUp {
    let (requests, mut asked) = mpsc::unbounded_channel::<oneshot::Sender<()>>();
    let task = tokio::spawn(async move {
        let interval = hub.settings().catch_up_interval;
        let mut waiting = Vec::new();
        loop {
            run_pass(&hub, &registry, &spec).await;
            for done in waiting.drain(..) {
                let _: Result<(), ()> = oneshot::Sender::send(done, ());
            }
            tokio::select! {
                () = tokio::time::sleep(interval) => {}
                Some(done) = asked.recv() => waiting.push(done),
            }
        }
    });
    CatchUp { task, requests }
}

/// One pass over every connection with subscriptions, then the retention.
pub async fn run_pass(hub: &EventHub, registry: &Registry, spec: &ConnectorSpec) {
    let mut connections = BTreeSet::new();
    for subscription in hub.list(None) {
        connections.insert(subscription.connection);
    }
    for connection in connections {
        match catch_up_connection(hub, registry, spec, &connection).await {
            Ok(0) => {}
            Ok(stored) => {
                tracing::info!(%connection, stored, "events: catch-up stored events the webhooks missed")
            }
            Err(error) => {
                tracing::warn!(%connection, %error, "events: catch-up failed; next pass retries")
            }
        }
    }
    let cutoff = unix_now() - hub.settings().retention.as_secs() as i64;
    match hub.store().purge_before(cutoff) {
        Ok(0) => {}
        Ok(purged) => tracing::info!(purged, "events: retention removed old events"),
        Err(error) => tracing::warn!(%error, "events: retention failed"),
    }
}

fn event_log(spec: &ConnectorSpec) -> Option<&OperationSpec> {
    spec.entities
        .iter()
        .find(|e| e.object == "event" && e.parents.is_empty())?
        .operations
        .get(OperationKind::List)
}

/// Reads one connection's log since its cursor; returns how many events were new.
pub async fn catch_up_connection(
    hub: &EventHub,
    registry: &Registry,
    spec: &ConnectorSpec,
    connection: &str,
) -> Result<usize, CatchUpError> {
    let op = event_log(spec).ok_or(CatchUpError::NoEventLog)?;
    let subscriptions = hub.list(Some(connection));
    let Some(earliest) = subscriptions.iter().map(|s| s.create_time).min() else {
        return Ok(0);
    };
    // Nothing older than what the earliest subscription can still want.
    let earliest = earliest - super::subscription::CLOCK_SKEW_SECS;
    let patterns: Vec<String> = subscriptions
        .iter()
        .flat_map(|s| s.event_types.iter().cloned())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let overlap = hub.settings().catch_up_overlap.as_secs() as i64;
    let since = match hub
        .store()
        .log_cursor(connection)
        .map_err(super::EventsError::from)?
    {
        Some(newest) => (newest - overlap).max(earliest - 1),
        None => earliest - 1,
    };
    let runtime = registry.runtime(connection)?;
    let found = read_log(&runtime, op, since, &patterns).await?;
    store_found(hub, connection, found).await
}

/// The log's events created after `since` of the subscribed types, oldest first, each with its
/// summary; objects that are not events are skipped.
async fn read_log(
    runtime: &ConnectionRuntime,
    op: &OperationSpec,
    since: i64,
    patterns: &[String],
) -> Result<Vec<(EventSummary, Map<String, Value>)>, CatchUpError> {
    let dialect = runtime.dialect();
    let mut found = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let mut inputs = event::log_query(since, patterns);
        let paged = dialect.page_inputs(op, &mut inputs, PAGE_SIZE, after.as_deref());
        let request = crate::engine::request::build(op, &inputs, &[]).map_err(|violations| {
            CatchUpError::Request(
                violations
                    .iter()
                    .map(|v| format!("{}: {}", v.field, v.description))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        let options = CallOptions {
            idempotency_key: None,
            deadline: Some(Instant::now() + CALL_DEADLINE),
        };
        let response = runtime.call(&request, &options).await?;
        let Value::Object(body) = response.json()? else {
            return Err(
                EngineError::BadResponse("the event list is not a JSON object".into()).into(),
            );
        };
        let page = dialect.list_page(body, after.as_deref());
        found.extend(page.items.into_iter().filter_map(|item| match item {
            Value::Object(object) => Some((event::summarize(&object).ok()?, object)),
            _ => None,
        }));
        match page.next {
            Some(next) if paged => after = Some(next),
            _ => break,
        }
    }
    // The log lists newest first; stored oldest first, subscribers see them in creation order.
    // Within one second only the log's own order tells which came first, so keep it (stable sort).
    found.reverse();
    found.sort_by_key(|(summary, _)| summary.created);
    Ok(found)
}

/// Stores the events read from the log and moves the connection's log cursor to the newest;
/// returns how many were new.
async fn store_found(
    hub: &EventHub,
    connection: &str,
    found: Vec<(EventSummary, Map<String, Value>)>,
) -> Result<usize, CatchUpError> {
    let newest = found.last().map(|(summary, _)| summary.created);
    let mut fresh = 0;
    for (summary, object) in found {
        let entity_name = match (&summary.object_type, &summary.object_id) {
            (Some(object_type), Some(id)) => hub.entity_name(connection, object_type, id),
            _ => None,
        };
        let inserted = hub
            .record(NewEvent {
                id: summary.id,
                connection: connection.to_owned(),
                event_type: summary.event_type,
                created: summary.created,
                entity_name,
                payload: Value::Object(object).to_string(),
                source: "event_log",
            })
            .await?;
        fresh += usize::from(inserted.fresh);
    }
    if let Some(newest) = newest {
        hub.store()
            .set_log_cursor(connection, newest)
            .map_err(super::EventsError::from)?;
    }
    Ok(fresh)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}
