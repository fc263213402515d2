//! OpenTelemetry: the OTLP/gRPC exporters of traces and metrics, the `tracing` layer that turns
//! spans into OpenTelemetry spans, and W3C `traceparent` propagation. The only user of the
//! OpenTelemetry crates.
//!
//! Export never blocks the service: spans go through a bounded batch queue (dropped when full) on
//! the SDK's own thread, and metrics are read from the metric store on the periodic reader's
//! thread. A collector that is down costs failed exports, not memory nor latency.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{Histogram, Meter, MeterProvider as _};
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry::{KeyValue, Value};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider,
};
use tracing_opentelemetry::{OpenTelemetryLayer, OpenTelemetrySpanExt};

use super::board::Board;
use super::call::code_number;
use super::figures::ConnectionFigures;
use super::metrics::{Counter, Family, LATENCY_BUCKETS, MetricDef, metrics};
use super::settings::TelemetrySettings;

/// The default `service.name`.
pub const SERVICE_NAME: &str = "connector-runtime";
/// Longest one export may take before it is abandoned.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);
/// Spans waiting for export at most; more are dropped.
const MAX_QUEUED_SPANS: usize = 2048;

/// Why export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OtelError {
    #[error("cannot build the OTLP exporter for {endpoint}: {message}")]
    Exporter { endpoint: String, message: String },
}

/// Keeps the exporters running; flushes and stops them when dropped.
#[derive(Debug)]
pub struct OtelGuard {
    tracer: SdkTracerProvider,
    meter: SdkMeterProvider,
    io: ExportIo,
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        let _ = self.tracer.shutdown_with_timeout(EXPORT_TIMEOUT);
        let _ = self.meter.shutdown_with_timeout(EXPORT_TIMEOUT);
        self.io.stop();
    }
}

/// The exporters' network I/O: a thread of its own with a one-thread runtime, so sending spans
/// and metrics (or failing to reach a collector) never takes turns with calls on the service's
/// worker threads.
#[derive(Debug)]
struct ExportIo {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ExportIo {
    fn start() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("otlp-export".to_owned())
            .spawn(move || {
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The `tracing` layer that exports spans.
pub type OtelLayer<S> = OpenTelemetryLayer<S, SdkTracer>;

struct Histograms {
    call_duration: Histogram<f64>,
    upstream_duration: Histogram<f64>,
}

static HISTOGRAMS: OnceLock<Histograms> = OnceLock::new();

/// `trace_sample_ratio` of the running exporter.
static SAMPLE_RATIO: OnceLock<f64> = OnceLock::new();

thread_local! {
    /// The sampling decision of the call whose span is being created on this thread.
    static STARTING_CALL: Cell<Option<bool>> = const { Cell::new(None) };
}

/// Builds the exporters for `endpoint` (their channels on a thread of their own) and returns the
/// `tracing` layer. Metrics are registered at once; spans flow once the layer is installed.
pub fn start<S>(
    settings: &TelemetrySettings,
    endpoint: &str,
) -> Result<(OtelLayer<S>, OtelGuard), OtelError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    let failed = |e: &dyn std::fmt::Display| OtelError::Exporter {
        endpoint: endpoint.to_owned(),
        message: e.to_string(),
    };
    let resource = resource(settings);
    let io = ExportIo::start().map_err(|e| failed(&e))?;
    // tonic's channels spawn their connection tasks on the runtime they are built in.
    let entered = io.handle.enter();
    let spans = SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| failed(&e))?;
    let batch = BatchSpanProcessor::builder(spans)
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(MAX_QUEUED_SPANS)
                .build(),
        )
        .build();
    let tracer = SdkTracerProvider::builder()
        .with_span_processor(batch)
        // Sampling is decided before a span is built (see `exports`): what reaches the SDK is
        // what is recorded.
        .with_sampler(Sampler::AlwaysOn)
        .with_resource(resource.clone())
        .build();
    let exported = MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| failed(&e))?;
    drop(entered);
    let reader = PeriodicReader::builder(exported)
        .with_interval(settings.metrics_interval)
        .build();
    let meter = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_resource(resource)
        .build();
    register_instruments(&meter.meter(SERVICE_NAME));
    let _ = SAMPLE_RATIO.set(settings.trace_sample_ratio);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer.tracer(SERVICE_NAME))
        .with_location(false)
        .with_tracked_inactivity(false)
        // Nothing reads the OpenTelemetry context as the current one (no outgoing propagation),
        // so entering a span need not attach it: that would cost on every poll.
        .with_context_activation(false)
        .with_threads(false)
        .with_target(false);
    Ok((layer, OtelGuard { tracer, meter, io }))
}

