//! Throttling end to end over gRPC: a one-node pool at 1 transaction/s refuses the calls beyond
//! its capacity with RESOURCE_EXHAUSTED, RetryInfo and QuotaFailure; likewise the Stripe budget.

mod common;

use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use connector_runtime::connections::model::NodeSettings;
use tonic::Code;
use tonic_types::StatusExt;

/// Starts the service with one connection to the built-in sandbox, shaped by `tune`.
async fn service_with(
    tune: impl FnOnce(&mut connector_runtime::config::Settings),
    nodes: NodeSettings,
) -> Service {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("sandbox-key", "1", "sk_test_throttling_0123456789");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    tune(&mut settings);
    let service = start(settings).await;
    let sandbox_url = service.sandbox_url();
    let connection = pb::Connection {
        node_config: Some(pb::NodeConfig {
            min_node_count: nodes.min_node_count as i32,
            max_node_count: nodes.max_node_count as i32,
        }),
        ..Service::connection_to("tight", "sandbox-key", &sandbox_url)
    };
    service.add_connection(connection).await;
    service
}

async fn first_refusal(service: &Service, calls: usize) -> tonic::Status {
    for _ in 0..calls {
        let request = pb::ListEntitiesRequest {
            parent: "connections/tight/entityTypes/Customer".to_owned(),
            page_size: 1,
            ..Default::default()
        };
        if let Err(status) = service.entities().list_entities(request).await {
            return status;
        }
    }
    panic!("{calls} calls were all admitted");
}

#[tokio::test]
async fn calls_beyond_node_capacity_get_resource_exhausted_with_retry_and_quota_details() {
    let service = service_with(
        |s| {
            s.nodes.node_rate = 1;
            s.nodes.node_burst = 1;
            s.nodes.max_wait = Duration::from_millis(50);
        },
        NodeSettings {
            min_node_count: 1,
            max_node_count: 1,
        },
    )
    .await;
    let status = first_refusal(&service, 5).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "NODE_CAPACITY");
    let details = status.get_error_details();
    let retry = details
        .retry_info()
        .and_then(|r| r.retry_delay)
        .expect("RetryInfo");
    assert!(
        retry > Duration::ZERO && retry <= Duration::from_secs(1),
        "{retry:?}"
    );
    let quota = details.quota_failure().expect("QuotaFailure");
    assert_eq!(quota.violations[0].subject, "NODE_CAPACITY");
    assert!(
        quota.violations[0].description.contains("1 transactions/s"),
        "{}",
        quota.violations[0].description
    );

    let connection = service
        .connections()
        .get_connection(pb::GetConnectionRequest {
            name: "connections/tight".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let figures = connection.node_status.unwrap();
    assert!(
        figures.throttled >= 1 && figures.admitted >= 1,
        "{figures:?}"
    );
    assert_eq!(figures.current_nodes, 1);
    service.shutdown().await;
}

#[tokio::test]
async fn the_stripe_account_budget_throttles_with_its_own_reason() {
    let service = service_with(
        |s| {
            s.nodes.stripe_budget.test = 1;
            s.nodes.max_wait = Duration::from_millis(50);
        },
        NodeSettings {
            min_node_count: 2,
            max_node_count: 2,
        },
    )
    .await;
    let status = first_refusal(&service, 5).await;
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert_eq!(reason(&status), "STRIPE_RATE_BUDGET");
    assert!(status.get_error_details().retry_info().is_some());
    service.shutdown().await;
}
