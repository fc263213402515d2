//! A small command-line gRPC client of this service, printing JSON: for trying the service and
//! for scripts. Errors print their gRPC code, message and google.rpc details.

use clap::Subcommand;
use serde_json::{Value, json};
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_types::StatusExt;

use super::convert::{from_proto_struct, to_proto_struct};
use super::names;
use super::pb;
use super::pb::action_service_client::ActionServiceClient;
use super::pb::connection_service_client::ConnectionServiceClient;
use super::pb::entity_service_client::EntityServiceClient;
use super::pb::event_subscription_service_client::EventSubscriptionServiceClient;

/// What the client does.
#[derive(Debug, Clone, Subcommand)]
pub enum ClientCommand {
    /// Lists entity types (names; `--full` adds schemas).
    EntityTypes {
        #[arg(long)]
        full: bool,
    },
    /// Shows one entity type's schema.
    EntityType { entity_type: String },
    /// Lists entities of a type.
    List {
        entity_type: String,
        /// Filter clause, e.g. "Email = 'jenny@example.com'".
        #[arg(long, default_value = "")]
        conditions: String,
        #[arg(long, default_value_t = 0)]
        page_size: i32,
        #[arg(long, default_value = "")]
        page_token: String,
        /// Field to sort by, e.g. Email (Stripe's order, Created DESC, when absent).
        #[arg(long)]
        sort_by: Option<String>,
        /// ASC or DESC.
        #[arg(long)]
        sort_order: Option<String>,
        /// Accepts eventual consistency, letting the service use Stripe's Search.
        #[arg(long)]
        eventual: bool,
    },
    /// Gets one entity.
    Get { entity_type: String, id: String },
    /// Creates an entity from a JSON object of fields.
    Create {
        entity_type: String,
        fields: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Updates an entity with a JSON object of fields.
    Update {
        entity_type: String,
        id: String,
        fields: String,
        #[arg(long, default_value = "")]
        request_id: String,
    },
    /// Deletes an entity.
    Delete { entity_type: String, id: String },
    /// Lists actions.
    Actions {
        #[arg(long)]
        full: bool,
    },
    /// Shows one action's parameters and result metadata.
    Action { action: String },
    /// Executes an action with a JSON object of parameters.
    Execute {
        action: String,
        parameters: String,
        #[arg(long, default_value = "")]
        request_id: String,
        /// Return Stripe's object as native JSON instead of the connector's flattened row.
        #[arg(long)]
        native: bool,
    },
    /// Lists connections.
    Connections,
    /// Shows the connection.
    Connection,
    /// Checks the connection's upstream status.
    Status,
    /// Sets the connection's node counts (an `UpdateConnection` of `node_config`, applied live).
    SetNodes {
        /// Minimum node count.
        min: i32,
        /// Maximum node count.
        max: i32,
    },
    /// Asks the server's `grpc.health.v1` service whether it is serving (exit status 0 when
    /// `SERVING`, 1 otherwise, e.g. while draining): the container image's health check.
    Health {
        /// The service to ask about; empty means the server as a whole.
        #[arg(long, default_value = "")]
        service: String,
    },
    /// Creates an event subscription delivered on a stream, e.g.
    /// `subscribe invoices-paid payment_intent.succeeded 'invoice.*'`.
    Subscribe {
        id: String,
        #[arg(required = true)]
        event_types: Vec<String>,
    },
    /// Reads a stream subscription's events (one JSON object per event) and exits after `--count`.
    Events {
        subscription: String,
        /// Continue after the event that carried this token.
        #[arg(long, default_value = "")]
        resume_token: String,
        #[arg(long, default_value_t = 1)]
        count: usize,
    },
}

fn parse_object(text: &str, what: &str) -> anyhow::Result<prost_types::Struct> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(to_proto_struct(&map)),
        Ok(_) => Err(anyhow::anyhow!("{what} must be a JSON object")),
        Err(e) => Err(anyhow::anyhow!("{what} is not valid JSON: {e}")),
    }
}

