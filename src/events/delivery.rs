//! Delivery to HTTP subscribers: one task per HTTP subscription POSTs each wanted event in store
//! order, signed in Stripe's scheme with the subscription's own secret, retrying with doubling
//! backoff; after the last attempt the event becomes a dead letter and delivery moves on. The
//! position is persisted after each event, so a restart resumes where delivery stopped (an event
//! may be sent twice across a crash, never skipped). `RetryEventSubscription` wakes the task to
//! redeliver the dead letters.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::store::{DeadLetter, StoredEvent};
use super::subscription::{Destination, Subscription};
use super::{EventHub, EventsSettings};
use crate::secrets::Secret;
use crate::stripe::webhook;

/// Events read from the store at a time.
const BATCH: usize = 128;

/// Longest error text kept with a dead letter.
const MAX_ERROR_LEN: usize = 300;

struct Worker {
    task: JoinHandle<()>,
    retry: Arc<RetrySignal>,
}

#[derive(Default)]
struct RetrySignal {
    requested: AtomicBool,
    wake: Notify,
}

/// The running delivery tasks, by subscription name.
pub struct Workers {
    running: Mutex<HashMap<String, Worker>>,
    client: Option<reqwest::Client>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// How one delivery attempt went.
#[derive(Debug)]
struct Failure(String);

impl Workers {
    pub fn new(settings: &EventsSettings) -> Self {
        crate::upstream::client::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(settings.delivery_timeout)
            .connect_timeout(settings.delivery_timeout)
            .tcp_nodelay(true)
            .no_proxy()
            .user_agent(concat!("connector-runtime/", env!("CARGO_PKG_VERSION")))
            .build();
        let client = match client {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(%error, "events: cannot build the HTTP delivery client");
                None
            }
        };
        Self {
            running: Mutex::new(HashMap::new()),
            client,
        }
    }

    /// Starts delivering to `subscription` when it has an HTTP destination.
    pub fn start(&self, hub: &EventHub, subscription: &Subscription) {
        let Destination::Http {
            url,
            signing_secret,
        } = &subscription.destination
        else {
            return;
        };
        let Some(client) = self.client.clone() else {
            return;
        };
        let secret = match hub.secrets().resolve(signing_secret) {
            Ok(secret) => secret,
            Err(error) => {
                tracing::error!(subscription = %subscription.name(), %error, "events: no delivery: the signing secret does not resolve");
                return;
            }
        };
        let retry = Arc::new(RetrySignal::default());
        let target = Target {
            client,
            url: url.clone(),
            secret,
        };
        let run = Run {
            store: hub.store().clone(),
            subscription: subscription.clone(),
            target,
            retry: retry.clone(),
            max_attempts: hub.settings().delivery_max_attempts.max(1),
            backoff: hub.settings().delivery_backoff,
            backoff_cap: hub.settings().delivery_backoff_cap,
        };
        let task = tokio::spawn(run.run());
        if let Some(old) = lock(&self.running).insert(subscription.name(), Worker { task, retry }) {
            old.task.abort();
        }
    }

    pub fn stop(&self, name: &str) {
        if let Some(worker) = lock(&self.running).remove(name) {
            worker.task.abort();
        }
    }

    pub fn stop_all(&self) {
        for (_, worker) in lock(&self.running).drain() {
            worker.task.abort();
        }
    }

    /// Asks a subscription's task to redeliver its dead letters.
    pub fn retry(&self, name: &str) {
        if let Some(worker) = lock(&self.running).get(name) {
            worker.retry.requested.store(true, Ordering::SeqCst);
            worker.retry.wake.notify_one();
        }
    }
}

struct Target {
    client: reqwest::Client,
    url: String,
    secret: Secret,
}

