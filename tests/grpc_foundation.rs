//! The service foundation over real sockets: health, reflection, connections, validation,
//! authentication, persistence, secrets and graceful drain.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use connector_runtime::app::DrainOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

const STRIPE_KEY: &str = "sk_test_51SECRETVALUEnever_to_be_seen_0123456789";

fn stripe_connection(id: &str) -> pb::Connection {
    pb::Connection {
        name: format!("connections/{id}"),
        description: "EU account".to_owned(),
        api_key: Some(pb::SecretRef {
            secret: "stripe-key".to_owned(),
            version: "1".to_owned(),
        }),
        verbosity: 5,
        node_config: Some(pb::NodeConfig {
            min_node_count: 2,
            max_node_count: 10,
        }),
        labels: [("team".to_owned(), "payments".to_owned())].into(),
        ..Default::default()
    }
}

async fn create(
    service: &Service,
    connection: pb::Connection,
) -> Result<pb::Connection, tonic::Status> {
    service
        .connections()
        .create_connection(service.request(pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(connection),
        }))
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn health_serves_and_reflection_lists_the_api_in_v1_and_v1alpha() {
    let home = Home::new();
    let service = start(home.settings(false)).await;
    let mut health = HealthClient::new(service.channel.clone());
    for name in [
        "",
        "connectors.v1.EntityService",
        "connectors.v1.ActionService",
        "connectors.v1.ConnectionService",
        "connectors.v1.ToolService",
    ] {
        let response = health
            .check(HealthCheckRequest {
                service: name.to_owned(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(response.status, ServingStatus::Serving as i32, "{name:?}");
    }

    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient as V1;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest as V1Request;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse as V1Response;
    let request = tonic_reflection::pb::v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(V1Request::ListServices(String::new())),
    };
    let mut stream = V1::new(service.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(V1Response::ListServicesResponse(list)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for expected in [
        "connectors.v1.EntityService",
        "connectors.v1.ActionService",
        "connectors.v1.ConnectionService",
        "connectors.v1.ToolService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }

    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as V1Alpha;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::FileContainingSymbol(
            "connectors.v1.ActionService".to_owned(),
        )),
    };
    let mut stream = V1Alpha::new(service.channel.clone())
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(AlphaResponse::FileDescriptorResponse(files)) =
        stream.message().await.unwrap().unwrap().message_response
    else {
        panic!("expected file descriptors");
    };
    assert!(!files.file_descriptor_proto.is_empty());
    service.shutdown().await;
}

#[tokio::test]
async fn connections_are_created_read_listed_updated_and_deleted() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let service = start(home.settings(true)).await.with_token(ADMIN_TOKEN);
    let created = create(&service, stripe_connection("stripe-eu"))
        .await
        .unwrap();
    assert_eq!(created.name, "connections/stripe-eu");
    assert_eq!(created.connector, "stripe");
    assert_eq!(created.api_base_url, "https://api.stripe.com");
    assert_eq!(created.api_key.as_ref().unwrap().secret, "stripe-key");
    assert_eq!(created.node_status.unwrap().current_nodes, 2);

    let mut client = service.connections();
    let got = client
        .get_connection(service.request(pb::GetConnectionRequest {
            name: "connections/stripe-eu".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.description, "EU account");
    assert_eq!(got.labels.get("team").map(String::as_str), Some("payments"));

    let listed = client
        .list_connections(service.request(pb::ListConnectionsRequest::default()))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.connections.iter().map(|c| c.name.as_str()).collect();
    assert!(names.contains(&"connections/stripe-eu"), "{names:?}");

    let mut change = got.clone();
    change.node_config = Some(pb::NodeConfig {
        min_node_count: 3,
        max_node_count: 20,
    });
    change.description = "ignored: not in the mask".to_owned();
    let updated = client
        .update_connection(service.request(pb::UpdateConnectionRequest {
            connection: Some(change),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["node_config".to_owned()],
            }),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.node_config.unwrap().max_node_count, 20);
    assert_eq!(updated.description, "EU account");
    assert_eq!(
        updated.node_status.unwrap().current_nodes,
        3,
        "a new minimum applies live"
    );

    client
        .delete_connection(service.request(pb::DeleteConnectionRequest {
            name: "connections/stripe-eu".to_owned(),
        }))
        .await
        .unwrap();
    let missing = client
        .get_connection(service.request(pb::GetConnectionRequest {
            name: "connections/stripe-eu".to_owned(),
        }))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert_eq!(reason(&missing), "CONNECTION_NOT_FOUND");
    service.shutdown().await;
}

#[tokio::test]
async fn each_validation_rule_is_its_own_field_violation() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let service = start(home.settings(true)).await.with_token(ADMIN_TOKEN);
    let cases: Vec<(&str, pb::Connection, &str)> = vec![
        (
            "uppercase name",
            stripe_connection("Stripe-EU"),
            "connection.name",
        ),
        (
            "name ending in a hyphen",
            stripe_connection("stripe-"),
            "connection.name",
        ),
        (
            "name starting with a digit",
            stripe_connection("1stripe"),
            "connection.name",
        ),
        (
            "name of 50 characters",
            stripe_connection(&format!("s{}", "a".repeat(49))),
            "connection.name",
        ),
        (
            "verbosity 6",
            pb::Connection {
                verbosity: 6,
                ..stripe_connection("v6")
            },
            "connection.verbosity",
        ),
        (
            "min above max",
            pb::Connection {
                node_config: Some(pb::NodeConfig {
                    min_node_count: 5,
                    max_node_count: 3,
                }),
                ..stripe_connection("minmax")
            },
            "connection.node_config",
        ),
        (
            "unknown enum value",
            pb::Connection {
                log_level: 42,
                ..stripe_connection("loglevel")
            },
            "log_level",
        ),
        (
            "secret that does not resolve",
            pb::Connection {
                api_key: Some(pb::SecretRef {
                    secret: "nope".to_owned(),
                    version: "1".to_owned(),
                }),
                ..stripe_connection("nosecret")
            },
            "connection.api_key",
        ),
        (
            "unresolvable secret version",
            pb::Connection {
                api_key: Some(pb::SecretRef {
                    secret: "stripe-key".to_owned(),
                    version: "7".to_owned(),
                }),
                ..stripe_connection("noversion")
            },
            "connection.api_key",
        ),
    ];
    for (case, connection, field) in cases {
        let status = create(&service, connection).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{case}: {status:?}");
        let fields = violation_fields(&status);
        assert!(
            fields.iter().any(|f| f.starts_with(field)),
            "{case}: expected a violation on {field}, got {fields:?}"
        );
    }
    let duplicate = create(&service, stripe_connection("stripe-dup"))
        .await
        .unwrap();
    assert_eq!(duplicate.name, "connections/stripe-dup");
    let again = create(&service, stripe_connection("stripe-dup"))
        .await
        .unwrap_err();
    assert_eq!(again.code(), Code::AlreadyExists);
    service.shutdown().await;
}

#[tokio::test]
async fn callers_without_a_token_or_the_right_role_are_refused() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let service = start(home.settings(true)).await;
    let anonymous = create(&service, stripe_connection("anon"))
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), Code::Unauthenticated);
    let wrong = service.as_caller("not-a-token");
    let unknown = create(&wrong, stripe_connection("anon")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::Unauthenticated);
    let invoker = service.as_caller(INVOKER_TOKEN);
    let denied = create(&invoker, stripe_connection("anon"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert_eq!(reason(&denied), "ROLE_REQUIRED");
    // Invokers may read.
    invoker
        .connections()
        .list_connections(invoker.request(pb::ListConnectionsRequest::default()))
        .await
        .unwrap();
    // Health stays open for probes.
    HealthClient::new(service.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    service.shutdown().await;
}

#[tokio::test]
async fn connections_created_at_run_time_survive_a_restart() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let service = start(home.settings(true)).await.with_token(ADMIN_TOKEN);
    create(&service, stripe_connection("stripe-kept"))
        .await
        .unwrap();
    service.shutdown().await;

    let service = start(home.settings(true)).await.with_token(ADMIN_TOKEN);
    let got = service
        .connections()
        .get_connection(service.request(pb::GetConnectionRequest {
            name: "connections/stripe-kept".to_owned(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.description, "EU account");
    assert_eq!(got.origin, pb::connection::Origin::Api as i32);
    service.shutdown().await;
}

#[tokio::test]
async fn a_secret_value_never_appears_in_responses_or_logs() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let service = start(home.settings(true)).await.with_token(ADMIN_TOKEN);
    let mut seen = Vec::new();
    // Verbosity 5 logs whole exchanges; the upstream here refuses connections at once.
    let unreachable = pb::Connection {
        api_base_url: "http://127.0.0.1:9".to_owned(),
        ..stripe_connection("secretive")
    };
    seen.push(format!(
        "{:?}",
        create(&service, unreachable).await.unwrap()
    ));
    let invalid = pb::Connection {
        verbosity: 9,
        ..stripe_connection("secretive-bad")
    };
    seen.push(format!(
        "{:?}",
        create(&service, invalid).await.unwrap_err()
    ));
    let mut client = service.connections();
    let listed = client
        .list_connections(service.request(pb::ListConnectionsRequest::default()))
        .await;
    seen.push(format!("{:?}", listed.unwrap()));
    let mut request = service.request(pb::CheckStatusRequest {
        name: "connections/secretive".to_owned(),
    });
    request.set_timeout(Duration::from_secs(2));
    let status = client.check_status(request).await.unwrap().into_inner();
    assert_eq!(
        status.state,
        pb::check_status_response::State::Error as i32,
        "{status:?}"
    );
    seen.push(format!("{status:?}"));
    let get = pb::GetEntityRequest {
        name: "connections/secretive/entityTypes/Customer/entities/cus_1".to_owned(),
    };
    let mut request = service.as_caller(INVOKER_TOKEN).request(get);
    request.set_timeout(Duration::from_secs(2));
    seen.push(format!(
        "{:?}",
        service.entities().get_entity(request).await.unwrap_err()
    ));
    for text in seen.iter().chain(std::iter::once(&logs_text())) {
        assert!(!text.contains(STRIPE_KEY), "the key leaked: {text}");
        assert!(!text.contains(ADMIN_TOKEN), "a token leaked: {text}");
    }
    service.shutdown().await;
}

/// An upstream that holds every request until the test releases it: `arrived` hears of each
/// request as it comes in; dropping or sending on `release` lets the answers (a customer) go.
async fn held_upstream() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let body = r#"{"id":"cus_slow","object":"customer","created":1700000000,"livemode":false,"email":"slow@example.com"}"#;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (arrived_tx, arrived) = tokio::sync::mpsc::unbounded_channel();
    let (release, released) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (arrived_tx, mut released) = (arrived_tx.clone(), released.clone());
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let _ = socket.read(&mut buffer).await;
                let _ = arrived_tx.send(());
                let _ = released.wait_for(|go| *go).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (url, arrived, release)
}

/// An upstream that answers every request with `body` after `delay`.
async fn canned_upstream(delay: Duration, body: &'static str) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                let _ = socket.read(&mut buffer).await;
                tokio::time::sleep(delay).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    url
}

#[tokio::test]
async fn graceful_shutdown_reports_not_serving_and_completes_in_flight_calls() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let mut settings = home.settings(false);
    let mut connection = connector_runtime::connections::model::ConnectionSpec::with_id("slow");
    connection.api_key = Some(secret("stripe-key"));
    let (url, mut arrived, release) = held_upstream().await;
    connection.api_base_url = url;
    settings.connections = vec![connection];
    settings.server.drain_timeout = Duration::from_secs(20);
    let mut service = start(settings).await;

    let mut watch = HealthClient::new(service.channel.clone())
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let first: HealthCheckResponse = watch.message().await.unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    let mut entities = service.entities();
    let in_flight = tokio::spawn(async move {
        let name = "connections/slow/entityTypes/Customer/entities/cus_slow".to_owned();
        entities.get_entity(pb::GetEntityRequest { name }).await
    });
    // The call is in flight once its request has reached the upstream, which holds it.
    arrived.recv().await.unwrap();
    let shutdown = tokio::spawn(service.running.take().unwrap().shutdown());

    let next = watch.message().await.unwrap().unwrap();
    assert_eq!(
        next.status,
        ServingStatus::NotServing as i32,
        "health goes NOT_SERVING while draining"
    );
    // A watcher that hears NOT_SERVING goes away; a stream left open would hold the drain.
    drop(watch);
    // Only now, with the drain under way, does the upstream answer.
    release.send(true).unwrap();
    let entity = in_flight
        .await
        .unwrap()
        .expect("the in-flight call completes")
        .into_inner();
    assert_eq!(
        entity.name,
        "connections/slow/entityTypes/Customer/entities/cus_slow"
    );
    let outcome = shutdown.await.unwrap().unwrap();
    assert_eq!(
        outcome,
        DrainOutcome::Completed,
        "the drain ends with the last call, not at its timeout"
    );
}

#[tokio::test]
async fn a_deleted_stub_from_stripe_reads_as_not_found() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", STRIPE_KEY);
    let mut settings = home.settings(false);
    let mut connection = connector_runtime::connections::model::ConnectionSpec::with_id("stubbed");
    connection.api_key = Some(secret("stripe-key"));
    // What Stripe answers for a deleted customer.
    connection.api_base_url = canned_upstream(
        Duration::ZERO,
        r#"{"id":"cus_gone","object":"customer","deleted":true}"#,
    )
    .await;
    settings.connections = vec![connection];
    let service = start(settings).await;
    let gone = service
        .get("stubbed", "Customer", "cus_gone")
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(reason(&gone), "STRIPE_RESOURCE_MISSING");
    service.shutdown().await;
}

#[tokio::test]
async fn serving_beyond_loopback_without_tokens_needs_the_insecure_flag() {
    let home = Home::new();
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let refused = connector_runtime::app::start(
        home.settings(false),
        false,
        listener,
        std::future::pending(),
    )
    .await;
    let message = refused.err().expect("refuses to start").to_string();
    assert!(message.contains("insecure"), "{message}");

    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let running =
        connector_runtime::app::start(home.settings(false), true, listener, std::future::pending())
            .await
            .unwrap();
    running.shutdown().await.unwrap();

    // With tokens configured, no flag is needed.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let running =
        connector_runtime::app::start(home.settings(true), false, listener, std::future::pending())
            .await
            .unwrap();
    running.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_embedded_sandbox_connection_takes_operational_changes_only() {
    let home = Home::new();
    let service = start(home.settings(false)).await;
    let mut connections = service.connections();
    let name = "connections/stripe-sandbox".to_owned();
    let current = connections
        .get_connection(pb::GetConnectionRequest { name: name.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(current.origin, pb::connection::Origin::Embedded as i32);
    let mask = |paths: &[&str]| {
        Some(prost_types::FieldMask {
            paths: paths.iter().map(|p| (*p).to_owned()).collect(),
        })
    };

    // Node counts, verbosity and labels: the levers an operator tries first.
    let mut change = current.clone();
    change.verbosity = 3;
    change.node_config = Some(pb::NodeConfig {
        min_node_count: 1,
        max_node_count: 4,
    });
    change.labels = HashMap::from([("team".to_owned(), "billing".to_owned())]);
    let updated = connections
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(change),
            update_mask: mask(&["verbosity", "node_config", "labels"]),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.verbosity, 3);
    assert_eq!(updated.labels["team"], "billing");
    let bounds = updated.node_config.expect("node counts");
    assert_eq!((bounds.min_node_count, bounds.max_node_count), (1, 4));
    let status = updated.node_status.clone().expect("live node figures");
    assert!((1..=4).contains(&status.current_nodes), "{status:?}");

    // Its key and base URL stay the built-in sandbox's.
    let mut change = updated.clone();
    change.api_base_url = "https://api.stripe.com".to_owned();
    let refused = connections
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(change),
            update_mask: mask(&["api_base_url"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "CONNECTION_READ_ONLY");
    assert!(
        refused.message().contains("node_config"),
        "{}",
        refused.message()
    );

    // A bad node count is a field violation, as on any connection.
    let mut change = updated.clone();
    change.node_config = Some(pb::NodeConfig {
        min_node_count: 5,
        max_node_count: 4,
    });
    let refused = connections
        .update_connection(pb::UpdateConnectionRequest {
            connection: Some(change),
            update_mask: mask(&["node_config"]),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);

    let refused = connections
        .delete_connection(pb::DeleteConnectionRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(reason(&refused), "CONNECTION_READ_ONLY");
    let again = connections
        .get_connection(pb::GetConnectionRequest { name })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.node_config.unwrap().max_node_count, 4);
    assert_eq!(again.api_base_url, current.api_base_url);
    service.shutdown().await;
}
