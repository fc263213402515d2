//! Observability: logs, OpenTelemetry traces and metrics, the Prometheus `/metrics` endpoint and
//! the live `/status` page. The only user of the OpenTelemetry crates (in [`otel`]).
//!
//! What the rest of the code does to be observed is small and has no OpenTelemetry type in it:
//! the gRPC server wraps calls in [`CallLayer`]; handlers name the connection, entity type or
//! action ([`note_connection`], [`note_entity_type`], [`note_action`]); the upstream client opens
//! an `upstream` span and records attempts and retries ([`record_upstream`], [`record_retry`]);
//! queueing, throttling and retries are `tracing` events on the [`SPAN_EVENTS`] target, which
//! become span events. No span attribute, metric label or log field holds a secret: labels are
//! connection ids, method names, status codes and throttle reasons; paths are templates.

mod board;
mod call;
mod figures;
mod http;
mod metrics;
mod otel;
mod prometheus;
mod settings;

use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter, Targets};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, Registry};

pub use board::{Board, HISTORY_POINTS, Point, SAMPLE_INTERVAL};
pub use call::{
    CallLayer, call_traced, note_action, note_connection, note_entity_type, traceparent_trace_id,
};
pub use figures::{BudgetFigures, CallFigures, ConnectionFigures, NodeFigures, UpstreamFigures};
pub use http::{ConnectionStatus, MetricsServer, StatusDocument};
pub use metrics::{MAX_SERIES, metrics, record_retry, record_upstream};
pub use otel::{OtelError, OtelGuard};
pub use settings::{
    ENV_OTLP_ENDPOINT, ENV_SDK_DISABLED, MetricsSettings, TelemetrySettings,
    default_metrics_interval, default_metrics_listen, default_trace_sample_ratio,
};

use crate::config::{LogFormat, LogSettings};

/// The `tracing` target of events meant as span events (queued, throttled, retrying): exported
/// with their spans, and logged only when this target's `debug` level is on.
pub const SPAN_EVENTS: &str = "connector_runtime::span_event";

/// What the exporters need kept alive; dropping it flushes them.
#[derive(Debug, Default)]
pub struct Telemetry {
    otel: Option<OtelGuard>,
}

impl Telemetry {
    /// Whether traces and metrics are exported.
    pub fn exporting(&self) -> bool {
        self.otel.is_some()
    }
}

/// Whether log lines may show calls' spans as their context: false only when the installed log
/// filter shows nothing at INFO or below (e.g. `warn`); true when no subscriber was installed
/// here. With [`call_traced`], a call decides once whether it needs spans at all; leaving it to
/// the layers' filters to refuse each of a call's spans measured about 1.2 µs more per call with
/// export at 1 % (BENCHMARKS.md).
static LOGS_SHOW_CALLS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

fn logs_show_calls() -> bool {
    LOGS_SHOW_CALLS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Whether this process exports traces and metrics over OTLP.
pub fn exporting() -> bool {
    otel::active()
}

/// Installs the process' `tracing` subscriber: log lines to stderr (text or JSON, filtered by
/// `log.level` or `RUST_LOG`; lines inside a call carry its `trace_id`), and, when `telemetry`
/// names an OTLP endpoint (or `OTEL_EXPORTER_OTLP_ENDPOINT` does), span export. Call it once,
/// inside the tokio runtime. A subscriber already installed is left in place.
pub fn init(
    log: &LogSettings,
    telemetry: Option<&TelemetrySettings>,
) -> Result<Telemetry, OtelError> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    // Calls' spans are INFO: below that level no log line shows them.
    let shows_calls = filter
        .max_level_hint()
        .is_none_or(|level| level >= LevelFilter::INFO);
    let (layers, exporter) = layers(log, filter, telemetry)?;
    let installed = tracing_subscriber::registry()
        .with(layers)
        .try_init()
        .is_ok();
    if installed {
        LOGS_SHOW_CALLS.store(shows_calls, std::sync::atomic::Ordering::Relaxed);
    }
    let otel = exporter.map(|(guard, endpoint)| {
        if installed {
            tracing::info!(%endpoint, "exporting traces and metrics over OTLP");
        }
        guard
    });
    Ok(Telemetry { otel })
}

/// The subscriber's layers, each with its own filter, so that a span or event no layer wants is
/// never built: log lines filtered by `filter`, and span export when `telemetry` names an
/// endpoint (its guard and endpoint returned beside). A list rather than an `Option` for the
/// exporter: an absent `Option` layer claims an interest in every callsite, so each span would
/// be asked about on every call instead of being off once and for all.
fn layers(
    log: &LogSettings,
    filter: EnvFilter,
    telemetry: Option<&TelemetrySettings>,
) -> Result<(Layers, Option<(OtelGuard, String)>), OtelError> {
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = match log.format {
        LogFormat::Json => fmt.json().boxed(),
        LogFormat::Text => fmt.boxed(),
    };
    let mut layers: Layers = vec![fmt.with_filter(filter).boxed()];
    let endpoint = telemetry.and_then(|t| t.endpoint(|name| std::env::var(name).ok()));
    let exporter = match (telemetry, endpoint) {
        (Some(settings), Some(endpoint)) => {
            let (layer, guard) = otel::start::<Registry>(settings, &endpoint)?;
            let exported = Targets::new()
                .with_target("connector_runtime", LevelFilter::INFO)
                .with_target(SPAN_EVENTS, LevelFilter::DEBUG);
            // The level hint keeps callsites above DEBUG statically off, as without export.
            let sampled = tracing_subscriber::filter::dynamic_filter_fn(otel::exports)
                .with_max_level_hint(LevelFilter::DEBUG);
            layers.push(layer.with_filter(exported.and(sampled)).boxed());
            Some((guard, endpoint))
        }
        _ => None,
    };
    Ok((layers, exporter))
}

type Layers = Vec<Box<dyn Layer<Registry> + Send + Sync>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_no_layer_wants_is_never_built() {
        let log = LogSettings::default();
        let (quiet, _) = layers(&log, EnvFilter::new("warn"), None).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(quiet), || {
            // A call's span at INFO, logs at WARN, nothing exported: not built.
            assert!(tracing::info_span!("grpc.call").is_disabled());
            assert!(!tracing::warn_span!("shown").is_disabled());
        });
        let (logging, _) = layers(&log, EnvFilter::new("info"), None).unwrap();
        tracing::subscriber::with_default(tracing_subscriber::registry().with(logging), || {
            // Shown as the context of log lines: built.
            assert!(!tracing::info_span!("grpc.call").is_disabled());
        });
    }
}
