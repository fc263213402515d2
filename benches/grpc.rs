//! GetEntity through the runtime versus the same GET sent straight to the same backend, at 1 and
//! 32 concurrent callers: throughput, p50/p99 latency, the CPU each process spends per call, and
//! the service's resident memory.
//!
//! Run: `cargo bench --bench grpc` (10 s per phase) or `cargo bench --bench grpc -- --quick` (1 s);
//! `-- telemetry` runs only the telemetry overhead comparison (off / OTLP on / collector down).
//! The service runs as its own process (the release binary), with the built-in sandbox as the
//! backend, the sandbox's rate limit off and nodes ample, so throttling does not bind.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use connector_runtime::api::convert::to_proto_struct;
use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use serde_json::json;
use tonic::transport::Channel;

#[path = "../tests/common/process.rs"]
mod process;
use process::{ChildGuard, free_port, wait_for_port};

#[path = "common/otlp_receiver.rs"]
mod otlp_receiver;
use otlp_receiver::CountingReceiver;

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

/// CPU time (user + system) the process has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime 14 and stime 15.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// CPU time of the bench client, the service and the sandbox from the start of a phase.
struct CpuMeter {
    pids: [u32; 3],
    start: [f64; 3],
}

impl CpuMeter {
    fn start(pids: [u32; 3]) -> Self {
        Self {
            pids,
            start: pids.map(cpu_seconds),
        }
    }

    /// Microseconds of CPU per call each process has spent since the start.
    fn per_call(&self, calls: usize) -> [f64; 3] {
        let calls = calls.max(1) as f64;
        std::array::from_fn(|i| (cpu_seconds(self.pids[i]) - self.start[i]) * 1e6 / calls)
    }
}

