//! ExportEntities: every entity matching a clause, read fast. The `Created` range is split into
//! partitions, each read newest first on Stripe's cursor, several at once; every upstream call
//! still goes through the connection's node pool and Stripe budget (`ConnectionRuntime::call`),
//! so throttling governs the pace. Entities flow through a bounded channel as they arrive, so
//! memory stays flat whatever the size; progress events are interleaved. When the receiver is
//! dropped (the client cancelled) every read stops: the workers are aborted.
//!
//! Planning costs one round of parallel calls: the newest entity bounds the range from above,
//! and probes `created[lt] = newest - 2^k` (k = 0..32) find the oldest within a factor of two.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::conditions::{self, Condition};
use super::{
    ConnectionRuntime, Engine, EngineError, EntityRecord, ListPlan, OperationKind, object_of,
    plan_list, request, require_list_params,
};
use crate::spec::model::{EntitySpec, OperationSpec, ParamLocation};
use crate::upstream::client::CallOptions;

/// Partitions read at once when the caller does not say.
pub const DEFAULT_PARALLELISM: usize = 16;
/// Most partitions read at once.
pub const MAX_PARALLELISM: usize = 64;
/// Partitions planned per parallel reader, so uneven ranges still keep every reader busy.
const PARTITIONS_PER_READER: usize = 4;
/// Entities buffered between the readers and the caller.
const CHANNEL_CAPACITY: usize = 256;
/// How often a progress event is sent besides one per finished partition.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);
/// Stripe's largest page.
const PAGE_LIMIT: u64 = 100;
/// Look-back probes of the planner: `newest - 2^k` seconds for k below this.
const PROBES: u32 = 32;

/// One `Created` range, read newest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    pub index: i32,
    /// Inclusive bounds, Unix seconds.
    pub created_gte: i64,
    pub created_lte: i64,
    /// The last id already delivered from this partition (resuming).
    pub starting_after: Option<String>,
}

/// What ExportEntities is asked.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    pub conditions: String,
    /// Partitions read at once; 0 means DEFAULT_PARALLELISM.
    pub max_parallelism: usize,
    /// Unfinished partitions of an interrupted export; empty plans a new one.
    pub resume: Vec<Partition>,
}

/// Progress of an export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    pub entities: u64,
    pub partitions_done: usize,
    pub partitions_total: usize,
    /// Partitions finished since the previous progress event.
    pub finished: Vec<i32>,
}

/// One event of an export's stream.
#[derive(Debug)]
pub enum ExportEvent {
    Plan(Vec<Partition>),
    Entity {
        record: Box<EntityRecord>,
        partition: i32,
    },
    Progress(Progress),
}

type Events = mpsc::Sender<Result<ExportEvent, EngineError>>;

/// A running export: its events, and the task reading upstream, which ends soon after the
/// events are dropped.
#[derive(Debug)]
pub struct Export {
    pub events: mpsc::Receiver<Result<ExportEvent, EngineError>>,
    pub task: tokio::task::JoinHandle<()>,
}

/// What every reader of one export shares.
struct Job {
    conn: Arc<ConnectionRuntime>,
    entity: EntitySpec,
    op: OperationSpec,
    plan: ListPlan,
    condition: Option<Condition>,
    /// The `created` list parameter accepts ranges: partitions are possible.
    ranged: bool,
    entities: AtomicU64,
}

impl Engine {
    /// Starts an export; the receiver yields the plan first, then entities and progress.
    /// Everything about the request is checked before this returns.
    pub fn export(
        &self,
        conn: Arc<ConnectionRuntime>,
        entity_name: &str,
        request: ExportRequest,
    ) -> Result<Export, EngineError> {
        let entity = self.entity(entity_name)?.clone();
        let op = Self::operation(&entity, OperationKind::List)?.clone();
        let condition = conditions::parse(&request.conditions)
            .map_err(|e| EngineError::invalid("conditions", e.to_string()))?;
        let plan = plan_list(&entity, &op, condition.as_ref())?;
        require_list_params(&entity, &op, &plan.inputs)?;
        if request.resume.iter().any(|p| p.created_gte > p.created_lte) {
            return Err(EngineError::invalid(
                "resume",
                "a partition's created_gte is after its created_lte",
            ));
        }
        let ranged = op
            .param_by_source(ParamLocation::Query, "created")
            .is_some_and(|p| super::input_check::accepts_range(&p.json_schema));
        let parallelism = match request.max_parallelism {
            0 => DEFAULT_PARALLELISM,
            n => n.min(MAX_PARALLELISM),
        };
        let job = Arc::new(Job {
            conn,
            entity,
            op,
            plan,
            condition,
            ranged,
            entities: AtomicU64::new(0),
        });
        let (tx, events) = mpsc::channel(CHANNEL_CAPACITY);
        let task = tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = run(job, parallelism, request.resume, tx.clone()) => outcome,
                () = tx.closed() => Ok(()),
            };
            if let Err(error) = outcome {
                let _ = tx.send(Err(error)).await;
            }
        });
        Ok(Export { events, task })
    }
}

