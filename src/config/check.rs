//! Reading and checking a configuration: every problem at once, each with the key it concerns.
//!
//! The file is parsed section by section (and connection by connection, token by token) so
//! that one mistake does not hide the next; then the parts that parsed are checked against every
//! rule. Messages name files, keys and secret references, never secret values.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use config::{Environment, File, FileFormat, Source, Value};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::{ENV_PREFIX, ENV_SEPARATOR, Settings};
use crate::connections::validate::validate;
use crate::secrets::SecretResolver;

/// The top-level keys, in documentation order.
const TOP_LEVEL_KEYS: &[&str] = &[
    "server",
    "auth",
    "secrets",
    "data_dir",
    "spec_dir",
    "sandbox",
    "nodes",
    "upstream",
    "log",
    "metrics",
    "telemetry",
    "events",
    "mcp",
    "connections",
];

/// Shortest bearer token accepted.
pub const MIN_TOKEN_LEN: usize = 16;

/// Smallest `server.max_message_bytes` accepted.
pub const MIN_MESSAGE_BYTES: usize = 4096;

/// Most retries `upstream.max_retries` accepts.
pub const MAX_RETRIES_LIMIT: u32 = 10;

/// One problem in a configuration: the key it concerns (`connections[0].node_config.max_node_count`,
/// empty for the file as a whole) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `server.tls` or `connections[1].api_key`.
    pub key: String,
    /// What is wrong, in words.
    pub message: String,
    exposure: bool,
}

impl Problem {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            exposure: false,
        }
    }

    pub(super) fn exposure(listen: SocketAddr) -> Self {
        Self {
            key: "server.listen".to_owned(),
            message: format!(
                "{listen} is not a loopback address and `auth.tokens` is empty: anyone who can reach it could call every method; add tokens, or set `server.allow_insecure` (or pass `--insecure`) to serve without authentication"
            ),
            exposure: true,
        }
    }

    /// True for the refusal to serve unauthenticated on a non-loopback address, which
    /// `--insecure` lifts.
    pub fn is_exposure(&self) -> bool {
        self.exposure
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.key, self.message)
        }
    }
}

/// Checks a configuration file (with the process environment's overrides) and returns every
/// problem; empty means the runtime would start with it.
pub fn check(path: &Path) -> Vec<Problem> {
    check_with_env(path, super::process_env())
}

/// [`check`] with an explicit environment.
pub fn check_with_env(path: &Path, env: HashMap<String, String>) -> Vec<Problem> {
    analyse(Some(path), env).1
}

/// Reads and checks; the settings are `None` when the file could not be read at all.
pub(super) fn analyse(
    path: Option<&Path>,
    env: HashMap<String, String>,
) -> (Option<Settings>, Vec<Problem>) {
    let root = match read_root(path, &env) {
        Ok(root) => root,
        Err(problem) => return (None, vec![problem]),
    };
    let mut problems = Vec::new();
    let mut parsed = Parsed {
        settings: Settings::default(),
        connection_index: Vec::new(),
        token_index: Vec::new(),
    };
    parse_sections(root, &mut parsed, &mut problems);
    let secrets = SecretResolver::with_env(parsed.settings.secrets.dir.clone(), env);
    check_settings(&parsed, &secrets, &mut problems);
    (Some(parsed.settings), problems)
}

fn read_root(
    path: Option<&Path>,
    env: &HashMap<String, String>,
) -> Result<config::Map<String, Value>, Problem> {
    let mut builder = config::Config::builder();
    if let Some(path) = path {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("toml") => FileFormat::Toml,
            Some("yaml" | "yml") => FileFormat::Yaml,
            _ => {
                return Err(Problem::new(
                    "",
                    format!(
                        "{}: unsupported file extension; use .toml, .yaml or .yml",
                        path.display()
                    ),
                ));
            }
        };
        if !path.is_file() {
            return Err(Problem::new(
                "",
                format!("{}: no such file", path.display()),
            ));
        }
        builder = builder.add_source(File::from(path).format(format).required(true));
    }
    let env: config::Map<String, String> =
        env.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    builder = builder.add_source(
        Environment::with_prefix(ENV_PREFIX)
            .prefix_separator(ENV_SEPARATOR)
            .separator(ENV_SEPARATOR)
            .source(Some(env)),
    );
    let config = builder
        .build()
        .map_err(|e| Problem::new("", one_line(&e.to_string())))?;
    config
        .collect()
        .map_err(|e| Problem::new("", one_line(&e.to_string())))
}