/// The kernel's clock tick rate of /proc's CPU times (`getconf CLK_TCK`, almost always 100).
fn clock_ticks_per_second() -> f64 {
    static HZ: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *HZ.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
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

/// Starts the release binary with the sandbox (rate limit off) and `extra` settings.
async fn spawn_service(
    dir: &std::path::Path,
    name: &str,
    extra: &str,
) -> (ChildGuard, u32, Channel) {
    let port = free_port();
    let config = dir.join(format!("{name}.toml"));
    let data = dir.join(format!("{name}-data"));
    std::fs::write(
        &config,
        format!("data_dir = {data:?}\n[server]\nlisten = \"127.0.0.1:{port}\"\n[sandbox]\nenabled = \"never\"\n[log]\nlevel = \"warn\"\n{extra}"),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("BENCH_STRIPE_KEY", "sk_test_bench_0123456789")
        // Exporting services flush their spans within their own phase, not during the next one.
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the service");
    let pid = child.id();
    let service = ChildGuard(child);
    let addr = format!("http://127.0.0.1:{port}");
    let channel = loop {
        match Channel::from_shared(addr.clone()).unwrap().connect().await {
            Ok(channel) => break channel,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    (service, pid, channel)
}

/// Creates a connection to the sandbox with a fixed node range.
async fn sandbox_connection(channel: &Channel, id: &str, sandbox: &str, min: i32, max: i32) {
    let connection = pb::Connection {
        name: format!("connections/{id}"),
        api_key: Some(pb::SecretRef {
            secret: "env:BENCH_STRIPE_KEY".to_owned(),
            version: "latest".to_owned(),
        }),
        api_base_url: sandbox.to_owned(),
        node_config: Some(pb::NodeConfig {
            min_node_count: min,
            max_node_count: max,
        }),
        ..Default::default()
    };
    ConnectionServiceClient::new(channel.clone())
        .create_connection(pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(connection),
        })
        .await
        .unwrap();
}

/// Offers `rate(t)` calls per second, open loop, for `total`; returns the completion times of
/// admitted calls (seconds since start) and the number refused.
async fn offer(
    channel: &Channel,
    connection: &str,
    total: Duration,
    rate: impl Fn(f64) -> f64,
) -> (Vec<f64>, usize) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    let mut next = 0.0f64;
    while next < total.as_secs_f64() {
        let at = start + Duration::from_secs_f64(next);
        tokio::time::sleep_until(at.into()).await;
        let mut client = EntityServiceClient::new(channel.clone());
        let parent = format!("connections/{connection}/entityTypes/Customer");
        tasks.push(tokio::spawn(async move {
            let result = client
                .list_entities(pb::ListEntitiesRequest {
                    parent,
                    page_size: 1,
                    ..Default::default()
                })
                .await;
            (result.map(|_| ()), start.elapsed().as_secs_f64())
        }));
        next += 1.0 / rate(next);
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for task in tasks {
        match task.await.unwrap() {
            (Ok(()), t) => admitted.push(t),
            (Err(status), _) => {
                assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
                refused += 1;
            }
        }
    }
    admitted.sort_by(f64::total_cmp);
    (admitted, refused)
}

/// Most completions in any one-second window within [from, to).
fn busiest_second(times: &[f64], from: f64, to: f64) -> usize {
    let inside: Vec<f64> = times
        .iter()
        .copied()
        .filter(|t| *t >= from && *t < to)
        .collect();
    let mut best = 0;
    let mut lo = 0;
    for hi in 0..inside.len() {
        while inside[hi] - inside[lo] >= 1.0 {
            lo += 1;
        }
        best = best.max(hi - lo + 1);
    }
    best
}

#[tokio::main]
async fn main() {
    connector_runtime::upstream::client::ensure_crypto_provider();
    let quick = std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").is_ok();
    // Only the phase of callers that have gone (`-- --only-gone`).
    let only_gone = std::env::args().any(|a| a == "--only-gone");
    let duration = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(10)
    };
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox_process, sandbox_pid, sandbox) = start_sandbox().await;
    if std::env::args().any(|a| a == "telemetry") {
        telemetry_overhead(dir.path(), &sandbox, duration).await;
        return;
    }
    let (service, pid, channel) = spawn_service(
        dir.path(),
        "ample",
        &format!(
            "[nodes]\nnode_rate = 1000000\nnode_burst = 1000000\n[nodes.stripe_budget]\ntest = 1000000\nlive = 1000000\n\
             [[connections]]\nid = \"bench\"\napi_key = {{ secret = \"env:BENCH_STRIPE_KEY\" }}\napi_base_url = \"{sandbox}\"\n"
        ),
    )
    .await;
    let name = create_customer(&channel).await;
    let id = name.rsplit('/').next().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let idle_kib = rss_kib(pid);
    if !only_gone {
        let target = Target {
            channel: channel.clone(),
            name,
            direct_url: format!("{sandbox}/v1/customers/{id}"),
            pids: [std::process::id(), pid, sandbox_pid],
        };
        hot_path(&target, duration, idle_kib).await;
    }
    drop(channel);
    drop(service);

    // Node pools through gRPC against the sandbox (its rate limit off), default node rate 6/s.
    let (_throttled_service, _pid, channel) = spawn_service(
        dir.path(),
        "pools",
        "[nodes.stripe_budget]\ntest = 1000000\nlive = 1000000\n",
    )
    .await;
    if !only_gone {
        pool_precision(&channel, &sandbox, duration).await;
        reaction(&channel, &sandbox, duration).await;
    }
    callers_that_have_gone(&channel, &sandbox, &id, quick).await;
    if !only_gone {
        println!();
        telemetry_overhead(dir.path(), &sandbox, duration).await;
    }
}

/// The backend: the sandbox in its own process, its rate limit off; its pid and base URL.
async fn start_sandbox() -> (ChildGuard, u32, String) {
    let port = free_port();
    let process = ChildGuard(
        Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
            .args([
                "sandbox",
                "--rate-limit",
                "0",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the sandbox"),
    );
    let pid = process.0.id();
    assert!(wait_for_port(port).await, "the sandbox did not start");
    (process, pid, format!("http://127.0.0.1:{port}"))
}

/// Creates the customer the hot path reads; its resource name.
async fn create_customer(channel: &Channel) -> String {
    EntityServiceClient::new(channel.clone())
        .create_entity(pb::CreateEntityRequest {
            parent: "connections/bench/entityTypes/Customer".to_owned(),
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
        .into_inner()
        .name
}

/// What the hot path reads, and the processes whose CPU it meters (bench, service, sandbox).
struct Target {
    channel: Channel,
    /// The entity's resource name, through the runtime.
    name: String,
    /// The same object's URL on the sandbox.
    direct_url: String,
    pids: [u32; 3],
}

/// One row of the hot path: the three paths at one number of callers, with CPU per call.
struct HotPathRow {
    callers: usize,
    direct: Figures,
    runtime: Figures,
    grpc_only: Figures,
    direct_cpu: [f64; 3],
    runtime_cpu: [f64; 3],
    loaded_kib: u64,
}

/// GetEntity through the runtime against the same GET straight to the sandbox, at 1 and 32
/// callers: the table, the added latency and throughput ratio, CPU per call, and memory.
async fn hot_path(target: &Target, duration: Duration, idle_kib: u64) {
    println!(
        "GetEntity through the runtime vs the same GET straight to the sandbox ({}s per phase)",
        duration.as_secs()
    );
    println!("| path | callers | calls/s | p50 | p99 |");
    println!("|---|---:|---:|---:|---:|");
    let mut rows = Vec::new();
    for callers in [1usize, 32] {
        let row = hot_path_row(target, callers, duration).await;
        for (path, f) in [
            ("direct HTTP", &row.direct),
            ("through runtime (gRPC)", &row.runtime),
            ("gRPC only, no upstream (CheckReadiness)", &row.grpc_only),
        ] {
            println!(
                "| {path} | {callers} | {:.0} | {:.0} µs | {:.0} µs |",
                f.calls as f64 / f.seconds,
                f.p50.as_secs_f64() * 1e6,
                f.p99.as_secs_f64() * 1e6
            );
        }
        rows.push(row);
    }
    for row in &rows {
        let (callers, direct, runtime) = (row.callers, &row.direct, &row.runtime);
        let added = runtime.p50.as_secs_f64() * 1e6 - direct.p50.as_secs_f64() * 1e6;
        let ratio = (runtime.calls as f64 / runtime.seconds)
            / (direct.calls as f64 / direct.seconds)
            * 100.0;
        println!(
            "callers {callers}: added p50 latency {added:.0} µs; runtime throughput {ratio:.0} % of direct"
        );
        // CPU per call is what the machine's load moves least: compare builds by it.
        let [client, _, backend] = row.direct_cpu;
        let [grpc_client, service, runtime_backend] = row.runtime_cpu;
        println!(
            "callers {callers}: CPU per call: direct: client {client:.1} µs, sandbox {backend:.1} µs; \
             through the runtime: client {grpc_client:.1} µs, service {service:.1} µs, sandbox {runtime_backend:.1} µs"
        );
    }
    let loaded_kib = rows.iter().map(|row| row.loaded_kib).max().unwrap_or(0);
    println!(
        "service resident memory: idle {:.1} MB, loaded (max) {:.1} MB",
        idle_kib as f64 / 1024.0,
        loaded_kib as f64 / 1024.0
    );
}

/// The three paths one after the other at `callers` callers.
async fn hot_path_row(target: &Target, callers: usize, duration: Duration) -> HotPathRow {
    let http = reqwest::Client::builder().build().unwrap();
    let url = target.direct_url.clone();
    let meter = CpuMeter::start(target.pids);
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
    let direct_cpu = meter.per_call(direct.calls);
    let service_pid = target.pids[1];
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        let start = Instant::now();
        while start.elapsed() < duration {
            max = max.max(rss_kib(service_pid));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        max
    });
    let meter = CpuMeter::start(target.pids);
    let (channel, entity) = (target.channel.clone(), target.name.clone());
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
    let runtime_cpu = meter.per_call(runtime.calls);
    let loaded_kib = sampler.await.unwrap();
    // For reference: the gRPC hop alone, a call the runtime answers without going upstream.
    let channel = target.channel.clone();
    let grpc_only = run_phase(callers, duration, move || {
        let mut client = ConnectionServiceClient::new(channel.clone());
        async move {
            client
                .check_readiness(pb::CheckReadinessRequest {
                    name: "connections/bench".to_owned(),
                })
                .await
                .unwrap();
        }
    })
    .await;
    HotPathRow {
        callers,
        direct,
        runtime,
        grpc_only,
        direct_cpu,
        runtime_cpu,
        loaded_kib,
    }
}

/// Node pools of 2, 10 and 50 nodes offered twice their capacity: what they admit.
async fn pool_precision(channel: &Channel, sandbox: &str, duration: Duration) {
    let warmup = 1.0;
    println!();
    println!(
        "Node pool precision through gRPC → runtime → sandbox: offered load twice the capacity, {}s measured after a {warmup}s warm-up",
        duration.as_secs()
    );
    println!(
        "| nodes | capacity/s | offered/s | admitted/s | error | busiest 1 s window | refused |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for nodes in [2i32, 10, 50] {
        let id = format!("fixed-{nodes}");
        sandbox_connection(channel, &id, sandbox, nodes, nodes).await;
        let capacity = f64::from(nodes) * 6.0;
        let total = Duration::from_secs_f64(warmup) + duration;
        let (admitted, refused) = offer(channel, &id, total, |_| capacity * 2.0).await;
        let end = warmup + duration.as_secs_f64();
        let measured = admitted
            .iter()
            .filter(|t| **t >= warmup && **t < end)
            .count() as f64
            / duration.as_secs_f64();
        println!(
            "| {nodes} | {capacity:.0} | {:.0} | {measured:.2} | {:+.2} % | {} | {refused} |",
            capacity * 2.0,
            (measured - capacity) / capacity * 100.0,
            busiest_second(&admitted, warmup, end)
        );
    }
}

/// Reaction: 6 calls/s, then a step to 150 calls/s at t = 3.5 s; min 2, max 50 nodes.
async fn reaction(channel: &Channel, sandbox: &str, duration: Duration) {
    sandbox_connection(channel, "autoscaled", sandbox, 2, 50).await;
    let step_at = 3.5;
    let total = Duration::from_secs_f64(step_at) + duration.min(Duration::from_secs(6));
    let watcher_channel = channel.clone();
    let watcher = tokio::spawn(async move {
        let start = Instant::now();
        let mut enough_at = None;
        let mut most = 0;
        while start.elapsed() < total {
            let c = ConnectionServiceClient::new(watcher_channel.clone())
                .get_connection(pb::GetConnectionRequest {
                    name: "connections/autoscaled".to_owned(),
                })
                .await
                .unwrap()
                .into_inner();
            let nodes = c.node_status.map(|n| n.current_nodes).unwrap_or(0);
            most = most.max(nodes);
            let t = start.elapsed().as_secs_f64();
            if t >= step_at && nodes * 6 >= 150 && enough_at.is_none() {
                enough_at = Some(t - step_at);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (enough_at, most)
    });
    let (admitted, refused) = offer(channel, "autoscaled", total, |t| {
        if t < step_at { 6.0 } else { 150.0 }
    })
    .await;
    let (enough_at, most) = watcher.await.unwrap();
    println!();
    println!(
        "Reaction through gRPC: step from 6 to 150 calls/s at t = {step_at}s (min 2, max 50 nodes)"
    );
    println!("| measure | value |");
    println!("|---|---:|");
    println!(
        "| time from the step to enough nodes (nodes × 6 ≥ 150) | {} |",
        enough_at.map_or("not reached".to_owned(), |t| format!("{t:.2} s"))
    );
    println!("| most nodes | {most} |");
    println!("| calls admitted | {} |", admitted.len());
    println!("| calls refused (RESOURCE_EXHAUSTED) | {refused} |");
}

/// Callers that have gone: one node, six callers with 250 ms deadlines, for 8 s. A node
/// transaction spent on a call whose caller has given up is capacity lost to everyone. Callers
/// either retry at once or wait for the RetryInfo delay they are given.
async fn callers_that_have_gone(channel: &Channel, sandbox: &str, id: &str, quick: bool) {
    sandbox_connection(channel, "gone", sandbox, 1, 1).await;
    let gone_name = format!("connections/gone/entityTypes/Customer/entities/{id}");
    let phase = if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(8)
    };
    println!();
    println!(
        "Callers that have gone: 1 node, 6 callers with 250 ms deadlines, {}s per row",
        phase.as_secs()
    );
    println!(
        "| callers on RESOURCE_EXHAUSTED | admitted by the node | answered OK | refused or timed out | admitted, caller gone |"
    );
    println!("|---|---:|---:|---:|---:|");
    for honour_retry_info in [false, true] {
        let admitted_before = admitted_on(channel, "gone").await;
        let (ok, failed) = gone_callers(channel, &gone_name, phase, honour_retry_info).await;
        // Calls still in the service when the callers stop are counted once they end.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let admitted = admitted_on(channel, "gone").await - admitted_before;
        let gone = admitted.saturating_sub(ok);
        println!(
            "| {} | {admitted} | {ok} | {failed} | {gone} ({:.2} %) |",
            if honour_retry_info {
                "wait RetryInfo"
            } else {
                "retry at once"
            },
            gone as f64 / admitted.max(1) as f64 * 100.0
        );
        // Let the node's burst refill between rows.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Six callers calling GetEntity with 250 ms deadlines for `phase`; answers (OK, failed).
async fn gone_callers(
    channel: &Channel,
    name: &str,
    phase: Duration,
    honour_retry_info: bool,
) -> (u64, u64) {
    use tonic_types::StatusExt;
    let start = Instant::now();
    let mut callers = Vec::new();
    for _ in 0..6 {
        let mut client = EntityServiceClient::new(channel.clone());
        let name = name.to_owned();
        callers.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u64, 0u64);
            while start.elapsed() < phase {
                let mut request = tonic::Request::new(pb::GetEntityRequest { name: name.clone() });
                request.set_timeout(Duration::from_millis(250));
                match client.get_entity(request).await {
                    Ok(_) => ok += 1,
                    Err(status) => {
                        failed += 1;
                        let delay = status
                            .get_error_details()
                            .retry_info()
                            .and_then(|r| r.retry_delay);
                        if let Some(delay) = delay.filter(|_| honour_retry_info) {
                            tokio::time::sleep(delay).await;
                        }
                    }
                }
            }
            (ok, failed)
        }));
    }
    let (mut ok, mut failed) = (0, 0);
    for caller in callers {
        let (o, f) = caller.await.unwrap();
        ok += o;
        failed += f;
    }
    (ok, failed)
}

/// Transactions a connection's node pool has admitted since it started.
async fn admitted_on(channel: &Channel, id: &str) -> u64 {
    ConnectionServiceClient::new(channel.clone())
        .get_connection(pb::GetConnectionRequest {
            name: format!("connections/{id}"),
        })
        .await
        .unwrap()
        .into_inner()
        .node_status
        .map_or(0, |n| n.admitted)
}

/// Creates a customer through `channel` and returns its entity name.
async fn bench_customer(channel: &Channel) -> String {
    EntityServiceClient::new(channel.clone())
        .create_entity(pb::CreateEntityRequest {
            parent: "connections/bench/entityTypes/Customer".to_owned(),
            entity: Some(pb::Entity {
                fields: Some(to_proto_struct(
                    json!({"Email": "bench@example.com"}).as_object().unwrap(),
                )),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

async fn get_entity_phase(channel: &Channel, name: &str, duration: Duration) -> Figures {
    let channel = channel.clone();
    let name = name.to_owned();
    run_phase(1, duration, move || {
        let mut client = EntityServiceClient::new(channel.clone());
        let name = name.clone();
        async move {
            client
                .get_entity(pb::GetEntityRequest { name })
                .await
                .unwrap();
        }
    })
    .await
}

/// GetEntity at one caller with telemetry off, with OTLP export to a local receiver (and the
/// metrics port on), and with export to a collector that is down: added p50 and memory.
async fn telemetry_overhead(dir: &std::path::Path, sandbox: &str, duration: Duration) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_addr = listener.local_addr().unwrap();
    let receiver = CountingReceiver::default();
    tokio::spawn(receiver.clone().serve(listener));
    let ample = format!(
        "[nodes]\nnode_rate = 1000000\nnode_burst = 1000000\n[nodes.stripe_budget]\ntest = 1000000\nlive = 1000000\n\
         [[connections]]\nid = \"bench\"\napi_key = {{ secret = \"env:BENCH_STRIPE_KEY\" }}\napi_base_url = \"{sandbox}\"\n"
    );
    let exporting = |endpoint: String, ratio: f64| {
        format!(
            "[metrics]\nenabled = true\nlisten = \"127.0.0.1:{}\"\n[telemetry]\notlp_endpoint = \"{endpoint}\"\nmetrics_interval = \"5s\"\ntrace_sample_ratio = {ratio:?}\n{ample}",
            free_port()
        )
    };
    let metrics_only = format!(
        "[metrics]\nenabled = true\nlisten = \"127.0.0.1:{}\"\n{ample}",
        free_port()
    );
    let receiver_url = format!("http://{receiver_addr}");
    let down_endpoint = format!("http://127.0.0.1:{}", free_port());
    let configs = [
        ("telemetry-off", ample.clone()),
        ("metrics-only", metrics_only),
        ("telemetry-on", exporting(receiver_url.clone(), 1.0)),
        ("telemetry-sampled", exporting(receiver_url, 0.01)),
        ("collector-down", exporting(down_endpoint, 1.0)),
    ];
    // The five services are started afresh for each of three runs, so whatever one process
    // happens to get (its threads' placement beside the client's and the sandbox's on the two
    // cores) does not bias one side. Within a run, short alternating rounds (each starting with
    // the next service) let drift hit every side alike. The added latency is the median of each
    // round's difference to "off" in the same round; the CPU time each service uses per call is
    // read from /proc around its phases.
    const RUNS: usize = 3;
    const ROUNDS: usize = 3;
    let phase = duration * 3 / (RUNS * ROUNDS) as u32;
    let mut p50s: [Vec<f64>; 5] = Default::default();
    let mut rates: [Vec<f64>; 5] = Default::default();
    let mut cpu = [0f64; 5];
    let mut calls = [0usize; 5];
    let mut idle = [0u64; 5];
    let mut loaded = [0u64; 5];
    for run in 0..RUNS {
        let mut services = Vec::new();
        for (name, config) in &configs {
            services.push(spawn_service(dir, &format!("{name}-{run}"), config).await);
        }
        let mut names = Vec::new();
        for (_, _, channel) in &services {
            names.push(bench_customer(channel).await);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        for (i, (_, pid, _)) in services.iter().enumerate() {
            idle[i] = idle[i].max(rss_kib(*pid));
        }
        for round in 0..ROUNDS {
            for turn in 0..services.len() {
                let i = (round + turn) % services.len();
                let (_, pid, channel) = &services[i];
                let before = cpu_seconds(*pid);
                let f = get_entity_phase(channel, &names[i], phase).await;
                cpu[i] += cpu_seconds(*pid) - before;
                calls[i] += f.calls;
                // Let the service just measured finish its exports before the next one is timed.
                tokio::time::sleep(Duration::from_millis(500)).await;
                p50s[i].push(f.p50.as_secs_f64() * 1e6);
                rates[i].push(f.calls as f64 / f.seconds);
            }
        }
        for (i, (_, pid, _)) in services.iter().enumerate() {
            loaded[i] = loaded[i].max(rss_kib(*pid));
        }
    }
    let median = |v: &Vec<f64>| {
        let mut v = v.clone();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let added = |i: usize| {
        let differences: Vec<f64> = p50s[i].iter().zip(&p50s[0]).map(|(a, b)| a - b).collect();
        median(&differences)
    };
    println!(
        "Telemetry overhead: GetEntity at 1 caller, {RUNS} runs of {ROUNDS} alternating rounds of {:.1}s per service",
        phase.as_secs_f64()
    );
    println!(
        "| telemetry | calls/s | p50 (median of rounds) | service CPU per call | idle memory | memory after load |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (i, label) in [
        "off",
        "metrics port only",
        "OTLP to a local receiver (every trace), metrics port on",
        "OTLP to a local receiver (1 % of traces), metrics port on",
        "OTLP to a collector that is down (every trace)",
    ]
    .into_iter()
    .enumerate()
    {
        println!(
            "| {label} | {:.0} | {:.0} µs | {:.1} µs | {:.1} MB | {:.1} MB |",
            median(&rates[i]),
            median(&p50s[i]),
            cpu[i] / calls[i].max(1) as f64 * 1e6,
            idle[i] as f64 / 1024.0,
            loaded[i] as f64 / 1024.0
        );
    }
    println!(
        "added p50 (median of per-round differences to off): metrics port {:+.1} µs; OTLP every trace {:+.1} µs; OTLP 1 % {:+.1} µs; collector down {:+.1} µs; spans received: {}, metric exports: {}",
        added(1),
        added(2),
        added(3),
        added(4),
        receiver.spans.load(std::sync::atomic::Ordering::Relaxed),
        receiver
            .metric_exports
            .load(std::sync::atomic::Ordering::Relaxed)
    );
}
