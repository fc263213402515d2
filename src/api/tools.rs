//! Agent tools at the edge: [`ToolApi`] lists a connection's tools through its tool policy and
//! executes one by making the EntityService or ActionService call it stands for — the same
//! handler a gRPC caller reaches, so validation, node pool, Stripe budget, retries, idempotency
//! and error mapping are shared, not repeated. The gRPC `ToolService` and the MCP server are two
//! thin transports over it. Every call is logged with the caller's token name, the tool and the
//! outcome; arguments are never logged (they may hold card numbers).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::{Map, Value};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status};

use super::auth::Caller;
use super::convert::{from_proto_struct, struct_or_empty, to_proto_struct};
use super::pb::action_service_server::ActionService;
use super::pb::entity_service_server::EntityService;
use super::pb::tool_service_server::ToolService;
use super::services::{ApiState, offset_page};
use super::{names, pb, status};
use crate::engine::FieldViolation;
use crate::spec::model::OperationKind;
use crate::tools::{
    CONDITIONS, PAGE_SIZE, PAGE_TOKEN, REQUEST_ID, ToolCatalog, ToolDefinition, ToolOperation,
    ToolPolicyCheck,
};

/// ListTools: page_size 0 means every tool; at most this many per page.
const MAX_TOOLS_PAGE: usize = 1000;

mod listing;

pub use listing::{EncodedTool, ListToolsResponse};

/// Every tool's API message, built and encoded once with the catalog so a listing converts and
/// encodes no schema.
#[derive(Debug, Default)]
pub struct ToolMessages {
    by_name: HashMap<String, EncodedTool>,
}

impl ToolMessages {
    pub fn new(catalog: &ToolCatalog) -> Self {
        Self {
            by_name: catalog
                .iter()
                .map(|tool| (tool.name.clone(), EncodedTool::new(&tool_message(tool))))
                .collect(),
        }
    }

    /// The listing of `tools` (catalog tools; unknown names are left out).
    pub fn listing<'a>(
        &self,
        tools: impl IntoIterator<Item = &'a ToolDefinition>,
        next_page_token: String,
    ) -> ListToolsResponse {
        ListToolsResponse {
            encoded_tools: tools
                .into_iter()
                .filter_map(|tool| self.by_name.get(&tool.name).cloned())
                .collect(),
            next_page_token,
            ..ListToolsResponse::default()
        }
    }
}

/// The tools of every connection, over the services gRPC callers use.
#[derive(Debug, Clone)]
pub struct ToolApi {
    pub state: ApiState,
    built: Arc<BuiltTools>,
}

/// The catalog of the engine's spec and its gRPC messages, each built once, when first needed:
/// a runtime nobody asks for tools does not hold them.
#[derive(Debug, Default)]
struct BuiltTools {
    catalog: OnceLock<ToolCatalog>,
    messages: OnceLock<ToolMessages>,
}

impl ToolApi {
    pub fn new(state: ApiState) -> Self {
        Self {
            state,
            built: Arc::default(),
        }
    }

    /// Every tool of the engine's spec.
    pub fn catalog(&self) -> &ToolCatalog {
        self.built.catalog.get_or_init(|| {
            ToolCatalog::new(self.state.engine.spec(), self.state.registry.dialect())
        })
    }

    fn messages(&self) -> &ToolMessages {
        self.built
            .messages
            .get_or_init(|| ToolMessages::new(self.catalog()))
    }

    /// The connection's tool policy with its key mode; NOT_FOUND for an unknown connection.
    /// A connection that cannot serve (its key does not resolve) counts as live mode, so a guard
    /// never loosens because the mode is unknown.
    fn policy_of(
        &self,
        connection: &str,
    ) -> Result<(crate::connections::model::ToolPolicy, bool), Status> {
        let view = self.state.registry.get(connection).ok_or_else(|| {
            Status::from(crate::engine::EngineError::ConnectionNotFound(
                connection.to_owned(),
            ))
        })?;
        let live_mode = view
            .runtime
            .as_ref()
            .map_or(true, |runtime| runtime.budget.is_live());
        Ok((view.stored.spec.tool_policy.clone(), live_mode))
    }

