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

/// Runs one client command and returns its JSON output.
pub async fn run(
    addr: &str,
    token: Option<&str>,
    connection: &str,
    command: ClientCommand,
) -> anyhow::Result<String> {
    let channel = Channel::from_shared(addr.to_owned())?.connect().await?;
    let auth: Option<MetadataValue<_>> = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
        ),
        None => None,
    };
    let mut entities = EntityServiceClient::new(channel.clone());
    let mut actions = ActionServiceClient::new(channel.clone());
    let mut connections = ConnectionServiceClient::new(channel.clone());
    let mut subscriptions = EventSubscriptionServiceClient::new(channel.clone());
    let parent = format!("connections/{connection}");
    let view = |full: bool| {
        if full {
            pb::View::Full as i32
        } else {
            pb::View::Basic as i32
        }
    };
    let output: Value = match command {
        ClientCommand::EntityTypes { full } => {
            let r = entities
                .list_entity_types(with_auth(
                    &auth,
                    pb::ListEntityTypesRequest {
                        parent,
                        page_size: 1000,
                        view: view(full),
                        ..Default::default()
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            if full {
                message_json(&r.types)
            } else {
                Value::from(
                    r.types
                        .iter()
                        .map(|t| t.name.rsplit('/').next().unwrap_or_default().to_owned())
                        .collect::<Vec<_>>(),
                )
            }
        }
        ClientCommand::EntityType { entity_type } => {
            let r = entities
                .get_entity_type(with_auth(
                    &auth,
                    pb::GetEntityTypeRequest {
                        name: names::entity_type_name(connection, &entity_type),
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
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
        ClientCommand::List {
            entity_type,
            conditions,
            page_size,
            page_token,
            sort_by,
            sort_order,
            eventual,
        } => {
            let r = entities
                .list_entities(with_auth(
                    &auth,
                    pb::ListEntitiesRequest {
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
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            json!({"entities": r.entities.iter().map(entity_json).collect::<Vec<_>>(), "next_page_token": r.next_page_token})
        }
        ClientCommand::Get { entity_type, id } => {
            let r = entities
                .get_entity(with_auth(
                    &auth,
                    pb::GetEntityRequest {
                        name: names::entity_name(connection, &entity_type, &id),
                    },
                ))
                .await
                .map_err(|s| describe(&s))?;
            entity_json(r.get_ref())
        }
        ClientCommand::Create {
            entity_type,
            fields,
            request_id,
        } => {
            let fields = parse_object(&fields, "fields")?;
            let r = entities
                .create_entity(with_auth(
                    &auth,
                    pb::CreateEntityRequest {
                        parent: names::entity_type_name(connection, &entity_type),
                        entity: Some(pb::Entity {
                            fields: Some(fields),
                            ..Default::default()
                        }),
                        request_id,
                    },
                ))
                .await
                .map_err(|s| describe(&s))?;
            entity_json(r.get_ref())
        }
        ClientCommand::Update {
            entity_type,
            id,
            fields,
            request_id,
        } => {
            let fields = parse_object(&fields, "fields")?;
            let r = entities
                .update_entity(with_auth(
                    &auth,
                    pb::UpdateEntityRequest {
                        entity: Some(pb::Entity {
                            name: names::entity_name(connection, &entity_type, &id),
                            fields: Some(fields),
                            metadata: None,
                        }),
                        request_id,
                    },
                ))
                .await
                .map_err(|s| describe(&s))?;
            entity_json(r.get_ref())
        }
        ClientCommand::Delete { entity_type, id } => {
            entities
                .delete_entity(with_auth(
                    &auth,
                    pb::DeleteEntityRequest {
                        name: names::entity_name(connection, &entity_type, &id),
                        request_id: String::new(),
                    },
                ))
                .await
                .map_err(|s| describe(&s))?;
            json!({"deleted": names::entity_name(connection, &entity_type, &id)})
        }
        ClientCommand::Actions { full } => {
            let r = actions
                .list_actions(with_auth(
                    &auth,
                    pb::ListActionsRequest {
                        parent,
                        page_size: 1000,
                        view: view(full),
                        ..Default::default()
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            Value::from(
                r.actions
                    .iter()
                    .map(|a| a.name.rsplit('/').next().unwrap_or_default().to_owned())
                    .collect::<Vec<_>>(),
            )
        }
        ClientCommand::Action { action } => {
            let r = actions
                .get_action(with_auth(
                    &auth,
                    pb::GetActionRequest {
                        name: names::action_name(connection, &action),
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
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
        ClientCommand::Execute {
            action,
            parameters,
            request_id,
            native,
        } => {
            let parameters = parse_object(&parameters, "parameters")?;
            let format = if native {
                pb::ResultFormat::Native
            } else {
                pb::ResultFormat::Connector
            };
            let r = actions
                .execute_action(with_auth(
                    &auth,
                    pb::ExecuteActionRequest {
                        name: names::action_name(connection, &action),
                        parameters: Some(parameters),
                        request_id,
                        result_format: format as i32,
                    },
                ))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            Value::from(
                r.results
                    .iter()
                    .map(|s| Value::Object(from_proto_struct(s)))
                    .collect::<Vec<_>>(),
            )
        }
        ClientCommand::Connections => {
            let r = connections
                .list_connections(with_auth(&auth, pb::ListConnectionsRequest::default()))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            Value::from(
                r.connections
                    .iter()
                    .map(|c| c.name.clone())
                    .collect::<Vec<_>>(),
            )
        }
        ClientCommand::Connection => {
            let r = connections
                .get_connection(with_auth(&auth, pb::GetConnectionRequest { name: parent }))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            connection_json(&r)
        }
        ClientCommand::SetNodes { min, max } => {
            set_nodes(&mut connections, &auth, parent, min, max).await?
        }
        ClientCommand::Health { service } => return health(channel, &service).await,
        ClientCommand::Status => {
            let r = connections
                .check_status(with_auth(&auth, pb::CheckStatusRequest { name: parent }))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            json!({
                "state": pb::check_status_response::State::try_from(r.state).map(|s| s.as_str_name()).unwrap_or("?"),
                "description": r.description,
                "node_status": r.node_status.map(|n| json!({
                    "current_nodes": n.current_nodes, "desired_nodes": n.desired_nodes, "utilization": n.utilization,
                    "admitted": n.admitted, "queued": n.queued, "throttled": n.throttled, "node_rate": n.node_rate,
                    "budget_authority": n.budget_authority, "budget_admitted": n.budget_admitted,
                })),
            })
        }
        ClientCommand::Subscribe { id, event_types } => {
            let request = pb::CreateEventSubscriptionRequest {
                parent,
                event_subscription_id: id,
                event_subscription: Some(pb::EventSubscription {
                    event_types,
                    destination: Some(pb::event_subscription::Destination::Stream(true)),
                    ..Default::default()
                }),
            };
            let r = subscriptions
                .create_event_subscription(with_auth(&auth, request))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            json!({"name": r.name, "event_types": r.event_types, "create_time": r.create_time.map(|t| t.seconds)})
        }
        ClientCommand::Events {
            subscription,
            resume_token,
            count,
        } => {
            let request = pb::StreamEventsRequest {
                subscription: format!("{parent}/eventSubscriptions/{subscription}"),
                resume_token,
            };
            let mut stream = subscriptions
                .stream_events(with_auth(&auth, request))
                .await
                .map_err(|s| describe(&s))?
                .into_inner();
            let mut events = Vec::new();
            while events.len() < count {
                let Some(e) = stream.message().await.map_err(|s| describe(&s))? else {
                    break;
                };
                let payload: Value = serde_json::from_str(&e.payload).unwrap_or(Value::Null);
                events.push(json!({
                    "id": e.id, "type": e.r#type, "connection": e.connection,
                    "entity_name": e.entity_name, "resume_token": e.resume_token,
                    "object": payload["data"]["object"]["id"],
                }));
            }
            Value::from(events)
        }
    };
    Ok(serde_json::to_string_pretty(&output)?)
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
