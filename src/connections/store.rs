//! Persistence of connections: the live set of connections, merged from the configuration file
//! and the changes made through the API, kept on disk so that a restart loses nothing.
//!
//! Layout: one JSON file per connection, `<data_dir>/connections/<id>.json`, holding either the
//! connection (settings, origin, create and update times) or a tombstone. Files hold secret
//! *references* only, never values. Every write is atomic: a temporary file in the same
//! directory, `fsync`, `rename` over the old file, `fsync` of the directory.
//!
//! Precedence, decided once in [`ConnectionStore::open`]:
//! 1. A connection file in the data directory wins over the configuration file. Connections
//!    created or changed through the API always have one.
//! 2. A tombstone hides the configuration file's connection of the same id, so a connection
//!    deleted through the API does not come back on restart. To bring the file's definition back
//!    (or to make an edited file win again over an API change), stop the runtime and remove
//!    `<data_dir>/connections/<id>.json`.
//! 3. Otherwise the configuration file's connection is served as written (not copied to disk
//!    until it is changed through the API), so editing the file and restarting takes effect.
//!
//! Writes are synchronous (file I/O and `fsync`); async callers run them on
//! `tokio::task::spawn_blocking` (the registry does). Reads are lock-free snapshots (`Arc` clones).
//! This module does not validate settings beyond what a file name needs: callers run
//! [`crate::connections::validate`] first.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::watch;

use crate::connections::model::{ConnectionSpec, Origin, StoredConnection};
use crate::connections::validate::validate_name;

/// Sub-directory of the data directory that holds connection files.
pub const CONNECTIONS_DIR: &str = "connections";

/// Version of the on-disk record format.
const FORMAT: u32 = 1;

/// The live connections by id, ordered by id.
pub type Snapshot = Arc<BTreeMap<String, Arc<StoredConnection>>>;

/// The source of `create_time` and `update_time`; injectable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// Why a store operation failed.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("connection `{id}` already exists")]
    AlreadyExists { id: String },
    #[error("connection `{id}` not found")]
    NotFound { id: String },
    #[error("`{}` is not a valid connection id: {reason}", id.escape_debug())]
    InvalidId { id: String, reason: String },
    #[error(
        "connection `{id}` is the runtime's built-in sandbox connection and cannot be changed or deleted"
    )]
    Embedded { id: String },
    #[error("connection `{id}` is defined more than once in the configuration")]
    DuplicateFileConnection { id: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },
}

/// A deleted connection, kept so that a configuration-file definition stays deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tombstone {
    id: String,
    origin: Origin,
    #[serde(with = "humantime_serde")]
    delete_time: SystemTime,
}

/// One connection file: exactly one of `connection` and `tombstone`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    format: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    connection: Option<StoredConnection>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    tombstone: Option<Tombstone>,
}

enum Loaded {
    Connection(Box<StoredConnection>),
    Tombstone,
}

/// The live connections and their files. Cheap to clone; all clones share one state.
#[derive(Clone)]
pub struct ConnectionStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Ids the configuration file defines; deleting one of these leaves a tombstone.
    file_ids: BTreeSet<String>,
    /// Serialises writers; readers never take it.
    write: Mutex<()>,
    live: watch::Sender<Snapshot>,
    clock: Clock,
}

impl std::fmt::Debug for ConnectionStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionStore")
            .field("dir", &self.inner.dir)
            .field("connections", &self.inner.live.borrow().len())
            .finish()
    }
}

impl ConnectionStore {
    /// Opens (creating it if needed) `<data_dir>/connections` and merges it with the
    /// configuration file's connections, as the module documentation describes. Fails, naming
    /// the file, when a connection file is unreadable or corrupt.
    pub fn open(
        data_dir: impl AsRef<Path>,
        file_connections: Vec<ConnectionSpec>,
    ) -> Result<Self, StoreError> {
        Self::open_with_clock(data_dir, file_connections, Arc::new(SystemTime::now))
    }

