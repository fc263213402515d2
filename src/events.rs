//! Events in: the generic machinery that stores upstream events durably and delivers them to
//! subscriptions, at least once and in the order they were stored.
//!
//! - [`store`]: the embedded SQLite store (events, subscriptions, cursors, dead letters).
//! - [`subscription`]: what a subscription is and which events it wants.
//! - [`delivery`]: POSTing to HTTP subscribers with backoff and dead letters.
//! - [`listener`]: the webhook HTTP listener (`/webhooks/{connection}`).
//! - [`catch_up`]: reading the upstream event log to fill gaps left by lost webhooks.
//! - [`runtime`]: starting and stopping all of it with the service.
//!
//! [`EventHub`] ties them together for the gRPC edge. Stripe's signature scheme and event shape
//! live in `crate::stripe::{webhook, event}`; this module must not grow Stripe rules of its own,
//! nor know about gRPC types.

pub mod catch_up;
pub mod delivery;
pub mod listener;
pub mod runtime;
mod settings;
pub mod store;
pub mod subscription;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use tokio::sync::{mpsc, watch};

pub use self::settings::EventsSettings;
use self::store::{EventStore, Inserted, NewEvent, StoreError, StoredEvent};
use self::subscription::{Destination, Subscription};
use crate::secrets::SecretResolver;
use crate::spec::model::ConnectorSpec;

/// Events a stream reads from the store at a time.
const STREAM_BATCH: usize = 256;

/// Why an events operation failed.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("event subscription {0:?} not found")]
    NotFound(String),
    #[error("event subscription {0:?} already exists")]
    AlreadyExists(String),
    #[error("invalid event subscription: {}", .0.iter().map(|(f, d)| format!("{f}: {d}")).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<(String, String)>),
    #[error("resume_token: {0}")]
    BadResumeToken(&'static str),
    #[error("event subscription {0:?} delivers to an HTTP endpoint, not to streams")]
    NotAStream(String),
    #[error(
        "event subscription {0:?} streams its events; only HTTP subscriptions have dead letters"
    )]
    NoDeadLetters(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The store, the subscriptions and their delivery, shared by the listener, the catch-up and the
/// gRPC edge.
pub struct EventHub {
    store: Arc<EventStore>,
    spec: Arc<ConnectorSpec>,
    secrets: SecretResolver,
    settings: EventsSettings,
    subscriptions: RwLock<BTreeMap<String, Subscription>>,
    workers: delivery::Workers,
    /// True once the service shuts down: open streams end.
    closing: watch::Sender<bool>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("store", &self.store)
            .finish()
    }
}

/// A subscription's resume token for one event: where a reconnecting stream continues.
pub fn resume_token(subscription: &str, seq: i64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{seq}:{subscription}"))
}

