//! The `[metrics]` and `[telemetry]` settings sections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The metrics port: `/metrics` (Prometheus), `/status` and `/status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// Serve the metrics port. The figures carry connection ids but no secret; serve it on a
    /// non-loopback address (e.g. `0.0.0.0:9464` for a Prometheus scrape in Kubernetes) only on a
    /// network you trust. Default: `false`.
    pub enabled: bool,
    /// Address of the metrics port (`IP:port`); port 0 picks a free port. Default: `127.0.0.1:9464`.
    pub listen: SocketAddr,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: default_metrics_listen(),
        }
    }
}

/// `127.0.0.1:9464` (OpenTelemetry's customary Prometheus port).
pub fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// OpenTelemetry export (OTLP over gRPC) of traces and metrics. Export is on when an endpoint is
/// set here or in `OTEL_EXPORTER_OTLP_ENDPOINT`; off otherwise. The standard variables
/// `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_EXPORTER_OTLP_TIMEOUT` apply as well; `OTEL_SDK_DISABLED=true` turns export off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetrySettings {
    /// The collector's OTLP/gRPC endpoint, e.g. `http://otel-collector:4317`. Default: unset
    /// (`OTEL_EXPORTER_OTLP_ENDPOINT`, when set).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute. Default: `OTEL_SERVICE_NAME`, else `connector-runtime`.
    pub service_name: Option<String>,
    /// More resource attributes (`deployment.environment = "prod"`); `OTEL_RESOURCE_ATTRIBUTES`
    /// adds to them. Default: none.
    pub resource_attributes: BTreeMap<String, String>,
    /// How often metrics are exported. Default: `30s`.
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
    /// Share of new traces recorded (0..1); a caller's sampled `traceparent` is always followed.
    /// Default: 1.
    pub trace_sample_ratio: f64,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            resource_attributes: BTreeMap::new(),
            metrics_interval: default_metrics_interval(),
            trace_sample_ratio: default_trace_sample_ratio(),
        }
    }
}

/// 30 seconds.
pub const fn default_metrics_interval() -> Duration {
    Duration::from_secs(30)
}

/// 1 (every trace).
pub const fn default_trace_sample_ratio() -> f64 {
    1.0
}

/// The standard variable naming the collector.
pub const ENV_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The standard variable turning the SDK off.
pub const ENV_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";

impl TelemetrySettings {
    /// The endpoint to export to, from the settings or `env`, unless export is off.
    pub fn endpoint(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        if env(ENV_SDK_DISABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return None;
        }
        self.otlp_endpoint
            .clone()
            .or_else(|| env(ENV_OTLP_ENDPOINT))
            .filter(|e| !e.trim().is_empty())
    }

    /// Problems with the values, as `(key, message)`.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !(0.0..=1.0).contains(&self.trace_sample_ratio) {
            problems.push(("trace_sample_ratio", "must be between 0 and 1".to_owned()));
        }
        if self.metrics_interval < Duration::from_millis(100) {
            problems.push(("metrics_interval", "must be at least 100ms".to_owned()));
        }
        if let Some(endpoint) = &self.otlp_endpoint
            && url::Url::parse(endpoint).map_or(true, |u| !matches!(u.scheme(), "http" | "https"))
        {
            problems.push((
                "otlp_endpoint",
                "must be an http:// or https:// URL, e.g. http://127.0.0.1:4317".to_owned(),
            ));
        }
        problems
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_is_off_unless_an_endpoint_is_set_and_the_sdk_is_not_disabled() {
        let settings = TelemetrySettings::default();
        assert_eq!(settings.endpoint(|_| None), None);
        let env = |name: &str| (name == ENV_OTLP_ENDPOINT).then(|| "http://c:4317".to_owned());
        assert_eq!(settings.endpoint(env).as_deref(), Some("http://c:4317"));
        let disabled = |name: &str| match name {
            ENV_SDK_DISABLED => Some("true".to_owned()),
            _ => Some("http://c:4317".to_owned()),
        };
        assert_eq!(settings.endpoint(disabled), None);
        let configured = TelemetrySettings {
            otlp_endpoint: Some("http://mine:4317".to_owned()),
            ..TelemetrySettings::default()
        };
        assert_eq!(
            configured.endpoint(env).as_deref(),
            Some("http://mine:4317")
        );
    }

    #[test]
    fn rejects_ratios_outside_zero_to_one_and_non_http_endpoints() {
        let bad = TelemetrySettings {
            trace_sample_ratio: 1.5,
            otlp_endpoint: Some("collector:4317".to_owned()),
            ..TelemetrySettings::default()
        };
        let keys: Vec<_> = bad.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["trace_sample_ratio", "otlp_endpoint"]);
    }
}
