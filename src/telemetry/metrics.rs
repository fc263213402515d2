//! The in-process metric store: counters and histograms keyed by label values, recorded by the
//! gRPC call layer, the upstream client and the retry loop. Prometheus' `/metrics` renders it and
//! the OTLP exporter observes it, so every figure has one source.
//!
//! Label values come from the service's own vocabulary (connection ids, method names, status
//! codes, throttle reasons), never from request payloads. Each family holds at most
//! [`MAX_SERIES`] label sets; further ones fold into one overflow series, so a caller sending
//! arbitrary names cannot grow memory.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use hashbrown::{Equivalent, HashMap};

/// Most label sets one metric family keeps.
pub const MAX_SERIES: usize = 2000;
/// The label value of the series that collects label sets past [`MAX_SERIES`].
pub const OVERFLOW: &str = "_overflow";

/// Upper bounds (seconds) of the latency histograms' buckets.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// One metric: its Prometheus and OpenTelemetry names, help text and label names.
#[derive(Debug)]
pub struct MetricDef {
    /// Prometheus name (without the `_bucket`/`_sum`/`_count` suffixes of histograms).
    pub prometheus: &'static str,
    /// OpenTelemetry instrument name (semantic-convention names where one exists).
    pub otel: &'static str,
    pub help: &'static str,
    /// OpenTelemetry unit (UCUM).
    pub unit: &'static str,
    /// Prometheus label names, in order.
    pub labels: &'static [&'static str],
    /// OpenTelemetry attribute names for the same labels, in the same order.
    pub attributes: &'static [&'static str],
}

pub const CALLS: MetricDef = MetricDef {
    prometheus: "connector_calls_total",
    otel: "connector.calls",
    help: "gRPC calls served, by connection, operation (gRPC method) and gRPC status code.",
    unit: "{call}",
    labels: &["connection", "operation", "code"],
    attributes: &["connection", "rpc.method", "rpc.grpc.status_code"],
};
pub const CALL_DURATION: MetricDef = MetricDef {
    prometheus: "connector_call_duration_seconds",
    otel: "rpc.server.call.duration",
    help: "gRPC call latency, from the request's arrival to its response headers.",
    unit: "s",
    labels: &["connection", "operation"],
    attributes: &["connection", "rpc.method"],
};
pub const THROTTLED: MetricDef = MetricDef {
    prometheus: "connector_throttled_calls_total",
    otel: "connector.throttled_calls",
    help: "Calls refused with RESOURCE_EXHAUSTED, by reason (NODE_CAPACITY, STRIPE_RATE_BUDGET).",
    unit: "{call}",
    labels: &["connection", "reason"],
    attributes: &["connection", "connector.throttle.reason"],
};
pub const UPSTREAM_REQUESTS: MetricDef = MetricDef {
    prometheus: "connector_upstream_requests_total",
    otel: "connector.upstream.requests",
    help: "HTTP requests sent upstream (every attempt), by HTTP status; `error` when no response came.",
    unit: "{request}",
    labels: &["connection", "method", "status"],
    attributes: &[
        "connection",
        "http.request.method",
        "http.response.status_code",
    ],
};
pub const UPSTREAM_DURATION: MetricDef = MetricDef {
    prometheus: "connector_upstream_duration_seconds",
    otel: "http.client.request.duration",
    help: "Upstream HTTP request latency (one attempt).",
    unit: "s",
    labels: &["connection", "method"],
    attributes: &["connection", "http.request.method"],
};
pub const RETRIES: MetricDef = MetricDef {
    prometheus: "connector_upstream_retries_total",
    otel: "connector.upstream.retries",
    help: "Upstream requests retried after a retryable failure.",
    unit: "{retry}",
    labels: &["connection"],
    attributes: &["connection"],
};

/// A counter's value.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A latency histogram over [`LATENCY_BUCKETS`] (per-bucket counts, not cumulative).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// Counts per bucket of [`LATENCY_BUCKETS`], then the `+Inf` bucket (not cumulative).
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_seconds: f64,
}

impl Histogram {
    pub fn observe(&self, value: Duration) {
        let seconds = value.as_secs_f64();
        let index = LATENCY_BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[index].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(value.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            buckets: self
                .buckets
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
            count: self.count.load(Ordering::Relaxed),
            sum_seconds: self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        }
    }
}

/// The series of one metric, by label values.
#[derive(Debug)]
pub struct Family<V> {
    pub def: &'static MetricDef,
    series: Mutex<HashMap<Box<[String]>, Arc<V>>>,
}

impl<V: Default> Family<V> {
    fn new(def: &'static MetricDef) -> Self {
        Self {
            def,
            series: Mutex::new(HashMap::new()),
        }
    }

    /// The series of these label values (one per label name), created on first use.
    /// Finding a series allocates nothing; only a new one copies its label values.
    pub fn with(&self, values: &[&str]) -> Arc<V> {
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(found) = series.get(&Labels(values)) {
            return Arc::clone(found);
        }
        let key: Box<[String]> = if series.len() >= MAX_SERIES {
            values.iter().map(|_| OVERFLOW.to_owned()).collect()
        } else {
            values.iter().map(|v| (*v).to_owned()).collect()
        };
        Arc::clone(series.entry(key).or_default())
    }

