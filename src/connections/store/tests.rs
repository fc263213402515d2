use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::*;
use crate::connections::model::SecretRef;

/// A clock that advances one second per reading, so create and update times differ.
fn ticking_clock() -> Clock {
    let ticks = Arc::new(AtomicU64::new(1_700_000_000));
    Arc::new(move || {
        SystemTime::UNIX_EPOCH + Duration::from_secs(ticks.fetch_add(1, Ordering::SeqCst))
    })
}

fn spec(id: &str) -> ConnectionSpec {
    let mut spec = ConnectionSpec::with_id(id);
    spec.api_key = Some(SecretRef {
        secret: "stripe-key".to_owned(),
        version: "latest".to_owned(),
    });
    spec
}

fn open(dir: &Path, file: Vec<ConnectionSpec>) -> ConnectionStore {
    ConnectionStore::open_with_clock(dir, file, ticking_clock()).unwrap()
}

fn files(store: &ConnectionStore) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(store.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn create_get_list_update_delete() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    assert!(store.list().is_empty());

    let created = store.create(spec("b-conn")).unwrap();
    store.create(spec("a-conn")).unwrap();
    assert_eq!(created.origin, Origin::Api);
    assert_eq!(created.create_time, created.update_time);
    assert_eq!(store.get("b-conn").unwrap().spec, spec("b-conn"));
    let ids: Vec<_> = store.list().iter().map(|c| c.id().to_owned()).collect();
    assert_eq!(ids, ["a-conn", "b-conn"]);

    let mut changed = spec("b-conn");
    changed.verbosity = 4;
    let updated = store.update(changed.clone()).unwrap();
    assert_eq!(updated.spec, changed);
    assert_eq!(updated.create_time, created.create_time);
    assert!(updated.update_time > created.update_time);
    assert_eq!(updated.origin, Origin::Api);

    store.delete("b-conn").unwrap();
    assert!(store.get("b-conn").is_none());
    assert_eq!(files(&store), ["a-conn.json"]);
}

#[test]
fn create_of_an_existing_id_is_already_exists_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    let mut other = spec("from-file");
    other.verbosity = 3;
    assert!(
        matches!(store.create(other), Err(StoreError::AlreadyExists { id }) if id == "from-file")
    );
    assert_eq!(store.get("from-file").unwrap().spec.verbosity, 1);
    assert!(files(&store).is_empty());
}

#[test]
fn update_and_delete_of_a_missing_id_are_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    assert!(matches!(
        store.update(spec("nope")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("nope"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn ids_that_are_not_connection_names_are_refused_before_touching_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    for id in ["../escape", "a/b", "", "UPPER", ".hidden"] {
        assert!(
            matches!(store.create(spec(id)), Err(StoreError::InvalidId { .. })),
            "{id:?}"
        );
    }
    assert!(files(&store).is_empty());
}

#[test]
fn api_connections_survive_a_reopen_with_their_times_and_origin() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    store.create(spec("stripe-eu")).unwrap();
    let mut changed = spec("stripe-eu");
    changed
        .labels
        .insert("team".to_owned(), "billing".to_owned());
    let before = store.update(changed).unwrap();
    drop(store);

    let reopened = open(dir.path(), vec![]);
    assert_eq!(*reopened.get("stripe-eu").unwrap(), *before);
}

#[test]
fn file_connections_are_served_without_being_written() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    let conn = store.get("from-file").unwrap();
    assert_eq!(conn.origin, Origin::ConfigFile);
    assert!(files(&store).is_empty());
}

#[test]
fn an_api_change_to_a_file_connection_wins_over_the_file_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    let mut changed = spec("from-file");
    changed.nodes.max_node_count = 10;
    store.update(changed.clone()).unwrap();
    drop(store);

    let reopened = open(dir.path(), vec![spec("from-file")]);
    let conn = reopened.get("from-file").unwrap();
    assert_eq!(conn.spec, changed);
    assert_eq!(
        conn.origin,
        Origin::ConfigFile,
        "a changed file connection keeps its origin"
    );
}

#[test]
fn a_deleted_file_connection_leaves_a_tombstone_and_stays_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    store.delete("from-file").unwrap();
    assert_eq!(files(&store), ["from-file.json"]);
    let text = fs::read_to_string(store.dir().join("from-file.json")).unwrap();
    assert!(text.contains("\"tombstone\""), "{text}");
    drop(store);

    let reopened = open(dir.path(), vec![spec("from-file")]);
    assert!(reopened.get("from-file").is_none());

    // The operator's way back: remove the tombstone file.
    fs::remove_file(reopened.dir().join("from-file.json")).unwrap();
    drop(reopened);
    let restored = open(dir.path(), vec![spec("from-file")]);
    assert_eq!(
        restored.get("from-file").unwrap().origin,
        Origin::ConfigFile
    );
}

