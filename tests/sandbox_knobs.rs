//! The sandbox's testing knobs over real HTTP: the test-mode rate limit under paused time, fault
//! injection reproducible by seed (including dropped connections), and the `/_sandbox/` admin API.

#[path = "sandbox_support.rs"]
mod support;

use std::time::Duration;

use connector_runtime::sandbox::{FaultConfig, FaultPhase, SandboxConfig};
use reqwest::Method;
use serde_json::json;
use support::{Client, race, start, unlimited};

#[tokio::test(start_paused = true)]
async fn the_twenty_sixth_request_within_a_second_is_rate_limited_until_tokens_refill() {
    let sandbox = start(SandboxConfig::default()).await;
    let client = Client::new(&sandbox);
    for _ in 0..25 {
        assert_eq!(client.get("/v1/customers", &[]).await.status, 200);
    }
    let limited = client.get("/v1/customers", &[]).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.body["error"]["type"], "invalid_request_error");
    assert_eq!(limited.body["error"]["code"], "rate_limit");

    let mut other = Client::new(&sandbox);
    other.key = "sk_test_another_account".into();
    assert_eq!(
        other.get("/v1/customers", &[]).await.status,
        200,
        "limits are per key"
    );

    tokio::time::advance(Duration::from_millis(40)).await;
    assert_eq!(
        client.get("/v1/customers", &[]).await.status,
        200,
        "one token refills in 40 ms"
    );
    assert_eq!(client.get("/v1/customers", &[]).await.status, 429);

    client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"rate_limit": null})),
        )
        .await;
    for _ in 0..50 {
        assert_eq!(client.get("/v1/customers", &[]).await.status, 200);
    }
    let stats = client.admin(Method::GET, "/_sandbox/stats", None).await;
    assert_eq!(stats["rate_limited"], 2);
}

async fn statuses(seed: u64) -> Vec<u16> {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            server_error_rate: 0.2,
            rate_limit_rate: 0.1,
            lock_timeout_rate: 0.1,
            ..FaultConfig::default()
        },
        seed,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let mut out = Vec::new();
    for _ in 0..40 {
        out.push(client.get("/v1/customers", &[]).await.status);
    }
    sandbox.shutdown().await;
    out
}

#[tokio::test]
async fn faults_are_reproducible_from_the_seed() {
    let first = statuses(42).await;
    assert_eq!(first, statuses(42).await);
    assert_ne!(first, statuses(43).await);
    assert!(
        first.contains(&500) && first.contains(&429) && first.contains(&200),
        "{first:?}"
    );
}

#[tokio::test]
async fn injected_lock_timeouts_and_server_errors_have_stripes_shape() {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            lock_timeout_rate: 1.0,
            ..FaultConfig::default()
        },
        seed: 0,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let locked = client.post("/v1/customers", &[]).await;
    assert_eq!(
        (locked.status, locked.body["error"]["code"].as_str()),
        (429, Some("lock_timeout"))
    );
    client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"faults": {"lock_timeout_rate": 0.0, "server_error_rate": 1.0}})),
        )
        .await;
    let failed = client.post("/v1/customers", &[]).await;
    assert_eq!(
        (failed.status, failed.body["error"]["type"].as_str()),
        (500, Some("api_error"))
    );
    assert!(failed.headers.contains_key("request-id"));
    client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"faults": {"server_error_rate": 0.0}})),
        )
        .await;
    let listed = client.get("/v1/customers", &[]).await.body;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        0,
        "faults before execution change nothing"
    );
}

#[tokio::test]
async fn a_dropped_connection_after_the_state_change_leaves_the_object_created() {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            drop_rate: 1.0,
            phase: FaultPhase::After,
            ..FaultConfig::default()
        },
        seed: 0,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let sent = client
        .http
        .post(format!("{}/v1/customers", client.base))
        .bearer_auth(&client.key)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("Idempotency-Key", "dropped-1")
        .body("email=d%40example.com")
        .send()
        .await;
    let error = sent.expect_err("the connection closes without a response");
    assert!(!error.is_status());

    client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"faults": {"drop_rate": 0.0}})),
        )
        .await;
    let listed = client.get("/v1/customers", &[]).await.body;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "the customer was created before the drop"
    );
    let retried = client
        .send(
            Method::POST,
            "/v1/customers",
            &[("email", "d@example.com")],
            Some("dropped-1"),
        )
        .await;
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    assert_eq!(retried.body["id"], listed["data"][0]["id"]);
    let stats = client.admin(Method::GET, "/_sandbox/stats", None).await;
    assert_eq!(stats["by_route"]["POST /v1/customers"]["dropped"], 1);
    assert_eq!(stats["faults"]["drop"], 1);
}