    /// The tools `connection`'s policy exposes, in catalog order.
    pub fn visible(&self, connection: &str) -> Result<Vec<&ToolDefinition>, Status> {
        let (policy, live_mode) = self.policy_of(connection)?;
        let check = ToolPolicyCheck {
            policy: &policy,
            connection,
            live_mode,
        };
        Ok(self
            .catalog()
            .iter()
            .filter(|tool| check.allows(tool))
            .collect())
    }

    /// Executes `tool` on `connection` for `caller`, logging the outcome. `grpc_timeout` is the
    /// caller's deadline as a `grpc-timeout` value, passed on to the service call.
    pub async fn execute(
        &self,
        caller: &Caller,
        connection: &str,
        tool: &str,
        arguments: Map<String, Value>,
        grpc_timeout: Option<MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<Map<String, Value>, Status> {
        let result = self
            .execute_unlogged(connection, tool, arguments, grpc_timeout)
            .await;
        log_call(caller, connection, tool, &result);
        result
    }

    async fn execute_unlogged(
        &self,
        connection: &str,
        tool: &str,
        arguments: Map<String, Value>,
        grpc_timeout: Option<MetadataValue<tonic::metadata::Ascii>>,
    ) -> Result<Map<String, Value>, Status> {
        let definition = self
            .catalog()
            .get(tool)
            .ok_or_else(|| status::tool_not_found(tool))?;
        let (policy, live_mode) = self.policy_of(connection)?;
        ToolPolicyCheck {
            policy: &policy,
            connection,
            live_mode,
        }
        .check(definition)?;
        let call = ServiceCall {
            state: &self.state,
            connection,
            grpc_timeout,
        };
        match &definition.operation {
            ToolOperation::Entity { entity, kind } => call.entity(entity, *kind, arguments).await,
            ToolOperation::Action { action } => call.action(action, arguments).await,
        }
    }
}

fn log_call(
    caller: &Caller,
    connection: &str,
    tool: &str,
    result: &Result<Map<String, Value>, Status>,
) {
    match result {
        Ok(_) => tracing::info!(caller = %caller.0, connection, tool, outcome = "ok", "tool call"),
        Err(error) => {
            let reason = tonic_types::StatusExt::get_details_error_info(error)
                .map(|info| info.reason)
                .unwrap_or_default();
            let outcome = if reason == "TOOL_NOT_ALLOWED" {
                "refused"
            } else {
                "error"
            };
            tracing::info!(caller = %caller.0, connection, tool, outcome, code = ?error.code(), reason, "tool call");
        }
    }
}

/// One tool call made as the gRPC service call it stands for.
struct ServiceCall<'a> {
    state: &'a ApiState,
    connection: &'a str,
    grpc_timeout: Option<MetadataValue<tonic::metadata::Ascii>>,
}

