//! GetEntity through the runtime versus the same GET sent straight to the same backend, at 1 and
//! 32 concurrent callers: throughput, p50/p99 latency, and the service's resident memory.
//!
//! Run: `cargo bench --bench grpc` (10 s per phase) or `cargo bench --bench grpc -- --quick` (1 s).
//! The service runs as its own process (the release binary), with the built-in sandbox as the
//! backend, the sandbox's rate limit off and nodes ample, so throttling does not bind.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_runtime::api::convert::to_proto_struct;
use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use serde_json::json;
use tonic::transport::Channel;

struct Service(Child);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Figures {
    calls: usize,
    seconds: f64,
    p50: Duration,
    p99: Duration,
}

fn summarize(mut latencies: Vec<Duration>, seconds: f64) -> Figures {
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Figures {
        calls: latencies.len(),
        seconds,
        p50: at(0.50),
        p99: at(0.99),
    }
}

async fn run_phase<F, Fut>(callers: usize, duration: Duration, call: F) -> Figures
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let call = Arc::new(call);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..callers {
        let call = call.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while start.elapsed() < duration {
                let t = Instant::now();
                call().await;
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    summarize(all, start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok();
    let duration = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("bench.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = {:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[sandbox]\nrate_limit = 0\n[nodes]\nnode_rate = 1000000\nnode_burst = 1000000\n[nodes.stripe_budget]\ntest = 1000000\nlive = 1000000\n[log]\nlevel = \"warn\"\n",
            dir.path().join("data")
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the service");
    let pid = child.id();
    let _service = Service(child);
    let addr = format!("http://127.0.0.1:{port}");
    let channel = loop {
        match Channel::from_shared(addr.clone()).unwrap().connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let connection = ConnectionServiceClient::new(channel.clone())
        .get_connection(pb::GetConnectionRequest {
            name: "connections/stripe-sandbox".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let sandbox = connection.api_base_url.clone();
    let mut entities = EntityServiceClient::new(channel.clone());
    let created = entities
        .create_entity(pb::CreateEntityRequest {
            parent: "connections/stripe-sandbox/entityTypes/Customer".to_owned(),
            entity: Some(pb::Entity {
                fields: Some(to_proto_struct(
                    json!({"Email": "bench@example.com", "Name": "Bench"})
                        .as_object()
                        .unwrap(),
                )),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let name = created.name.clone();
    let id = name.rsplit('/').next().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(pid);

    let http = reqwest::Client::builder().build().unwrap();
    let direct_url = format!("{sandbox}/v1/customers/{id}");
    println!(
        "GetEntity through the runtime vs the same GET straight to the sandbox ({}s per phase)",
        duration.as_secs()
    );
    println!("| path | callers | calls/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    let mut loaded_kib = 0;
    let mut results = Vec::new();
    for callers in [1usize, 32] {
        let http = http.clone();
        let url = direct_url.clone();
        let direct = run_phase(callers, duration, move || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let response = http
                    .get(&url)
                    .bearer_auth("sk_test_bench")
                    .header("Stripe-Version", "2023-08-16")
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
                let _ = response.bytes().await.unwrap();
            }
        })
        .await;
        let channel = channel.clone();
        let entity = name.clone();
        let sampler = tokio::spawn(async move {
            let mut max = 0;
            let start = Instant::now();
            while start.elapsed() < duration {
                max = max.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            max
        });
        let runtime = run_phase(callers, duration, move || {
            let mut client = EntityServiceClient::new(channel.clone());
            let name = entity.clone();
            async move {
                client
                    .get_entity(pb::GetEntityRequest { name })
                    .await
                    .unwrap();
            }
        })
        .await;
        loaded_kib = loaded_kib.max(sampler.await.unwrap());
        for (path, f) in [
            ("direct HTTP", &direct),
            ("through runtime (gRPC)", &runtime),
        ] {
            println!(
                "| {path} | {callers} | {:.0} | {:.0} µs | {:.0} µs |",
                f.calls as f64 / f.seconds,
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6
            );
        }
        results.push((callers, direct, runtime));
    }
    for (callers, direct, runtime) in &results {
        let added = runtime.p50.as_secs_f64() * 1e6 - direct.p50.as_secs_f64() * 1e6;
        let ratio = (runtime.calls as f64 / runtime.seconds)
            / (direct.calls as f64 / direct.seconds)
            * 100.0;
        println!(
            "callers {callers}: added p50 latency {added:.0} µs; runtime throughput {ratio:.0} % of direct"
        );
    }
    println!(
        "service resident memory: idle {:.1} MB, loaded (max) {:.1} MB",
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0
    );
}
