//! The sandbox's webhooks, as Stripe sends them: creating a WebhookEndpoint answers its signing
//! secret (`whsec_…`, only in that answer), and every Event recorded afterwards is POSTed to each
//! enabled endpoint whose `enabled_events` match, signed with `Stripe-Signature`. A failed POST is
//! retried a few times. Fault knobs drop, duplicate, delay and reorder deliveries (seeded, so a
//! run is reproducible), which is what a receiver must survive with Stripe too.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::execute::Call;
use super::routes::Target;
use super::server::lock;
use super::store::{Store, unix_now};
use crate::spec::model::{ConnectorSpec, OperationKind};
use crate::stripe::webhook;

/// Attempts per delivery (Stripe retries for days; the sandbox briefly).
const ATTEMPTS: u32 = 4;

/// Wait before the second attempt; doubles after each failure.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Events' `type` list filter takes a wildcard, as Stripe's does: `invoice.*` matches every type
/// starting with `invoice.`.
pub(crate) fn event_type_pattern(key: &str, wanted: &Value, have: &str) -> bool {
    let Some(prefix) = wanted.as_str().and_then(|w| w.strip_suffix('*')) else {
        return false;
    };
    key == "type" && prefix.ends_with('.') && have.starts_with(prefix)
}

/// Fault injection for webhook deliveries. Rates are probabilities in `[0, 1]`, drawn for each
/// delivery (one event to one endpoint) from the seeded generator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookFaults {
    /// Fraction of deliveries never sent. Default: 0.
    pub drop_rate: f64,
    /// Fraction of deliveries sent twice. Default: 0.
    pub duplicate_rate: f64,
    /// Fraction of deliveries held back by a random wait of up to `reorder_window`, so that later
    /// events overtake them. Default: 0.
    pub reorder_rate: f64,
    /// Longest extra wait of a reordered delivery (e.g. `"50ms"`). Default: 50 ms.
    #[serde(with = "humantime_serde")]
    pub reorder_window: Duration,
    /// Wait before every delivery (e.g. `"20ms"`). Default: none.
    #[serde(with = "humantime_serde")]
    pub delay: Duration,
}

impl Default for WebhookFaults {
    fn default() -> Self {
        Self {
            drop_rate: 0.0,
            duplicate_rate: 0.0,
            reorder_rate: 0.0,
            reorder_window: default_reorder_window(),
            delay: Duration::ZERO,
        }
    }
}

const fn default_reorder_window() -> Duration {
    Duration::from_millis(50)
}

impl WebhookFaults {
    /// The rates as (field name, value), for validation.
    pub fn rates(&self) -> [(&'static str, f64); 3] {
        [
            ("webhooks.drop_rate", self.drop_rate),
            ("webhooks.duplicate_rate", self.duplicate_rate),
            ("webhooks.reorder_rate", self.reorder_rate),
        ]
    }
}

/// Delivery counters, shown under `webhooks` in `/_sandbox/stats`.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct WebhookStats {
    /// POSTs answered 2xx.
    pub delivered: u64,
    /// Deliveries dropped by the fault knob.
    pub dropped: u64,
    /// Extra copies sent by the fault knob.
    pub duplicated: u64,
    /// Deliveries held back to be reordered.
    pub reordered: u64,
    /// Deliveries that failed every attempt.
    pub failed: u64,
}

/// The sandbox's webhook state.
pub(crate) struct Webhooks {
    /// Signing secret of each endpoint, by endpoint id.
    secrets: Mutex<HashMap<String, String>>,
    rng: Mutex<StdRng>,
    client: Option<reqwest::Client>,
    pub stats: std::sync::Arc<Mutex<WebhookStats>>,
}

/// One POST to make.
struct Delivery {
    url: String,
    secret: String,
    body: Vec<u8>,
    wait: Duration,
}

