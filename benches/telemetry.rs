//! What the telemetry layer itself adds to a call, measured in process, free of the network and
//! scheduling noise of the end-to-end `grpc -- telemetry` comparison: calls go through
//! `CallLayer` to a handler that does what GetEntity's telemetry does (names the connection and
//! entity type, opens the upstream span when the call is traced, records the upstream attempt),
//! with telemetry off, with OTLP export of 1 % of traces and with OTLP export of every trace, to a
//! receiver on loopback.
//!
//! Run: `cargo bench --bench telemetry`. A process has one `tracing` subscriber, so the harness
//! runs itself once per setting and repetition (`-- --mode off|sampled|every`), logs at `warn`
//! as a production service would, and prints the median time per call.

use std::convert::Infallible;
use std::process::Command;
use std::time::{Duration, Instant};

use connector_runtime::config::LogSettings;
use connector_runtime::telemetry::{self, CallLayer, TelemetrySettings};
use tower::{Layer, Service, ServiceExt};
use tracing::Instrument;

#[path = "common/otlp_receiver.rs"]
mod otlp_receiver;
use otlp_receiver::CountingReceiver;

const WARMUP: usize = 20_000;
const CALLS: usize = 200_000;
const REPETITIONS: usize = 5;

/// The receiver on a thread and runtime of its own; its endpoint.
fn start_receiver() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            CountingReceiver::default().serve(listener).await;
        });
    });
    format!("http://{addr}")
}

/// What GetEntity's handler does for telemetry, around no real work.
async fn handler(_request: http::Request<()>) -> Result<http::Response<()>, Infallible> {
    telemetry::note_connection("bench");
    telemetry::note_entity_type("Customer");
    // As the upstream client does for each attempt.
    let span = if telemetry::call_traced() {
        tracing::info_span!(
            "upstream",
            otel.name = "GET /v1/customers/{customer}",
            otel.kind = "client",
            http.request.method = "GET",
            url.template = "/v1/customers/{customer}",
            attempt = 1i64,
            http.response.status_code = tracing::field::Empty,
        )
    } else {
        tracing::Span::none()
    };
    let started = tokio::time::Instant::now();
    async {}.instrument(span.clone()).await;
    span.record("http.response.status_code", 200i64);
    telemetry::record_upstream("bench", "GET", Some(200), started.elapsed());
    Ok(http::Response::new(()))
}

/// Nanoseconds per call through the call layer in this process.
async fn measure() -> f64 {
    let mut service = CallLayer.layer(tower::service_fn(handler));
    let request = || {
        http::Request::builder()
            .uri("/connectors.v1.EntityService/GetEntity")
            .body(())
            .unwrap()
    };
    let mut calls = async |count: usize| {
        for _ in 0..count {
            service
                .ready()
                .await
                .unwrap()
                .call(request())
                .await
                .unwrap();
        }
    };
    calls(WARMUP).await;
    let start = Instant::now();
    calls(CALLS).await;
    start.elapsed().as_nanos() as f64 / CALLS as f64
}

fn run_mode(mode: &str) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let log = LogSettings {
            level: "warn".to_owned(),
            ..LogSettings::default()
        };
        let ratio = match mode {
            "off" => None,
            "sampled" => Some(0.01),
            "every" => Some(1.0),
            other => panic!("unknown mode {other}"),
        };
        let settings = ratio.map(|ratio| TelemetrySettings {
            otlp_endpoint: Some(start_receiver()),
            trace_sample_ratio: ratio,
            metrics_interval: Duration::from_secs(1),
            ..TelemetrySettings::default()
        });
        let _telemetry = telemetry::init(&log, settings.as_ref()).unwrap();
        println!("{:.0}", measure().await);
    });
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--mode") {
        run_mode(&args[i + 1]);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let modes = [
        ("off", "telemetry off"),
        ("sampled", "OTLP export, 1 % of traces"),
        ("every", "OTLP export, every trace"),
    ];
    let mut results: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    // Alternate the settings so drift on the machine hits each alike.
    for _ in 0..REPETITIONS {
        for (i, (mode, _)) in modes.iter().enumerate() {
            let output = Command::new(&exe)
                .args(["--mode", mode])
                .env("OTEL_BSP_SCHEDULE_DELAY", "200")
                .output()
                .expect("running a measurement");
            let text = String::from_utf8_lossy(&output.stdout);
            let nanos: f64 = text.trim().parse().unwrap_or_else(|_| {
                panic!(
                    "mode {mode} printed {text:?}: {}",
                    String::from_utf8_lossy(&output.stderr)
                )
            });
            results[i].push(nanos);
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let off = median(&results[0]);
    println!(
        "The call layer's cost per call, in process ({CALLS} calls, median of {REPETITIONS} processes per setting)"
    );
    println!("| telemetry | per call | added to off | all runs |");
    println!("|---|---:|---:|---|");
    for (i, (_, label)) in modes.iter().enumerate() {
        let m = median(&results[i]);
        let runs: Vec<String> = results[i].iter().map(|n| format!("{n:.0}")).collect();
        println!(
            "| {label} | {:.2} µs | {:+.2} µs | {} ns |",
            m / 1000.0,
            (m - off) / 1000.0,
            runs.join(", ")
        );
    }
}
