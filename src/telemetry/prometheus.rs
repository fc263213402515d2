//! The Prometheus text exposition format (version 0.0.4) of the metric store and of the live
//! connection figures. Pure: builds a string, no I/O.

use std::fmt::Write;

use super::figures::ConnectionFigures;
use super::metrics::{Counter, Family, Histogram, LATENCY_BUCKETS, Metrics};

/// The `Content-Type` of the format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A gauge per connection, read from its figures.
struct GaugeDef {
    name: &'static str,
    help: &'static str,
    value: fn(&ConnectionFigures) -> f64,
}

/// Names of the per-connection gauges (documented in the README).
const GAUGES: [GaugeDef; 9] = [
    GaugeDef {
        name: "connector_nodes_current",
        help: "Nodes running now.",
        value: |f| f64::from(f.nodes.current),
    },
    GaugeDef {
        name: "connector_nodes_desired",
        help: "Nodes the last autoscaling decision found demand needs.",
        value: |f| f64::from(f.nodes.desired),
    },
    GaugeDef {
        name: "connector_nodes_min",
        help: "The connection's minimum node count.",
        value: |f| f64::from(f.nodes.min),
    },
    GaugeDef {
        name: "connector_nodes_max",
        help: "The connection's maximum node count.",
        value: |f| f64::from(f.nodes.max),
    },
    GaugeDef {
        name: "connector_node_utilization",
        help: "Share of the node pool's capacity used during the last autoscaling interval (0..1); the autoscaler's input.",
        value: |f| f.utilization,
    },
    GaugeDef {
        name: "connector_queue_length",
        help: "Calls waiting for a free node now.",
        value: |f| f.queue_length as f64,
    },
    GaugeDef {
        name: "connector_connection_ready",
        help: "1 when the connection can serve calls, 0 when its secret or settings are not usable.",
        value: |f| if f.ready { 1.0 } else { 0.0 },
    },
    GaugeDef {
        name: "connector_stripe_budget_limit",
        help: "Requests per second the connection's Stripe account budget allows (shared by the account's connections).",
        value: |f| f64::from(f.stripe_budget.limit_per_second),
    },
    GaugeDef {
        name: "connector_stripe_budget_used",
        help: "Share of the Stripe account budget used during the last second (0..1).",
        value: |f| f.stripe_budget.used,
    },
];

/// Counters per connection, read from its figures.
const FIGURE_COUNTERS: [GaugeDef; 2] = [
    GaugeDef {
        name: "connector_stripe_budget_requests_total",
        help: "Requests the connection's Stripe account budget admitted (shared by the account's connections).",
        value: |f| f.stripe_budget.admitted as f64,
    },
    GaugeDef {
        name: "connector_admitted_transactions_total",
        help: "Transactions the connection's node pool admitted.",
        value: |f| f.admitted_transactions as f64,
    },
];

/// Renders everything: the store's counters and histograms, then the connections' gauges.
pub fn render(metrics: &Metrics, figures: &[ConnectionFigures]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    counter(&mut out, &metrics.calls);
    histogram(&mut out, &metrics.call_duration);
    counter(&mut out, &metrics.throttled);
    counter(&mut out, &metrics.upstream_requests);
    histogram(&mut out, &metrics.upstream_duration);
    counter(&mut out, &metrics.retries);
    for (defs, kind) in [(&GAUGES[..], "gauge"), (&FIGURE_COUNTERS[..], "counter")] {
        for def in defs {
            header(&mut out, def.name, def.help, kind);
            for f in figures {
                let _ = writeln!(
                    out,
                    "{}{{connection=\"{}\"}} {}",
                    def.name,
                    escape(&f.connection),
                    number((def.value)(f))
                );
            }
        }
    }
    out
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn labels(names: &[&str], values: &[String], extra: Option<(&str, &str)>) -> String {
    let mut pairs: Vec<String> = names
        .iter()
        .zip(values)
        .map(|(n, v)| format!("{n}=\"{}\"", escape(v)))
        .collect();
    if let Some((n, v)) = extra {
        pairs.push(format!("{n}=\"{v}\""));
    }
    format!("{{{}}}", pairs.join(","))
}

fn counter(out: &mut String, family: &Family<Counter>) {
    let def = family.def;
    header(out, def.prometheus, def.help, "counter");
    for (values, c) in family.snapshot() {
        let _ = writeln!(
            out,
            "{}{} {}",
            def.prometheus,
            labels(def.labels, &values, None),
            c.get()
        );
    }
}

fn histogram(out: &mut String, family: &Family<Histogram>) {
    let def = family.def;
    header(out, def.prometheus, def.help, "histogram");
    for (values, h) in family.snapshot() {
        let s = h.snapshot();
        let mut cumulative = 0;
        for (i, count) in s.buckets.iter().enumerate() {
            cumulative += count;
            let le = LATENCY_BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{}_bucket{} {cumulative}",
                def.prometheus,
                labels(def.labels, &values, Some(("le", &le)))
            );
        }
        let names = labels(def.labels, &values, None);
        let _ = writeln!(
            out,
            "{}_sum{names} {}",
            def.prometheus,
            number(s.sum_seconds)
        );
        let _ = writeln!(out, "{}_count{names} {}", def.prometheus, s.count);
    }
}

fn number(value: f64) -> String {
    if value.is_finite() {
        value.to_string()
    } else {
        "NaN".to_owned()
    }
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_label_values() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