    /// [`ConnectionStore::open`] with an injected clock.
    pub fn open_with_clock(
        data_dir: impl AsRef<Path>,
        file_connections: Vec<ConnectionSpec>,
        clock: Clock,
    ) -> Result<Self, StoreError> {
        let dir = data_dir.as_ref().join(CONNECTIONS_DIR);
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            path: dir.clone(),
            source,
        })?;
        let on_disk = load_dir(&dir)?;

        let now = clock();
        let mut file_ids = BTreeSet::new();
        let mut live = BTreeMap::new();
        for spec in file_connections {
            check_id(&spec.id)?;
            if !file_ids.insert(spec.id.clone()) {
                return Err(StoreError::DuplicateFileConnection { id: spec.id });
            }
            match on_disk.get(&spec.id) {
                Some(Loaded::Tombstone) => tracing::warn!(
                    connection = %spec.id,
                    file = %dir.join(file_name(&spec.id)).display(),
                    "connection from the configuration file was deleted through the API and stays deleted; remove the file to restore it"
                ),
                Some(Loaded::Connection(stored)) => {
                    if stored.spec != spec {
                        tracing::info!(
                            connection = %spec.id,
                            file = %dir.join(file_name(&spec.id)).display(),
                            "connection changed through the API overrides the configuration file; remove the file to use the configuration file's settings"
                        );
                    }
                }
                None => {
                    let stored = StoredConnection {
                        spec,
                        origin: Origin::ConfigFile,
                        create_time: now,
                        update_time: now,
                    };
                    live.insert(stored.spec.id.clone(), Arc::new(stored));
                }
            }
        }
        for (id, loaded) in on_disk {
            if let Loaded::Connection(stored) = loaded {
                live.insert(id, Arc::from(stored));
            }
        }
        let (live, _) = watch::channel(Arc::new(live));
        Ok(Self {
            inner: Arc::new(Inner {
                dir,
                file_ids,
                write: Mutex::new(()),
                live,
                clock,
            }),
        })
    }

    /// The directory holding the connection files.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Every live connection, ordered by id.
    pub fn list(&self) -> Vec<Arc<StoredConnection>> {
        self.snapshot().values().cloned().collect()
    }

    /// One connection by id (`stripe-eu`, not `connections/stripe-eu`).
    pub fn get(&self, id: &str) -> Option<Arc<StoredConnection>> {
        self.snapshot().get(id).cloned()
    }

    /// The whole live set at once.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.live.borrow().clone()
    }

    /// A receiver that sees every change of the live set (for rebuilding node pools and clients).
    pub fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.inner.live.subscribe()
    }

    /// Adds the runtime's own connection to its built-in sandbox (origin [`Origin::Embedded`]).
    /// It lives in memory only (its base URL changes with the sandbox's port) and cannot be
    /// updated or deleted.
    pub fn add_embedded(&self, spec: ConnectionSpec) -> Result<Arc<StoredConnection>, StoreError> {
        check_id(&spec.id)?;
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        if current.contains_key(&spec.id) {
            return Err(StoreError::AlreadyExists { id: spec.id });
        }
        let now = (self.inner.clock)();
        let stored = Arc::new(StoredConnection {
            spec,
            origin: Origin::Embedded,
            create_time: now,
            update_time: now,
        });
        self.publish(&current, |map| {
            map.insert(stored.spec.id.clone(), stored.clone());
        });
        Ok(stored)
    }

    /// Replaces the embedded connection's settings in memory (they are not persisted: they last
    /// for the life of the process, like the connection itself). The caller decides which
    /// settings may change.
    pub fn update_embedded(
        &self,
        spec: ConnectionSpec,
    ) -> Result<Arc<StoredConnection>, StoreError> {
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let Some(old) = current
            .get(&spec.id)
            .filter(|c| c.origin == Origin::Embedded)
        else {
            return Err(StoreError::NotFound { id: spec.id });
        };
        let stored = Arc::new(StoredConnection {
            spec,
            origin: Origin::Embedded,
            create_time: old.create_time,
            update_time: (self.inner.clock)(),
        });
        self.publish(&current, |map| {
            map.insert(stored.spec.id.clone(), stored.clone());
        });
        Ok(stored)
    }

    /// Creates a connection (origin [`Origin::Api`]) and persists it. A tombstone of the same id
    /// is replaced.
    pub fn create(&self, spec: ConnectionSpec) -> Result<Arc<StoredConnection>, StoreError> {
        check_id(&spec.id)?;
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        if current.contains_key(&spec.id) {
            return Err(StoreError::AlreadyExists { id: spec.id });
        }
        let now = (self.inner.clock)();
        let stored = Arc::new(StoredConnection {
            spec,
            origin: Origin::Api,
            create_time: now,
            update_time: now,
        });
        self.write_record(
            &stored.spec.id,
            &Record {
                format: FORMAT,
                connection: Some((*stored).clone()),
                tombstone: None,
            },
        )?;
        self.publish(&current, |map| {
            map.insert(stored.spec.id.clone(), stored.clone());
        });
        Ok(stored)
    }

    /// Replaces a connection's settings, keeping its origin and create time, and persists it.
    pub fn update(&self, spec: ConnectionSpec) -> Result<Arc<StoredConnection>, StoreError> {
        check_id(&spec.id)?;
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let Some(old) = current.get(&spec.id) else {
            return Err(StoreError::NotFound { id: spec.id });
        };
        if old.origin == Origin::Embedded {
            return Err(StoreError::Embedded { id: spec.id });
        }
        let stored = Arc::new(StoredConnection {
            spec,
            origin: old.origin,
            create_time: old.create_time,
            update_time: (self.inner.clock)(),
        });
        self.write_record(
            &stored.spec.id,
            &Record {
                format: FORMAT,
                connection: Some((*stored).clone()),
                tombstone: None,
            },
        )?;
        self.publish(&current, |map| {
            map.insert(stored.spec.id.clone(), stored.clone());
        });
        Ok(stored)
    }

    /// Deletes a connection. When the configuration file defines the id (now, or when the
    /// connection was loaded from it) a tombstone keeps it deleted across restarts; otherwise the
    /// file is removed.
    pub fn delete(&self, id: &str) -> Result<Arc<StoredConnection>, StoreError> {
        check_id(id)?;
        let _guard = self
            .inner
            .write
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let current = self.snapshot();
        let Some(old) = current.get(id).cloned() else {
            return Err(StoreError::NotFound { id: id.to_owned() });
        };
        if old.origin == Origin::Embedded {
            return Err(StoreError::Embedded { id: id.to_owned() });
        }
        if self.inner.file_ids.contains(id) || old.origin == Origin::ConfigFile {
            let tombstone = Tombstone {
                id: id.to_owned(),
                origin: old.origin,
                delete_time: (self.inner.clock)(),
            };
            self.write_record(
                id,
                &Record {
                    format: FORMAT,
                    connection: None,
                    tombstone: Some(tombstone),
                },
            )?;
        } else {
            let path = self.inner.dir.join(file_name(id));
            match fs::remove_file(&path) {
                Ok(()) => sync_dir(&self.inner.dir)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Io { path, source }),
            }
        }
        self.publish(&current, |map| {
            map.remove(id);
        });
        Ok(old)
    }

    fn write_record(&self, id: &str, record: &Record) -> Result<(), StoreError> {
        let path = self.inner.dir.join(file_name(id));
        let mut bytes = serde_json::to_vec_pretty(record).map_err(|e| StoreError::Io {
            path: path.clone(),
            source: io::Error::other(e),
        })?;
        bytes.push(b'\n');
        write_atomic(&self.inner.dir, &file_name(id), &bytes)
    }

    fn publish(
        &self,
        current: &Snapshot,
        change: impl FnOnce(&mut BTreeMap<String, Arc<StoredConnection>>),
    ) {
        let mut next = (**current).clone();
        change(&mut next);
        self.inner.live.send_replace(Arc::new(next));
    }
}