pub(crate) fn describe(status: &tonic::Status) -> anyhow::Error {
    let details = status.get_error_details();
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(info) = details.error_info() {
        let mut metadata: Vec<_> = info.metadata.iter().collect();
        metadata.sort();
        text.push_str(&format!("\n  reason: {} ({})", info.reason, info.domain));
        for (k, v) in metadata {
            text.push_str(&format!("\n  {k}: {v}"));
        }
    }
    if let Some(bad) = details.bad_request() {
        for v in &bad.field_violations {
            text.push_str(&format!("\n  field {}: {}", v.field, v.description));
        }
    }
    if let Some(retry) = details.retry_info()
        && let Some(delay) = retry.retry_delay
    {
        text.push_str(&format!("\n  retry after: {delay:?}"));
    }
    anyhow::anyhow!(text)
}

pub(crate) fn with_auth<T>(
    auth: &Option<MetadataValue<tonic::metadata::Ascii>>,
    message: T,
) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(value) = auth {
        request
            .metadata_mut()
            .insert("authorization", value.clone());
    }
    request
}

fn entity_json(entity: &pb::Entity) -> Value {
    json!({
        "name": entity.name,
        "fields": entity.fields.as_ref().map(|s| Value::Object(from_proto_struct(s))).unwrap_or(Value::Null),
    })
}

fn message_json<T: std::fmt::Debug>(message: &T) -> Value {
    Value::String(format!("{message:#?}"))
}

/// A connection to the service for one connector connection: the channel and the caller's token.
pub(crate) struct Session {
    pub(crate) channel: Channel,
    pub(crate) auth: Option<MetadataValue<tonic::metadata::Ascii>>,
    /// The connection's id.
    connection: String,
    /// `connections/{id}`.
    parent: String,
}

/// `--full` as the API's view.
fn view(full: bool) -> i32 {
    if full {
        pb::View::Full as i32
    } else {
        pb::View::Basic as i32
    }
}