fn resource(settings: &TelemetrySettings) -> Resource {
    let mut builder = Resource::builder();
    let env_names_service = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    match &settings.service_name {
        Some(name) => builder = builder.with_service_name(name.clone()),
        None if !env_names_service => builder = builder.with_service_name(SERVICE_NAME),
        None => {}
    }
    builder
        .with_attributes(
            settings
                .resource_attributes
                .iter()
                .map(|(k, v)| KeyValue::new(k.clone(), v.clone())),
        )
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Attributes of one series: a status code becomes a number, as the conventions want.
fn attributes(def: &MetricDef, values: &[String]) -> Vec<KeyValue> {
    def.attributes
        .iter()
        .zip(values)
        .map(|(name, value)| attribute(name, value))
        .collect()
}

fn attribute(name: &'static str, value: &str) -> KeyValue {
    let number = match name {
        "rpc.grpc.status_code" => code_number(value).map(i64::from),
        "http.response.status_code" => value.parse::<i64>().ok(),
        _ => None,
    };
    match (name, number) {
        (_, Some(n)) => KeyValue::new(name, n),
        ("http.response.status_code", None) => KeyValue::new("error.type", value.to_owned()),
        _ => KeyValue::new(name, Value::from(value.to_owned())),
    }
}

fn observe_family(meter: &Meter, family: &'static Family<Counter>) {
    let def = family.def;
    meter
        .u64_observable_counter(def.otel)
        .with_description(def.help)
        .with_unit(def.unit)
        .with_callback(move |observer| {
            for (values, counter) in family.snapshot() {
                observer.observe(counter.get(), &attributes(def, &values));
            }
        })
        .build();
}

type Reading = fn(&ConnectionFigures) -> f64;

/// Gauges read from the status board: (name, unit, description, reading).
const GAUGES: [(&str, &str, &str, Reading); 8] = [
    (
        "connector.nodes.current",
        "{node}",
        "Nodes running now.",
        |f| f64::from(f.nodes.current),
    ),
    (
        "connector.nodes.desired",
        "{node}",
        "Nodes the autoscaler found demand needs.",
        |f| f64::from(f.nodes.desired),
    ),
    (
        "connector.nodes.min",
        "{node}",
        "The connection's minimum node count.",
        |f| f64::from(f.nodes.min),
    ),
    (
        "connector.nodes.max",
        "{node}",
        "The connection's maximum node count.",
        |f| f64::from(f.nodes.max),
    ),
    (
        "connector.node.utilization",
        "1",
        "Share of the node pool's capacity used (0..1).",
        |f| f.utilization,
    ),
    (
        "connector.queue.length",
        "{call}",
        "Calls waiting for a free node.",
        |f| f.queue_length as f64,
    ),
    (
        "connector.stripe_budget.limit",
        "{request}/s",
        "Requests per second the Stripe account budget allows.",
        |f| f64::from(f.stripe_budget.limit_per_second),
    ),
    (
        "connector.stripe_budget.used",
        "1",
        "Share of the Stripe account budget used in the last second (0..1).",
        |f| f.stripe_budget.used,
    ),
];

fn register_instruments(meter: &Meter) {
    let m = metrics();
    for family in [&m.calls, &m.throttled, &m.upstream_requests, &m.retries] {
        observe_family(meter, family);
    }
    for (name, unit, help, reading) in GAUGES {
        meter
            .f64_observable_gauge(name)
            .with_description(help)
            .with_unit(unit)
            .with_callback(move |observer| {
                let Some(board) = Board::watched() else {
                    return;
                };
                for f in board.figures() {
                    observer.observe(reading(&f), &[KeyValue::new("connection", f.connection)]);
                }
            })
            .build();
    }
    meter
        .u64_observable_counter("connector.stripe_budget.requests")
        .with_description("Requests the Stripe account budget admitted.")
        .with_unit("{request}")
        .with_callback(|observer| {
            let Some(board) = Board::watched() else {
                return;
            };
            for f in board.figures() {
                observer.observe(
                    f.stripe_budget.admitted,
                    &[KeyValue::new("connection", f.connection)],
                );
            }
        })
        .build();
    let histogram = |def: &MetricDef| {
        meter
            .f64_histogram(def.otel)
            .with_description(def.help)
            .with_unit(def.unit)
            .with_boundaries(LATENCY_BUCKETS.to_vec())
            .build()
    };
    let _ = HISTOGRAMS.set(Histograms {
        call_duration: histogram(&super::metrics::CALL_DURATION),
        upstream_duration: histogram(&super::metrics::UPSTREAM_DURATION),
    });
}

/// Records a call's latency on the exported histogram, when export is on.
pub fn record_call_duration(connection: &str, operation: &str, code: &str, took: Duration) {
    if let Some(h) = HISTOGRAMS.get() {
        h.call_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("connection", connection.to_owned()),
                KeyValue::new("rpc.method", operation.to_owned()),
                attribute("rpc.grpc.status_code", code),
            ],
        );
    }
}

