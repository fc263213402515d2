use std::fs;

use super::*;
use crate::connections::model::ProxyAuthScheme;

const TOKEN: &str = "0123456789abcdef-admin";
const STRIPE_KEY: &str = "sk_test_51NeverPrintThisValue";

fn env() -> HashMap<String, String> {
    HashMap::from([
        ("ADMIN_TOKEN".to_owned(), TOKEN.to_owned()),
        ("STRIPE_KEY".to_owned(), STRIPE_KEY.to_owned()),
    ])
}

fn write(dir: &tempfile::TempDir, name: &str, text: &str) -> PathBuf {
    let path = dir.path().join(name);
    fs::write(&path, text).unwrap();
    path
}

fn keys(problems: &[Problem]) -> Vec<&str> {
    problems.iter().map(|p| p.key.as_str()).collect()
}

#[test]
fn no_file_means_every_default() {
    let settings = load_with_env(None, HashMap::new()).unwrap();
    assert_eq!(settings, Settings::default());
    assert_eq!(settings.server.listen, "127.0.0.1:50051".parse().unwrap());
    assert!(!settings.server.allow_insecure);
    assert_eq!(settings.server.drain_timeout, Duration::from_secs(30));
    assert_eq!(settings.server.max_message_bytes, 10 * 1024 * 1024);
    assert_eq!(settings.server.worker_threads, 1);
    assert_eq!(settings.data_dir, PathBuf::from("./data"));
    assert_eq!(
        (settings.sandbox.enabled, settings.sandbox.rate_limit),
        (SandboxMode::Auto, 25)
    );
    assert_eq!(settings.sandbox.listen, "127.0.0.1:0".parse().unwrap());
    let nodes = &settings.nodes;
    assert_eq!(
        (nodes.node_rate, nodes.node_burst, nodes.max_queue),
        (6, 6, 1000)
    );
    assert_eq!(nodes.mode, NodeMode::Pool);
    assert_eq!(
        (nodes.max_wait, nodes.scale_tick),
        (Duration::from_secs(5), Duration::from_secs(1))
    );
    assert_eq!(nodes.stabilization_window, Duration::from_secs(30));
    assert_eq!(nodes.target_utilization, 0.8);
    assert_eq!(
        (nodes.stripe_budget.test, nodes.stripe_budget.live),
        (25, 100)
    );
    let upstream = &settings.upstream;
    assert_eq!(
        (upstream.connect_timeout, upstream.request_timeout),
        (Duration::from_secs(5), Duration::from_secs(30))
    );
    assert_eq!(upstream.max_retries, 4);
    assert_eq!(
        (settings.log.format, settings.log.level.as_str()),
        (LogFormat::Text, "info")
    );
    assert!(settings.auth.tokens.is_empty() && settings.connections.is_empty());
}

const TOML: &str = r#"
data_dir = "/var/lib/connector-runtime"

[server]
listen = "0.0.0.0:6000"
drain_timeout = "2m"

[[auth.tokens]]
name = "ops"
role = "admin"
token = { secret = "env:ADMIN_TOKEN" }

[nodes]
mode = "replica"
stripe_budget = { live = 80 }

[log]
format = "json"

[[connections]]
id = "stripe-eu"
api_key = { secret = "env:STRIPE_KEY" }
proxy = { enabled = true, auth_scheme = "NONE", server_host = "10.0.0.2", server_port = 3128 }
node_config = { max_node_count = 8 }
"#;

const YAML: &str = r#"
data_dir: /var/lib/connector-runtime
server:
  listen: "0.0.0.0:6000"
  drain_timeout: 2m
auth:
  tokens:
    - name: ops
      role: admin
      token: { secret: "env:ADMIN_TOKEN" }
nodes:
  mode: replica
  stripe_budget: { live: 80 }
log:
  format: json
connections:
  - id: stripe-eu
    api_key: { secret: "env:STRIPE_KEY" }
    proxy: { enabled: true, auth_scheme: NONE, host: 10.0.0.2, port: 3128 }
    nodes: { max_node_count: 8 }
"#;