/// Parser messages can span lines with a source excerpt (`1 | [server`); keep the words, which
/// carry the line and column, so every problem prints on one line.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.contains('|'))
        .collect::<Vec<_>>()
        .join(" ")
}

struct Parsed {
    settings: Settings,
    /// Index in the file of each parsed connection (those that failed to parse are left out).
    connection_index: Vec<usize>,
    /// Index in the file of each parsed token.
    token_index: Vec<usize>,
}

fn parse_sections(
    root: config::Map<String, Value>,
    parsed: &mut Parsed,
    problems: &mut Vec<Problem>,
) {
    let settings = &mut parsed.settings;
    let root: BTreeMap<String, Value> = root.into_iter().collect();
    for (key, value) in root {
        match key.as_str() {
            "server" => section(&key, value, &mut settings.server, problems),
            "secrets" => section(&key, value, &mut settings.secrets, problems),
            "data_dir" => section(&key, value, &mut settings.data_dir, problems),
            "spec_dir" => section(&key, value, &mut settings.spec_dir, problems),
            "sandbox" => section(&key, value, &mut settings.sandbox, problems),
            "nodes" => section(&key, value, &mut settings.nodes, problems),
            "upstream" => section(&key, value, &mut settings.upstream, problems),
            "log" => section(&key, value, &mut settings.log, problems),
            "metrics" => section(&key, value, &mut settings.metrics, problems),
            "telemetry" => section(&key, value, &mut settings.telemetry, problems),
            "events" => section(&key, value, &mut settings.events, problems),
            "mcp" => section(&key, value, &mut settings.mcp, problems),
            "auth" => parse_auth(value, settings, &mut parsed.token_index, problems),
            "connections" => {
                for (i, item) in list(&key, value, problems).into_iter().enumerate() {
                    if let Some(spec) = parse(&format!("connections[{i}]"), item, problems) {
                        settings.connections.push(spec);
                        parsed.connection_index.push(i);
                    }
                }
            }
            _ => problems.push(Problem::new(
                key.as_str(),
                format!("unknown key; expected one of {}", TOP_LEVEL_KEYS.join(", ")),
            )),
        }
    }
}

fn parse_auth(
    value: Value,
    settings: &mut Settings,
    token_index: &mut Vec<usize>,
    problems: &mut Vec<Problem>,
) {
    let table = match value.into_table() {
        Ok(table) => table,
        Err(e) => return problems.push(Problem::new("auth", clean(&e))),
    };
    let table: BTreeMap<String, Value> = table.into_iter().collect();
    for (key, value) in table {
        if key != "tokens" {
            problems.push(Problem::new(
                format!("auth.{key}"),
                "unknown key; expected tokens",
            ));
            continue;
        }
        for (i, item) in list("auth.tokens", value, problems).into_iter().enumerate() {
            if let Some(token) = parse(&format!("auth.tokens[{i}]"), item, problems) {
                settings.auth.tokens.push(token);
                token_index.push(i);
            }
        }
    }
}

fn list(key: &str, value: Value, problems: &mut Vec<Problem>) -> Vec<Value> {
    match value.into_array() {
        Ok(items) => items,
        Err(e) => {
            problems.push(Problem::new(key, clean(&e)));
            Vec::new()
        }
    }
}

fn section<T: DeserializeOwned>(
    key: &str,
    value: Value,
    slot: &mut T,
    problems: &mut Vec<Problem>,
) {
    if let Some(parsed) = parse(key, value, problems) {
        *slot = parsed;
    }
}

fn parse<T: DeserializeOwned>(key: &str, value: Value, problems: &mut Vec<Problem>) -> Option<T> {
    // The config crate's deserializer converts between scalars (`version = 3` for a string,
    // `"true"` from the environment for a bool); serde_path_to_error adds the exact key path.
    let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
        Ok(parsed) => return Some(parsed),
        Err(err) => err,
    };
    let path = err.path().to_string();
    let mut message = err.into_inner().to_string();
    if message.starts_with("enum ") {
        // The config crate does not say which values an enum accepts; serde's own message does.
        if let Some(better) = json_message::<T>(value, &path) {
            message = better;
        }
    }
    let mut message = strip_key_suffix(&message);
    if message.ends_with("expected a duration") {
        message.push_str(" with a unit, e.g. `30s` or `500ms`");
    }
    let key = if path.is_empty() || path == "." {
        key.to_owned()
    } else if path.starts_with('[') {
        format!("{key}{path}")
    } else {
        format!("{key}.{path}")
    };
    problems.push(Problem::new(key, message));
    None
}