impl Webhooks {
    pub fn new(seed: u64) -> Self {
        crate::upstream::client::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()
            .ok();
        Self {
            secrets: Mutex::new(HashMap::new()),
            // Distinct from the other seeded streams so webhook faults do not shift them.
            rng: Mutex::new(StdRng::seed_from_u64(seed ^ 0x0e6b_400c)),
            client,
            stats: std::sync::Arc::default(),
        }
    }

    /// Forgets every endpoint secret and counter.
    pub fn reset(&self, seed: u64) {
        lock(&self.secrets).clear();
        *lock(&self.rng) = StdRng::seed_from_u64(seed ^ 0x0e6b_400c);
        *lock(&self.stats) = WebhookStats::default();
    }

    /// The newest event before a call, to find the events the call records.
    pub fn mark(store: &Store) -> Option<String> {
        store.newest_first("event").next().map(|(id, _)| id.clone())
    }

    /// A webhook endpoint just created gets its signing secret, shown once in the answer as
    /// Stripe does.
    fn give_secret(
        &self,
        spec: &ConnectorSpec,
        store: &mut Store,
        call: &Call,
        answer: &mut Value,
    ) {
        let Target::Entity {
            entity,
            kind: OperationKind::Create,
        } = call.matched.target
        else {
            return;
        };
        if spec.entities.get(entity).map(|e| e.object.as_str()) != Some("webhook_endpoint") {
            return;
        }
        let Some(id) = answer.get("id").and_then(Value::as_str) else {
            return;
        };
        let secret = format!("{}{}", webhook::SECRET_PREFIX, store.random_text(32));
        lock(&self.secrets).insert(id.to_owned(), secret.clone());
        if let Value::Object(object) = answer {
            object.insert("secret".to_owned(), Value::String(secret));
        }
    }

    /// After a successful call: a created endpoint gets its secret (in the answer), and the
    /// events the call recorded are sent to the endpoints that want them.
    pub fn after_call(
        &self,
        spec: &ConnectorSpec,
        store: &mut Store,
        call: &Call,
        answer: &mut Value,
        mark: Option<&str>,
        faults: &WebhookFaults,
    ) {
        self.give_secret(spec, store, call, answer);
        let mut recorded: Vec<Value> = store
            .newest_first("event")
            .take_while(|(id, _)| Some(id.as_str()) != mark)
            .map(|(_, record)| Value::Object(record.object.clone()))
            .collect();
        if recorded.is_empty() {
            return;
        }
        recorded.reverse();
        let endpoints = enabled_endpoints(store);
        if endpoints.is_empty() {
            return;
        }
        let secrets = lock(&self.secrets).clone();
        let mut deliveries = Vec::new();
        for event in &recorded {
            let event_type = event
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let body = event.to_string().into_bytes();
            for (id, url, types) in &endpoints {
                let Some(secret) = secrets.get(id) else {
                    continue;
                };
                if !types.iter().any(|t| t == "*" || t == event_type) {
                    continue;
                }
                self.plan(faults, url, secret, &body, &mut deliveries);
            }
        }
        for delivery in deliveries {
            self.send(delivery);
        }
    }

    /// Applies the fault knobs to one delivery.
    fn plan(
        &self,
        faults: &WebhookFaults,
        url: &str,
        secret: &str,
        body: &[u8],
        out: &mut Vec<Delivery>,
    ) {
        let mut rng = lock(&self.rng);
        let mut stats = lock(&self.stats);
        if rng.random_bool(faults.drop_rate.clamp(0.0, 1.0)) {
            stats.dropped += 1;
            return;
        }
        let copies = if rng.random_bool(faults.duplicate_rate.clamp(0.0, 1.0)) {
            stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut wait = faults.delay;
            if rng.random_bool(faults.reorder_rate.clamp(0.0, 1.0)) {
                stats.reordered += 1;
                let window = faults.reorder_window.as_micros().max(1) as u64;
                wait += Duration::from_micros(rng.random_range(0..=window));
            }
            out.push(Delivery {
                url: url.to_owned(),
                secret: secret.to_owned(),
                body: body.to_vec(),
                wait,
            });
        }
    }