#[test]
fn toml_and_yaml_files_give_the_same_settings() {
    let dir = tempfile::tempdir().unwrap();
    let from_toml = load_with_env(Some(&write(&dir, "c.toml", TOML)), env()).unwrap();
    let from_yaml = load_with_env(Some(&write(&dir, "c.yml", YAML)), env()).unwrap();
    assert_eq!(from_toml, from_yaml);

    let s = from_toml;
    assert_eq!(s.server.listen, "0.0.0.0:6000".parse().unwrap());
    assert_eq!(s.server.drain_timeout, Duration::from_secs(120));
    assert_eq!(s.data_dir, PathBuf::from("/var/lib/connector-runtime"));
    assert_eq!(s.auth.tokens[0].role, Role::Admin);
    assert_eq!(s.nodes.mode, NodeMode::Replica);
    assert_eq!(
        (s.nodes.stripe_budget.test, s.nodes.stripe_budget.live),
        (25, 80)
    );
    assert_eq!(s.log.format, LogFormat::Json);
    let conn = &s.connections[0];
    assert_eq!(conn.proxy.host.as_deref(), Some("10.0.0.2"));
    assert_eq!(conn.proxy.auth_scheme, ProxyAuthScheme::None);
    assert_eq!(
        (conn.nodes.min_node_count, conn.nodes.max_node_count),
        (2, 8)
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", TOML);
    let mut env = env();
    for (k, v) in [
        ("CONNECTOR_RUNTIME__SERVER__LISTEN", "127.0.0.1:7000"),
        ("CONNECTOR_RUNTIME__SERVER__ALLOW_INSECURE", "true"),
        ("CONNECTOR_RUNTIME__SERVER__DRAIN_TIMEOUT", "45s"),
        ("connector_runtime__nodes__stripe_budget__test", "20"),
        ("CONNECTOR_RUNTIME__DATA_DIR", "/srv/data"),
        ("UNRELATED", "ignored"),
    ] {
        env.insert(k.to_owned(), v.to_owned());
    }
    let s = load_with_env(Some(&path), env).unwrap();
    assert_eq!(s.server.listen, "127.0.0.1:7000".parse().unwrap());
    assert!(s.server.allow_insecure);
    assert_eq!(s.server.drain_timeout, Duration::from_secs(45));
    assert_eq!(
        (s.nodes.stripe_budget.test, s.nodes.stripe_budget.live),
        (20, 80)
    );
    assert_eq!(s.data_dir, PathBuf::from("/srv/data"));
}

#[test]
fn unknown_keys_are_rejected_at_every_level() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        "listen = \"x\"\n[server]\nlisten_addr = \"0.0.0.0:1\"\n[auth]\nusers = []\n[[connections]]\nid = \"a\"\nproxy = { hots = \"p\" }\n",
    );
    let problems = check_with_env(&path, env());
    assert_eq!(
        keys(&problems),
        [
            "auth.users",
            "connections[0].proxy.hots",
            "listen",
            "server.listen_addr"
        ]
    );
    assert!(
        problems.iter().all(|p| p.message.contains("unknown")),
        "{problems:#?}"
    );

    let mut env = env();
    env.insert(
        "CONNECTOR_RUNTIME__SERVER__LISTN".to_owned(),
        "0.0.0.0:1".to_owned(),
    );
    let err = load_with_env(None, env).unwrap_err();
    assert_eq!(keys(err.problems()), ["server.listn"]);
}

#[test]
fn unknown_enum_values_name_the_accepted_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.yaml",
        "log: { format: xml }\nsandbox: { enabled: sometimes }\nconnections:\n  - id: a\n    log_level: LOUD\n  - id: b\n    proxy: { ssl_type: MAYBE }\n",
    );
    let problems = check_with_env(&path, env());
    let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 4, "{shown:#?}");
    assert!(
        shown[0].starts_with("connections[0].log_level: unknown variant `LOUD`"),
        "{shown:#?}"
    );
    assert!(
        shown[0].contains("`ERROR`, `WARNING`, `INFO`, `DEBUG`"),
        "{shown:#?}"
    );
    assert!(
        shown[1].starts_with("connections[1].proxy.ssl_type: unknown variant `MAYBE`"),
        "{shown:#?}"
    );
    assert!(
        shown[2].starts_with("log.format: unknown variant `xml`") && shown[2].contains("`text`"),
        "{shown:#?}"
    );
    assert!(
        shown[3].starts_with("sandbox.enabled: unknown variant `sometimes`"),
        "{shown:#?}"
    );
}

#[test]
fn scalars_are_converted_where_unambiguous() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        "[[connections]]\nid = \"a\"\nconnector_version = 1\napi_key = { secret = \"env:STRIPE_KEY\", version = \"latest\" }\n",
    );
    let s = load_with_env(Some(&path), env()).unwrap();
    assert_eq!(s.connections[0].connector_version, "1");
}