impl ServiceCall<'_> {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        if let Some(timeout) = &self.grpc_timeout {
            request
                .metadata_mut()
                .insert("grpc-timeout", timeout.clone());
        }
        request
    }

    async fn entity(
        &self,
        entity: &str,
        kind: OperationKind,
        mut args: Map<String, Value>,
    ) -> Result<Map<String, Value>, Status> {
        let state = self.state;
        let type_name = names::entity_type_name(self.connection, entity);
        match kind {
            OperationKind::List => self.list(type_name, args).await,
            OperationKind::Get => {
                let name = self.entity_name(entity, &mut args)?;
                refuse_unknown(&args)?;
                let found = state
                    .get_entity(self.request(pb::GetEntityRequest { name }))
                    .await?;
                Ok(fields_of(found.into_inner()))
            }
            OperationKind::Create => {
                let request_id = take_request_id(&mut args)?;
                let request = self.request(pb::CreateEntityRequest {
                    parent: type_name,
                    entity: Some(pb::Entity {
                        fields: Some(to_proto_struct(&args)),
                        ..Default::default()
                    }),
                    request_id,
                });
                Ok(fields_of(state.create_entity(request).await?.into_inner()))
            }
            OperationKind::Update => {
                let request_id = take_string(&mut args, REQUEST_ID)?;
                let name = self.entity_name(entity, &mut args)?;
                let request = self.request(pb::UpdateEntityRequest {
                    entity: Some(pb::Entity {
                        name,
                        fields: Some(to_proto_struct(&args)),
                        ..Default::default()
                    }),
                    request_id,
                });
                Ok(fields_of(state.update_entity(request).await?.into_inner()))
            }
            OperationKind::Delete => self.delete(entity, args).await,
        }
    }

    /// ListEntities: a page of the entity type's records and the token of the next.
    async fn list(
        &self,
        type_name: String,
        mut args: Map<String, Value>,
    ) -> Result<Map<String, Value>, Status> {
        let state = self.state;
        let page_size = take_page_size(&mut args)?;
        let page_token = take_string(&mut args, PAGE_TOKEN)?;
        let conditions = take_string(&mut args, CONDITIONS)?;
        refuse_unknown(&args)?;
        let request = self.request(pb::ListEntitiesRequest {
            parent: type_name,
            page_size,
            page_token,
            conditions,
            ..Default::default()
        });
        let page = state.list_entities(request).await?.into_inner();
        let entities: Vec<Value> = page
            .entities
            .iter()
            .map(|e| Value::Object(struct_or_empty(e.fields.as_ref())))
            .collect();
        let mut out = Map::new();
        out.insert("entities".to_owned(), Value::Array(entities));
        out.insert(
            "next_page_token".to_owned(),
            Value::String(page.next_page_token),
        );
        Ok(out)
    }

    /// DeleteEntity: `{"deleted": true, "Id": …}`.
    async fn delete(
        &self,
        entity: &str,
        mut args: Map<String, Value>,
    ) -> Result<Map<String, Value>, Status> {
        let state = self.state;
        let request_id = take_string(&mut args, REQUEST_ID)?;
        let id = args.get("Id").cloned().unwrap_or(Value::Null);
        let name = self.entity_name(entity, &mut args)?;
        refuse_unknown(&args)?;
        state
            .delete_entity(self.request(pb::DeleteEntityRequest { name, request_id }))
            .await?;
        let mut out = Map::new();
        out.insert("deleted".to_owned(), Value::Bool(true));
        out.insert("Id".to_owned(), id);
        Ok(out)
    }

    /// The entity's resource name from its key arguments (parent ids, then `Id`), which it
    /// removes from `args`.
    fn entity_name(&self, entity: &str, args: &mut Map<String, Value>) -> Result<String, Status> {
        let spec = self.state.engine.entity(entity)?;
        let mut keys: Vec<&str> = spec.parents.iter().map(|p| p.field.as_str()).collect();
        keys.push("Id");
        let mut parts = Vec::with_capacity(keys.len());
        let mut violations = Vec::new();
        for key in keys {
            match args.remove(key) {
                Some(Value::String(id)) if !id.is_empty() && !id.contains('/') => parts.push(id),
                Some(_) => violations.push(FieldViolation::new(
                    key,
                    "must be a non-empty id without `/`".to_owned(),
                )),
                None => violations.push(FieldViolation::new(key, "is required".to_owned())),
            }
        }
        if !violations.is_empty() {
            return Err(status::invalid_argument(
                format!("invalid input: {}", describe(&violations)),
                &violations,
            ));
        }
        Ok(names::entity_name(
            self.connection,
            entity,
            &parts.join("/"),
        ))
    }

    async fn action(
        &self,
        action: &str,
        mut args: Map<String, Value>,
    ) -> Result<Map<String, Value>, Status> {
        let request_id = take_request_id(&mut args)?;
        let request = self.request(pb::ExecuteActionRequest {
            name: format!("connections/{}/actions/{action}", self.connection),
            parameters: Some(to_proto_struct(&args)),
            request_id,
            result_format: pb::ResultFormat::Native as i32,
        });
        let response = self.state.execute_action(request).await?.into_inner();
        Ok(response
            .results
            .first()
            .map(from_proto_struct)
            .unwrap_or_default())
    }
}

fn fields_of(entity: pb::Entity) -> Map<String, Value> {
    struct_or_empty(entity.fields.as_ref())
}

fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Removes the string argument `key` ("" when absent); INVALID_ARGUMENT when it is not a string.
fn take_string(args: &mut Map<String, Value>, key: &str) -> Result<String, Status> {
    match args.remove(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(status::invalid_field(key, "must be a string")),
    }
}