/// Plans (unless resuming), then reads the partitions `parallelism` at a time.
async fn run(
    job: Arc<Job>,
    parallelism: usize,
    resume: Vec<Partition>,
    tx: Events,
) -> Result<(), EngineError> {
    let partitions = if resume.is_empty() {
        plan_partitions(&job, parallelism).await?
    } else {
        resume
    };
    let total = partitions.len();
    if tx
        .send(Ok(ExportEvent::Plan(partitions.clone())))
        .await
        .is_err()
    {
        return Ok(());
    }
    let mut queue = partitions.into_iter();
    let mut readers = JoinSet::new();
    for partition in queue.by_ref().take(parallelism) {
        readers.spawn(read_partition(job.clone(), partition, tx.clone()));
    }
    let mut progress = Progress {
        partitions_total: total,
        ..Progress::default()
    };
    let mut ticker = tokio::time::interval(PROGRESS_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            joined = readers.join_next() => {
                let Some(joined) = joined else { break };
                let index = joined
                    .map_err(|e| EngineError::BadResponse(format!("an export reader failed: {e}")))??;
                progress.partitions_done += 1;
                progress.finished.push(index);
                if let Some(partition) = queue.next() {
                    readers.spawn(read_partition(job.clone(), partition, tx.clone()));
                }
                if !send_progress(&job, &mut progress, &tx).await {
                    return Ok(());
                }
            }
            _ = ticker.tick() => {
                if !send_progress(&job, &mut progress, &tx).await {
                    return Ok(());
                }
            }
        }
    }
    Ok(())
}

async fn send_progress(job: &Job, progress: &mut Progress, tx: &Events) -> bool {
    progress.entities = job.entities.load(Ordering::Relaxed);
    let event = ExportEvent::Progress(progress.clone());
    progress.finished.clear();
    tx.send(Ok(event)).await.is_ok()
}

