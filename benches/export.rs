//! One cursor versus the partitioned ExportEntities, and the service's peak memory while
//! exporting 10,000 and 50,000 customers.
//!
//! Run: `cargo bench --bench export` (10,000 and 50,000 customers) or
//! `cargo bench --bench export -- --quick` (10,000 only). Three processes: this client, the
//! service (the release binary, `serve`) and the backend (the same binary's `sandbox`, rate limit
//! off, its simulated clock a minute per object, then 50 ms added to every request). The
//! service's connection has nodes and a Stripe budget large enough not to bind.
//!
//! "One cursor" walks ListEntities in Stripe's order (pages of 200, two upstream calls each),
//! exactly what a client following Stripe's `starting_after` does. The export reads with
//! `max_parallelism` 32. Printed: seconds, entities/s, speed-up, whether the id sets are
//! identical, and the service's peak resident memory (VmHWM).

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Instant;

use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use connector_runtime::api::pb::export_entities_response::Item;
use futures::StreamExt;
use tonic::transport::Channel;

#[path = "../tests/common/process.rs"]
mod process;
use process::{ChildGuard, free_port, wait_for_port};

const PARALLELISM: i32 = 32;

/// Peak resident memory of a process, in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn wait_for(port: u16) {
    assert!(wait_for_port(port).await, "nothing listens on port {port}");
}

fn start_sandbox() -> (ChildGuard, String, u16) {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["sandbox", "--rate-limit", "0", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the sandbox");
    (ChildGuard(child), format!("http://127.0.0.1:{port}"), port)
}

async fn patch(sandbox: &str, body: &'static str) {
    let response = reqwest::Client::new()
        .post(format!("{sandbox}/_sandbox/config"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
}

async fn seed(sandbox: &str, count: usize) {
    patch(
        sandbox,
        r#"{"clock": {"start": 1500000000, "step": "60s"}}"#,
    )
    .await;
    let http = reqwest::Client::new();
    futures::stream::iter(0..count)
        .map(|n| {
            let http = http.clone();
            async move {
                let response = http
                    .post(format!("{sandbox}/v1/customers"))
                    .bearer_auth("sk_test_bench_0123456789")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("email=bench{n:06}%40example.com&metadata[n]={n}"))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    patch(sandbox, r#"{"faults": {"latency": "50ms"}}"#).await;
}

/// The service (release binary) with nodes and budget that do not bind, and a connection
/// `bench` to `sandbox`.
async fn start_service(dir: &std::path::Path, sandbox: &str) -> (ChildGuard, u32, Channel) {
    let port = free_port();
    let config = dir.join("service.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[sandbox]\nenabled = \"never\"\n\
             [log]\nlevel = \"warn\"\n[nodes]\nnode_rate = 100000\nnode_burst = 100000\n\
             [nodes.stripe_budget]\ntest = 100000\n",
            dir.join("data")
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("BENCH_STRIPE_KEY", "sk_test_bench_0123456789")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the service");
    let pid = child.id();
    wait_for(port).await;
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ConnectionServiceClient::new(channel.clone())
        .create_connection(pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(pb::Connection {
                name: "connections/bench".to_owned(),
                api_key: Some(pb::SecretRef {
                    secret: "env:BENCH_STRIPE_KEY".to_owned(),
                    version: "latest".to_owned(),
                }),
                api_base_url: sandbox.to_owned(),
                node_config: Some(pb::NodeConfig {
                    min_node_count: 64,
                    max_node_count: 64,
                }),
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    (ChildGuard(child), pid, channel)
}

fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

async fn one_cursor(channel: &Channel) -> (f64, BTreeSet<String>) {
    let mut client = EntityServiceClient::new(channel.clone());
    let start = Instant::now();
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = client
            .list_entities(pb::ListEntitiesRequest {
                parent: "connections/bench/entityTypes/Customer".to_owned(),
                page_size: 200,
                page_token: token,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(page.entities.iter().map(|e| id_of(&e.name)));
        if page.next_page_token.is_empty() {
            return (start.elapsed().as_secs_f64(), ids);
        }
        token = page.next_page_token;
    }
}

async fn export(channel: &Channel) -> (f64, BTreeSet<String>, usize) {
    let mut client = EntityServiceClient::new(channel.clone());
    let start = Instant::now();
    let mut stream = client
        .export_entities(pb::ExportEntitiesRequest {
            parent: "connections/bench/entityTypes/Customer".to_owned(),
            max_parallelism: PARALLELISM,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut ids = BTreeSet::new();
    let mut partitions = 0;
    while let Some(message) = stream.next().await {
        match message.unwrap().item {
            Some(Item::Entity(e)) => {
                ids.insert(id_of(&e.entity.unwrap_or_default().name));
            }
            Some(Item::Plan(plan)) => partitions = plan.partitions.len(),
            _ => {}
        }
    }
    (start.elapsed().as_secs_f64(), ids, partitions)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok();
    let sizes: &[usize] = if quick { &[10_000] } else { &[10_000, 50_000] };
    println!(
        "| customers | one cursor | export (parallelism {PARALLELISM}) | speed-up | same ids | partitions | service peak RSS |"
    );
    println!("|---:|---:|---:|---:|---|---:|---:|");
    for &count in sizes {
        let dir = tempfile::tempdir().unwrap();
        let (_sandbox, sandbox, port) = start_sandbox();
        wait_for(port).await;
        seed(&sandbox, count).await;
        let (_service, pid, channel) = start_service(dir.path(), &sandbox).await;
        let (exported_s, exported, partitions) = export(&channel).await;
        assert_eq!(exported.len(), count, "the export returns every customer");
        let peak = peak_rss_kib(pid);
        // The single cursor at 10,000 only: at 50,000 it takes minutes and proves nothing new.
        let (cursor, same) = if count <= 10_000 {
            let (cursor_s, listed) = one_cursor(&channel).await;
            (Some(cursor_s), Some(listed == exported))
        } else {
            (None, None)
        };
        println!(
            "| {count} | {} | {exported_s:.2} s ({:.0}/s) | {} | {} | {partitions} | {:.1} MB |",
            cursor.map_or("—".to_owned(), |c| format!(
                "{c:.2} s ({:.0}/s)",
                count as f64 / c
            )),
            count as f64 / exported_s,
            cursor.map_or("—".to_owned(), |c| format!("{:.1}×", c / exported_s)),
            same.map_or("—", |s| if s { "yes" } else { "NO" }),
            peak as f64 / 1024.0,
        );
    }
}
