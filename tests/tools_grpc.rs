//! The gRPC ToolService over a real socket against the built-in sandbox: listing through the
//! connection's tool policy, refusals that name the setting, the live-mode second setting, policy
//! validation, and every read-only tool of the spec executed without a server error.

mod common;

use common::{ADMIN_TOKEN, Home, INVOKER_TOKEN, Service, reason, start};
use connector_runtime::api::convert::{from_proto_struct, to_proto_struct};
use connector_runtime::api::pb;
use connector_runtime::api::pb::tool_service_client::ToolServiceClient;
use serde_json::{Map, Value, json};
use tonic::Code;
use tonic_types::StatusExt;

const TEST_KEY: &str = "sk_test_tools0123456789";
const LIVE_KEY: &str = "sk_live_tools0123456789";

fn tools(service: &Service) -> ToolServiceClient<tonic::transport::Channel> {
    ToolServiceClient::new(service.channel.clone())
}

async fn list(
    service: &Service,
    connection: &str,
    names: &[&str],
) -> Result<Vec<pb::Tool>, tonic::Status> {
    let request = pb::ListToolsRequest {
        parent: format!("connections/{connection}"),
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        ..Default::default()
    };
    Ok(tools(service)
        .list_tools(service.request(request))
        .await?
        .into_inner()
        .tools)
}

async fn execute(
    service: &Service,
    connection: &str,
    tool: &str,
    arguments: Value,
) -> Result<Map<String, Value>, tonic::Status> {
    let request = pb::ExecuteToolRequest {
        name: format!("connections/{connection}/tools/{tool}"),
        parameters: Some(to_proto_struct(arguments.as_object().unwrap())),
    };
    let response = tools(service)
        .execute_tool(service.request(request))
        .await?
        .into_inner();
    Ok(from_proto_struct(response.result.as_ref().unwrap()))
}

fn setting(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get("setting").cloned())
        .unwrap_or_default()
}

fn connection(
    service: &Service,
    id: &str,
    key_secret: &str,
    policy: pb::ToolPolicy,
) -> pb::Connection {
    pb::Connection {
        tool_policy: Some(policy),
        node_config: Some(pb::NodeConfig {
            min_node_count: 20,
            max_node_count: 50,
        }),
        ..Service::connection_to(id, key_secret, &service.sandbox_url())
    }
}

async fn service(home: &Home) -> Service {
    home.put_secret("test-key", "1", TEST_KEY);
    home.put_secret("live-key", "1", LIVE_KEY);
    let mut settings = home.settings(true);
    settings.nodes.stripe_budget.test = 1000;
    start(settings).await.with_token(ADMIN_TOKEN)
}

