//! ExportEntities in the engine against the sandbox over real HTTP, with 100 ms added to every
//! upstream request: when the consumer drops the events (a client cancelling), the export's task
//! — every upstream read — ends within a second, long before the export would have finished.

mod common;

use std::sync::Arc;
use std::time::Duration;

use connector_runtime::engine::Engine;
use connector_runtime::engine::export::{ExportEvent, ExportRequest};
use connector_runtime::sandbox::{self, SANDBOX_API_KEY, SandboxConfig, SimulatedClock};
use futures::StreamExt;
use serde_json::Value;

const CUSTOMERS: usize = 2000;

async fn customer_lists(http: &reqwest::Client, base: &str) -> u64 {
    let stats: Value = http
        .get(format!("{base}/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_route"]["GET /v1/customers"]
        .as_object()
        .map_or(0, |codes| codes.values().filter_map(Value::as_u64).sum())
}

#[tokio::test]
async fn dropping_the_events_stops_every_upstream_read_within_a_second() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let spec = Arc::new(connector_runtime::spec::stripe().unwrap().clone());
    let handle = sandbox::start(
        spec.clone(),
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            rate_limit: None,
            clock: Some(SimulatedClock {
                start: 1_600_000_000,
                step: Duration::from_secs(60),
            }),
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let base = handle.base_url();
    let http = reqwest::Client::new();
    futures::stream::iter(0..CUSTOMERS)
        .map(|n| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let response = http
                    .post(format!("{base}/v1/customers"))
                    .bearer_auth(SANDBOX_API_KEY)
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("email=c{n}%40example.com"))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<()>>()
        .await;
    let patched = http
        .post(format!("{base}/_sandbox/config"))
        .body(r#"{"faults": {"latency": "100ms"}}"#)
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());

    let conn = Arc::new(common::sandbox_connection(&spec, &base, "export", 8));
    let engine = Engine::new(spec);
    let before = customer_lists(&http, &base).await;
    let mut export = engine
        .export(
            conn,
            "Customer",
            ExportRequest {
                max_parallelism: 4,
                ..ExportRequest::default()
            },
        )
        .unwrap();
    let mut partitions = 0;
    loop {
        match export.events.recv().await.unwrap().unwrap() {
            ExportEvent::Plan(plan) => partitions = plan.len(),
            ExportEvent::Entity { .. } => break,
            ExportEvent::Progress(_) => {}
        }
    }
    assert!(partitions >= 8);
    drop(export.events);
    tokio::time::timeout(Duration::from_secs(1), export.task)
        .await
        .expect("the export's reads stop within a second of the cancel")
        .unwrap();
    // Planning took 33 calls and each of the 4 readers at most a page or two; the whole export
    // needs at least 33 + one call per partition + 2,000 / 100 pages.
    let made = customer_lists(&http, &base).await - before;
    let whole = 33 + partitions as u64 + (CUSTOMERS / 100) as u64;
    assert!(
        made < whole - 8,
        "{made} calls made, of the {whole} the export needs"
    );
    drop(handle);
}