/// Removes the `request_id` creates and actions require: it is what makes a repeated call replay
/// the first one's result, the promise of their idempotent hint.
fn take_request_id(args: &mut Map<String, Value>) -> Result<String, Status> {
    let request_id = take_string(args, REQUEST_ID)?;
    if request_id.is_empty() {
        return Err(status::invalid_field(
            REQUEST_ID,
            "is required: a new unique id per intended change; repeating it replays the first result",
        ));
    }
    Ok(request_id)
}

fn take_page_size(args: &mut Map<String, Value>) -> Result<i32, Status> {
    match args.remove(PAGE_SIZE) {
        None | Some(Value::Null) => Ok(0),
        Some(Value::Number(n)) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| status::invalid_field(PAGE_SIZE, "must be an integer")),
        Some(_) => Err(status::invalid_field(PAGE_SIZE, "must be an integer")),
    }
}

/// INVALID_ARGUMENT naming each argument a read or delete tool does not take.
fn refuse_unknown(args: &Map<String, Value>) -> Result<(), Status> {
    if args.is_empty() {
        return Ok(());
    }
    let violations: Vec<FieldViolation> = args
        .keys()
        .map(|key| FieldViolation::new(key, "unknown argument".to_owned()))
        .collect();
    Err(status::invalid_argument(
        format!("invalid input: {}", describe(&violations)),
        &violations,
    ))
}

/// The API view of a tool.
pub fn tool_message(tool: &ToolDefinition) -> pb::Tool {
    let (entity_type, operation) = match &tool.operation {
        ToolOperation::Entity { entity, kind } => {
            (entity.clone(), format!("{kind:?}").to_uppercase())
        }
        ToolOperation::Action { action } => (String::new(), action.clone()),
    };
    pb::Tool {
        name: tool.name.clone(),
        description: tool.description.clone(),
        input_schema: Some(to_proto_struct(&tool.input_schema)),
        output_schema: Some(to_proto_struct(&tool.output_schema)),
        annotations: Some(pb::ToolAnnotations {
            title: tool.title.clone(),
            read_only_hint: tool.hints.read_only,
            destructive_hint: tool.hints.destructive,
            idempotent_hint: tool.hints.idempotent,
            open_world_hint: tool.hints.open_world,
        }),
        entity_type,
        operation,
    }
}

/// `connections/{c}/tools/{tool}` → (connection, tool).
fn tool_name(name: &str) -> Result<(String, String), Status> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["connections", c, "tools", t] if !c.is_empty() && !t.is_empty() => {
            Ok(((*c).to_owned(), (*t).to_owned()))
        }
        _ => Err(status::invalid_field(
            "name",
            format!("must look like connections/{{connection}}/tools/{{tool}}, got {name:?}"),
        )),
    }
}

#[tonic::async_trait]
impl ToolService for ToolApi {
    async fn list_tools(
        &self,
        request: Request<pb::ListToolsRequest>,
    ) -> Result<Response<pb::ListToolsResponse>, Status> {
        let r = request.into_inner();
        let connection = names::connection(&r.parent, "parent")?;
        let visible: Vec<&ToolDefinition> = self
            .visible(&connection)?
            .into_iter()
            .filter(|tool| r.names.is_empty() || r.names.contains(&tool.name))
            .collect();
        let scope = format!("{}|{}", r.parent, r.names.join(","));
        let (page, next) = offset_page(
            &visible,
            r.page_size,
            &r.page_token,
            MAX_TOOLS_PAGE,
            MAX_TOOLS_PAGE,
            &scope,
        )?;
        Ok(Response::new(self.messages().listing(page, next)))
    }

    async fn execute_tool(
        &self,
        request: Request<pb::ExecuteToolRequest>,
    ) -> Result<Response<pb::ExecuteToolResponse>, Status> {
        let caller = request
            .extensions()
            .get::<Caller>()
            .cloned()
            .unwrap_or_else(|| Caller::from_token(None));
        let timeout = request.metadata().get("grpc-timeout").cloned();
        let r = request.into_inner();
        let (connection, tool) = tool_name(&r.name)?;
        let arguments = struct_or_empty(r.parameters.as_ref());
        let result = self
            .execute(&caller, &connection, &tool, arguments, timeout)
            .await?;
        Ok(Response::new(pb::ExecuteToolResponse {
            result: Some(to_proto_struct(&result)),
        }))
    }
}
