//! The metrics port over real HTTP: `/metrics` parsed with a Prometheus text-format parser (names,
//! labels, types, counters that move with gRPC traffic, no secret), and `/status.json`.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use prometheus_parse::{Sample, Scrape, Value};
use tonic::Code;

const KEY_A: &str = "sk_test_prometheus_a_0123456789";
const KEY_B: &str = "sk_test_prometheus_b_0123456789";
const KEY_C: &str = "sk_test_prometheus_c_0123456789";

/// A service on 127.0.0.1:0 with its metrics port on 127.0.0.1:0, the sandbox always on, one node
/// = 1 transaction/s and a Stripe budget of 1 request/s, so throttling is easy to provoke.
/// Connections `<prefix>-a`, `-b` and `-c` (each test its own: the metric store is per process).
async fn metered_service(prefix: &str) -> (Service, String) {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("key-a", "1", KEY_A);
    home.put_secret("key-b", "1", KEY_B);
    home.put_secret("key-c", "1", KEY_C);
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.metrics.enabled = true;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.nodes.node_rate = 1;
    settings.nodes.node_burst = 1;
    settings.nodes.max_wait = Duration::from_millis(50);
    settings.nodes.stripe_budget.test = 1;
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    for (suffix, key, nodes) in [("a", "key-a", 1), ("b", "key-b", 5), ("c", "key-c", 1)] {
        let id = format!("{prefix}-{suffix}");
        service
            .add_connection(pb::Connection {
                node_config: Some(pb::NodeConfig {
                    min_node_count: nodes,
                    max_node_count: nodes,
                }),
                ..Service::connection_to(&id, key, &sandbox)
            })
            .await;
    }
    let addr = service.running.as_ref().unwrap().metrics_addr.unwrap();
    (service, format!("http://{addr}"))
}

async fn list_customers(service: &Service, connection: &str) -> Result<(), tonic::Status> {
    service
        .entities()
        .list_entities(pb::ListEntitiesRequest {
            parent: format!("connections/{connection}/entityTypes/Customer"),
            page_size: 1,
            ..Default::default()
        })
        .await
        .map(|_| ())
}

struct Scraped {
    text: String,
    scrape: Scrape,
}