/// The last segment of a resource name: `…/entityTypes/Customer` → `Customer`.
fn last_segment(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

/// Runs one client command and returns its JSON output.
pub async fn run(
    addr: &str,
    token: Option<&str>,
    connection: &str,
    command: ClientCommand,
) -> anyhow::Result<String> {
    let session = Session::connect(addr, token, connection).await?;
    let output = match command {
        ClientCommand::EntityTypes { full } => session.entity_types(full).await?,
        ClientCommand::EntityType { entity_type } => session.entity_type(&entity_type).await?,
        ClientCommand::List {
            entity_type,
            conditions,
            page_size,
            page_token,
            sort_by,
            sort_order,
            eventual,
        } => {
            let request = pb::ListEntitiesRequest {
                parent: names::entity_type_name(connection, &entity_type),
                page_size,
                page_token,
                conditions,
                sort_by: sort_by.into_iter().collect(),
                sort_order: sort_order.into_iter().collect(),
                consistency: if eventual {
                    pb::Consistency::Eventual
                } else {
                    pb::Consistency::Strong
                } as i32,
            };
            session.list(request).await?
        }
        ClientCommand::Get { entity_type, id } => session.get(&entity_type, &id).await?,
        ClientCommand::Create {
            entity_type,
            fields,
            request_id,
        } => {
            let fields = parse_object(&fields, "fields")?;
            session.create(&entity_type, fields, request_id).await?
        }
        ClientCommand::Update {
            entity_type,
            id,
            fields,
            request_id,
        } => {
            let fields = parse_object(&fields, "fields")?;
            session
                .update(&entity_type, &id, fields, request_id)
                .await?
        }
        ClientCommand::Delete { entity_type, id } => session.delete(&entity_type, &id).await?,
        ClientCommand::Actions { full } => session.actions(full).await?,
        ClientCommand::Action { action } => session.action(&action).await?,
        ClientCommand::Execute {
            action,
            parameters,
            request_id,
            native,
        } => {
            let parameters = parse_object(&parameters, "parameters")?;
            session
                .execute(&action, parameters, request_id, native)
                .await?
        }
        ClientCommand::Connections => session.list_connections().await?,
        ClientCommand::Connection => session.get_connection().await?,
        ClientCommand::SetNodes { min, max } => session.set_nodes(min, max).await?,
        ClientCommand::Health { service } => return health(session.channel, &service).await,
        ClientCommand::Status => session.check_status().await?,
        ClientCommand::Subscribe { id, event_types } => session.subscribe(id, event_types).await?,
        ClientCommand::Events {
            subscription,
            resume_token,
            count,
        } => session.events(&subscription, resume_token, count).await?,
    };
    Ok(serde_json::to_string_pretty(&output)?)
}

impl Session {
    pub(crate) async fn connect(
        addr: &str,
        token: Option<&str>,
        connection: &str,
    ) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(addr.to_owned())?.connect().await?;
        let auth = match token {
            Some(t) => Some(
                format!("Bearer {t}")
                    .parse()
                    .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
            ),
            None => None,
        };
        Ok(Self {
            channel,
            auth,
            connection: connection.to_owned(),
            parent: format!("connections/{connection}"),
        })
    }

    fn request<T>(&self, message: T) -> Request<T> {
        with_auth(&self.auth, message)
    }

    fn entity_service(&self) -> EntityServiceClient<Channel> {
        EntityServiceClient::new(self.channel.clone())
    }

    fn action_service(&self) -> ActionServiceClient<Channel> {
        ActionServiceClient::new(self.channel.clone())
    }

    fn connection_service(&self) -> ConnectionServiceClient<Channel> {
        ConnectionServiceClient::new(self.channel.clone())
    }

    fn subscription_service(&self) -> EventSubscriptionServiceClient<Channel> {
        EventSubscriptionServiceClient::new(self.channel.clone())
    }

    async fn entity_types(&self, full: bool) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .list_entity_types(self.request(pb::ListEntityTypesRequest {
                parent: self.parent.clone(),
                page_size: 1000,
                view: view(full),
                ..Default::default()
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(if full {
            message_json(&r.types)
        } else {
            Value::from(
                r.types
                    .iter()
                    .map(|t| last_segment(&t.name))
                    .collect::<Vec<_>>(),
            )
        })
    }

    async fn entity_type(&self, entity_type: &str) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .get_entity_type(self.request(pb::GetEntityTypeRequest {
                name: names::entity_type_name(&self.connection, entity_type),
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(entity_type_json(&r))
    }

    async fn list(&self, request: pb::ListEntitiesRequest) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .list_entities(self.request(request))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(
            json!({"entities": r.entities.iter().map(entity_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token}),
        )
    }

    async fn get(&self, entity_type: &str, id: &str) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .get_entity(self.request(pb::GetEntityRequest {
                name: names::entity_name(&self.connection, entity_type, id),
            }))
            .await
            .map_err(|s| describe(&s))?;
        Ok(entity_json(r.get_ref()))
    }

    async fn create(
        &self,
        entity_type: &str,
        fields: prost_types::Struct,
        request_id: String,
    ) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .create_entity(self.request(pb::CreateEntityRequest {
                parent: names::entity_type_name(&self.connection, entity_type),
                entity: Some(pb::Entity {
                    fields: Some(fields),
                    ..Default::default()
                }),
                request_id,
            }))
            .await
            .map_err(|s| describe(&s))?;
        Ok(entity_json(r.get_ref()))
    }

    async fn update(
        &self,
        entity_type: &str,
        id: &str,
        fields: prost_types::Struct,
        request_id: String,
    ) -> anyhow::Result<Value> {
        let r = self
            .entity_service()
            .update_entity(self.request(pb::UpdateEntityRequest {
                entity: Some(pb::Entity {
                    name: names::entity_name(&self.connection, entity_type, id),
                    fields: Some(fields),
                    metadata: None,
                }),
                request_id,
            }))
            .await
            .map_err(|s| describe(&s))?;
        Ok(entity_json(r.get_ref()))
    }

    async fn delete(&self, entity_type: &str, id: &str) -> anyhow::Result<Value> {
        let name = names::entity_name(&self.connection, entity_type, id);
        self.entity_service()
            .delete_entity(self.request(pb::DeleteEntityRequest {
                name: name.clone(),
                request_id: String::new(),
            }))
            .await
            .map_err(|s| describe(&s))?;
        Ok(json!({ "deleted": name }))
    }

    async fn actions(&self, full: bool) -> anyhow::Result<Value> {
        let r = self
            .action_service()
            .list_actions(self.request(pb::ListActionsRequest {
                parent: self.parent.clone(),
                page_size: 1000,
                view: view(full),
                ..Default::default()
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(Value::from(
            r.actions
                .iter()
                .map(|a| last_segment(&a.name))
                .collect::<Vec<_>>(),
        ))
    }

    async fn action(&self, action: &str) -> anyhow::Result<Value> {
        let r = self
            .action_service()
            .get_action(self.request(pb::GetActionRequest {
                name: names::action_name(&self.connection, action),
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(action_json(&r))
    }

    async fn execute(
        &self,
        action: &str,
        parameters: prost_types::Struct,
        request_id: String,
        native: bool,
    ) -> anyhow::Result<Value> {
        let format = if native {
            pb::ResultFormat::Native
        } else {
            pb::ResultFormat::Connector
        };
        let r = self
            .action_service()
            .execute_action(self.request(pb::ExecuteActionRequest {
                name: names::action_name(&self.connection, action),
                parameters: Some(parameters),
                request_id,
                result_format: format as i32,
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(Value::from(
            r.results
                .iter()
                .map(|s| Value::Object(from_proto_struct(s)))
                .collect::<Vec<_>>(),
        ))
    }

    async fn list_connections(&self) -> anyhow::Result<Value> {
        let r = self
            .connection_service()
            .list_connections(self.request(pb::ListConnectionsRequest::default()))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(Value::from(
            r.connections
                .iter()
                .map(|c| c.name.clone())
                .collect::<Vec<_>>(),
        ))
    }

    async fn get_connection(&self) -> anyhow::Result<Value> {
        let r = self
            .connection_service()
            .get_connection(self.request(pb::GetConnectionRequest {
                name: self.parent.clone(),
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(connection_json(&r))
    }

    async fn set_nodes(&self, min: i32, max: i32) -> anyhow::Result<Value> {
        set_nodes(
            &mut self.connection_service(),
            &self.auth,
            self.parent.clone(),
            min,
            max,
        )
        .await
    }

    async fn check_status(&self) -> anyhow::Result<Value> {
        let r = self
            .connection_service()
            .check_status(self.request(pb::CheckStatusRequest {
                name: self.parent.clone(),
            }))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(status_json(&r))
    }

    async fn subscribe(&self, id: String, event_types: Vec<String>) -> anyhow::Result<Value> {
        let request = pb::CreateEventSubscriptionRequest {
            parent: self.parent.clone(),
            event_subscription_id: id,
            event_subscription: Some(pb::EventSubscription {
                event_types,
                destination: Some(pb::event_subscription::Destination::Stream(true)),
                ..Default::default()
            }),
        };
        let r = self
            .subscription_service()
            .create_event_subscription(self.request(request))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        Ok(
            json!({"name": r.name, "event_types": r.event_types, "create_time": r.create_time.map(|t| t.seconds)}),
        )
    }

    async fn events(
        &self,
        subscription: &str,
        resume_token: String,
        count: usize,
    ) -> anyhow::Result<Value> {
        let request = pb::StreamEventsRequest {
            subscription: format!("{}/eventSubscriptions/{subscription}", self.parent),
            resume_token,
        };
        let mut stream = self
            .subscription_service()
            .stream_events(self.request(request))
            .await
            .map_err(|s| describe(&s))?
            .into_inner();
        let mut events = Vec::new();
        while events.len() < count {
            let Some(e) = stream.message().await.map_err(|s| describe(&s))? else {
                break;
            };
            events.push(event_json(&e));
        }
        Ok(Value::from(events))
    }
}

fn entity_type_json(r: &pb::EntityType) -> Value {
    json!({
        "name": r.name,
        "operations": r.operations.iter().map(|o| pb::Operation::try_from(*o).map(|o| o.as_str_name()).unwrap_or("?")).collect::<Vec<_>>(),
        "fields": r.fields.iter().map(|f| json!({
            "name": f.name,
            "data_type": pb::DataType::try_from(f.data_type).map(|d| d.as_str_name()).unwrap_or("?"),
            "key": f.key, "nullable": f.nullable, "read_only": f.read_only,
            "reference": f.reference.as_ref().map(|r| r.name.clone()),
        })).collect::<Vec<_>>(),
        "filterable_fields": r.filterable_fields,
        "searchable": r.searchable,
    })
}

fn action_json(r: &pb::Action) -> Value {
    json!({
        "name": r.name,
        "display_name": r.display_name,
        "input_parameters": r.input_parameters.iter().map(|p| json!({
            "name": p.name, "required": p.required,
            "data_type": pb::DataType::try_from(p.data_type).map(|d| d.as_str_name()).unwrap_or("?"),
        })).collect::<Vec<_>>(),
        "result_metadata": r.result_metadata.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
    })
}

fn status_json(r: &pb::CheckStatusResponse) -> Value {
    json!({
        "state": pb::check_status_response::State::try_from(r.state).map(|s| s.as_str_name()).unwrap_or("?"),
        "description": r.description,
        "node_status": r.node_status.as_ref().map(|n| json!({
            "current_nodes": n.current_nodes, "desired_nodes": n.desired_nodes, "utilization": n.utilization,
            "admitted": n.admitted, "queued": n.queued, "throttled": n.throttled, "node_rate": n.node_rate,
            "budget_authority": n.budget_authority, "budget_admitted": n.budget_admitted,
        })),
    })
}

fn event_json(e: &pb::Event) -> Value {
    let payload: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
    json!({
        "id": e.id, "type": e.r#type, "connection": e.connection,
        "entity_name": e.entity_name, "resume_token": e.resume_token,
        "object": payload["data"]["object"]["id"],
    })
}

async fn set_nodes(
    connections: &mut ConnectionServiceClient<Channel>,
    auth: &Option<MetadataValue<tonic::metadata::Ascii>>,
    name: String,
    min_node_count: i32,
    max_node_count: i32,
) -> anyhow::Result<Value> {
    let change = pb::Connection {
        name,
        node_config: Some(pb::NodeConfig {
            min_node_count,
            max_node_count,
        }),
        ..Default::default()
    };
    let updated = connections
        .update_connection(with_auth(
            auth,
            pb::UpdateConnectionRequest {
                connection: Some(change),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["node_config".to_owned()],
                }),
            },
        ))
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    Ok(connection_json(&updated))
}

/// `grpc.health.v1.Health/Check` (open to every caller, so no token): `Ok` only when `SERVING`.
async fn health(channel: Channel, service: &str) -> anyhow::Result<String> {
    use tonic_health::pb::health_check_response::ServingStatus;
    let response = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .map_err(|s| describe(&s))?
        .into_inner();
    let status = ServingStatus::try_from(response.status).unwrap_or(ServingStatus::Unknown);
    match status {
        ServingStatus::Serving => Ok(serde_json::to_string_pretty(
            &json!({ "status": status.as_str_name() }),
        )?),
        _ => Err(anyhow::anyhow!("health: {}", status.as_str_name())),
    }
}

fn connection_json(c: &pb::Connection) -> Value {
    json!({
        "name": c.name,
        "description": c.description,
        "connector": c.connector,
        "connector_version": c.connector_version,
        "account_id": c.account_id,
        "api_key": c.api_key.as_ref().map(|k| json!({"secret": k.secret, "version": k.version})),
        "verbosity": c.verbosity,
        "node_config": c.node_config.map(|n| json!({"min_node_count": n.min_node_count, "max_node_count": n.max_node_count})),
        "api_base_url": c.api_base_url,
        "origin": pb::connection::Origin::try_from(c.origin).map(|o| o.as_str_name()).unwrap_or("?"),
        "node_status": c.node_status.as_ref().map(|n| json!({"current_nodes": n.current_nodes, "desired_nodes": n.desired_nodes, "admitted": n.admitted, "throttled": n.throttled, "budget_authority": n.budget_authority})),
    })
}