#[test]
fn check_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(
        &dir,
        "server.crt",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let path = write(
        &dir,
        "c.toml",
        &format!(
            r#"
spec_dir = "{missing}/spec"
[server]
listen = "0.0.0.0:50051"
max_message_bytes = 10
worker_threads = 100000
tls = {{ cert_file = "{cert}" }}
[secrets]
dir = "{missing}"
[[auth.tokens]]
name = "ops"
role = "root"
token = {{ secret = "env:ADMIN_TOKEN" }}
[[auth.tokens]]
name = "short"
role = "invoker"
token = {{ secret = "env:SHORT" }}
[[auth.tokens]]
name = "short"
role = "admin"
token = {{ secret = "env:NOT_SET" }}
[nodes]
target_utilization = 1.5
node_rate = 0
[upstream]
request_timeout = "0s"
extra_ca_file = "{missing}/ca.pem"
[log]
level = "info,,=x"
[[connections]]
id = "Bad"
verbosity = 0
api_key = {{ secret = "env:STRIPE_KEY" }}
[[connections]]
id = "dup"
api_key = {{ secret = "stripe-key" }}
[[connections]]
id = "dup"
api_key = {{ secret = "env:STRIPE_KEY" }}
[[connections]]
id = "typo"
nodez = {{}}
"#,
            missing = dir.path().join("missing").display(),
            cert = cert.display(),
        ),
    );
    let mut env = env();
    env.insert("SHORT".to_owned(), "short".to_owned());
    let problems = check_with_env(&path, env);
    let mut found = keys(&problems);
    found.sort();
    assert_eq!(
        found,
        [
            "auth.tokens[0].role",
            "auth.tokens[1].token",
            "auth.tokens[2].name",
            "auth.tokens[2].token",
            "connections[0].id",
            "connections[0].id",
            "connections[0].verbosity",
            "connections[1].api_key",
            "connections[2].id",
            "connections[3].nodez",
            "log.level",
            "nodes.node_rate",
            "nodes.target_utilization",
            "secrets.dir",
            "server.max_message_bytes",
            "server.tls.key_file",
            "server.worker_threads",
            "spec_dir",
            "upstream.extra_ca_file",
            "upstream.request_timeout",
        ],
        "{problems:#?}"
    );
    // The same file refuses to load, with the same problems except the exposure rule.
    let err = load_with_env(Some(&path), HashMap::new()).unwrap_err();
    assert!(err.problems().iter().all(|p| !p.is_exposure()));
    assert!(err.to_string().lines().count() > 10);
}

#[test]
fn problems_print_one_per_line_and_never_show_secret_values() {
    let dir = tempfile::tempdir().unwrap();
    let mut env = env();
    env.insert("PK".to_owned(), "pk_test_publishable_value".to_owned());
    let path = write(
        &dir,
        "c.toml",
        "[[auth.tokens]]\nname = \"a\"\nrole = \"admin\"\ntoken = { secret = \"env:ADMIN_TOKEN\" }\n[[auth.tokens]]\nname = \"b\"\nrole = \"invoker\"\ntoken = { secret = \"env:ADMIN_TOKEN\" }\n[[connections]]\nid = \"x\"\napi_key = { secret = \"env:PK\" }\n",
    );
    let problems = check_with_env(&path, env);
    assert_eq!(
        keys(&problems),
        ["auth.tokens[1].token", "connections[0].api_key"],
        "{problems:#?}"
    );
    for problem in &problems {
        let shown = format!("{problem} {problem:?}");
        assert!(!shown.contains('\n'));
        for value in [TOKEN, "pk_test_publishable_value", STRIPE_KEY] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
}

#[test]
fn parse_errors_carry_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = check_with_env(
        &write(&dir, "c.toml", "[server]\nlisten = \n"),
        HashMap::new(),
    );
    assert_eq!(toml.len(), 1);
    assert!(toml[0].to_string().contains("line 2"), "{}", toml[0]);
    assert!(!toml[0].to_string().contains('\n'));
    let yaml = check_with_env(
        &write(&dir, "c.yaml", "server:\n  listen: [1\n"),
        HashMap::new(),
    );
    assert_eq!(yaml.len(), 1);
    assert!(yaml[0].to_string().contains("line"), "{}", yaml[0]);
}

#[test]
fn unsupported_extensions_and_missing_files_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let json = check_with_env(&write(&dir, "c.json", "{}"), HashMap::new());
    assert!(
        json[0].message.contains("unsupported file extension"),
        "{json:?}"
    );
    let missing = check_with_env(&dir.path().join("nope.toml"), HashMap::new());
    assert!(missing[0].message.contains("no such file"), "{missing:?}");
}