/// serde's message for the error at `path`, deserializing through JSON.
fn json_message<T: DeserializeOwned>(value: Value, path: &str) -> Option<String> {
    let json = serde_json::Value::deserialize(value).ok()?;
    let err = serde_path_to_error::deserialize::<_, T>(json).err()?;
    (err.path().to_string() == path).then(|| err.into_inner().to_string())
}

/// Drops the config crate's ` for key `…`` (and ` in <origin>`) suffix: our key is the full path.
fn strip_key_suffix(message: &str) -> String {
    match message.find(" for key `") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// The config crate's message for a value of the wrong shape, without its key suffix.
fn clean(err: &config::ConfigError) -> String {
    strip_key_suffix(&err.to_string())
}

fn check_settings(parsed: &Parsed, secrets: &SecretResolver, problems: &mut Vec<Problem>) {
    let settings = &parsed.settings;
    if let Some(problem) = settings.exposure_problem(false) {
        problems.push(problem);
    }
    check_server(settings, problems);
    check_tokens(parsed, secrets, problems);
    check_dirs(settings, problems);
    check_nodes(settings, problems);
    if let Some(reference) = settings
        .nodes
        .stripe_budget
        .shared
        .as_ref()
        .and_then(|shared| shared.redis_password.as_ref())
        && let Err(error) = secrets.resolve(reference)
    {
        problems.push(Problem::new(
            "nodes.stripe_budget.shared.redis_password",
            error.to_string(),
        ));
    }
    check_upstream(settings, problems);
    if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&settings.log.level) {
        problems.push(Problem::new(
            "log.level",
            format!("not a valid log filter: {e}"),
        ));
    }
    for (key, message) in settings.telemetry.problems() {
        problems.push(Problem::new(format!("telemetry.{key}"), message));
    }
    if settings.metrics.enabled && settings.metrics.listen == settings.server.listen {
        problems.push(Problem::new(
            "metrics.listen",
            "must differ from server.listen",
        ));
    }
    for (key, message) in settings.mcp.problems() {
        problems.push(Problem::new(key, message));
    }
    if let Some(dialect) = served_dialect(settings, problems) {
        check_connections(parsed, secrets, dialect.as_ref(), problems);
    }
}

/// The dialect of the connector spec the runtime would serve (`spec_dir`, or the built-in Stripe
/// spec). A `spec_dir` that does not load is a problem of its own; the connections are then
/// checked by the built-in spec's rules.
fn served_dialect(
    settings: &Settings,
    problems: &mut Vec<Problem>,
) -> Option<std::sync::Arc<dyn crate::upstream::dialect::Dialect>> {
    let built_in = || {
        crate::spec::stripe_shared()
            .map_err(|e| e.to_string())
            .and_then(|spec| crate::dialects::for_spec(&spec).map_err(|e| e.to_string()))
    };
    let dialect = match &settings.spec_dir {
        Some(dir) if dir.is_dir() => crate::spec::load_dir(dir)
            .map_err(|e| e.to_string())
            .and_then(|spec| crate::dialects::for_spec(&spec).map_err(|e| e.to_string()))
            .or_else(|message| {
                problems.push(Problem::new("spec_dir", message));
                built_in()
            }),
        _ => built_in(),
    };
    dialect.ok()
}

fn check_server(settings: &Settings, problems: &mut Vec<Problem>) {
    let tls = &settings.server.tls;
    match (&tls.cert_file, &tls.key_file) {
        (Some(_), None) => problems.push(Problem::new(
            "server.tls.key_file",
            "set both `cert_file` and `key_file`, or neither",
        )),
        (None, Some(_)) => problems.push(Problem::new(
            "server.tls.cert_file",
            "set both `cert_file` and `key_file`, or neither",
        )),
        _ => {}
    }
    if let Some(file) = &tls.cert_file {
        pem_file("server.tls.cert_file", file, "CERTIFICATE", problems);
    }
    if let Some(file) = &tls.key_file {
        pem_file("server.tls.key_file", file, "PRIVATE KEY", problems);
    }
    if settings.server.max_message_bytes < MIN_MESSAGE_BYTES {
        problems.push(Problem::new(
            "server.max_message_bytes",
            format!("must be at least {MIN_MESSAGE_BYTES}"),
        ));
    }
    if settings.server.worker_threads > super::MAX_WORKER_THREADS {
        problems.push(Problem::new(
            "server.worker_threads",
            format!(
                "must be at most {} (0 means one per CPU)",
                super::MAX_WORKER_THREADS
            ),
        ));
    }
}