impl Scraped {
    async fn from(base: &str) -> Self {
        let response = reqwest::get(format!("{base}/metrics")).await.unwrap();
        assert_eq!(response.status(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            content_type.starts_with("text/plain; version=0.0.4"),
            "{content_type}"
        );
        let text = response.text().await.unwrap();
        let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
        Self { text, scrape }
    }

    fn find(&self, metric: &str, labels: &[(&str, &str)]) -> Option<&Sample> {
        self.scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
    }

    /// A counter's value (0 when the series does not exist yet); panics on another type.
    fn counter(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(metric, labels).map(|s| &s.value) {
            None => 0.0,
            Some(Value::Counter(v)) => *v,
            Some(other) => panic!("{metric} is not a counter: {other:?}"),
        }
    }

    fn gauge(&self, metric: &str, connection: &str) -> f64 {
        match self
            .find(metric, &[("connection", connection)])
            .map(|s| &s.value)
        {
            Some(Value::Gauge(v)) => *v,
            other => panic!(
                "{metric}{{connection={connection}}} is not a gauge: {other:?}\n{}",
                self.text
            ),
        }
    }

    /// A histogram's observation count (its +Inf bucket).
    fn histogram_count(&self, metric: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(metric, labels).map(|s| &s.value) {
            None => 0.0,
            Some(Value::Histogram(buckets)) => buckets
                .iter()
                .find(|b| b.less_than.is_infinite())
                .map(|b| b.count)
                .unwrap(),
            Some(other) => panic!("{metric} is not a histogram: {other:?}"),
        }
    }
}

#[tokio::test]
async fn metrics_expose_pool_gauges_and_counters_that_move_with_traffic() {
    let (service, base) = metered_service("metered").await;
    let before = Scraped::from(&base).await;
    for connection in ["metered-a", "metered-b"] {
        let utilization = before.gauge("connector_node_utilization", connection);
        assert!((0.0..=1.0).contains(&utilization), "{utilization}");
        assert_eq!(before.gauge("connector_queue_length", connection), 0.0);
        assert_eq!(before.gauge("connector_connection_ready", connection), 1.0);
        assert_eq!(
            before.gauge("connector_stripe_budget_limit", connection),
            1.0
        );
    }
    assert_eq!(before.gauge("connector_nodes_current", "metered-a"), 1.0);
    assert_eq!(before.gauge("connector_nodes_min", "metered-b"), 5.0);
    assert_eq!(before.gauge("connector_nodes_max", "metered-b"), 5.0);
    assert_eq!(before.gauge("connector_nodes_desired", "metered-b"), 5.0);

    // metered-a: one node of 1 transaction/s, so the second call finds no capacity.
    list_customers(&service, "metered-a").await.unwrap();
    let refused = list_customers(&service, "metered-a").await.unwrap_err();
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::ResourceExhausted, "NODE_CAPACITY")
    );
    // metered-b: five nodes, but its Stripe account allows 1 request/s.
    list_customers(&service, "metered-b").await.unwrap();
    let refused = list_customers(&service, "metered-b").await.unwrap_err();
    assert_eq!(
        (refused.code(), reason(&refused).as_str()),
        (Code::ResourceExhausted, "STRIPE_RATE_BUDGET")
    );
    // An entity the upstream does not have: the upstream answers 404.
    let missing = service
        .get("metered-c", "Customer", "cus_does_not_exist")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");

    let after = Scraped::from(&base).await;
    let moved = |metric: &str, labels: &[(&str, &str)]| {
        after.counter(metric, labels) - before.counter(metric, labels)
    };
    let calls = "connector_calls_total";
    let a_ok = [
        ("connection", "metered-a"),
        ("operation", "ListEntities"),
        ("code", "OK"),
    ];
    let a_refused = [
        ("connection", "metered-a"),
        ("operation", "ListEntities"),
        ("code", "RESOURCE_EXHAUSTED"),
    ];
    assert_eq!(moved(calls, &a_ok), 1.0);
    assert_eq!(moved(calls, &a_refused), 1.0);
    let c_missing = [
        ("connection", "metered-c"),
        ("operation", "GetEntity"),
        ("code", "NOT_FOUND"),
    ];
    assert_eq!(moved(calls, &c_missing), 1.0);
    let throttled = "connector_throttled_calls_total";
    assert_eq!(
        moved(
            throttled,
            &[("connection", "metered-a"), ("reason", "NODE_CAPACITY")]
        ),
        1.0
    );
    assert_eq!(
        moved(
            throttled,
            &[
                ("connection", "metered-b"),
                ("reason", "STRIPE_RATE_BUDGET")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            throttled,
            &[
                ("connection", "metered-a"),
                ("reason", "STRIPE_RATE_BUDGET")
            ]
        ),
        0.0
    );
    let upstream = "connector_upstream_requests_total";
    assert_eq!(
        moved(
            upstream,
            &[
                ("connection", "metered-a"),
                ("method", "GET"),
                ("status", "200")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            upstream,
            &[
                ("connection", "metered-c"),
                ("method", "GET"),
                ("status", "404")
            ]
        ),
        1.0
    );
    assert_eq!(
        moved(
            "connector_stripe_budget_requests_total",
            &[("connection", "metered-b")]
        ),
        1.0,
        "one list went through metered-b's budget, the second was refused"
    );
    let durations = |s: &Scraped| {
        s.histogram_count(
            "connector_call_duration_seconds",
            &[("connection", "metered-a"), ("operation", "ListEntities")],
        )
    };
    assert_eq!(durations(&after) - durations(&before), 2.0);
    let upstream_durations = |s: &Scraped| {
        s.histogram_count(
            "connector_upstream_duration_seconds",
            &[("connection", "metered-a"), ("method", "GET")],
        )
    };
    assert_eq!(
        upstream_durations(&after) - upstream_durations(&before),
        1.0
    );

    // Every family documents itself, and no key or secret reaches the text.
    let types: HashMap<&str, usize> = after
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| (l.split(' ').next().unwrap(), 1))
        .collect();
    for name in [
        "connector_calls_total",
        "connector_call_duration_seconds",
        "connector_throttled_calls_total",
        "connector_upstream_requests_total",
        "connector_upstream_duration_seconds",
        "connector_upstream_retries_total",
        "connector_nodes_current",
        "connector_nodes_desired",
        "connector_nodes_min",
        "connector_nodes_max",
        "connector_node_utilization",
        "connector_queue_length",
        "connector_stripe_budget_used",
        "connector_stripe_budget_requests_total",
    ] {
        assert!(types.contains_key(name), "no # TYPE for {name}");
        assert!(after.scrape.docs.contains_key(name), "no # HELP for {name}");
    }
    for secret in [KEY_A, KEY_B, KEY_C, "sk_test_"] {
        assert!(!after.text.contains(secret), "the scrape holds {secret}");
    }
    service.shutdown().await;
}