#[test]
fn exposure_is_refused_unless_tokens_or_an_explicit_opt_in() {
    let mut settings = Settings::default();
    assert!(
        settings.exposure_problem(false).is_none(),
        "loopback is fine"
    );
    settings.server.listen = "0.0.0.0:50051".parse().unwrap();
    assert!(settings.exposure_problem(false).unwrap().is_exposure());
    assert!(
        settings.exposure_problem(true).is_none(),
        "--insecure lifts it"
    );
    settings.server.allow_insecure = true;
    assert!(settings.exposure_problem(false).is_none());
    settings.server.allow_insecure = false;
    settings.auth.tokens.push(TokenSettings {
        name: "ops".to_owned(),
        role: Role::Admin,
        token: SecretRef {
            secret: "env:ADMIN_TOKEN".to_owned(),
            version: "latest".to_owned(),
        },
    });
    assert!(settings.exposure_problem(false).is_none());

    // `load` leaves the decision to the caller (who knows the flag); `check` reports it.
    let dir = tempfile::tempdir().unwrap();
    let path = write(&dir, "c.toml", "[server]\nlisten = \"0.0.0.0:50051\"\n");
    assert!(load_with_env(Some(&path), HashMap::new()).is_ok());
    let problems = check_with_env(&path, HashMap::new());
    assert_eq!(problems.len(), 1);
    assert!(problems[0].is_exposure());
}

#[test]
fn sandbox_mode_decides_from_whether_any_connection_has_a_key() {
    assert!(SandboxMode::Auto.should_start(false));
    assert!(!SandboxMode::Auto.should_start(true));
    assert!(SandboxMode::Always.should_start(true));
    assert!(!SandboxMode::Never.should_start(false));
}

#[test]
fn node_settings_become_valid_pool_and_budget_settings() {
    let mut nodes = NodesSettings::default();
    let conn = NodeSettings {
        min_node_count: 3,
        max_node_count: 9,
    };
    let pool = nodes.pool_settings(&conn);
    assert_eq!((pool.min_nodes, pool.max_nodes, pool.node_rate), (3, 9, 6));
    assert_eq!(pool.mode, crate::throttle::PoolMode::Autoscale);
    assert_eq!(pool.validate(), Ok(()));
    nodes.mode = NodeMode::Replica;
    assert_eq!(
        nodes.pool_settings(&conn).mode,
        crate::throttle::PoolMode::Replica
    );
    let budget = nodes.budget_settings();
    assert_eq!((budget.test_mode_rate, budget.live_mode_rate), (25, 100));
}

#[test]
fn tls_and_ca_files_must_hold_the_right_pem_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write(
        &dir,
        "server.crt",
        "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
    );
    let key = write(
        &dir,
        "server.key",
        "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
    );
    let ok = write(
        &dir,
        "ok.toml",
        &format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            cert.display().to_string(),
            key.display().to_string()
        ),
    );
    assert_eq!(check_with_env(&ok, HashMap::new()), []);

    // Swapped files: each is readable but holds the wrong block; the key's content is not shown.
    let swapped = write(
        &dir,
        "swapped.toml",
        &format!(
            "[server.tls]\ncert_file = {:?}\nkey_file = {:?}\n[upstream]\nextra_ca_file = {:?}\n",
            key.display().to_string(),
            cert.display().to_string(),
            dir.path().join("missing.pem").display().to_string()
        ),
    );
    let problems = check_with_env(&swapped, HashMap::new());
    assert_eq!(
        keys(&problems),
        [
            "server.tls.cert_file",
            "server.tls.key_file",
            "upstream.extra_ca_file"
        ]
    );
    assert!(
        problems.iter().all(|p| !p.message.contains("MIIE")),
        "{problems:#?}"
    );
    assert!(
        problems[2].message.contains("does not exist"),
        "{problems:#?}"
    );
}

#[test]
fn empty_files_mean_every_default() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["empty.toml", "empty.yaml"] {
        let settings = load_with_env(Some(&write(&dir, name, "")), HashMap::new()).unwrap();
        assert_eq!(settings, Settings::default(), "{name}");
    }
}

#[test]
fn sections_of_the_wrong_shape_are_reported_by_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "c.toml",
        "auth = 3
connections = \"none\"\nserver = \"x\"\n",
    );
    let problems = check_with_env(&path, HashMap::new());
    assert_eq!(
        keys(&problems),
        ["auth", "connections", "server"],
        "{problems:#?}"
    );
}