#[test]
fn creating_over_a_tombstone_replaces_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    store.delete("from-file").unwrap();
    let mut fresh = spec("from-file");
    fresh.description = "recreated".to_owned();
    store.create(fresh.clone()).unwrap();
    drop(store);

    let reopened = open(dir.path(), vec![spec("from-file")]);
    let conn = reopened.get("from-file").unwrap();
    assert_eq!((conn.origin, &conn.spec), (Origin::Api, &fresh));
}

#[test]
fn duplicate_ids_in_the_file_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = ConnectionStore::open(dir.path(), vec![spec("twice"), spec("twice")]).unwrap_err();
    assert!(
        matches!(err, StoreError::DuplicateFileConnection { .. }),
        "{err}"
    );
}

#[test]
fn a_corrupt_file_is_reported_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    store.create(spec("good")).unwrap();
    fs::write(store.dir().join("broken.json"), "{ not json").unwrap();
    let err = ConnectionStore::open(dir.path(), vec![]).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }));
    assert!(err.to_string().contains("broken.json"), "{err}");
}

#[test]
fn a_file_whose_inner_id_differs_from_its_name_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    store.create(spec("original")).unwrap();
    fs::rename(
        store.dir().join("original.json"),
        store.dir().join("renamed.json"),
    )
    .unwrap();
    let err = ConnectionStore::open(dir.path(), vec![]).unwrap_err();
    assert!(err.to_string().contains("renamed.json"), "{err}");
}

#[test]
fn writes_leave_no_temporary_files_and_stale_ones_are_cleared_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    store.create(spec("one")).unwrap();
    store.update(spec("one")).unwrap();
    store.delete("from-file").unwrap();
    assert_eq!(files(&store), ["from-file.json", "one.json"]);

    fs::write(store.dir().join(".one.json.0123.tmp"), "half a wri").unwrap();
    drop(store);
    let reopened = open(dir.path(), vec![]);
    assert_eq!(files(&reopened), ["from-file.json", "one.json"]);
}

#[test]
fn concurrent_writers_never_corrupt_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    store.create(spec("shared")).unwrap();
    std::thread::scope(|scope| {
        for writer in 0..4u8 {
            let store = store.clone();
            scope.spawn(move || {
                for round in 0..10u8 {
                    let mut s = spec("shared");
                    s.description = format!("writer {writer} round {round}");
                    store.update(s).unwrap();
                    store.create(spec(&format!("w{writer}-r{round}"))).unwrap();
                }
            });
        }
    });
    let last = store.get("shared").unwrap();
    assert_eq!(store.list().len(), 41);
    drop(store);
    let reopened = open(dir.path(), vec![]);
    assert_eq!(
        *reopened.get("shared").unwrap(),
        *last,
        "the file holds the last write"
    );
    assert_eq!(reopened.list().len(), 41);
    assert!(
        files(&reopened)
            .iter()
            .all(|f| f.ends_with(".json") && !f.starts_with('.'))
    );
}

#[tokio::test]
async fn subscribers_see_every_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![]);
    let mut rx = store.subscribe();
    store.create(spec("watched")).unwrap();
    rx.changed().await.unwrap();
    assert!(rx.borrow_and_update().contains_key("watched"));
    store.delete("watched").unwrap();
    rx.changed().await.unwrap();
    assert!(rx.borrow().is_empty());
}

#[test]
fn the_embedded_connection_lives_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path(), vec![spec("from-file")]);
    let mut sandbox = ConnectionSpec::with_id("sandbox");
    sandbox.api_base_url = "http://127.0.0.1:41234".to_owned();
    assert_eq!(
        store.add_embedded(sandbox.clone()).unwrap().origin,
        Origin::Embedded
    );
    assert!(matches!(
        store.add_embedded(spec("from-file")),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.update(sandbox.clone()),
        Err(StoreError::Embedded { .. })
    ));
    sandbox.verbosity = 4;
    assert_eq!(store.update_embedded(sandbox).unwrap().spec.verbosity, 4);
    assert_eq!(store.get("sandbox").unwrap().origin, Origin::Embedded);
    assert!(matches!(
        store.update_embedded(spec("from-file")),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        store.delete("sandbox"),
        Err(StoreError::Embedded { .. })
    ));
    assert!(matches!(
        store.create(spec("sandbox")),
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(files(&store).is_empty());
    drop(store);
    assert!(open(dir.path(), vec![]).get("sandbox").is_none());
}