fn check_tokens(parsed: &Parsed, secrets: &SecretResolver, problems: &mut Vec<Problem>) {
    let mut names: HashMap<&str, usize> = HashMap::new();
    let mut values: Vec<(usize, crate::secrets::Secret)> = Vec::new();
    for (token, &i) in parsed.settings.auth.tokens.iter().zip(&parsed.token_index) {
        let key = format!("auth.tokens[{i}]");
        if token.name.trim().is_empty() {
            problems.push(Problem::new(format!("{key}.name"), "a token needs a name"));
        } else if let Some(first) = names.insert(&token.name, i) {
            problems.push(Problem::new(
                format!("{key}.name"),
                format!(
                    "duplicate token name `{}` (also auth.tokens[{first}])",
                    token.name
                ),
            ));
        }
        match secrets.resolve(&token.token) {
            Err(e) => problems.push(Problem::new(format!("{key}.token"), e.to_string())),
            Ok(value) => {
                if value.expose().chars().count() < MIN_TOKEN_LEN {
                    problems.push(Problem::new(
                        format!("{key}.token"),
                        format!("{} is shorter than {MIN_TOKEN_LEN} characters", token.token),
                    ));
                }
                if let Some((first, _)) = values
                    .iter()
                    .find(|(_, v)| v.constant_time_eq(value.expose().as_bytes()))
                {
                    problems.push(Problem::new(
                        format!("{key}.token"),
                        format!(
                            "the same token as auth.tokens[{first}]; each token must be distinct"
                        ),
                    ));
                }
                values.push((i, value));
            }
        }
    }
}

fn check_dirs(settings: &Settings, problems: &mut Vec<Problem>) {
    if let Some(dir) = &settings.secrets.dir {
        existing_dir("secrets.dir", dir, problems);
    }
    if let Some(dir) = &settings.spec_dir {
        existing_dir("spec_dir", dir, problems);
    }
    if settings.data_dir.exists() && !settings.data_dir.is_dir() {
        problems.push(Problem::new(
            "data_dir",
            format!(
                "{} exists and is not a directory",
                settings.data_dir.display()
            ),
        ));
    }
}

fn check_nodes(settings: &Settings, problems: &mut Vec<Problem>) {
    use crate::throttle::{InvalidBudgetSettings, InvalidPoolSettings};
    let nodes = &settings.nodes;
    // The pool's own rules, once: node counts are per connection and checked there.
    let pool = nodes.pool_settings(&crate::connections::model::NodeSettings::default());
    for problem in pool.problems() {
        let key = match &problem {
            InvalidPoolSettings::ZeroRate { rate: 0, .. } => "nodes.node_rate",
            InvalidPoolSettings::ZeroRate { .. } => "nodes.node_burst",
            InvalidPoolSettings::TargetUtilization(_) => "nodes.target_utilization",
            InvalidPoolSettings::ScaleTick => "nodes.scale_tick",
            InvalidPoolSettings::NodeBounds { .. } => continue,
        };
        problems.push(Problem::new(key, problem.to_string()));
    }
    // The budget's own rules, once.
    for problem in nodes.budget_settings().problems() {
        let key = match problem {
            InvalidBudgetSettings::ZeroTestModeRate => "nodes.stripe_budget.test",
            InvalidBudgetSettings::ZeroLiveModeRate => "nodes.stripe_budget.live",
        };
        problems.push(Problem::new(key, problem.to_string()));
    }
    if let Some(shared) = &nodes.stripe_budget.shared {
        check_shared_budget(shared, problems);
    }
}

