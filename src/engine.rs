//! The generic connector engine: executes the connector spec's entity operations and actions
//! against the upstream, one admitted transaction per upstream request.
//!
//! It knows nothing of gRPC (that is `api`) and nothing of any vendor: the spec says what the
//! entities and operations are, and the connection's dialect (`upstream::dialect`) the rest —
//! how lists are paged, what a deleted object looks like, how writes are made idempotent.

pub mod clause_check;
pub mod conditions;
pub mod error;
pub mod export;
pub mod input_check;
pub mod paging;
pub mod request;
pub mod result;
pub mod sorting;
pub mod tier;

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::spec::model::{
    ActionSpec, ConnectorSpec, EntitySpec, OperationKind, OperationSpec, ParamLocation,
};
use crate::throttle::{AccountBudget, NodePool};
use crate::upstream::client::{CallOptions, UpstreamClient, UpstreamResponse};
use crate::upstream::dialect::{Dialect, Paging};
use conditions::{Condition, Op};
pub use error::{EngineError, FieldViolation};
use paging::PageToken;
use request::UpstreamRequest;
pub use result::FieldValue;
use sorting::Sort;
use tier::{Consistency, Read, Tier};

/// Default and maximum page sizes of ListEntities (Google's: 25 and 200).
pub const DEFAULT_PAGE_SIZE: usize = 25;
pub const MAX_PAGE_SIZE: usize = 200;
/// Upstream pages one ListEntities call may read while filtering, before returning what it has.
const MAX_UPSTREAM_PAGES_PER_CALL: usize = 10;
/// Most entities the *WithConditions methods will touch in one call.
pub const MAX_CONDITIONAL_ENTITIES: usize = 1000;

/// An entity id: the parent ids of nested types, then the entity's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityId {
    pub parents: Vec<String>,
    pub id: String,
}

impl EntityId {
    /// Parses `cus_1/txi_2` for a type with one parent, `cus_1` for a top-level type.
    pub fn parse(entity: &EntitySpec, text: &str) -> Result<Self, EngineError> {
        let parts: Vec<&str> = text.split('/').collect();
        if parts.iter().any(|p| p.is_empty()) || parts.len() != entity.parents.len() + 1 {
            let shape = entity
                .parents
                .iter()
                .map(|p| format!("{{{}}}", p.field))
                .chain(std::iter::once("{Id}".to_owned()))
                .collect::<Vec<_>>()
                .join("/");
            return Err(EngineError::invalid(
                "name",
                format!("entity id of {} must look like {shape}", entity.name),
            ));
        }
        let (id, parents) = parts
            .split_last()
            .map(|(id, rest)| (*id, rest))
            .unwrap_or(("", &[]));
        Ok(Self {
            parents: parents.iter().map(|s| (*s).to_owned()).collect(),
            id: id.to_owned(),
        })
    }
}

impl std::fmt::Display for EntityId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for parent in &self.parents {
            write!(f, "{parent}/")?;
        }
        f.write_str(&self.id)
    }
}

/// One entity as the engine returns it.
#[derive(Debug, Clone)]
pub struct EntityRecord {
    pub id: EntityId,
    /// PascalCase fields with native JSON values.
    pub fields: Map<String, Value>,
    /// The upstream's request id of the call that produced it.
    pub request_id: Option<String>,
}

/// One entity from [`Engine::get_decoded`]: its fields decoded as the caller's value type.
#[derive(Debug, Clone)]
pub struct DecodedRecord<V> {
    pub id: EntityId,
    /// Fields by name (the names [`EntityRecord`] has).
    pub fields: std::collections::BTreeMap<String, V>,
    /// The upstream's request id of the call that produced it.
    pub request_id: Option<String>,
}

/// A page of ListEntities.
#[derive(Debug, Clone)]
pub struct EntityPage {
    pub entities: Vec<EntityRecord>,
    pub next_page_token: Option<String>,
}

/// ListEntities' inputs.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page_size: i32,
    pub page_token: String,
    pub conditions: String,
    pub sort_by: Vec<String>,
    pub sort_order: Vec<String>,
    /// Whether the upstream's eventually consistent search (Stripe's Search) may serve the list.
    pub consistency: Consistency,
    /// Forces one read tier (tests and benchmarks compare them); `None` lets the engine choose.
    pub tier: Option<Tier>,
}

/// A connection as the engine uses it: its upstream client, node pool and account rate budget.
#[derive(Debug)]
pub struct ConnectionRuntime {
    pub id: String,
    pub client: UpstreamClient,
    pub pool: Arc<NodePool>,
    pub budget: Arc<AccountBudget>,
    /// The loopback adapter in front of a Digest-authenticating proxy, kept alive with the client.
    pub proxy_adapter: Option<Arc<crate::upstream::proxy_tunnel::TunnelAdapter>>,
}

