//! Events: how many verified webhooks the runtime stores per second (each answered 200 only once
//! it is synced to disk), and the latency from a webhook sent to the same event delivered on a
//! `StreamEvents` stream.
//!
//! Run: `cargo bench --bench events` (20 000 webhooks, 1 000 latency samples) or
//! `cargo bench --bench events -- --quick` (2 000 and 200). Everything runs in this process on
//! loopback: the runtime (gRPC, webhook listener, SQLite store under a temporary directory on the
//! same disk as the working directory), a sandbox as the connection's upstream, the webhook
//! senders and the stream consumer, all on the same two cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::event_subscription_service_client::EventSubscriptionServiceClient;
use connector_runtime::config::{SandboxMode, Settings};
use connector_runtime::sandbox::{self, SandboxConfig};
use connector_runtime::stripe::webhook;
use serde_json::json;
use tonic::transport::Channel;

const SECRET: &str = "whsec_benchmark_signing_secret_0123456789";
const CONNECTION: &str = "stripe-bench";
const SENDERS: usize = 32;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event(n: usize) -> String {
    json!({"id": format!("evt_bench_{n:08}"), "object": "event", "type": "payment_intent.succeeded",
        "created": now(), "livemode": false, "api_version": "2024-06-20", "pending_webhooks": 1,
        "data": {"object": {"id": format!("pi_bench_{n:08}"), "object": "payment_intent",
            "amount": 1500, "currency": "usd", "status": "succeeded",
            "payment_method": "pm_card_visa", "payment_method_types": ["card"]}}})
    .to_string()
}

async fn post(client: &reqwest::Client, url: &str, n: usize) {
    let body = event(n);
    let signature = webhook::sign_header(&[SECRET], now(), body.as_bytes());
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .header("stripe-signature", signature)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn percentile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (webhooks, samples) = if quick { (2_000, 200) } else { (20_000, 1_000) };

    // On the working directory's disk, not a tmpfs: syncs cost what they cost.
    let home = tempfile::tempdir_in(".").unwrap();
    let secrets = home.path().join("secrets");
    std::fs::create_dir_all(secrets.join("stripe-webhook")).unwrap();
    std::fs::write(secrets.join("stripe-webhook/1"), SECRET).unwrap();
    std::fs::create_dir_all(secrets.join("stripe-key")).unwrap();
    std::fs::write(secrets.join("stripe-key/1"), "sk_test_bench_0123456789").unwrap();

    let spec = connector_runtime::spec::stripe_shared().unwrap();
    let upstream = sandbox::start(
        spec,
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            rate_limit: None,
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let mut settings = Settings {
        data_dir: home.path().join("data"),
        ..Settings::default()
    };
    settings.secrets.dir = Some(secrets);
    settings.sandbox.enabled = SandboxMode::Never;
    settings.events.listen = Some("127.0.0.1:0".parse().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = connector_runtime::app::start(settings, false, listener, std::future::pending())
        .await
        .unwrap();
    let channel = Channel::from_shared(format!("http://{}", running.addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    ConnectionServiceClient::new(channel.clone())
        .create_connection(pb::CreateConnectionRequest {
            connection_id: CONNECTION.to_owned(),
            connection: Some(pb::Connection {
                api_key: Some(pb::SecretRef {
                    secret: "stripe-key".to_owned(),
                    version: "1".to_owned(),
                }),
                api_base_url: upstream.base_url(),
                webhook_signing_secrets: vec![pb::SecretRef {
                    secret: "stripe-webhook".to_owned(),
                    version: "1".to_owned(),
                }],
                ..Default::default()
            }),
        })
        .await
        .unwrap();
    let mut subscriptions = EventSubscriptionServiceClient::new(channel.clone());
    let subscription = subscriptions
        .create_event_subscription(pb::CreateEventSubscriptionRequest {
            parent: format!("connections/{CONNECTION}"),
            event_subscription_id: "bench".to_owned(),
            event_subscription: Some(pb::EventSubscription {
                event_types: vec!["payment_intent.succeeded".to_owned()],
                destination: Some(pb::event_subscription::Destination::Stream(true)),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name;
    let mut stream = subscriptions
        .stream_events(pb::StreamEventsRequest {
            subscription: subscription.clone(),
            resume_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let url = format!(
        "http://{}/webhooks/{CONNECTION}",
        running.webhook_addr.unwrap()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(SENDERS)
        .build()
        .unwrap();

    // 1. Throughput: SENDERS concurrent senders, each waiting for its 200 before the next.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..SENDERS {
        let (client, url, next) = (client.clone(), url.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= webhooks {
                    return;
                }
                post(&client, &url, n).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let stored_seconds = started.elapsed().as_secs_f64();
    let mut streamed = 0;
    while streamed < webhooks {
        stream.message().await.unwrap().unwrap();
        streamed += 1;
    }
    let drained_seconds = started.elapsed().as_secs_f64();

    // 2. Latency: one webhook at a time, from just before sending to its arrival on the stream.
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let n = webhooks + i;
        let sent = Instant::now();
        let sender = {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { post(&client, &url, n).await })
        };
        let event = stream.message().await.unwrap().unwrap();
        latencies.push(sent.elapsed());
        assert_eq!(event.id, format!("evt_bench_{n:08}"));
        sender.await.unwrap();
    }
    latencies.sort();

    println!(
        "events benchmark ({webhooks} webhooks, {SENDERS} concurrent senders; {samples} latency samples)"
    );
    println!("| measure | value | goal |");
    println!("|---|---:|---:|");
    println!(
        "| verified webhooks stored (200 after sync) | {:.0}/s | ≥ 2000/s |",
        webhooks as f64 / stored_seconds
    );
    println!(
        "| same webhooks delivered on the stream | {:.0}/s | |",
        webhooks as f64 / drained_seconds
    );
    println!(
        "| webhook sent → delivered on stream, p50 | {:.2} ms | < 5 ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0
    );
    println!(
        "| webhook sent → delivered on stream, p90 | {:.2} ms | |",
        percentile(&latencies, 0.9).as_secs_f64() * 1000.0
    );
    println!(
        "| webhook sent → delivered on stream, p99 | {:.2} ms | |",
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0
    );
    drop(stream);
    running.shutdown().await.unwrap();
    upstream.shutdown().await;
}