fn check_shared_budget(shared: &super::SharedBudgetSettings, problems: &mut Vec<Problem>) {
    const KEY: &str = "nodes.stripe_budget.shared";
    match url::Url::parse(&shared.redis_url) {
        Ok(url) if !matches!(url.scheme(), "redis" | "rediss") => problems.push(Problem::new(
            format!("{KEY}.redis_url"),
            "must be a redis:// or rediss:// URL",
        )),
        Ok(url) if url.password().is_some() => problems.push(Problem::new(
            format!("{KEY}.redis_url"),
            "must not hold a password; use redis_password (a secret reference)",
        )),
        Ok(_) => {}
        Err(error) => problems.push(Problem::new(
            format!("{KEY}.redis_url"),
            format!("not a URL: {error}"),
        )),
    }
    if shared.timeout.is_zero() {
        problems.push(Problem::new(
            format!("{KEY}.timeout"),
            "must be longer than 0s",
        ));
    }
    if shared.assumed_replicas == 0 {
        problems.push(Problem::new(
            format!("{KEY}.assumed_replicas"),
            "must be at least 1",
        ));
    }
    if shared.key_prefix.is_empty() {
        problems.push(Problem::new(
            format!("{KEY}.key_prefix"),
            "must not be empty",
        ));
    }
}

fn check_upstream(settings: &Settings, problems: &mut Vec<Problem>) {
    let upstream = &settings.upstream;
    if upstream.connect_timeout.is_zero() {
        problems.push(Problem::new(
            "upstream.connect_timeout",
            "must be longer than 0s",
        ));
    }
    if upstream.request_timeout.is_zero() {
        problems.push(Problem::new(
            "upstream.request_timeout",
            "must be longer than 0s",
        ));
    }
    if upstream.max_retries > MAX_RETRIES_LIMIT {
        problems.push(Problem::new(
            "upstream.max_retries",
            format!("at most {MAX_RETRIES_LIMIT}"),
        ));
    }
    if upstream.backoff_cap < upstream.backoff_base {
        problems.push(Problem::new(
            "upstream.backoff_cap",
            "must be at least upstream.backoff_base",
        ));
    }
    if let Some(file) = &upstream.extra_ca_file {
        pem_file("upstream.extra_ca_file", file, "CERTIFICATE", problems);
    }
}

fn check_connections(
    parsed: &Parsed,
    secrets: &SecretResolver,
    dialect: &dyn crate::upstream::dialect::Dialect,
    problems: &mut Vec<Problem>,
) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (spec, &i) in parsed
        .settings
        .connections
        .iter()
        .zip(&parsed.connection_index)
    {
        let prefix = format!("connections[{i}]");
        if let Err(violations) = validate(spec, secrets, dialect) {
            for v in violations {
                // The file calls the connection's name `id`; every other path is the same.
                let field = if v.field == "name" {
                    "id"
                } else {
                    v.field.as_str()
                };
                problems.push(Problem::new(
                    format!("{prefix}.{field}"),
                    format!("{} ({})", v.description, v.reason),
                ));
            }
        }
        if let Some(first) = seen.insert(&spec.id, i) {
            problems.push(Problem::new(
                format!("{prefix}.id"),
                format!(
                    "duplicate connection id `{}` (also connections[{first}])",
                    spec.id
                ),
            ));
        }
    }
}

/// Checks that `path` is a readable PEM file holding a block whose label contains `label`
/// (`CERTIFICATE`, `PRIVATE KEY`). Only the labels are looked at; contents are never shown.
fn pem_file(key: &str, path: &Path, label: &str, problems: &mut Vec<Problem>) {
    if !path.is_file() {
        let why = if path.exists() {
            "is not a file".to_owned()
        } else {
            "does not exist".to_owned()
        };
        problems.push(Problem::new(key, format!("{} {why}", path.display())));
        return;
    }
    match std::fs::read(path) {
        Err(e) => problems.push(Problem::new(
            key,
            format!("cannot read {}: {e}", path.display()),
        )),
        Ok(bytes) => {
            let has_block = String::from_utf8_lossy(&bytes)
                .lines()
                .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
            if !has_block {
                problems.push(Problem::new(
                    key,
                    format!("{} holds no PEM {label}", path.display()),
                ));
            }
        }
    }
}

fn existing_dir(key: &str, path: &Path, problems: &mut Vec<Problem>) {
    if !path.is_dir() {
        problems.push(Problem::new(
            key,
            format!("{} is not a directory", path.display()),
        ));
    }
}