#[test]
fn metrics_and_telemetry_sections_load_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        &dir,
        "good.toml",
        "[metrics]\nenabled = true\nlisten = \"0.0.0.0:9464\"\n[telemetry]\notlp_endpoint = \"http://collector:4317\"\nmetrics_interval = \"10s\"\nresource_attributes = { \"deployment.environment\" = \"prod\" }\n",
    );
    let s = load_with_env(Some(&good), env()).unwrap();
    assert!(s.metrics.enabled);
    assert_eq!(s.metrics.listen, "0.0.0.0:9464".parse().unwrap());
    assert_eq!(s.telemetry.metrics_interval, Duration::from_secs(10));
    assert_eq!(
        s.telemetry
            .resource_attributes
            .get("deployment.environment")
            .map(String::as_str),
        Some("prod")
    );
    let bad = write(
        &dir,
        "bad.toml",
        "[server]\nlisten = \"127.0.0.1:9464\"\n[metrics]\nenabled = true\n[telemetry]\ntrace_sample_ratio = 2.0\notlp_endpoint = \"collector:4317\"\n",
    );
    assert_eq!(
        keys(&check_with_env(&bad, env())),
        [
            "telemetry.trace_sample_ratio",
            "telemetry.otlp_endpoint",
            "metrics.listen"
        ]
    );
    let unknown = write(&dir, "unknown.toml", "[telemetry]\nsampler = \"x\"\n");
    assert_eq!(
        keys(&check_with_env(&unknown, env())),
        ["telemetry.sampler"]
    );
}

#[test]
fn node_rules_are_the_pools_own_and_every_one_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "nodes.toml",
        "[nodes]\nnode_rate = 0\nscale_tick = \"2h\"\ntarget_utilization = 1.5\n\
         [nodes.stripe_budget.shared]\nredis_url = \"redis://:pw@redis:6379\"\nassumed_replicas = 0\n\
         [upstream]\nbackoff_base = \"2s\"\nbackoff_cap = \"1s\"\n",
    );
    let problems = check_with_env(&path, HashMap::new());
    assert_eq!(
        keys(&problems),
        [
            "nodes.node_rate",
            "nodes.target_utilization",
            "nodes.scale_tick",
            "nodes.stripe_budget.shared.redis_url",
            "nodes.stripe_budget.shared.assumed_replicas",
            "upstream.backoff_cap",
        ]
    );
    assert!(!problems.iter().any(|p| p.to_string().contains("pw")));
}

#[test]
fn budget_rules_are_the_budgets_own() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "budget.toml",
        "[nodes.stripe_budget]\ntest = 0\nlive = 0\n",
    );
    let problems = check_with_env(&path, HashMap::new());
    assert_eq!(
        keys(&problems),
        ["nodes.stripe_budget.test", "nodes.stripe_budget.live"]
    );
    assert!(
        problems
            .iter()
            .all(|p| p.to_string().contains("must be at least 1")),
        "{problems:?}"
    );
}

#[test]
fn the_events_section_reads_durations_and_webhook_secrets_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        &dir,
        "events.toml",
        r#"
[events]
listen = "127.0.0.1:8088"
retention = "7days"
catch_up_interval = "30s"
delivery_max_attempts = 3

[[connections]]
id = "stripe-eu"
api_key = { secret = "env:STRIPE_KEY" }
webhook_signing_secrets = [{ secret = "env:STRIPE_KEY" }]
"#,
    );
    let settings = load_with_env(Some(&path), env()).unwrap();
    assert_eq!(
        settings.events.listen,
        Some("127.0.0.1:8088".parse().unwrap())
    );
    assert_eq!(settings.events.retention, Duration::from_secs(7 * 86_400));
    assert_eq!(settings.events.catch_up_interval, Duration::from_secs(30));
    assert_eq!(settings.events.delivery_max_attempts, 3);
    assert_eq!(
        settings.events.signature_tolerance,
        Duration::from_secs(300)
    );
    assert_eq!(settings.connections[0].webhook_signing_secrets.len(), 1);

    let bad = write(
        &dir,
        "bad.toml",
        "[events]\nlisten = \"127.0.0.1:8088\"\nretension = \"1d\"\n\n[[connections]]\nid = \"stripe-eu\"\napi_key = { secret = \"env:STRIPE_KEY\" }\nwebhook_signing_secrets = [{ secret = \"env:MISSING_WEBHOOK_SECRET\" }]\n",
    );
    let problems = check_with_env(&bad, env());
    let keys = keys(&problems);
    assert!(keys.iter().any(|k| k.starts_with("events")), "{keys:?}");
    assert!(
        keys.iter()
            .any(|k| k.starts_with("connections[0].webhook_signing_secrets[0]")),
        "{keys:?}"
    );
}
