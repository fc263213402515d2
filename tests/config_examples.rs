//! The example configuration files under `examples/config/` pass `check` as shipped, given the
//! secrets and files they refer to.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use connector_runtime::config::{self, LogFormat, NodeMode};

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/config")
        .join(name)
}

fn secret(dir: &Path, name: &str, version: &str, value: &str) {
    fs::create_dir_all(dir.join(name)).unwrap();
    fs::write(dir.join(name).join(version), format!("{value}\n")).unwrap();
}

fn env(pairs: &[(&str, String)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

#[test]
fn minimal_toml_example_passes_check() {
    let secrets = tempfile::tempdir().unwrap();
    secret(secrets.path(), "stripe-test-key", "1", "sk_test_example");
    let env = env(&[(
        "CONNECTOR_RUNTIME__SECRETS__DIR",
        secrets.path().display().to_string(),
    )]);

    let problems = config::check_with_env(&example("minimal.toml"), env.clone());
    assert!(problems.is_empty(), "{problems:#?}");
    let settings = config::load_with_env(Some(&example("minimal.toml")), env).unwrap();
    assert_eq!(settings.connections.len(), 1);
    assert_eq!(settings.connections[0].id, "stripe-test");
}

#[test]
fn full_yaml_example_passes_check() {
    let secrets = tempfile::tempdir().unwrap();
    secret(secrets.path(), "admin-token", "1", "admin-token-0123456789");
    secret(secrets.path(), "stripe-live-key", "3", "rk_live_example");
    secret(secrets.path(), "proxy-password", "2", "proxy-password");
    secret(secrets.path(), "stripe-eu-webhook", "1", "whsec_example");
    let tls = tempfile::tempdir().unwrap();
    for (name, label) in [
        ("server.crt", "CERTIFICATE"),
        ("server.key", "PRIVATE KEY"),
        ("proxy-ca.pem", "CERTIFICATE"),
    ] {
        let pem = format!("-----BEGIN {label}-----\nMIIB\n-----END {label}-----\n");
        fs::write(tls.path().join(name), pem).unwrap();
    }
    let path = |name: &str| tls.path().join(name).display().to_string();
    let env = env(&[
        (
            "CONNECTOR_RUNTIME__SECRETS__DIR",
            secrets.path().display().to_string(),
        ),
        (
            "CONNECTOR_RUNTIME__SERVER__TLS__CERT_FILE",
            path("server.crt"),
        ),
        (
            "CONNECTOR_RUNTIME__SERVER__TLS__KEY_FILE",
            path("server.key"),
        ),
        (
            "CONNECTOR_RUNTIME__UPSTREAM__EXTRA_CA_FILE",
            path("proxy-ca.pem"),
        ),
        ("INVOKER_TOKEN", "invoker-token-0123456789".to_owned()),
        ("STRIPE_TEST_KEY", "sk_test_example".to_owned()),
    ]);

    let problems = config::check_with_env(&example("full.yaml"), env.clone());
    assert!(problems.is_empty(), "{problems:#?}");
    let settings = config::load_with_env(Some(&example("full.yaml")), env).unwrap();
    assert_eq!(settings.connections.len(), 2);
    assert_eq!(settings.auth.tokens.len(), 2);
    assert_eq!(settings.nodes.mode, NodeMode::Pool);
    assert_eq!(settings.log.format, LogFormat::Json);
    assert!(settings.server.tls.files().is_some());
    assert_eq!(
        settings.events.listen,
        Some("0.0.0.0:8088".parse().unwrap())
    );
    assert_eq!(settings.connections[0].webhook_signing_secrets.len(), 1);
    assert_eq!(settings.mcp.path, "/mcp");
    assert!(settings.connections[0].tool_policy.allow_live_destructive);
}

#[test]
fn examples_without_their_secrets_report_each_missing_one() {
    let empty = tempfile::tempdir().unwrap();
    let env = env(&[(
        "CONNECTOR_RUNTIME__SECRETS__DIR",
        empty.path().display().to_string(),
    )]);
    let problems = config::check_with_env(&example("full.yaml"), env);
    let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
    for key in [
        "auth.tokens[0].token",
        "auth.tokens[1].token",
        "connections[0].api_key",
        "connections[0].proxy.password",
        "connections[0].webhook_signing_secrets[0]",
        "connections[1].api_key",
        "server.tls.cert_file",
    ] {
        assert!(keys.contains(&key), "{key} missing from {problems:#?}");
    }
}