#[tokio::test]
async fn the_default_policy_lists_read_only_tools_and_refusals_name_the_setting() {
    let home = Home::new();
    let admin = service(&home).await;
    let service = admin.as_caller(INVOKER_TOKEN);
    let listed = list(&service, "stripe-sandbox", &[]).await.unwrap();
    assert!(listed.len() > 150);
    assert!(
        listed
            .iter()
            .all(|t| t.annotations.as_ref().unwrap().read_only_hint)
    );
    let customers = listed.iter().find(|t| t.name == "list_customers").unwrap();
    assert!(
        customers
            .description
            .starts_with("Returns a list of your customers.")
    );
    assert_eq!(customers.entity_type, "Customer");
    assert_eq!(customers.operation, "LIST");

    let named = list(
        &service,
        "stripe-sandbox",
        &["get_customer", "delete_customer", "nope"],
    )
    .await
    .unwrap();
    let names: Vec<&str> = named.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["get_customer"]);

    let refused = execute(
        &service,
        "stripe-sandbox",
        "delete_customer",
        json!({"Id": "cus_1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "TOOL_NOT_ALLOWED");
    assert_eq!(setting(&refused), "tool_policy.allow_destructive");
    let refused = execute(
        &service,
        "stripe-sandbox",
        "create_customer",
        json!({"request_id": "r1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(setting(&refused), "tool_policy.allow");
    assert!(refused.message().contains("tool_policy.allow"));

    let missing = execute(&service, "stripe-sandbox", "launch_rocket", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        (missing.code(), reason(&missing).as_str()),
        (Code::NotFound, "TOOL_NOT_FOUND")
    );
    let no_connection = list(&service, "nowhere", &[]).await.unwrap_err();
    assert_eq!(no_connection.code(), Code::NotFound);
    let bad_argument = execute(
        &service,
        "stripe-sandbox",
        "get_customer",
        json!({"Id": "a/b"}),
    )
    .await
    .unwrap_err();
    assert_eq!(bad_argument.code(), Code::InvalidArgument);

    let anonymous = admin.as_caller("");
    let mut request = tonic::Request::new(pb::ListToolsRequest {
        parent: "connections/stripe-sandbox".to_owned(),
        ..Default::default()
    });
    request.metadata_mut().remove("authorization");
    let unauthenticated = tools(&anonymous).list_tools(request).await.unwrap_err();
    assert_eq!(unauthenticated.code(), Code::Unauthenticated);
    admin.shutdown().await;
}

#[tokio::test]
async fn a_policy_enables_writes_and_a_live_key_needs_the_second_setting() {
    let home = Home::new();
    let admin = service(&home).await;
    let policy = pb::ToolPolicy {
        allow: vec!["create_*".to_owned()],
        allow_destructive: vec!["confirm_payment_intent".to_owned()],
        ..Default::default()
    };
    admin
        .add_connection(connection(&admin, "agents", "test-key", policy.clone()))
        .await;
    admin
        .add_connection(connection(&admin, "live-agents", "live-key", policy))
        .await;
    let service = admin.as_caller(INVOKER_TOKEN);

    let customer = execute(
        &service,
        "agents",
        "create_customer",
        json!({"Email": "tools@example.com", "request_id": "tools-customer-1"}),
    )
    .await
    .unwrap();
    let intent = execute(
        &service,
        "agents",
        "create_payment_intent",
        json!({"Amount": 1500, "Currency": "usd", "Customer": customer["Id"], "PaymentMethod": "pm_card_visa",
               "PaymentMethodTypes": ["card"], "request_id": "tools-intent-1"}),
    )
    .await
    .unwrap();
    let confirmed = execute(
        &service,
        "agents",
        "confirm_payment_intent",
        json!({"PaymentIntentId": intent["Id"], "request_id": "tools-confirm-1"}),
    )
    .await
    .unwrap();
    assert_eq!(confirmed["status"], "succeeded");
    let again = execute(
        &service,
        "agents",
        "create_customer",
        json!({"Email": "tools@example.com", "request_id": "tools-customer-1"}),
    )
    .await
    .unwrap();
    assert_eq!(
        again["Id"], customer["Id"],
        "the same request_id replays the create"
    );
    let without = execute(
        &service,
        "agents",
        "create_customer",
        json!({"Email": "x@example.com"}),
    )
    .await
    .unwrap_err();
    assert_eq!(without.code(), Code::InvalidArgument);
    assert_eq!(common::violation_fields(&without), ["request_id"]);

    // A live-mode key: the same policy is not enough for a destructive tool.
    let live = execute(
        &service,
        "live-agents",
        "confirm_payment_intent",
        json!({"PaymentIntentId": intent["Id"], "request_id": "live-confirm-1"}),
    )
    .await
    .unwrap_err();
    assert_eq!(reason(&live), "TOOL_NOT_ALLOWED");
    assert_eq!(setting(&live), "tool_policy.allow_live_destructive");
    let listed = list(
        &service,
        "live-agents",
        &["confirm_payment_intent", "create_customer"],
    )
    .await
    .unwrap();
    assert_eq!(
        listed.len(),
        1,
        "the live connection hides confirm until allowed"
    );

    // The second setting, applied live through UpdateConnection with an update mask.
    admin
        .connections()
        .update_connection(admin.request(pb::UpdateConnectionRequest {
            connection: Some(pb::Connection {
                name: "connections/live-agents".to_owned(),
                tool_policy: Some(pb::ToolPolicy {
                    allow_live_destructive: true,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["tool_policy.allow_live_destructive".to_owned()],
            }),
        }))
        .await
        .unwrap();
    let allowed = execute(
        &service,
        "live-agents",
        "confirm_payment_intent",
        json!({"PaymentIntentId": intent["Id"], "request_id": "live-confirm-2"}),
    )
    .await
    .unwrap_err();
    // Now the call goes upstream, where the sandbox refuses a live key: not the policy any more.
    assert_ne!(reason(&allowed), "TOOL_NOT_ALLOWED", "{allowed:?}");
    let shown = admin
        .connections()
        .get_connection(admin.request(pb::GetConnectionRequest {
            name: "connections/live-agents".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    let shown = shown.tool_policy.unwrap();
    assert!(shown.allow_live_destructive);
    assert_eq!(
        shown.allow,
        ["create_*"],
        "the mask kept the other settings"
    );
    admin.shutdown().await;
}

#[tokio::test]
async fn malformed_tool_patterns_are_refused() {
    let home = Home::new();
    let admin = service(&home).await;
    let bad = pb::ToolPolicy {
        allow: vec!["Create Customer".to_owned()],
        ..Default::default()
    };
    let refused = admin
        .connections()
        .create_connection(admin.request(pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(connection(&admin, "bad-policy", "test-key", bad)),
        }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().contains("tool_policy.allow[0]"),
        "{}",
        refused.message()
    );
    admin.shutdown().await;
}

/// Arguments a read-only tool can run with, from its input schema.
fn read_only_arguments(tool: &pb::Tool, customer: &str) -> Value {
    let schema = from_proto_struct(tool.input_schema.as_ref().unwrap());
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let mut arguments = Map::new();
    if tool.operation == "LIST" {
        arguments.insert("page_size".to_owned(), json!(3));
        if required.contains(&"conditions") {
            let text = schema["properties"]["conditions"]["description"]
                .as_str()
                .unwrap();
            let needed = text
                .rsplit_once("Required: ")
                .unwrap()
                .1
                .trim_end_matches('.');
            let clauses: Vec<String> = needed
                .split(" AND ")
                .map(|part| {
                    let (field, example) = part.split_once(" = ").unwrap();
                    let value = match (field, example) {
                        ("Customer", "'<id>'") => format!("'{customer}'"),
                        (_, "'<id>'") => "'id_missing'".to_owned(),
                        _ => example.to_owned(),
                    };
                    format!("{field} = {value}")
                })
                .collect();
            arguments.insert("conditions".to_owned(), json!(clauses.join(" AND ")));
        }
    } else {
        for key in required {
            let value = if key == "Customer" || tool.name == "get_customer" {
                customer
            } else {
                "id_missing"
            };
            arguments.insert(key.to_owned(), json!(value));
        }
    }
    Value::Object(arguments)
}

#[tokio::test]
async fn every_read_only_tool_runs_against_the_sandbox_without_a_server_error() {
    let home = Home::new();
    let admin = service(&home).await;
    let everything = pb::ToolPolicy {
        allow: vec!["*".to_owned()],
        allow_destructive: vec!["*".to_owned()],
        ..Default::default()
    };
    admin
        .add_connection(connection(&admin, "everything", "test-key", everything))
        .await;
    let service = admin.as_caller(INVOKER_TOKEN);
    let all = list(&service, "everything", &[]).await.unwrap();
    let spec = connector_runtime::spec::stripe().unwrap();
    let operations: usize = spec
        .entities
        .iter()
        .map(|e| e.operations.iter().count())
        .sum();
    assert_eq!(
        all.len(),
        operations + spec.actions.len(),
        "one tool per operation and action"
    );
    let customer = execute(
        &service,
        "everything",
        "create_customer",
        json!({"request_id": "sweep-1"}),
    )
    .await
    .unwrap();
    let customer = customer["Id"].as_str().unwrap();
    let mut failures = Vec::new();
    let mut ok = 0;
    for tool in all
        .iter()
        .filter(|t| t.annotations.as_ref().unwrap().read_only_hint)
    {
        match execute(
            &service,
            "everything",
            &tool.name,
            read_only_arguments(tool, customer),
        )
        .await
        {
            Ok(_) => ok += 1,
            Err(status) => {
                let server_side = matches!(
                    status.code(),
                    Code::Internal
                        | Code::Unknown
                        | Code::Unimplemented
                        | Code::Unavailable
                        | Code::DataLoss
                );
                // The runtime's own validation refusing generated arguments means a wrong schema.
                if server_side || reason(&status) == "INVALID_ARGUMENT" {
                    failures.push(format!(
                        "{}: {:?} {}",
                        tool.name,
                        status.code(),
                        status.message()
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "read-only tools failed:\n{}",
        failures.join("\n")
    );
    assert!(ok > 50, "only {ok} read-only tools succeeded");
    admin.shutdown().await;
}
