//! A runtime's life across restarts, through the public API of `config` and `connections`:
//! connections from the configuration file, changes through the API, and what comes back.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use connector_runtime::config;
use connector_runtime::connections::model::{ConnectionSpec, Origin, SecretRef};
use connector_runtime::connections::store::ConnectionStore;
use connector_runtime::connections::validate::validate;
use connector_runtime::secrets::SecretResolver;
use connector_runtime::stripe::dialect::StripeDialect;

const FILE: &str = r#"
[[connections]]
id = "from-file"
api_key = { secret = "stripe-key" }

[[connections]]
id = "edited-later"
api_key = { secret = "stripe-key" }
"#;

fn start(dir: &Path) -> (config::Settings, ConnectionStore) {
    let env = HashMap::from([
        (
            "CONNECTOR_RUNTIME__SECRETS__DIR".to_owned(),
            dir.join("secrets").display().to_string(),
        ),
        (
            "CONNECTOR_RUNTIME__DATA_DIR".to_owned(),
            dir.join("data").display().to_string(),
        ),
    ]);
    let settings = config::load_with_env(Some(&dir.join("runtime.toml")), env).unwrap();
    let store = ConnectionStore::open(&settings.data_dir, settings.connections.clone()).unwrap();
    (settings, store)
}

#[test]
fn api_changes_and_deletes_survive_restarts_and_win_over_the_file() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("secrets/stripe-key")).unwrap();
    fs::write(dir.path().join("secrets/stripe-key/1"), "sk_test_restart\n").unwrap();
    fs::write(dir.path().join("runtime.toml"), FILE).unwrap();

    let (settings, store) = start(dir.path());
    let secrets = SecretResolver::with_env(settings.secrets.dir.clone(), HashMap::new());
    assert_eq!(store.list().len(), 2);

    // Through the API: create one, change one from the file, delete the other.
    let mut created = ConnectionSpec::with_id("created");
    created.api_key = Some(SecretRef {
        secret: "stripe-key".to_owned(),
        version: "1".to_owned(),
    });
    validate(&created, &secrets, &StripeDialect).unwrap();
    store.create(created.clone()).unwrap();
    let mut changed = store.get("edited-later").unwrap().spec.clone();
    changed.verbosity = 5;
    validate(&changed, &secrets, &StripeDialect).unwrap();
    store.update(changed.clone()).unwrap();
    store.delete("from-file").unwrap();
    drop(store);

    // Restart with the same file.
    let (_, store) = start(dir.path());
    let ids: Vec<String> = store.list().iter().map(|c| c.id().to_owned()).collect();
    assert_eq!(ids, ["created", "edited-later"]);
    assert_eq!(store.get("created").unwrap().origin, Origin::Api);
    let edited = store.get("edited-later").unwrap();
    assert_eq!(
        (edited.origin, edited.spec.verbosity),
        (Origin::ConfigFile, 5)
    );

    // The operator clears the tombstone: the file's definition is back after a restart.
    fs::remove_file(store.dir().join("from-file.json")).unwrap();
    drop(store);
    let (_, store) = start(dir.path());
    assert_eq!(store.get("from-file").unwrap().origin, Origin::ConfigFile);
}
