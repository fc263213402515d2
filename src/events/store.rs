//! The durable event store: one SQLite database (`<data_dir>/events.sqlite3`, WAL journal, every
//! commit synced) holding the events (unique per connection and id, indexed by `(created, id)`,
//! numbered in the order they were stored), the subscriptions, each HTTP subscription's delivery
//! cursor, its dead letters, and each connection's event-log cursor.
//!
//! Event inserts go through one writer thread that commits whatever is queued in one transaction
//! (group commit): each insert returns only once it is on disk, yet a burst costs one sync, not
//! one per event. Everything else uses a second connection behind a mutex. Knows nothing about
//! Stripe, gRPC or HTTP.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};

use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{oneshot, watch};

/// The database file under `data_dir`.
pub const FILE_NAME: &str = "events.sqlite3";

/// Most inserts one group commit takes.
const MAX_GROUP: usize = 512;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("event store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("event store: cannot create {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("event store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("event store: a stored record is not valid JSON: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error("event store: the writer has stopped")]
    WriterGone,
    #[error("event store: commit failed: {0}")]
    Commit(String),
}

/// An event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// The upstream's event id (`evt_…`): an event is stored once per connection.
    pub id: String,
    pub connection: String,
    pub event_type: String,
    /// Creation time at the upstream, unix seconds.
    pub created: i64,
    /// The resource the event is about (`connections/c/entityTypes/PaymentIntent/entities/pi_1`).
    pub entity_name: Option<String>,
    /// The upstream's event, JSON.
    pub payload: String,
    /// How it arrived: `webhook` or `event_log`.
    pub source: &'static str,
}

/// A stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the store: later-stored events have larger numbers.
    pub seq: i64,
    pub id: String,
    pub connection: String,
    pub event_type: String,
    pub created: i64,
    pub entity_name: Option<String>,
    pub payload: String,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub seq: i64,
    /// False when the event was already stored (seen both as a webhook and in the event log).
    pub fresh: bool,
}

/// A dead letter: an event an HTTP subscription gave up on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub subscription: String,
    pub seq: i64,
    pub attempts: u32,
    pub last_error: String,
}

type Reply = oneshot::Sender<Result<Inserted, String>>;

/// The store. Cheap to share behind an `Arc`.
pub struct EventStore {
    path: PathBuf,
    main: Mutex<Connection>,
    writer: Mutex<Option<mpsc::Sender<(NewEvent, Reply)>>>,
    /// The highest `seq` stored; watchers wake on every commit.
    stored: watch::Sender<i64>,
}