#[tokio::test]
async fn status_json_serves_the_figures_of_every_connection() {
    let (service, base) = metered_service("status").await;
    list_customers(&service, "status-a").await.unwrap();
    let response = reqwest::get(format!("{base}/status.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let document: serde_json::Value = response.json().await.unwrap();
    let connections = document["connections"].as_array().unwrap();
    let ids: Vec<&str> = connections
        .iter()
        .map(|c| c["connection"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"status-a") && ids.contains(&"status-b"),
        "{ids:?}"
    );
    let a = connections
        .iter()
        .find(|c| c["connection"] == "status-a")
        .unwrap();
    assert_eq!(a["nodes"]["current"], 1);
    assert_eq!(a["nodes"]["max"], 1);
    assert_eq!(a["calls"]["total"], 1);
    assert_eq!(a["upstream"]["requests"], 1);
    assert_eq!(a["stripe_budget"]["limit_per_second"], 1);
    assert_eq!(a["stripe_budget"]["mode"], "test");
    assert!(a["history"].is_array());
    let page = reqwest::get(format!("{base}/status")).await.unwrap();
    assert!(
        page.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text().await.unwrap();
    for reference in ["src=", "href=", "url(", "@import", "//cdn"] {
        assert!(
            !html.contains(reference),
            "the page loads something from elsewhere: {reference}"
        );
    }
    assert!(!document.to_string().contains("sk_test_"));
    service.shutdown().await;
}

#[tokio::test]
async fn replica_mode_reports_the_utilisation_the_platform_autoscaler_scales_on() {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("replica-key", "1", "sk_test_replica_0123456789");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.metrics.enabled = true;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    settings.nodes.mode = connector_runtime::config::NodeMode::Replica;
    settings.nodes.node_rate = 2;
    settings.nodes.node_burst = 2;
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    service
        .add_connection(Service::connection_to("replica-a", "replica-key", &sandbox))
        .await;
    let base = format!(
        "http://{}",
        service.running.as_ref().unwrap().metrics_addr.unwrap()
    );
    assert_eq!(
        Scraped::from(&base)
            .await
            .gauge("connector_node_utilization", "replica-a"),
        0.0
    );
    list_customers(&service, "replica-a").await.unwrap();
    list_customers(&service, "replica-a").await.unwrap();
    // The board samples once a second; wait (bounded) for the sample that saw the two calls.
    let mut utilization = 0.0;
    for _ in 0..50 {
        utilization = Scraped::from(&base)
            .await
            .gauge("connector_node_utilization", "replica-a");
        if utilization > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        utilization > 0.0 && utilization <= 1.0,
        "one node of 2 transactions/s that admitted 2: {utilization}; {}",
        reqwest::get(format!("{base}/status.json"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    );
    service.shutdown().await;
}