impl ConnectionRuntime {
    /// One transaction: a node admits it, then the account's rate budget, then it is sent.
    pub async fn call(
        &self,
        request: &UpstreamRequest,
        options: &CallOptions,
    ) -> Result<UpstreamResponse, EngineError> {
        let admission = self
            .pool
            .admit_with_budget(&self.budget, options.deadline)
            .await
            .inspect_err(throttled_event)?;
        if !admission.waited.is_zero() {
            tracing::debug!(target: crate::telemetry::SPAN_EVENTS, connection = %self.id, waited_ms = admission.waited.as_secs_f64() * 1e3, node = admission.node, "queued");
        }
        let sent = tokio::time::Instant::now();
        let result = self.client.send(request, options).await;
        self.pool.record_service_time(sent.elapsed());
        if let Err(error) = &result {
            // The upstream's 4xx answers (declines, bad ids) are the caller's business: a warning. The
            // rest means the upstream or the path to it failed, after retries: an error.
            let caller_side = matches!(error, EngineError::Upstream(e) if e.http_status < 500 && e.http_status != 429);
            if caller_side {
                if self
                    .client
                    .logs(crate::connections::model::LogLevel::Warning)
                {
                    tracing::warn!(connection = %self.id, operation = %request.operation_id, %error, "upstream call refused");
                }
            } else {
                tracing::error!(connection = %self.id, operation = %request.operation_id, %error, "upstream call failed");
            }
        }
        result
    }

    /// The upstream's rules, from the connector spec.
    pub fn dialect(&self) -> &dyn Dialect {
        self.client.dialect()
    }

    /// Builds a request from the caller's inputs; the dialect explains the parameters it
    /// withholds on purpose.
    fn request(
        &self,
        op: &OperationSpec,
        inputs: &Map<String, Value>,
        path_values: &[(&str, &str)],
    ) -> Result<UpstreamRequest, EngineError> {
        request::build(op, inputs, path_values).map_err(|mut violations| {
            for violation in &mut violations {
                if violation.description == request::UNKNOWN_PARAMETER
                    && let Some(reason) =
                        self.dialect().withheld(&op.operation_id, &violation.field)
                {
                    reason.clone_into(&mut violation.description);
                }
            }
            EngineError::InvalidInput(violations)
        })
    }

    /// The idempotency key of a write: the caller's request id under the connection's id, or a
    /// fresh one; `None` when the upstream has no idempotency keys.
    fn idempotency_key(&self, request_id: Option<&str>) -> Result<Option<String>, EngineError> {
        let Some(idempotency) = self.dialect().idempotency() else {
            return Ok(None);
        };
        let connection = &self.id;
        match request_id.filter(|r| !r.is_empty()) {
            Some(rid) => {
                let key = format!("{connection}:{rid}");
                if key.len() > idempotency.max_key_len || !rid.chars().all(|c| c.is_ascii_graphic())
                {
                    return Err(EngineError::invalid(
                        "request_id",
                        format!(
                            "must be printable ASCII of at most {} characters",
                            idempotency.max_key_len.saturating_sub(connection.len() + 1)
                        ),
                    ));
                }
                Ok(Some(key))
            }
            None => Ok(Some(uuid::Uuid::new_v4().to_string())),
        }
    }
}

/// The span event of a refused transaction (the call's span carries the reason as well).
fn throttled_event(throttled: &crate::throttle::Throttled) {
    tracing::debug!(
        target: crate::telemetry::SPAN_EVENTS,
        reason = throttled.reason.as_str(),
        cause = %throttled.cause,
        retry_after_ms = throttled.retry_after.as_secs_f64() * 1e3,
        "throttled"
    );
}

/// Executes a connector spec.
#[derive(Debug, Clone)]
pub struct Engine {
    spec: Arc<ConnectorSpec>,
    /// Where each entity type and action sits in the spec, by name: every call looks one up.
    names: Arc<NameIndex>,
}

#[derive(Debug)]
struct NameIndex {
    entities: HashMap<String, usize>,
    actions: HashMap<String, usize>,
}

impl NameIndex {
    /// The first of any repeated name wins, as a search in spec order would find it.
    fn of<'a>(names: impl Iterator<Item = &'a String>) -> HashMap<String, usize> {
        let mut index = HashMap::new();
        for (position, name) in names.enumerate() {
            index.entry(name.clone()).or_insert(position);
        }
        index
    }
}

fn object_of(
    response: UpstreamResponse,
) -> Result<(Map<String, Value>, Option<String>), EngineError> {
    match response.json()? {
        Value::Object(map) => Ok((map, response.request_id)),
        other => Err(EngineError::BadResponse(format!(
            "expected a JSON object, got {other}"
        ))),
    }
}

impl Engine {
    pub fn new(spec: Arc<ConnectorSpec>) -> Self {
        let names = Arc::new(NameIndex {
            entities: NameIndex::of(spec.entities.iter().map(|e| &e.name)),
            actions: NameIndex::of(spec.actions.iter().map(|a| &a.name)),
        });
        Self { spec, names }
    }

    pub fn spec(&self) -> &ConnectorSpec {
        &self.spec
    }

    pub fn entity(&self, name: &str) -> Result<&EntitySpec, EngineError> {
        self.names
            .entities
            .get(name)
            .map(|&position| &self.spec.entities[position])
            .ok_or_else(|| EngineError::EntityTypeNotFound(name.to_owned()))
    }

    pub fn action(&self, name: &str) -> Result<&ActionSpec, EngineError> {
        self.names
            .actions
            .get(name)
            .map(|&position| &self.spec.actions[position])
            .ok_or_else(|| EngineError::ActionNotFound(name.to_owned()))
    }

    fn operation(entity: &EntitySpec, kind: OperationKind) -> Result<&OperationSpec, EngineError> {
        entity
            .operations
            .get(kind)
            .ok_or_else(|| EngineError::OperationNotSupported {
                entity: entity.name.clone(),
                operation: kind,
            })
    }