#[tokio::test(start_paused = true)]
async fn slow_responses_and_latency_are_held_on_tokios_clock() {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            latency: Duration::from_millis(200),
            slow_rate: 1.0,
            slow_delay: Duration::from_secs(5),
            ..FaultConfig::default()
        },
        seed: 0,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let started = tokio::time::Instant::now();
    assert_eq!(client.get("/v1/customers", &[]).await.status, 200);
    assert!(
        started.elapsed() >= Duration::from_millis(5200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_admin_api_reads_patches_and_resets() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let config = client.admin(Method::GET, "/_sandbox/config", None).await;
    assert_eq!(config["rate_limit"], serde_json::Value::Null);
    assert_eq!(config["faults"]["slow_delay"], "2s");

    let patched = client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"rate_limit": 100, "faults": {"latency": "1ms"}})),
        )
        .await;
    assert_eq!(patched["rate_limit"], 100);
    assert_eq!(patched["faults"]["latency"], "1ms");
    let invalid = client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"faults": {"drop_rate": 2.0}})),
        )
        .await;
    assert!(
        invalid["error"]["message"]
            .as_str()
            .unwrap()
            .contains("drop_rate")
    );
    let unknown = client
        .admin(
            Method::POST,
            "/_sandbox/config",
            Some(json!({"colour": "red"})),
        )
        .await;
    assert!(unknown["error"]["message"].as_str().is_some());

    client.customer().await;
    let stats = client.admin(Method::GET, "/_sandbox/stats", None).await;
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["by_route"]["POST /v1/customers"]["200"], 1);

    assert_eq!(
        client.admin(Method::POST, "/_sandbox/reset", None).await["reset"],
        true
    );
    assert_eq!(
        client.get("/v1/customers", &[]).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(
        client.get("/v1/events", &[]).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    assert_eq!(client.get("/v1/customers", &[]).await.status, 200);
    let base = sandbox.base_url();
    sandbox.shutdown().await;
    let fresh = reqwest::Client::new();
    assert!(
        fresh
            .get(format!("{base}/v1/customers"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn concurrent_writes_to_one_object_get_lock_timeout() {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            latency: Duration::from_millis(600),
            ..FaultConfig::default()
        },
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let path = format!("/v1/customers/{customer}");
    let (holder, second) = race(|_| client.post(&path, &[("name", "A")])).await;
    assert_eq!(holder.status, 200);
    assert_eq!(
        (second.status, second.body["error"]["code"].as_str()),
        (429, Some("lock_timeout"))
    );
    let other = client.customer().await;
    let other_path = format!("/v1/customers/{other}");
    let (c, d) = tokio::join!(
        client.post(&path, &[("name", "C")]),
        client.post(&other_path, &[("name", "D")])
    );
    assert_eq!(
        (c.status, d.status),
        (200, 200),
        "different objects do not contend"
    );
}

#[tokio::test(start_paused = true)]
async fn search_lags_behind_writes_when_configured() {
    let config = SandboxConfig {
        rate_limit: None,
        search_delay: Duration::from_secs(2),
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    client.customer().await;
    let query = [("query", "email:'jenny@example.com'")];
    let early = client.get("/v1/customers/search", &query).await.body;
    assert_eq!(early["data"].as_array().unwrap().len(), 0);
    assert_eq!(
        client.get("/v1/customers", &[]).await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1,
        "lists are read-after-write consistent"
    );
    tokio::time::advance(Duration::from_secs(2)).await;
    let later = client.get("/v1/customers/search", &query).await.body;
    assert_eq!(later["data"].as_array().unwrap().len(), 1);
}