impl std::fmt::Debug for EventStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStore")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    connection TEXT NOT NULL,
    type TEXT NOT NULL,
    created INTEGER NOT NULL,
    entity_name TEXT,
    payload TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (connection, id)
);
CREATE INDEX IF NOT EXISTS events_by_created ON events (connection, created, id);
CREATE TABLE IF NOT EXISTS subscriptions (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS delivery_cursors (
    subscription TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    subscription TEXT NOT NULL,
    seq INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    PRIMARY KEY (subscription, seq)
);
CREATE TABLE IF NOT EXISTS log_cursors (
    connection TEXT PRIMARY KEY,
    created INTEGER NOT NULL
);
";

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let open = |source| StoreError::Open {
        path: path.to_owned(),
        source,
    };
    let conn = Connection::open(path).map_err(open)?;
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(open)?;
    // FULL: a commit is synced before it returns, so an acknowledged webhook survives a crash.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(open)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open)?;
    Ok(conn)
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn row_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredEvent> {
    Ok(StoredEvent {
        seq: row.get(0)?,
        id: row.get(1)?,
        connection: row.get(2)?,
        event_type: row.get(3)?,
        created: row.get(4)?,
        entity_name: row.get(5)?,
        payload: row.get(6)?,
    })
}

const EVENT_COLUMNS: &str = "seq, id, connection, type, created, entity_name, payload";

impl EventStore {
    /// Opens (creating when missing) the store under `data_dir` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        let main = connect(&path)?;
        main.execute_batch(SCHEMA)?;
        let last: i64 =
            main.query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |r| r.get(0))?;
        let (stored, _) = watch::channel(last);
        let writer_conn = connect(&path)?;
        let (tx, rx) = mpsc::channel();
        let store = Arc::new(Self {
            path,
            main: Mutex::new(main),
            writer: Mutex::new(Some(tx)),
            stored,
        });
        let notify = store.stored.clone();
        std::thread::Builder::new()
            .name("event-store-writer".to_owned())
            .spawn(move || write_loop(writer_conn, rx, notify))
            .map_err(|source| StoreError::CreateDir {
                path: store.path.clone(),
                source,
            })?;
        Ok(store)
    }

    /// Where the database lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores an event unless one with its connection and id is stored already; returns once the
    /// commit is on disk.
    pub async fn insert(&self, event: NewEvent) -> Result<Inserted, StoreError> {
        let (reply, answer) = oneshot::channel();
        {
            let writer = lock(&self.writer);
            let sender = writer.as_ref().ok_or(StoreError::WriterGone)?;
            sender
                .send((event, reply))
                .map_err(|_| StoreError::WriterGone)?;
        }
        match answer.await {
            Ok(Ok(inserted)) => Ok(inserted),
            Ok(Err(message)) => Err(StoreError::Commit(message)),
            Err(_) => Err(StoreError::WriterGone),
        }
    }

    /// Stops the writer thread once it has committed what is queued; later inserts fail.
    pub fn close(&self) {
        lock(&self.writer).take();
    }

    /// Wakes on every commit; the value is the highest `seq` stored.
    pub fn watch(&self) -> watch::Receiver<i64> {
        self.stored.subscribe()
    }

    /// The highest `seq` stored so far (0 when empty).
    pub fn last_seq(&self) -> i64 {
        *self.stored.borrow()
    }

    /// Up to `limit` events of `connection` stored after `seq`, in the order they were stored.
    pub fn after(
        &self,
        connection: &str,
        seq: i64,
        limit: usize,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = lock(&self.main);
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE connection = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
        ))?;
        let rows = statement.query_map(params![connection, seq, limit as i64], row_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One stored event by its position.
    pub fn get(&self, seq: i64) -> Result<Option<StoredEvent>, StoreError> {
        let conn = lock(&self.main);
        Ok(conn
            .query_row(
                &format!("SELECT {EVENT_COLUMNS} FROM events WHERE seq = ?1"),
                params![seq],
                row_event,
            )
            .optional()?)
    }

    /// Every event of `connection`, in `(created, id)` order.
    pub fn by_created(&self, connection: &str) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = lock(&self.main);
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE connection = ?1 ORDER BY created, id"
        ))?;
        let rows = statement.query_map(params![connection], row_event)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How many events are stored for `connection`.
    pub fn count(&self, connection: &str) -> Result<u64, StoreError> {
        let conn = lock(&self.main);
        let n: i64 = conn.query_row(
            "SELECT COUNT(*) FROM events WHERE connection = ?1",
            params![connection],
            |r| r.get(0),
        )?;
        Ok(n as u64)
    }

    /// Deletes events created before `cutoff` (unix seconds) and the dead letters pointing at
    /// them; returns how many events went.
    pub fn purge_before(&self, cutoff: i64) -> Result<usize, StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "DELETE FROM dead_letters WHERE seq IN (SELECT seq FROM events WHERE created < ?1)",
            params![cutoff],
        )?;
        Ok(conn.execute("DELETE FROM events WHERE created < ?1", params![cutoff])?)
    }

    /// Stores (inserts or replaces) a subscription record.
    pub fn put_subscription(
        &self,
        name: &str,
        record: &serde_json::Value,
    ) -> Result<(), StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "INSERT INTO subscriptions (name, record) VALUES (?1, ?2)
             ON CONFLICT (name) DO UPDATE SET record = excluded.record",
            params![name, record.to_string()],
        )?;
        Ok(())
    }

    /// Every subscription record, by name.
    pub fn subscriptions(&self) -> Result<Vec<serde_json::Value>, StoreError> {
        let conn = lock(&self.main);
        let mut statement = conn.prepare("SELECT record FROM subscriptions ORDER BY name")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        let mut records = Vec::new();
        for row in rows {
            records.push(serde_json::from_str(&row?)?);
        }
        Ok(records)
    }

    /// Deletes a subscription with its cursor and dead letters.
    pub fn delete_subscription(&self, name: &str) -> Result<bool, StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "DELETE FROM delivery_cursors WHERE subscription = ?1",
            params![name],
        )?;
        conn.execute(
            "DELETE FROM dead_letters WHERE subscription = ?1",
            params![name],
        )?;
        Ok(conn.execute("DELETE FROM subscriptions WHERE name = ?1", params![name])? > 0)
    }

    /// The last `seq` an HTTP subscription has handled.
    pub fn delivery_cursor(&self, subscription: &str) -> Result<Option<i64>, StoreError> {
        let conn = lock(&self.main);
        Ok(conn
            .query_row(
                "SELECT seq FROM delivery_cursors WHERE subscription = ?1",
                params![subscription],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_delivery_cursor(&self, subscription: &str, seq: i64) -> Result<(), StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "INSERT INTO delivery_cursors (subscription, seq) VALUES (?1, ?2)
             ON CONFLICT (subscription) DO UPDATE SET seq = excluded.seq",
            params![subscription, seq],
        )?;
        Ok(())
    }

    /// Records a dead letter and moves the subscription's cursor past it, in one transaction.
    pub fn dead_letter(&self, letter: &DeadLetter) -> Result<(), StoreError> {
        let mut conn = lock(&self.main);
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT INTO dead_letters (subscription, seq, attempts, last_error) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subscription, seq) DO UPDATE SET attempts = excluded.attempts, last_error = excluded.last_error",
            params![letter.subscription, letter.seq, letter.attempts, letter.last_error],
        )?;
        tx.execute(
            "INSERT INTO delivery_cursors (subscription, seq) VALUES (?1, ?2)
             ON CONFLICT (subscription) DO UPDATE SET seq = MAX(seq, excluded.seq)",
            params![letter.subscription, letter.seq],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The dead letters of a subscription, oldest first.
    pub fn dead_letters(&self, subscription: &str) -> Result<Vec<DeadLetter>, StoreError> {
        let conn = lock(&self.main);
        let mut statement = conn.prepare(
            "SELECT subscription, seq, attempts, last_error FROM dead_letters WHERE subscription = ?1 ORDER BY seq",
        )?;
        let rows = statement.query_map(params![subscription], |r| {
            Ok(DeadLetter {
                subscription: r.get(0)?,
                seq: r.get(1)?,
                attempts: r.get(2)?,
                last_error: r.get(3)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Removes one dead letter (delivered on retry).
    pub fn remove_dead_letter(&self, subscription: &str, seq: i64) -> Result<(), StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "DELETE FROM dead_letters WHERE subscription = ?1 AND seq = ?2",
            params![subscription, seq],
        )?;
        Ok(())
    }

    /// The newest `created` read from a connection's upstream event log.
    pub fn log_cursor(&self, connection: &str) -> Result<Option<i64>, StoreError> {
        let conn = lock(&self.main);
        Ok(conn
            .query_row(
                "SELECT created FROM log_cursors WHERE connection = ?1",
                params![connection],
                |r| r.get(0),
            )
            .optional()?)
    }

    pub fn set_log_cursor(&self, connection: &str, created: i64) -> Result<(), StoreError> {
        let conn = lock(&self.main);
        conn.execute(
            "INSERT INTO log_cursors (connection, created) VALUES (?1, ?2)
             ON CONFLICT (connection) DO UPDATE SET created = MAX(created, excluded.created)",
            params![connection, created],
        )?;
        Ok(())
    }
}

/// Commits queued inserts in groups until every sender is gone.
fn write_loop(
    mut conn: Connection,
    queue: mpsc::Receiver<(NewEvent, Reply)>,
    stored: watch::Sender<i64>,
) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        match commit(&mut conn, &batch) {
            Ok(results) => {
                if let Some(max) = results.iter().filter(|r| r.fresh).map(|r| r.seq).max() {
                    stored.send_if_modified(|last| {
                        let newer = max > *last;
                        if newer {
                            *last = max;
                        }
                        newer
                    });
                }
                for ((_, reply), result) in batch.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            Err(error) => {
                tracing::error!(%error, events = batch.len(), "event store: commit failed");
                for (_, reply) in batch {
                    let _ = reply.send(Err(error.to_string()));
                }
            }
        }
    }
}

fn commit(conn: &mut Connection, batch: &[(NewEvent, Reply)]) -> rusqlite::Result<Vec<Inserted>> {
    let tx = conn.transaction()?;
    let mut results = Vec::with_capacity(batch.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO events (id, connection, type, created, entity_name, payload, source)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (connection, id) DO NOTHING",
        )?;
        let mut existing =
            tx.prepare_cached("SELECT seq FROM events WHERE connection = ?1 AND id = ?2")?;
        for (event, _) in batch {
            let changed = insert.execute(params![
                event.id,
                event.connection,
                event.event_type,
                event.created,
                event.entity_name,
                event.payload,
                event.source
            ])?;
            let seq = if changed == 1 {
                tx.last_insert_rowid()
            } else {
                existing.query_row(params![event.connection, event.id], |r| r.get(0))?
            };
            results.push(Inserted {
                seq,
                fresh: changed == 1,
            });
        }
    }
    tx.commit()?;
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, created: i64) -> NewEvent {
        NewEvent {
            id: id.to_owned(),
            connection: "stripe-a".to_owned(),
            event_type: "payment_intent.succeeded".to_owned(),
            created,
            entity_name: Some(format!(
                "connections/stripe-a/entityTypes/PaymentIntent/entities/pi_{id}"
            )),
            payload: format!(r#"{{"id":"{id}"}}"#),
            source: "webhook",
        }
    }

    #[tokio::test]
    async fn an_event_seen_twice_is_stored_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let first = store.insert(event("evt_1", 10)).await.unwrap();
        let again = store.insert(event("evt_1", 10)).await.unwrap();
        assert!(first.fresh && !again.fresh);
        assert_eq!(first.seq, again.seq);
        assert_eq!(store.count("stripe-a").unwrap(), 1);
    }

    #[tokio::test]
    async fn events_survive_reopening_and_keep_their_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = EventStore::open(dir.path()).unwrap();
            store.insert(event("evt_b", 20)).await.unwrap();
            store.insert(event("evt_a", 10)).await.unwrap();
            store.set_log_cursor("stripe-a", 20).unwrap();
            store.close();
        }
        let store = EventStore::open(dir.path()).unwrap();
        assert_eq!(store.last_seq(), 2);
        let stored: Vec<String> = store
            .after("stripe-a", 0, 10)
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(stored, ["evt_b", "evt_a"]);
        let by_created: Vec<String> = store
            .by_created("stripe-a")
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(by_created, ["evt_a", "evt_b"]);
        assert_eq!(store.log_cursor("stripe-a").unwrap(), Some(20));
    }

    #[tokio::test]
    async fn concurrent_inserts_share_commits_and_each_gets_its_own_seq() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..200 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                store.insert(event(&format!("evt_{i}"), i)).await.unwrap()
            }));
        }
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().seq);
        }
        seqs.sort();
        seqs.dedup();
        assert_eq!(seqs.len(), 200);
        assert_eq!(store.last_seq(), 200);
    }

    #[tokio::test]
    async fn watchers_wake_on_new_events_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let mut watch = store.watch();
        store.insert(event("evt_1", 1)).await.unwrap();
        assert!(watch.has_changed().unwrap());
        watch.borrow_and_update();
        store.insert(event("evt_1", 1)).await.unwrap();
        assert!(!watch.has_changed().unwrap());
    }

    #[tokio::test]
    async fn retention_purges_old_events_and_their_dead_letters() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        let old = store.insert(event("evt_old", 100)).await.unwrap();
        store.insert(event("evt_new", 5000)).await.unwrap();
        store
            .dead_letter(&DeadLetter {
                subscription: "s".to_owned(),
                seq: old.seq,
                attempts: 3,
                last_error: "HTTP 500".to_owned(),
            })
            .unwrap();
        assert_eq!(store.purge_before(1000).unwrap(), 1);
        assert_eq!(store.count("stripe-a").unwrap(), 1);
        assert!(store.dead_letters("s").unwrap().is_empty());
    }

    #[tokio::test]
    async fn after_close_inserts_fail_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let store = EventStore::open(dir.path()).unwrap();
        store.close();
        assert!(matches!(
            store.insert(event("evt_1", 1)).await,
            Err(StoreError::WriterGone)
        ));
    }
}