impl Target {
    /// One POST; 2xx is success.
    async fn post(&self, body: &[u8]) -> Result<(), Failure> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or_default();
        let signature = webhook::sign_header(&[self.secret.expose()], now, body);
        let response = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header(webhook::SIGNATURE_HEADER, signature)
            .body(body.to_vec())
            .send()
            .await
            .map_err(|e| Failure(format!("request failed: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(Failure(format!("HTTP {}", status.as_u16())))
        }
    }
}

/// Stripe's event plus the connection and the entity name, as HTTP subscribers receive it.
pub fn delivery_body(event: &StoredEvent) -> Vec<u8> {
    let mut payload = match serde_json::from_str::<Value>(&event.payload) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    payload.insert(
        "connection".to_owned(),
        Value::String(format!("connections/{}", event.connection)),
    );
    if let Some(entity) = &event.entity_name {
        payload.insert("entity_name".to_owned(), Value::String(entity.clone()));
    }
    Value::Object(payload).to_string().into_bytes()
}

struct Run {
    store: Arc<super::store::EventStore>,
    subscription: Subscription,
    target: Target,
    retry: Arc<RetrySignal>,
    max_attempts: u32,
    backoff: Duration,
    backoff_cap: Duration,
}

impl Run {
    async fn run(self) {
        let name = self.subscription.name();
        let mut stored = self.store.watch();
        loop {
            stored.borrow_and_update();
            if self.retry.requested.swap(false, Ordering::SeqCst) {
                self.redeliver_dead_letters(&name).await;
            }
            let cursor = match self.store.delivery_cursor(&name) {
                Ok(cursor) => cursor.unwrap_or(self.subscription.start_seq),
                Err(error) => {
                    tracing::error!(subscription = %name, %error, "events: delivery paused");
                    tokio::time::sleep(self.backoff_cap).await;
                    continue;
                }
            };
            let batch = match self
                .store
                .after(&self.subscription.connection, cursor, BATCH)
            {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(subscription = %name, %error, "events: delivery paused");
                    tokio::time::sleep(self.backoff_cap).await;
                    continue;
                }
            };
            let full = batch.len() == BATCH;
            for event in batch {
                if self.subscription.wants(&event) {
                    self.deliver(&name, &event).await;
                } else if let Err(error) = self.store.set_delivery_cursor(&name, event.seq) {
                    tracing::error!(subscription = %name, %error, "events: cannot save the delivery position");
                }
            }
            if full {
                continue;
            }
            tokio::select! {
                changed = stored.changed() => if changed.is_err() { return },
                () = self.retry.wake.notified() => {}
            }
        }
    }

    /// Delivers one event with retries; a dead letter when every attempt fails.
    async fn deliver(&self, name: &str, event: &StoredEvent) {
        match self.attempts(event).await {
            Ok(()) => {
                if let Err(error) = self.store.set_delivery_cursor(name, event.seq) {
                    tracing::error!(subscription = %name, %error, "events: cannot save the delivery position");
                }
            }
            Err(Failure(last_error)) => {
                tracing::warn!(subscription = %name, event = %event.id, attempts = self.max_attempts, %last_error, "events: delivery gave up; kept as a dead letter");
                let letter = DeadLetter {
                    subscription: name.to_owned(),
                    seq: event.seq,
                    attempts: self.max_attempts,
                    last_error,
                };
                if let Err(error) = self.store.dead_letter(&letter) {
                    tracing::error!(subscription = %name, %error, "events: cannot store a dead letter");
                }
            }
        }
    }

    async fn attempts(&self, event: &StoredEvent) -> Result<(), Failure> {
        let body = delivery_body(event);
        let mut wait = self.backoff;
        let mut attempt = 1;
        loop {
            match self.target.post(&body).await {
                Ok(()) => return Ok(()),
                Err(Failure(mut error)) => {
                    error.truncate(MAX_ERROR_LEN);
                    if attempt >= self.max_attempts {
                        return Err(Failure(error));
                    }
                    tracing::debug!(event = %event.id, attempt, %error, "events: delivery failed; retrying");
                }
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(self.backoff_cap);
            attempt += 1;
        }
    }

    async fn redeliver_dead_letters(&self, name: &str) {
        let letters = match self.store.dead_letters(name) {
            Ok(letters) => letters,
            Err(error) => {
                tracing::error!(subscription = %name, %error, "events: cannot read dead letters");
                return;
            }
        };
        for letter in letters {
            let event = match self.store.get(letter.seq) {
                Ok(Some(event)) => event,
                // Purged by retention: nothing left to deliver.
                Ok(None) => {
                    let _ = self.store.remove_dead_letter(name, letter.seq);
                    continue;
                }
                Err(error) => {
                    tracing::error!(subscription = %name, %error, "events: cannot read a dead letter's event");
                    continue;
                }
            };
            match self.attempts(&event).await {
                Ok(()) => {
                    if let Err(error) = self.store.remove_dead_letter(name, letter.seq) {
                        tracing::error!(subscription = %name, %error, "events: cannot clear a dead letter");
                    }
                }
                Err(Failure(last_error)) => {
                    let letter = DeadLetter {
                        attempts: letter.attempts + self.max_attempts,
                        last_error,
                        ..letter
                    };
                    if let Err(error) = self.store.dead_letter(&letter) {
                        tracing::error!(subscription = %name, %error, "events: cannot update a dead letter");
                    }
                }
            }
        }
    }
}