    fn send(&self, delivery: Delivery) {
        let Some(client) = self.client.clone() else {
            return;
        };
        let stats = self.stats.clone();
        tokio::spawn(async move {
            if !delivery.wait.is_zero() {
                tokio::time::sleep(delivery.wait).await;
            }
            let mut backoff = RETRY_BACKOFF;
            for attempt in 1..=ATTEMPTS {
                let signature =
                    webhook::sign_header(&[delivery.secret.as_str()], unix_now(), &delivery.body);
                let sent = client
                    .post(&delivery.url)
                    .header("content-type", "application/json; charset=utf-8")
                    .header(webhook::SIGNATURE_HEADER, signature)
                    .body(delivery.body.clone())
                    .send()
                    .await;
                if matches!(&sent, Ok(response) if response.status().is_success()) {
                    lock(&stats).delivered += 1;
                    return;
                }
                if attempt < ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
            lock(&stats).failed += 1;
            tracing::debug!(url = %delivery.url, "sandbox: a webhook delivery failed every attempt");
        });
    }
}

/// The endpoints that are not disabled: (id, url, enabled event types).
fn enabled_endpoints(store: &Store) -> Vec<(String, String, Vec<String>)> {
    store
        .newest_first("webhook_endpoint")
        .filter_map(|(id, record)| {
            let object = &record.object;
            if object.get("status").and_then(Value::as_str) == Some("disabled") {
                return None;
            }
            let url = object.get("url").and_then(Value::as_str)?.to_owned();
            let types = object
                .get("enabled_events")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            Some((id.clone(), url, types))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(faults: &WebhookFaults, n: usize) -> Vec<Delivery> {
        let webhooks = Webhooks::new(7);
        let mut out = Vec::new();
        for _ in 0..n {
            webhooks.plan(
                faults,
                "http://127.0.0.1:9/hook",
                "whsec_x",
                b"{}",
                &mut out,
            );
        }
        out
    }

    #[test]
    fn without_faults_each_event_is_sent_once_at_once() {
        let out = planned(&WebhookFaults::default(), 10);
        assert_eq!(out.len(), 10);
        assert!(out.iter().all(|d| d.wait.is_zero()));
    }

    #[test]
    fn drop_duplicate_delay_and_reorder_knobs_shape_the_deliveries() {
        let all_dropped = WebhookFaults {
            drop_rate: 1.0,
            ..WebhookFaults::default()
        };
        assert!(planned(&all_dropped, 10).is_empty());
        let doubled = WebhookFaults {
            duplicate_rate: 1.0,
            ..WebhookFaults::default()
        };
        assert_eq!(planned(&doubled, 10).len(), 20);
        let delayed = WebhookFaults {
            delay: Duration::from_millis(20),
            reorder_rate: 1.0,
            reorder_window: Duration::from_millis(30),
            ..WebhookFaults::default()
        };
        let waits: Vec<Duration> = planned(&delayed, 50).iter().map(|d| d.wait).collect();
        assert!(
            waits
                .iter()
                .all(|w| *w >= Duration::from_millis(20) && *w <= Duration::from_millis(50))
        );
        assert!(
            waits.windows(2).any(|w| w[0] != w[1]),
            "reordering draws different waits"
        );
    }

    #[test]
    fn the_type_filter_takes_a_dotted_wildcard() {
        let wanted = Value::from("invoice.*");
        assert!(event_type_pattern("type", &wanted, "invoice.paid"));
        assert!(!event_type_pattern("type", &wanted, "invoiceitem.created"));
        assert!(!event_type_pattern("status", &wanted, "invoice.paid"));
        assert!(!event_type_pattern(
            "type",
            &Value::from("invoice.paid"),
            "invoice.paid"
        ));
    }
}