fn parse_resume_token(subscription: &str, token: &str) -> Result<i64, EventsError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| EventsError::BadResumeToken("not a token this runtime issued"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| EventsError::BadResumeToken("not a token this runtime issued"))?;
    let (seq, name) = text.split_once(':').ok_or(EventsError::BadResumeToken(
        "not a token this runtime issued",
    ))?;
    if name != subscription {
        return Err(EventsError::BadResumeToken(
            "was issued for a different subscription",
        ));
    }
    seq.parse()
        .map_err(|_| EventsError::BadResumeToken("not a token this runtime issued"))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl EventHub {
    /// Opens the store under `data_dir`, loads the subscriptions and starts delivering to the
    /// HTTP ones.
    pub fn open(
        data_dir: &Path,
        spec: Arc<ConnectorSpec>,
        secrets: SecretResolver,
        settings: EventsSettings,
    ) -> Result<Arc<Self>, EventsError> {
        let store = EventStore::open(data_dir)?;
        let mut subscriptions = BTreeMap::new();
        for record in store.subscriptions()? {
            match serde_json::from_value::<Subscription>(record) {
                Ok(s) => {
                    subscriptions.insert(s.name(), s);
                }
                Err(error) => {
                    tracing::error!(%error, "event store: an unreadable subscription was skipped")
                }
            }
        }
        let hub = Arc::new(Self {
            store,
            spec,
            secrets,
            workers: delivery::Workers::new(&settings),
            settings,
            subscriptions: RwLock::new(subscriptions),
            closing: watch::Sender::new(false),
        });
        for subscription in hub.list(None) {
            hub.workers.start(&hub, &subscription);
        }
        Ok(hub)
    }

    pub fn store(&self) -> &Arc<EventStore> {
        &self.store
    }

    pub fn settings(&self) -> &EventsSettings {
        &self.settings
    }

    pub(crate) fn secrets(&self) -> &SecretResolver {
        &self.secrets
    }

    /// Ends every open event stream (the service is shutting down).
    pub fn close_streams(&self) {
        self.closing.send_replace(true);
    }

    /// Ends streams, stops deliveries and the store's writer.
    pub fn shutdown(&self) {
        self.close_streams();
        self.workers.stop_all();
        self.store.close();
    }

    /// `connections/{c}/entityTypes/{Entity}/entities/{id}` for the object an event is about,
    /// when the connector has a top-level entity of that object type.
    pub fn entity_name(&self, connection: &str, object_type: &str, id: &str) -> Option<String> {
        let entity = self
            .spec
            .entities
            .iter()
            .find(|e| e.object == object_type && e.parents.is_empty())?;
        Some(format!(
            "connections/{connection}/entityTypes/{}/entities/{id}",
            entity.name
        ))
    }

    /// Stores an event (once per connection and id); returns once it is on disk.
    pub async fn record(&self, event: NewEvent) -> Result<Inserted, EventsError> {
        Ok(self.store.insert(event).await?)
    }

    /// Every subscription, or those of one connection, ordered by name.
    pub fn list(&self, connection: Option<&str>) -> Vec<Subscription> {
        read(&self.subscriptions)
            .values()
            .filter(|s| connection.is_none_or(|c| s.connection == c))
            .cloned()
            .collect()
    }

    pub fn get(&self, name: &str) -> Result<Subscription, EventsError> {
        read(&self.subscriptions)
            .get(name)
            .cloned()
            .ok_or_else(|| EventsError::NotFound(name.to_owned()))
    }

    fn check(&self, subscription: &Subscription) -> Result<(), EventsError> {
        let mut problems = subscription::check(subscription);
        if let Destination::Http { signing_secret, .. } = &subscription.destination
            && let Err(error) = self.secrets.resolve(signing_secret)
        {
            problems.push(("http_endpoint.signing_secret".to_owned(), error.to_string()));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(EventsError::Invalid(problems))
        }
    }

    /// Creates a subscription: it receives the matching events stored from now on.
    pub fn create(&self, mut subscription: Subscription) -> Result<Subscription, EventsError> {
        self.check(&subscription)?;
        let now = unix_now();
        subscription.create_time = now;
        subscription.update_time = now;
        subscription.start_seq = self.store.last_seq();
        let name = subscription.name();
        {
            let mut all = write(&self.subscriptions);
            if all.contains_key(&name) {
                return Err(EventsError::AlreadyExists(name));
            }
            self.store.put_subscription(
                &name,
                &serde_json::to_value(&subscription).map_err(StoreError::from)?,
            )?;
            all.insert(name, subscription.clone());
        }
        self.workers.start(self, &subscription);
        Ok(subscription)
    }

    /// Replaces a subscription's types, destination and description; its position is kept.
    pub fn update(&self, changed: Subscription) -> Result<Subscription, EventsError> {
        self.check(&changed)?;
        let name = changed.name();
        let updated = {
            let mut all = write(&self.subscriptions);
            let current = all
                .get_mut(&name)
                .ok_or_else(|| EventsError::NotFound(name.clone()))?;
            let mut updated = current.clone();
            updated.event_types = changed.event_types;
            updated.destination = changed.destination;
            updated.description = changed.description;
            updated.update_time = unix_now();
            self.store.put_subscription(
                &name,
                &serde_json::to_value(&updated).map_err(StoreError::from)?,
            )?;
            *current = updated.clone();
            updated
        };
        self.workers.stop(&name);
        self.workers.start(self, &updated);
        Ok(updated)
    }

    pub fn delete(&self, name: &str) -> Result<(), EventsError> {
        let mut all = write(&self.subscriptions);
        if all.remove(name).is_none() {
            return Err(EventsError::NotFound(name.to_owned()));
        }
        self.workers.stop(name);
        self.store.delete_subscription(name)?;
        Ok(())
    }

    /// Deletes every subscription of `connection` (the connection itself was deleted), with
    /// their cursors and dead letters; returns how many there were. A connection created later
    /// under the same id starts with none.
    pub fn delete_connection(&self, connection: &str) -> Result<usize, EventsError> {
        let names: Vec<String> = read(&self.subscriptions)
            .values()
            .filter(|s| s.connection == connection)
            .map(Subscription::name)
            .collect();
        let mut deleted = 0;
        for name in &names {
            match self.delete(name) {
                Ok(()) => deleted += 1,
                // Deleted meanwhile by a call of its own.
                Err(EventsError::NotFound(_)) => {}
                Err(error) => return Err(error),
            }
        }
        Ok(deleted)
    }

    /// Redelivers an HTTP subscription's dead letters; returns how many there are.
    pub fn retry(&self, name: &str) -> Result<usize, EventsError> {
        let subscription = self.get(name)?;
        if subscription.destination == Destination::Stream {
            return Err(EventsError::NoDeadLetters(name.to_owned()));
        }
        let count = self.store.dead_letters(name)?.len();
        self.workers.retry(name);
        Ok(count)
    }

    /// The dead letters of a subscription.
    pub fn dead_letters(&self, name: &str) -> Result<Vec<store::DeadLetter>, EventsError> {
        self.get(name)?;
        Ok(self.store.dead_letters(name)?)
    }

    /// Streams a subscription's events stored after `resume_token` (from the subscription's
    /// start when empty), then each new one as it is stored, until the receiver is dropped.
    pub fn stream(
        self: &Arc<Self>,
        name: &str,
        resume_token: &str,
    ) -> Result<mpsc::Receiver<Result<StoredEvent, EventsError>>, EventsError> {
        let subscription = self.get(name)?;
        if subscription.destination != Destination::Stream {
            return Err(EventsError::NotAStream(name.to_owned()));
        }
        let mut cursor = if resume_token.is_empty() {
            subscription.start_seq
        } else {
            parse_resume_token(name, resume_token)?
        };
        let (tx, rx) = mpsc::channel(STREAM_BATCH);
        let hub = Arc::clone(self);
        let name = name.to_owned();
        let mut closing = self.closing.subscribe();
        if *closing.borrow_and_update() {
            return Ok(rx);
        }
        tokio::spawn(async move {
            let mut stored = hub.store.watch();
            loop {
                stored.borrow_and_update();
                // A deleted subscription ends its streams.
                let Ok(subscription) = hub.get(&name) else {
                    return;
                };
                let batch = match hub
                    .store
                    .after(&subscription.connection, cursor, STREAM_BATCH)
                {
                    Ok(batch) => batch,
                    Err(error) => {
                        let _ = tx.send(Err(error.into())).await;
                        return;
                    }
                };
                let full = batch.len() == STREAM_BATCH;
                for event in batch {
                    cursor = event.seq;
                    if subscription.wants(&event) && tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                tokio::select! {
                    changed = stored.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                    _ = closing.changed() => return,
                }
            }
        });
        Ok(rx)
    }
}

#[cfg(test)]
mod tests;