    /// Every series, ordered by label values.
    pub fn snapshot(&self) -> Vec<(Box<[String]>, Arc<V>)> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut all: Vec<_> = series
            .iter()
            .map(|(k, v)| (k.clone(), Arc::clone(v)))
            .collect();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    }
}

/// Label values as a caller passes them, looked up among a family's owned keys. A slice of
/// `&str` hashes as the slice of `String` with the same values.
struct Labels<'a>(&'a [&'a str]);

impl Hash for Labels<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Equivalent<Box<[String]>> for Labels<'_> {
    fn equivalent(&self, key: &Box<[String]>) -> bool {
        key.len() == self.0.len() && key.iter().zip(self.0).all(|(k, v)| k == v)
    }
}

/// Every recorded metric of the process.
#[derive(Debug)]
pub struct Metrics {
    pub calls: Family<Counter>,
    pub call_duration: Family<Histogram>,
    pub throttled: Family<Counter>,
    pub upstream_requests: Family<Counter>,
    pub upstream_duration: Family<Histogram>,
    pub retries: Family<Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| Metrics {
    calls: Family::new(&CALLS),
    call_duration: Family::new(&CALL_DURATION),
    throttled: Family::new(&THROTTLED),
    upstream_requests: Family::new(&UPSTREAM_REQUESTS),
    upstream_duration: Family::new(&UPSTREAM_DURATION),
    retries: Family::new(&RETRIES),
});

/// The process' metric store.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

impl Metrics {
    /// Counters summed over every series whose first label (the connection) is `connection`.
    pub fn connection_total(family: &Family<Counter>, connection: &str) -> u64 {
        family
            .snapshot()
            .iter()
            .filter(|(labels, _)| labels.first().is_some_and(|c| c == connection))
            .map(|(_, counter)| counter.get())
            .sum()
    }

    /// Upstream requests of `connection` that failed (HTTP status ≥ 400 or no response).
    pub fn upstream_errors(&self, connection: &str) -> u64 {
        self.upstream_requests
            .snapshot()
            .iter()
            .filter(|(labels, _)| {
                labels.first().is_some_and(|c| c == connection)
                    && labels
                        .get(2)
                        .is_some_and(|s| s.parse::<u16>().map_or(true, |code| code >= 400))
            })
            .map(|(_, counter)| counter.get())
            .sum()
    }
}

/// Records one finished gRPC call.
pub fn record_call(
    connection: &str,
    operation: &str,
    code: &str,
    throttle_reason: Option<&str>,
    took: Duration,
) {
    let m = metrics();
    m.calls.with(&[connection, operation, code]).add(1);
    m.call_duration.with(&[connection, operation]).observe(took);
    if let Some(reason) = throttle_reason {
        m.throttled.with(&[connection, reason]).add(1);
    }
    super::otel::record_call_duration(connection, operation, code, took);
}

/// Records one upstream HTTP attempt; `status` is `None` when no response came.
pub fn record_upstream(connection: &str, method: &str, status: Option<u16>, took: Duration) {
    let m = metrics();
    let status_text = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    m.upstream_requests
        .with(&[connection, method, &status_text])
        .add(1);
    m.upstream_duration
        .with(&[connection, method])
        .observe(took);
    super::otel::record_upstream_duration(connection, method, status, took);
}

/// Records that an upstream request is about to be retried.
pub fn record_retry(connection: &str) {
    metrics().retries.with(&[connection]).add(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_puts_values_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 3);
        assert_eq!(s.buckets[0], 1);
        assert_eq!(s.buckets[3], 1);
        assert_eq!(s.buckets[LATENCY_BUCKETS.len()], 1);
        assert!((s.sum_seconds - 60.0033).abs() < 1e-9);
    }

    static DEF: MetricDef = MetricDef {
        prometheus: "t",
        otel: "t",
        help: "",
        unit: "1",
        labels: &["a"],
        attributes: &["a"],
    };

    #[test]
    fn label_values_find_their_own_series_and_only_theirs() {
        let family: Family<Counter> = Family::new(&DEF);
        family.with(&["conn", "GetEntity"]).add(1);
        family.with(&["conn", "GetEntity"]).add(2);
        family.with(&["conn", "ListEntities"]).add(4);
        // The same strings split differently are another series.
        family.with(&["connGet", "Entity"]).add(8);
        family.with(&["conn"]).add(16);
        let all: Vec<(Vec<String>, u64)> = family
            .snapshot()
            .into_iter()
            .map(|(k, v)| (k.into_vec(), v.get()))
            .collect();
        let key = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(
            all,
            vec![
                (key(&["conn"]), 16),
                (key(&["conn", "GetEntity"]), 3),
                (key(&["conn", "ListEntities"]), 4),
                (key(&["connGet", "Entity"]), 8),
            ]
        );
    }

    #[test]
    fn a_family_stops_growing_at_its_series_limit() {
        let family: Family<Counter> = Family::new(&DEF);
        for i in 0..MAX_SERIES + 50 {
            family.with(&[&i.to_string()]).add(1);
        }
        let all = family.snapshot();
        assert_eq!(all.len(), MAX_SERIES + 1);
        let overflow = all.iter().find(|(k, _)| k[0] == OVERFLOW).unwrap();
        assert_eq!(overflow.1.get(), 50);
    }
}