    fn record(
        entity: &EntitySpec,
        parents: Vec<String>,
        object: Map<String, Value>,
        request_id: Option<String>,
    ) -> Result<EntityRecord, EngineError> {
        let id = object
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| Self::without_id(entity))?
            .to_owned();
        let mut fields = result::entity_fields(entity, object);
        for (field, parent) in Self::parent_fields(entity, &parents) {
            fields.entry(field).or_insert_with(|| Value::String(parent));
        }
        Ok(EntityRecord {
            id: EntityId { parents, id },
            fields,
            request_id,
        })
    }

    pub async fn get(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        id: &str,
        deadline: Option<Instant>,
    ) -> Result<EntityRecord, EngineError> {
        let entity = self.entity(entity_name)?;
        let id = EntityId::parse(entity, id)?;
        let (object, request_id) = object_of(Self::fetch(conn, entity, &id, deadline).await?)?;
        let stub = conn.dialect().deleted_stub_field();
        if stub.is_some_and(|field| object.get(field) == Some(&Value::Bool(true))) {
            return Err(Self::deleted(conn, entity, &id, request_id));
        }
        Self::record(entity, id.parents, object, request_id)
    }

    /// [`Engine::get`] with the fields decoded as `V` straight from the upstream's JSON text,
    /// for a caller that hands the entity on in another representation: no JSON tree is built.
    pub async fn get_decoded<V: FieldValue>(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        id: &str,
        deadline: Option<Instant>,
    ) -> Result<DecodedRecord<V>, EngineError> {
        let entity = self.entity(entity_name)?;
        let id = EntityId::parse(entity, id)?;
        let response = Self::fetch(conn, entity, &id, deadline).await?;
        let decoded = result::decode_entity_fields::<V>(
            entity,
            &response.body,
            conn.dialect().deleted_stub_field(),
        )
        .map_err(|e| response.not_json(&e))?;
        if decoded.stub {
            return Err(Self::deleted(conn, entity, &id, response.request_id));
        }
        // As in [`Engine::record`]: the id is the one the upstream answered with.
        let own_id = decoded.id.ok_or_else(|| Self::without_id(entity))?;
        let mut fields = decoded.fields;
        for (field, parent) in Self::parent_fields(entity, &id.parents) {
            fields.entry(field).or_insert_with(|| V::string(parent));
        }
        Ok(DecodedRecord {
            id: EntityId {
                parents: id.parents,
                id: own_id,
            },
            fields,
            request_id: response.request_id,
        })
    }

    /// The ids of an entity's parents, from its path, under their field names (a line item's
    /// invoice id as `Invoice`): a record carries them when its object does not.
    fn parent_fields<'a>(
        entity: &'a EntitySpec,
        parents: &'a [String],
    ) -> impl Iterator<Item = (String, String)> + 'a {
        entity
            .parents
            .iter()
            .zip(parents)
            .map(|(parent, id)| (parent.field.clone(), id.clone()))
    }

    fn without_id(entity: &EntitySpec) -> EngineError {
        EngineError::BadResponse(format!("{} object without an id", entity.name))
    }

    /// The upstream's answer to an entity's Get operation.
    async fn fetch(
        conn: &ConnectionRuntime,
        entity: &EntitySpec,
        id: &EntityId,
        deadline: Option<Instant>,
    ) -> Result<UpstreamResponse, EngineError> {
        let op = Self::operation(entity, OperationKind::Get)?;
        let request = conn.request(
            op,
            &Map::new(),
            &op.path_values(entity, &id.parents, Some(&id.id)),
        )?;
        conn.call(
            &request,
            &CallOptions {
                idempotency_key: None,
                deadline,
            },
        )
        .await
    }

    /// Some upstreams answer a deleted object with a stub; for a connector it no longer exists.
    fn deleted(
        conn: &ConnectionRuntime,
        entity: &EntitySpec,
        id: &EntityId,
        request_id: Option<String>,
    ) -> EngineError {
        let what = format!("{} {}", entity.name, id);
        EngineError::Upstream(Box::new(conn.dialect().deleted_error(&what, request_id)))
    }

    pub async fn create(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        fields: Map<String, Value>,
        request_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<EntityRecord, EngineError> {
        let entity = self.entity(entity_name)?;
        let op = Self::operation(entity, OperationKind::Create)?;
        let parents: Vec<String> = entity
            .parents
            .iter()
            .map(|p| {
                fields
                    .get(&p.field)
                    .or_else(|| fields.get(&p.param))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        EngineError::invalid(
                            &p.field,
                            format!("is required to create a {}", entity.name),
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        let request = conn.request(op, &fields, &[])?;
        let options = CallOptions {
            idempotency_key: conn.idempotency_key(request_id)?,
            deadline,
        };
        let (object, request_id) = object_of(conn.call(&request, &options).await?)?;
        Self::record(entity, parents, object, request_id)
    }

    pub async fn update(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        id: &str,
        fields: Map<String, Value>,
        request_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<EntityRecord, EngineError> {
        let entity = self.entity(entity_name)?;
        let op = Self::operation(entity, OperationKind::Update)?;
        let id = EntityId::parse(entity, id)?;
        // Key fields name the entity; they are not changes.
        let changes: Map<String, Value> = fields
            .into_iter()
            .filter(|(k, _)| {
                !(k == "Id"
                    || k == "id"
                    || entity
                        .parents
                        .iter()
                        .any(|p| &p.field == k || &p.param == k))
            })
            .collect();
        let request = conn.request(
            op,
            &changes,
            &op.path_values(entity, &id.parents, Some(&id.id)),
        )?;
        let options = CallOptions {
            idempotency_key: conn.idempotency_key(request_id)?,
            deadline,
        };
        let (object, request_id) = object_of(conn.call(&request, &options).await?)?;
        Self::record(entity, id.parents, object, request_id)
    }

    pub async fn delete(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        id: &str,
        request_id: Option<&str>,
        deadline: Option<Instant>,
    ) -> Result<(), EngineError> {
        let entity = self.entity(entity_name)?;
        let op = Self::operation(entity, OperationKind::Delete)?;
        let id = EntityId::parse(entity, id)?;
        let request = conn.request(
            op,
            &Map::new(),
            &op.path_values(entity, &id.parents, Some(&id.id)),
        )?;
        // DELETE is idempotent upstream; a key is still sent when the method is POST-shaped.
        let key = match op.method {
            crate::spec::model::HttpMethod::Post => conn.idempotency_key(request_id)?,
            _ => None,
        };
        conn.call(
            &request,
            &CallOptions {
                idempotency_key: key,
                deadline,
            },
        )
        .await?;
        Ok(())
    }

    /// Executes an action. `native` returns the upstream's object as it is instead of the
    /// flattened row.
    pub async fn execute(
        &self,
        conn: &ConnectionRuntime,
        action_name: &str,
        parameters: Map<String, Value>,
        request_id: Option<&str>,
        native: bool,
        deadline: Option<Instant>,
    ) -> Result<Vec<Map<String, Value>>, EngineError> {
        let action = self.action(action_name)?;
        let request = conn.request(&action.operation, &parameters, &[])?;
        let key = match action.operation.method {
            crate::spec::model::HttpMethod::Post => conn.idempotency_key(request_id)?,
            _ => None,
        };
        let (object, _request_id) = object_of(
            conn.call(
                &request,
                &CallOptions {
                    idempotency_key: key,
                    deadline,
                },
            )
            .await?,
        )?;
        Ok(vec![if native {
            object
        } else {
            result::action_row(&action.result, &object)
        }])
    }

    /// Lists one page of entities, pushing what it can of `conditions` upstream and filtering the
    /// rest here.
    pub async fn list(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        query: &ListQuery,
        deadline: Option<Instant>,
    ) -> Result<EntityPage, EngineError> {
        let entity = self.entity(entity_name)?;
        let op = Self::operation(entity, OperationKind::List)?;
        let page_size = page_size(query.page_size)?;
        let dialect = conn.dialect();
        let sort = sorting::resolve(
            entity,
            &query.sort_by,
            &query.sort_order,
            dialect.native_order(),
        )?;
        let condition = conditions::parse(&query.conditions)
            .map_err(|e| EngineError::invalid("conditions", e.to_string()))?;
        let plan = plan_list(entity, op, condition.as_ref())?;
        require_list_params(entity, op, &plan.inputs)?;
        let read = tier::choose(
            query.tier,
            query.consistency,
            tier::ListPushdown {
                complete: !plan.residual,
                has_equality: plan.inputs.values().any(|v| !v.is_object()),
            },
            condition.as_ref().and_then(|c| dialect.search(entity, c)),
        )?;
        let fingerprint = paging::fingerprint(&[
            &conn.id,
            &entity.name,
            &query.conditions,
            &query.sort_by.join(","),
            &query.sort_order.join(","),
            &format!("{:?}/{:?}", query.consistency, query.tier),
        ]);
        let token = page_token(&query.page_token, &fingerprint)?;
        let reader = ListReader {
            conn,
            dialect,
            entity,
            op,
            plan: &plan,
            read: &read,
            condition: condition.as_ref(),
            deadline,
        };
        match sort {
            Sort::Upstream => {
                let resume = token.map(|t| reader.resume_from(t)).unwrap_or_default();
                reader
                    .upstream_order_page(page_size, resume, fingerprint)
                    .await
            }
            Sort::Column { field, descending } => {
                reader
                    .sorted_page(page_size, &field, descending, token, fingerprint)
                    .await
            }
        }
    }

    /// Every entity matching `conditions` (required), up to MAX_CONDITIONAL_ENTITIES.
    async fn select(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        conditions: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<EntityRecord>, EngineError> {
        if conditions.trim().is_empty() {
            return Err(EngineError::invalid(
                "conditions",
                "is required; an empty condition never means all entities",
            ));
        }
        let mut query = ListQuery {
            page_size: MAX_PAGE_SIZE as i32,
            conditions: conditions.to_owned(),
            ..ListQuery::default()
        };
        let mut selected = Vec::new();
        loop {
            let page = self.list(conn, entity_name, &query, deadline).await?;
            selected.extend(page.entities);
            if selected.len() > MAX_CONDITIONAL_ENTITIES {
                return Err(EngineError::invalid(
                    "conditions",
                    format!("matches more than {MAX_CONDITIONAL_ENTITIES} entities; narrow it"),
                ));
            }
            match page.next_page_token {
                Some(token) => query.page_token = token,
                None => return Ok(selected),
            }
        }
    }

    /// Updates every matching entity; returns the ids updated.
    pub async fn update_with_conditions(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        conditions: &str,
        fields: Map<String, Value>,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, EngineError> {
        let entity = self.entity(entity_name)?;
        Self::operation(entity, OperationKind::Update)?;
        let mut updated = Vec::new();
        for record in self.select(conn, entity_name, conditions, deadline).await? {
            let id = record.id.to_string();
            self.update(conn, entity_name, &id, fields.clone(), None, deadline)
                .await?;
            updated.push(id);
        }
        Ok(updated)
    }

    /// Deletes every matching entity; returns the ids deleted.
    pub async fn delete_with_conditions(
        &self,
        conn: &ConnectionRuntime,
        entity_name: &str,
        conditions: &str,
        deadline: Option<Instant>,
    ) -> Result<Vec<String>, EngineError> {
        let entity = self.entity(entity_name)?;
        Self::operation(entity, OperationKind::Delete)?;
        let mut deleted = Vec::new();
        for record in self.select(conn, entity_name, conditions, deadline).await? {
            let id = record.id.to_string();
            self.delete(conn, entity_name, &id, None, deadline).await?;
            deleted.push(id);
        }
        Ok(deleted)
    }
}

/// One upstream page of a list: every item as a record (unfiltered), whether the upstream has
/// more, and the cursor of the page after it.
struct UpstreamPage {
    records: Vec<EntityRecord>,
    has_more: bool,
    next: Option<String>,
}

/// Where a list resumes: the upstream cursor of the page to read (the item id a page starts
/// after, or a page token), and, for page tokens, the last id already returned from that page.
#[derive(Debug, Clone, Default)]
struct Resume {
    cursor: Option<String>,
    skip_through: Option<String>,
}

/// Reads a list for one ListEntities request: its plan, clause and deadline.
struct ListReader<'a> {
    conn: &'a ConnectionRuntime,
    dialect: &'a dyn Dialect,
    entity: &'a EntitySpec,
    op: &'a OperationSpec,
    plan: &'a ListPlan,
    read: &'a Read,
    condition: Option<&'a Condition>,
    deadline: Option<Instant>,
}

impl ListReader<'_> {
    /// One upstream page of the chosen tier.
    async fn read(&self, limit: u64, cursor: Option<&str>) -> Result<UpstreamPage, EngineError> {
        match self.read {
            Read::List => self.read_list(limit, cursor).await,
            Read::Search(query) => self.read_search(query, limit, cursor).await,
        }
    }

    /// How the chosen read's pages are chained: a list's as its dialect says, a search's by
    /// page token.
    fn paging(&self) -> Paging {
        match self.read {
            Read::List => self.dialect.paging(),
            Read::Search(_) => Paging::PageToken,
        }
    }

    fn resume_from(&self, token: PageToken) -> Resume {
        match self.paging() {
            Paging::AfterItem => Resume {
                cursor: Some(token.after),
                skip_through: None,
            },
            Paging::PageToken => Resume {
                cursor: token.page,
                skip_through: Some(token.after).filter(|a| !a.is_empty()),
            },
        }
    }

    async fn call(&self, request: &UpstreamRequest) -> Result<UpstreamResponse, EngineError> {
        self.conn
            .call(
                request,
                &CallOptions {
                    idempotency_key: None,
                    deadline: self.deadline,
                },
            )
            .await
    }

    fn records(
        &self,
        data: Vec<Value>,
        request_id: Option<String>,
    ) -> Result<Vec<EntityRecord>, EngineError> {
        data.into_iter()
            .filter_map(|item| match item {
                Value::Object(object) => Some(Engine::record(
                    self.entity,
                    self.plan.parent_ids.clone(),
                    object,
                    request_id.clone(),
                )),
                _ => None,
            })
            .collect()
    }

    /// One search call: `limit` rows of the page whose cursor is `page`.
    async fn read_search(
        &self,
        query: &tier::SearchQuery,
        limit: u64,
        page: Option<&str>,
    ) -> Result<UpstreamPage, EngineError> {
        let request = self
            .dialect
            .search_request(self.entity, query, limit, page)
            .ok_or_else(|| {
                EngineError::BadResponse(format!("{} has no search", self.entity.name))
            })?;
        let response = self.call(&request).await?;
        let request_id = response.request_id.clone();
        let (body, _) = object_of(response)?;
        let page = self.dialect.search_page(body);
        Ok(UpstreamPage {
            records: self.records(page.items, request_id)?,
            has_more: page.next.is_some(),
            next: page.next,
        })
    }

    /// One upstream list call: `limit` rows (when the list is sized upstream) after `cursor`.
    async fn read_list(
        &self,
        limit: u64,
        cursor: Option<&str>,
    ) -> Result<UpstreamPage, EngineError> {
        let mut inputs = self.plan.inputs.clone();
        let paged_upstream = self
            .dialect
            .page_inputs(self.op, &mut inputs, limit, cursor);
        let request = self.conn.request(
            self.op,
            &inputs,
            &self
                .op
                .path_values(self.entity, &self.plan.parent_ids, None),
        )?;
        let response = self.call(&request).await?;
        let request_id = response.request_id.clone();
        let (body, _) = object_of(response)?;
        let page = self.dialect.list_page(body, cursor);
        // A list answered whole (no cursor upstream) is paged here.
        let items = if paged_upstream || self.dialect.paging() == Paging::PageToken {
            page.items
        } else {
            after_cursor(page.items, cursor)
        };
        let next = page.next.filter(|_| paged_upstream);
        Ok(UpstreamPage {
            records: self.records(items, request_id)?,
            has_more: next.is_some(),
            next,
        })
    }

    fn matches(&self, record: &EntityRecord) -> bool {
        self.condition.is_none_or(|c| c.matches(&record.fields))
    }

    /// A page in the upstream's order: the token carries the upstream's cursor (the item a page
    /// starts after, or a page token), so page N costs as many upstream calls as page 1.
    async fn upstream_order_page(
        &self,
        page_size: usize,
        mut resume: Resume,
        fingerprint: String,
    ) -> Result<EntityPage, EngineError> {
        let mut entities = Vec::with_capacity(page_size);
        let mut next = None;
        for _ in 0..MAX_UPSTREAM_PAGES_PER_CALL {
            // Page tokens name fixed pages: every call asks for full ones.
            let limit = upstream_limit(
                self.dialect.max_page_size(),
                page_size - entities.len(),
                self.plan.residual || self.paging() == Paging::PageToken,
            );
            let page = self.read(limit, resume.cursor.as_deref()).await?;
            let last_upstream_id = page.records.last().map(|r| r.id.id.clone());
            let mut records = page.records;
            if let Some(skip) = resume.skip_through.take()
                && let Some(index) = records.iter().position(|r| r.id.id == skip)
            {
                records.drain(..=index);
            }
            let mut last_seen = None;
            let mut filled = false;
            for record in records {
                last_seen = Some(record.id.id.clone());
                if self.matches(&record) {
                    entities.push(record);
                    if entities.len() == page_size {
                        filled = true;
                        break;
                    }
                }
            }
            let stopped_mid_page = filled && last_seen.is_some() && last_seen != last_upstream_id;
            resume = match (stopped_mid_page, self.paging()) {
                (true, Paging::AfterItem) => Resume {
                    cursor: last_seen,
                    skip_through: None,
                },
                (true, Paging::PageToken) => Resume {
                    cursor: resume.cursor,
                    skip_through: last_seen,
                },
                (false, _) if page.has_more && page.next.is_some() => Resume {
                    cursor: page.next,
                    skip_through: None,
                },
                (false, _) => {
                    next = None;
                    break;
                }
            };
            next = Some(self.token(&resume, fingerprint.clone()));
            if filled {
                break;
            }
        }
        Ok(EntityPage {
            entities,
            next_page_token: next,
        })
    }

    fn token(&self, resume: &Resume, fingerprint: String) -> String {
        let (after, page) = match self.paging() {
            Paging::AfterItem => (resume.cursor.clone().unwrap_or_default(), None),
            Paging::PageToken => (
                resume.skip_through.clone().unwrap_or_default(),
                resume.cursor.clone(),
            ),
        };
        PageToken {
            after,
            fingerprint,
            key: None,
            page,
        }
        .encode()
    }

    /// Every matching entity, read on the upstream's cursor; more than `limit` is
    /// FAILED_PRECONDITION.
    async fn matching_set(&self, limit: usize) -> Result<Vec<EntityRecord>, EngineError> {
        let mut matching = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = self
                .read(
                    upstream_limit(self.dialect.max_page_size(), limit, true),
                    cursor.as_deref(),
                )
                .await?;
            cursor = page.next.clone();
            for record in page.records {
                if self.matches(&record) {
                    if matching.len() == limit {
                        return Err(EngineError::TooManyToSort {
                            limit,
                            native: self.native_order_name(),
                        });
                    }
                    matching.push(record);
                }
            }
            if !page.has_more || cursor.is_none() {
                return Ok(matching);
            }
        }
    }

    /// The upstream's own order as a caller would ask for it, e.g. `Created DESC`.
    fn native_order_name(&self) -> Option<String> {
        let (source, descending) = self.dialect.native_order()?;
        let field = self.entity.fields.iter().find(|f| f.source == source)?;
        Some(format!(
            "{} {}",
            field.name,
            if descending { "DESC" } else { "ASC" }
        ))
    }

    /// A page in any other order: the matching set sorted here, paged by the last key and id.
    async fn sorted_page(
        &self,
        page_size: usize,
        field: &str,
        descending: bool,
        token: Option<PageToken>,
        fingerprint: String,
    ) -> Result<EntityPage, EngineError> {
        let matching = self.matching_set(sorting::MAX_SORTED_ENTITIES).await?;
        let after = token
            .as_ref()
            .map(|t| (t.key.as_ref().unwrap_or(&Value::Null), t.after.as_str()));
        let mut rows = sorting::sort_after(matching, field, descending, after);
        let next_page_token = (rows.len() > page_size).then(|| {
            let last = &rows[page_size - 1];
            PageToken {
                after: last.id.to_string(),
                fingerprint,
                key: Some(sorting::key_of(last, field)),
                page: None,
            }
            .encode()
        });
        rows.truncate(page_size);
        Ok(EntityPage {
            entities: rows,
            next_page_token,
        })
    }
}

/// The page size of a list call: what the page still needs, or a full page (`max`, the
/// upstream's most) when part of the clause is evaluated here and more rows are read than kept.
fn upstream_limit(max: usize, still_needed: usize, full: bool) -> u64 {
    let limit = if full {
        max
    } else {
        still_needed.clamp(1, max.max(1))
    };
    limit as u64
}

/// The items after the one whose id is `cursor` (all of them without a cursor; none when the
/// cursor is gone from the list), for lists paged here rather than upstream.
fn after_cursor(items: Vec<Value>, cursor: Option<&str>) -> Vec<Value> {
    let Some(cursor) = cursor else {
        return items;
    };
    match items
        .iter()
        .position(|item| item.get("id").and_then(Value::as_str) == Some(cursor))
    {
        Some(index) => items.into_iter().skip(index + 1).collect(),
        None => Vec::new(),
    }
}

/// A list call's page size: the default for 0, capped at the most a page holds.
fn page_size(asked: i32) -> Result<usize, EngineError> {
    match asked {
        n if n < 0 => Err(EngineError::invalid("page_size", "must not be negative")),
        0 => Ok(DEFAULT_PAGE_SIZE),
        n => Ok((n as usize).min(MAX_PAGE_SIZE)),
    }
}

/// The page token a list call continues from (`None`: the first page), refused when it does not
/// decode or was issued for another request (`fingerprint`).
fn page_token(text: &str, fingerprint: &str) -> Result<Option<PageToken>, EngineError> {
    if text.is_empty() {
        return Ok(None);
    }
    let token = PageToken::decode(text).map_err(|e| EngineError::invalid("page_token", e))?;
    if token.fingerprint != fingerprint {
        return Err(EngineError::invalid(
            "page_token",
            "was issued for a different request",
        ));
    }
    Ok(Some(token))
}

/// What ListEntities sends upstream for a clause.
#[derive(Debug)]
struct ListPlan {
    inputs: Map<String, Value>,
    parent_ids: Vec<String>,
    /// True when some of the clause is evaluated here rather than upstream.
    residual: bool,
}

fn plan_list(
    entity: &EntitySpec,
    op: &OperationSpec,
    condition: Option<&Condition>,
) -> Result<ListPlan, EngineError> {
    // Every field named in the clause must exist and every literal fit its field.
    if let Some(condition) = condition {
        let violations = clause_check::check(entity, condition);
        if !violations.is_empty() {
            return Err(EngineError::InvalidInput(violations));
        }
    }
    let conjuncts = condition.map(Condition::conjuncts).unwrap_or_default();
    // Only comparisons joined by AND can all be handed to the upstream.
    let all_conjuncts = match condition {
        None | Some(Condition::Compare(_)) => true,
        Some(Condition::And(terms)) => terms.iter().all(|t| matches!(t, Condition::Compare(_))),
        Some(_) => false,
    };
    let parent_ids = parent_ids_of(entity, &conjuncts)?;
    let mut inputs = Map::new();
    let pushed = conjuncts
        .iter()
        .filter(|comparison| push_comparison(entity, op, &parent_ids, comparison, &mut inputs))
        .count();
    let residual = condition.is_some() && !(all_conjuncts && pushed == conjuncts.len());
    Ok(ListPlan {
        inputs,
        parent_ids,
        residual,
    })
}

/// The ids of the entity's parents, which travel in the list path: each needs an equality on the
/// parent's field (or its path parameter) among the clause's conjuncts.
fn parent_ids_of(
    entity: &EntitySpec,
    conjuncts: &[&conditions::Comparison],
) -> Result<Vec<String>, EngineError> {
    entity
        .parents
        .iter()
        .map(|parent| {
            conjuncts
                .iter()
                .find(|c| {
                    c.op == Op::Eq
                        && (c.field.eq_ignore_ascii_case(&parent.field)
                            || c.field.eq_ignore_ascii_case(&parent.param))
                })
                .and_then(|c| c.value.as_str())
                .map(str::to_owned)
                .ok_or_else(|| {
                    EngineError::invalid(
                        "conditions",
                        format!(
                            "listing {} needs {} = '<id>' in conditions",
                            entity.name, parent.field
                        ),
                    )
                })
        })
        .collect()
}

/// Hands one comparison of the clause to the upstream where its list operation takes it; true
/// when the upstream then applies it exactly (otherwise the engine evaluates the clause itself).
fn push_comparison(
    entity: &EntitySpec,
    op: &OperationSpec,
    parent_ids: &[String],
    comparison: &conditions::Comparison,
    inputs: &mut Map<String, Value>,
) -> bool {
    let names_parent = entity.parents.iter().any(|p| {
        p.field.eq_ignore_ascii_case(&comparison.field)
            || p.param.eq_ignore_ascii_case(&comparison.field)
    });
    if names_parent {
        // Parent keys travel in the path (an equality was required); the rest of a parent's
        // comparisons are evaluated here.
        return comparison.op == Op::Eq
            && parent_ids
                .iter()
                .any(|id| Some(id.as_str()) == comparison.value.as_str());
    }
    if let Some((head, member)) = comparison.field.split_once('.') {
        return push_member(entity, op, head, member, comparison, inputs);
    }
    let Some(field) = entity.fields.iter().find(|f| {
        f.name.eq_ignore_ascii_case(&comparison.field)
            || f.source.eq_ignore_ascii_case(&comparison.field)
    }) else {
        return false;
    };
    let Some(param) = op
        .params
        .iter()
        .find(|p| p.source == field.source && p.location == ParamLocation::Query)
    else {
        return false;
    };
    let range_key = match comparison.op {
        Op::Gt => Some("gt"),
        Op::Ge => Some("gte"),
        Op::Lt => Some("lt"),
        Op::Le => Some("lte"),
        _ => None,
    };
    match (comparison.op, range_key, &comparison.value) {
        (Op::Eq, _, value @ (Value::String(_) | Value::Number(_) | Value::Bool(_)))
            if !inputs.contains_key(&param.source) =>
        {
            inputs.insert(param.source.clone(), value.clone());
            true
        }
        (_, Some(key), value @ Value::Number(_))
            if input_check::accepts_range(&param.json_schema) =>
        {
            let range = inputs
                .entry(param.source.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            match range {
                Value::Object(range) => {
                    range.insert(key.to_owned(), value.clone());
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// Required list parameters (a secret's `scope`, a value list's `value_list`) can only come from
/// the clause: say which comparison supplies each one that is missing.
fn require_list_params(
    entity: &EntitySpec,
    op: &OperationSpec,
    inputs: &Map<String, Value>,
) -> Result<(), EngineError> {
    let violations: Vec<FieldViolation> = op
        .params
        .iter()
        .filter(|p| p.required && p.location == ParamLocation::Query)
        .filter(|p| !inputs.contains_key(&p.source))
        .map(|param| {
            let field = entity
                .fields
                .iter()
                .find(|f| f.source == param.source)
                .map_or(param.name.as_str(), |f| f.name.as_str());
            let members: Vec<String> = param
                .json_schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .map(|member| {
                    let allowed = param
                        .json_schema
                        .pointer(&format!("/properties/{member}"))
                        .map_or_else(|| "a value".to_owned(), input_check::describe);
                    format!("{field}.{member} = <{allowed}>")
                })
                .collect();
            let needed = if members.is_empty() {
                format!("{field} = <{}>", input_check::describe(&param.json_schema))
            } else {
                members.join(" AND ")
            };
            FieldViolation::new(
                "conditions",
                format!("listing {} needs {needed} in conditions", entity.name),
            )
        })
        .collect();
    if violations.is_empty() {
        Ok(())
    } else {
        Err(EngineError::InvalidInput(violations))
    }
}

/// Pushes `Head.member = value` into an object-valued list parameter, e.g. `Scope.type =
/// 'account'` into AppsSecret's required `scope[type]=account`; false when the parameter has no
/// such member (the comparison is then evaluated here).
fn push_member(
    entity: &EntitySpec,
    op: &OperationSpec,
    head: &str,
    member: &str,
    comparison: &conditions::Comparison,
    inputs: &mut Map<String, Value>,
) -> bool {
    let scalar = matches!(
        comparison.value,
        Value::String(_) | Value::Number(_) | Value::Bool(_)
    );
    if comparison.op != Op::Eq || !scalar {
        return false;
    }
    let Some(field) = entity
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(head) || f.source.eq_ignore_ascii_case(head))
    else {
        return false;
    };
    let Some(param) = op.param_by_source(ParamLocation::Query, &field.source) else {
        return false;
    };
    // The upstream's names of the members, checked against the parameter's schema first.
    let mut schema: &Value = &param.json_schema;
    let mut names = Vec::new();
    for part in member.split('.') {
        let Some((name, member_schema)) = schema
            .get("properties")
            .and_then(Value::as_object)
            .and_then(|p| p.iter().find(|(k, _)| k.eq_ignore_ascii_case(part)))
        else {
            return false;
        };
        names.push(name.clone());
        schema = member_schema;
    }
    let Some((leaf, path)) = names.split_last() else {
        return false;
    };
    let mut target = inputs
        .entry(param.source.clone())
        .or_insert_with(|| Value::Object(Map::new()));
    for name in path {
        let Some(map) = target.as_object_mut() else {
            return false;
        };
        target = map
            .entry(name.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    match target.as_object_mut() {
        Some(map) if !map.contains_key(leaf) => {
            map.insert(leaf.clone(), comparison.value.clone());
            true
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(entity_name: &str, clause: &str) -> Result<ListPlan, EngineError> {
        let spec = crate::spec::stripe().unwrap();
        let entity = spec.entity(entity_name).unwrap().clone();
        let op = entity.operations.list.clone().unwrap();
        let condition = conditions::parse(clause).unwrap();
        plan_list(&entity, &op, condition.as_ref())
    }

    #[test]
    fn a_parent_key_alone_leaves_nothing_to_filter_here() {
        let plan = plan("CustomerTaxId", "Customer = 'cus_1'").unwrap();
        assert_eq!(plan.parent_ids, vec!["cus_1".to_owned()]);
        assert!(!plan.residual, "the parent goes in the path");
        assert_eq!(upstream_limit(100, 25, plan.residual), 25);
    }

    #[test]
    fn a_residual_clause_reads_full_upstream_pages() {
        let plan = plan("CustomerTaxId", "Customer = 'cus_1' AND Value = 'x'").unwrap();
        assert!(plan.residual);
        assert_eq!(upstream_limit(100, 25, plan.residual), 100);
        assert_eq!(upstream_limit(100, 500, false), 100);
    }

    #[test]
    fn object_list_parameters_come_from_dotted_comparisons() {
        let plan = plan("AppsSecret", "Scope.type = 'account'").unwrap();
        assert_eq!(
            plan.inputs.get("scope"),
            Some(&serde_json::json!({"type": "account"}))
        );
        assert!(!plan.residual);
    }

    #[test]
    fn a_missing_required_list_parameter_names_the_comparison_that_supplies_it() {
        let spec = crate::spec::stripe().unwrap();
        let entity = spec.entity("AppsSecret").unwrap();
        let op = entity.operations.list.as_ref().unwrap();
        let Err(EngineError::InvalidInput(violations)) =
            require_list_params(entity, op, &Map::new())
        else {
            panic!("a List without Scope must be refused");
        };
        assert_eq!(violations[0].field, "conditions");
        assert!(
            violations[0]
                .description
                .contains(r#"Scope.type = <one of "account", "user">"#),
            "{}",
            violations[0].description
        );
    }

    #[test]
    fn lists_paged_here_resume_after_the_cursor() {
        let items = vec![
            serde_json::json!({"id": "a"}),
            serde_json::json!({"id": "b"}),
            serde_json::json!({"id": "c"}),
        ];
        assert_eq!(after_cursor(items.clone(), None).len(), 3);
        assert_eq!(
            after_cursor(items.clone(), Some("a")),
            vec![
                serde_json::json!({"id": "b"}),
                serde_json::json!({"id": "c"})
            ]
        );
        assert!(after_cursor(items, Some("gone")).is_empty());
    }
}