fn file_name(id: &str) -> String {
    format!("{id}.json")
}

fn check_id(id: &str) -> Result<(), StoreError> {
    let violations = validate_name("name", id);
    match violations.first() {
        None => Ok(()),
        Some(v) => Err(StoreError::InvalidId {
            id: id.to_owned(),
            reason: v.description.clone(),
        }),
    }
}

/// Reads every `*.json` file of `dir`; removes temporary files a crash left behind.
fn load_dir(dir: &Path) -> Result<BTreeMap<String, Loaded>, StoreError> {
    let io_err = |path: &Path| {
        let path = path.to_owned();
        move |source| StoreError::Io { path, source }
    };
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if name.starts_with('.') && name.ends_with(".tmp") {
            // An interrupted write: the rename never happened, so the old file is intact.
            fs::remove_file(&path).map_err(io_err(&path))?;
            continue;
        }
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if check_id(id).is_err() {
            return Err(StoreError::Corrupt {
                path,
                reason: "the file name is not a valid connection id".to_owned(),
            });
        }
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let corrupt = |reason: &str| StoreError::Corrupt {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if record.format != FORMAT {
            return Err(corrupt("unsupported record format"));
        }
        let loaded = match (record.connection, record.tombstone) {
            (Some(c), None) if c.spec.id == id => Loaded::Connection(Box::new(c)),
            (None, Some(t)) if t.id == id => Loaded::Tombstone,
            (Some(_), None) | (None, Some(_)) => {
                return Err(corrupt("the id inside differs from the file name"));
            }
            _ => {
                return Err(corrupt(
                    "expected exactly one of `connection` and `tombstone`",
                ));
            }
        };
        out.insert(id.to_owned(), loaded);
    }
    Ok(out)
}

/// Temporary file in the same directory, fsync, rename over `name`, fsync of the directory.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let target = dir.join(name);
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, &target)
    })();
    if let Err(source) = result {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::Io {
            path: target,
            source,
        });
    }
    sync_dir(dir)
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| StoreError::Io {
                path: dir.to_owned(),
                source,
            })
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