/// Records an upstream attempt's latency on the exported histogram, when export is on.
pub fn record_upstream_duration(
    connection: &str,
    method: &str,
    status: Option<u16>,
    took: Duration,
) {
    if let Some(h) = HISTOGRAMS.get() {
        let outcome = match status {
            Some(code) => KeyValue::new("http.response.status_code", i64::from(code)),
            None => KeyValue::new("error.type", "transport"),
        };
        h.upstream_duration.record(
            took.as_secs_f64(),
            &[
                KeyValue::new("connection", connection.to_owned()),
                KeyValue::new("http.request.method", method.to_owned()),
                outcome,
            ],
        );
    }
}

struct Headers<'a>(&'a http::HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Head sampling of a new call: the sampled flag of the caller's valid `traceparent` (its trace
/// flags, `parent_flags`), else `trace_sample_ratio`. Always false when export is off. Deciding
/// before any span is built means an unsampled call costs the exporter nothing.
pub fn sample_call(parent_flags: Option<u8>) -> bool {
    if !active() {
        return false;
    }
    match parent_flags {
        Some(flags) => flags & 1 == 1,
        None => sample_new_trace(),
    }
}

fn sample_new_trace() -> bool {
    let ratio = SAMPLE_RATIO.get().copied().unwrap_or(1.0);
    ratio >= 1.0 || (ratio > 0.0 && rand::random::<f64>() < ratio)
}

/// Runs `create` (which creates a call's span) with the call's sampling decision in view of
/// the exporting layer's filter.
pub fn starting_call<T>(sampled: bool, create: impl FnOnce() -> T) -> T {
    STARTING_CALL.with(|c| c.set(Some(sampled)));
    let made = create();
    STARTING_CALL.with(|c| c.set(None));
    made
}

/// The exporting layer's filter: a call's span by its head-sampling decision; any span or event
/// inside an exported span; nothing else inside a call that is not sampled; outside calls
/// (background work), a new span starts a trace sampled by the ratio.
pub fn exports<S>(
    metadata: &tracing::Metadata<'_>,
    cx: &tracing_subscriber::layer::Context<'_, S>,
) -> bool
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    if let Some(decision) = STARTING_CALL.with(Cell::get) {
        return decision;
    }
    if cx.lookup_current().is_some() {
        return true;
    }
    match super::call::current_call_sampled() {
        Some(_) => false,
        None => metadata.is_span() && sample_new_trace(),
    }
}

/// Whether spans are exported (the layer is installed).
pub fn active() -> bool {
    HISTOGRAMS.get().is_some()
}

/// Makes `span` a child of the caller's W3C `traceparent`, if any, and returns the span's
/// trace id. `None` when export is off.
pub fn adopt_parent(span: &tracing::Span, headers: &http::HeaderMap) -> Option<String> {
    if !active() || span.is_disabled() {
        return None;
    }
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    let context = span.context();
    let span_context = context.span().span_context().clone();
    span_context
        .is_valid()
        .then(|| span_context.trace_id().to_string())
}