impl Job {
    /// One upstream list call of `limit` rows in `[gte, lte]` (when given) after `cursor`.
    async fn read(
        &self,
        range: Option<(i64, i64)>,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<(Vec<EntityRecord>, bool), EngineError> {
        let mut inputs = self.plan.inputs.clone();
        let dialect = self.conn.dialect();
        dialect.page_inputs(&self.op, &mut inputs, limit, cursor);
        if let Some((gte, lte)) = range {
            inputs.insert(
                "created".to_owned(),
                narrowed(inputs.get("created"), gte, lte),
            );
        }
        let request = request::build(
            &self.op,
            &inputs,
            &self
                .op
                .path_values(&self.entity, &self.plan.parent_ids, None),
        )
        .map_err(EngineError::InvalidInput)?;
        let response = self.conn.call(&request, &CallOptions::default()).await?;
        let request_id = response.request_id.clone();
        let (body, _) = object_of(response)?;
        let page = dialect.list_page(body, cursor);
        let records = page
            .items
            .into_iter()
            .filter_map(|item| match item {
                Value::Object(object) => Some(Engine::record(
                    &self.entity,
                    self.plan.parent_ids.clone(),
                    object,
                    request_id.clone(),
                )),
                _ => None,
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, page.next.is_some()))
    }

    /// The `created` of the newest entity with `created < before` (all, without a bound).
    async fn newest_created(&self, before: Option<i64>) -> Result<Option<i64>, EngineError> {
        let range = before.map(|b| (i64::MIN, b.saturating_sub(1)));
        let (records, _) = self.read(range, 1, None).await?;
        let created = self
            .entity
            .fields
            .iter()
            .find(|f| f.source == "created")
            .map_or("Created", |f| f.name.as_str());
        Ok(records
            .first()
            .and_then(|r| r.fields.get(created))
            .and_then(Value::as_i64))
    }
}

/// The clause's own `created` range (from tier 1), intersected with `[gte, lte]`.
fn narrowed(clause: Option<&Value>, gte: i64, lte: i64) -> Value {
    let (mut low, mut high) = (gte, lte);
    if let Some(Value::Object(range)) = clause {
        let bound = |key: &str| range.get(key).and_then(Value::as_i64);
        if let Some(v) = bound("gte") {
            low = low.max(v);
        }
        if let Some(v) = bound("gt") {
            low = low.max(v.saturating_add(1));
        }
        if let Some(v) = bound("lte") {
            high = high.min(v);
        }
        if let Some(v) = bound("lt") {
            high = high.min(v.saturating_sub(1));
        }
    }
    let mut range = Map::new();
    if low > i64::MIN {
        range.insert("gte".to_owned(), Value::from(low));
    }
    range.insert("lte".to_owned(), Value::from(high));
    Value::Object(range)
}

/// Splits `[oldest, newest]` into `readers * PARTITIONS_PER_READER` equal ranges (one partition
/// when the list has no `created` range or nothing matches).
async fn plan_partitions(job: &Job, readers: usize) -> Result<Vec<Partition>, EngineError> {
    let whole = || {
        vec![Partition {
            index: 0,
            created_gte: 0,
            created_lte: i64::MAX,
            starting_after: None,
        }]
    };
    if !job.ranged {
        return Ok(whole());
    }
    let Some(newest) = job.newest_created(None).await? else {
        return Ok(whole());
    };
    // One round of probes, in parallel: is anything older than newest - 2^k?
    let probes = (0..PROBES).map(|k| async move {
        let found = job
            .newest_created(Some(newest.saturating_sub(1i64 << k)))
            .await;
        found.map(|f| f.map(|_| k))
    });
    let mut deepest: Option<u32> = None;
    for found in futures::future::join_all(probes).await {
        if let Some(k) = found? {
            deepest = Some(deepest.map_or(k, |d| d.max(k)));
        }
    }
    let oldest = match deepest {
        None => newest,
        Some(k) if k + 1 >= PROBES => 0,
        Some(k) => newest.saturating_sub(1i64 << (k + 1)),
    };
    let count = (readers * PARTITIONS_PER_READER) as i64;
    let span = newest - oldest + 1;
    let width = (span + count - 1) / count;
    let mut partitions = Vec::new();
    let mut high = newest;
    // Newest first, like Stripe's order; the last range reaches down to 0, so nothing older
    // than the probes found is lost.
    while high >= oldest {
        let low = (high - width + 1).max(oldest);
        partitions.push(Partition {
            index: partitions.len() as i32,
            created_gte: if low == oldest { 0 } else { low },
            created_lte: if partitions.is_empty() {
                i64::MAX
            } else {
                high
            },
            starting_after: None,
        });
        high = low - 1;
    }
    Ok(partitions)
}

/// Reads one partition to its end, sending every matching entity; returns its index.
async fn read_partition(
    job: Arc<Job>,
    partition: Partition,
    tx: Events,
) -> Result<i32, EngineError> {
    let range = job
        .ranged
        .then_some((partition.created_gte, partition.created_lte));
    let mut cursor = partition.starting_after.clone();
    loop {
        let (records, has_more) = job.read(range, PAGE_LIMIT, cursor.as_deref()).await?;
        cursor = records.last().map(|r| r.id.id.clone());
        for record in records {
            if job
                .condition
                .as_ref()
                .is_none_or(|c| c.matches(&record.fields))
            {
                job.entities.fetch_add(1, Ordering::Relaxed);
                let event = ExportEvent::Entity {
                    record: Box::new(record),
                    partition: partition.index,
                };
                if tx.send(Ok(event)).await.is_err() {
                    return Ok(partition.index);
                }
            }
        }
        if !has_more || cursor.is_none() {
            return Ok(partition.index);
        }
    }
}
