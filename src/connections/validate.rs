//! Validation of a connection's settings: every rule, every problem reported at once.
//!
//! Pure apart from resolving secret references (to prove they resolve; values are dropped at
//! once and never reported). Field paths are the proto's (`node_config.max_node_count`,
//! `proxy.server_host`, `api_key`), so the gRPC edge can return them as `BadRequest` field
//! violations unchanged; the configuration file prefixes them with `connections[i].`.

use crate::connections::model::{ConnectionSpec, ProxyAuthScheme, ProxySslType, SecretRef};
use crate::secrets::SecretResolver;
use crate::upstream::dialect::Dialect;
use crate::violation::FieldViolation;

/// Longest connection name (Google's limit).
pub const MAX_NAME_LEN: usize = 49;
/// Most nodes a connection may have (the platform limit).
pub const MAX_NODE_COUNT_LIMIT: u32 = 100;
/// Verbosity bounds.
pub const VERBOSITY_RANGE: std::ops::RangeInclusive<u8> = 1..=5;
/// The one connector this runtime serves.
pub const CONNECTOR: &str = "stripe";
/// Connector versions this runtime knows.
pub const CONNECTOR_VERSIONS: &[&str] = &["1"];
/// Longest label key or value, in characters (Google's label rules).
pub const MAX_LABEL_LEN: usize = 63;
/// Most labels on one connection (Google's label rules).
pub const MAX_LABELS: usize = 64;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_LEN: usize = 2048;

/// Checks a connection that must carry its own key (every connection from the
/// configuration file or the API). Returns every violation found.
pub fn validate(
    spec: &ConnectionSpec,
    secrets: &SecretResolver,
    dialect: &dyn Dialect,
) -> Result<(), Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_all(spec, secrets, dialect, true, &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Like [`validate`], but a missing `api_key` is allowed: for the embedded connection the
/// runtime wires to its built-in sandbox, whose key it generates itself.
pub fn validate_embedded(
    spec: &ConnectionSpec,
    secrets: &SecretResolver,
    dialect: &dyn Dialect,
) -> Result<(), Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_all(spec, secrets, dialect, false, &mut out);
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// Checks a connection name (the `{id}` of `connections/{id}`) on its own, e.g. for a
/// `connection_id` in a create request. Returns every violation.
pub fn validate_name(field: &str, name: &str) -> Vec<FieldViolation> {
    let mut out = Vec::new();
    check_name(field, name, &mut out);
    out
}

fn check_all(
    spec: &ConnectionSpec,
    secrets: &SecretResolver,
    dialect: &dyn Dialect,
    require_key: bool,
    out: &mut Vec<FieldViolation>,
) {
    check_name("name", &spec.id, out);
    if spec.description.chars().count() > MAX_DESCRIPTION_LEN {
        out.push(FieldViolation::of_rule(
            "description",
            "DESCRIPTION_TOO_LONG",
            format!("the description is longer than {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
    check_connector(spec, out);
    check_account_id(spec.account_id.as_deref(), dialect, out);
    check_api_key(spec.api_key.as_ref(), secrets, dialect, require_key, out);
    if !VERBOSITY_RANGE.contains(&spec.verbosity) {
        out.push(FieldViolation::of_rule(
            "verbosity",
            "INVALID_VERBOSITY",
            format!("verbosity must be between 1 and 5, got {}", spec.verbosity),
        ));
    }
    check_nodes(spec, out);
    check_proxy(spec, secrets, out);
    for (i, reference) in spec.webhook_signing_secrets.iter().enumerate() {
        check_secret(
            &format!("webhook_signing_secrets[{i}]"),
            reference,
            secrets,
            out,
        );
    }
    check_labels(spec, out);
    check_base_url(&spec.api_base_url, out);
    check_tool_policy(spec, out);
}

fn check_name(field: &str, name: &str, out: &mut Vec<FieldViolation>) {
    if name.is_empty() {
        out.push(FieldViolation::of_rule(
            field,
            "MISSING_NAME",
            "a connection name is required",
        ));
        return;
    }
    let len = name.chars().count();
    if len > MAX_NAME_LEN {
        out.push(FieldViolation::of_rule(
            field,
            "NAME_TOO_LONG",
            format!("the name has {len} characters; at most {MAX_NAME_LEN} are allowed"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        out.push(FieldViolation::of_rule(
            field,
            "INVALID_NAME",
            format!(
                "`{}` may only contain lowercase letters, digits and hyphens",
                name.escape_debug()
            ),
        ));
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        out.push(FieldViolation::of_rule(
            field,
            "INVALID_NAME_START",
            "the name must start with a lowercase letter",
        ));
    }
    if !name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        out.push(FieldViolation::of_rule(
            field,
            "INVALID_NAME_END",
            "the name must end with a lowercase letter or a digit",
        ));
    }
}

fn check_connector(spec: &ConnectionSpec, out: &mut Vec<FieldViolation>) {
    if spec.connector != CONNECTOR {
        out.push(FieldViolation::of_rule(
            "connector",
            "UNKNOWN_CONNECTOR",
            format!(
                "unknown connector `{}`; this runtime serves `{CONNECTOR}`",
                spec.connector.escape_debug()
            ),
        ));
    } else if !CONNECTOR_VERSIONS.contains(&spec.connector_version.as_str()) {
        out.push(FieldViolation::of_rule(
            "connector_version",
            "UNKNOWN_CONNECTOR_VERSION",
            format!(
                "unknown connector version `{}`; known versions: {}",
                spec.connector_version.escape_debug(),
                CONNECTOR_VERSIONS.join(", ")
            ),
        ));
    }
}

fn check_account_id(
    account_id: Option<&str>,
    dialect: &dyn Dialect,
    out: &mut Vec<FieldViolation>,
) {
    out.extend(account_id.and_then(|id| dialect.check_account_id(id)));
}

fn check_api_key(
    key: Option<&SecretRef>,
    secrets: &SecretResolver,
    dialect: &dyn Dialect,
    require: bool,
    out: &mut Vec<FieldViolation>,
) {
    let Some(key) = key else {
        if require {
            out.push(FieldViolation::of_rule(
                "api_key",
                "MISSING_API_KEY",
                format!(
                    "a {} API key (secret reference) is required",
                    dialect.display_name()
                ),
            ));
        }
        return;
    };
    let Some(value) = check_secret("api_key", key, secrets, out) else {
        return;
    };
    let value = value.expose();
    if let Some(refused) = dialect.check_api_key(&key.to_string(), value) {
        out.push(refused);
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        out.push(FieldViolation::of_rule(
            "api_key",
            "INVALID_API_KEY",
            format!("{key} contains whitespace or control characters"),
        ));
    }
}

/// Resolves a reference, reporting a violation when it does not resolve.
fn check_secret(
    field: &str,
    reference: &SecretRef,
    secrets: &SecretResolver,
    out: &mut Vec<FieldViolation>,
) -> Option<crate::secrets::Secret> {
    match secrets.resolve(reference) {
        Ok(value) => Some(value),
        Err(err) => {
            let path = match &err {
                crate::secrets::SecretError::BadName { .. } => format!("{field}.secret"),
                e if e.is_malformed() => format!("{field}.version"),
                _ => field.to_owned(),
            };
            out.push(FieldViolation::of_rule(path, err.reason(), err.to_string()));
            None
        }
    }
}

fn check_nodes(spec: &ConnectionSpec, out: &mut Vec<FieldViolation>) {
    let nodes = spec.nodes;
    if nodes.min_node_count < 1 {
        out.push(FieldViolation::of_rule(
            "node_config.min_node_count",
            "MIN_NODE_COUNT_TOO_LOW",
            "the minimum node count must be at least 1",
        ));
    }
    if nodes.max_node_count > MAX_NODE_COUNT_LIMIT {
        out.push(FieldViolation::of_rule(
            "node_config.max_node_count",
            "MAX_NODE_COUNT_TOO_HIGH",
            format!(
                "the maximum node count is {}; at most {MAX_NODE_COUNT_LIMIT} are allowed",
                nodes.max_node_count
            ),
        ));
    }
    if nodes.max_node_count < nodes.min_node_count {
        out.push(FieldViolation::of_rule(
            "node_config.max_node_count",
            "MAX_NODE_COUNT_BELOW_MIN",
            format!(
                "the maximum node count ({}) is below the minimum ({})",
                nodes.max_node_count, nodes.min_node_count
            ),
        ));
    }
}

fn check_proxy(spec: &ConnectionSpec, secrets: &SecretResolver, out: &mut Vec<FieldViolation>) {
    let proxy = &spec.proxy;
    if !proxy.enabled {
        return;
    }
    match proxy.host.as_deref() {
        None | Some("") => out.push(FieldViolation::of_rule(
            "proxy.server_host",
            "MISSING_PROXY_HOST",
            "a proxy host is required when the proxy is enabled",
        )),
        Some(host) if !is_host(host) => out.push(FieldViolation::of_rule(
            "proxy.server_host",
            "INVALID_PROXY_HOST",
            format!(
                "`{}` is not a host name or IP address (no scheme, port or path)",
                host.escape_debug()
            ),
        )),
        Some(_) => {}
    }
    if matches!(proxy.port, None | Some(0)) {
        out.push(FieldViolation::of_rule(
            "proxy.server_port",
            "MISSING_PROXY_PORT",
            "a proxy port (1-65535) is required when the proxy is enabled",
        ));
    }
    if proxy.auth_scheme == ProxyAuthScheme::Digest && proxy.ssl_type == ProxySslType::Always {
        // DIGEST goes through a loopback adapter that speaks plain HTTP to the proxy.
        out.push(FieldViolation::of_rule(
            "proxy.auth_scheme",
            "PROXY_AUTH_SCHEME_UNSUPPORTED",
            "DIGEST proxy authentication is not supported with SSL type ALWAYS (TLS to the proxy)",
        ));
    }
    if matches!(
        proxy.auth_scheme,
        ProxyAuthScheme::Basic | ProxyAuthScheme::Digest
    ) {
        if proxy.user.as_deref().is_none_or(str::is_empty) {
            out.push(FieldViolation::of_rule(
                "proxy.user",
                "MISSING_PROXY_USER",
                "a proxy user is required with BASIC or DIGEST authentication",
            ));
        }
        match &proxy.password {
            None => out.push(FieldViolation::of_rule(
                "proxy.password",
                "MISSING_PROXY_PASSWORD",
                "a proxy password (secret reference) is required with BASIC or DIGEST authentication",
            )),
            Some(password) => {
                check_secret("proxy.password", password, secrets, out);
            }
        }
    }
}

/// A DNS name or an IP address (IPv6 with or without brackets).
fn is_host(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Most patterns in each list of a tool policy.
pub const MAX_TOOL_PATTERNS: usize = 200;

fn check_tool_policy(spec: &ConnectionSpec, out: &mut Vec<FieldViolation>) {
    let policy = &spec.tool_policy;
    for (list, patterns) in [
        ("allow", &policy.allow),
        ("allow_destructive", &policy.allow_destructive),
        ("deny", &policy.deny),
    ] {
        if patterns.len() > MAX_TOOL_PATTERNS {
            out.push(FieldViolation::of_rule(
                format!("tool_policy.{list}"),
                "TOO_MANY_TOOL_PATTERNS",
                format!(
                    "{} patterns; at most {MAX_TOOL_PATTERNS} are allowed",
                    patterns.len()
                ),
            ));
        }
        for (index, pattern) in patterns.iter().enumerate() {
            if !crate::tools::valid_pattern(pattern) {
                out.push(FieldViolation::of_rule(
                    format!("tool_policy.{list}[{index}]"),
                    "INVALID_TOOL_PATTERN",
                    "tool patterns have 1 to 100 characters: lowercase letters, digits, `_` and the wildcard `*`",
                ));
            }
        }
    }
}

fn check_labels(spec: &ConnectionSpec, out: &mut Vec<FieldViolation>) {
    if spec.labels.len() > MAX_LABELS {
        out.push(FieldViolation::of_rule(
            "labels",
            "TOO_MANY_LABELS",
            format!(
                "{} labels; at most {MAX_LABELS} are allowed",
                spec.labels.len()
            ),
        ));
    }
    let label_char = |c: char| (c.is_alphanumeric() && !c.is_uppercase()) || c == '_' || c == '-';
    for (key, value) in &spec.labels {
        let field = format!("labels[{key:?}]");
        let starts_ok = key
            .chars()
            .next()
            .is_some_and(|c| c.is_alphabetic() && !c.is_uppercase());
        if key.chars().count() > MAX_LABEL_LEN || !starts_ok || !key.chars().all(label_char) {
            out.push(FieldViolation::of_rule(
                field.clone(),
                "INVALID_LABEL_KEY",
                format!(
                    "label keys have 1 to {MAX_LABEL_LEN} characters, start with a lowercase letter and contain only lowercase letters, digits, `_` and `-`"
                ),
            ));
        }
        if value.chars().count() > MAX_LABEL_LEN || !value.chars().all(label_char) {
            out.push(FieldViolation::of_rule(
                field,
                "INVALID_LABEL_VALUE",
                format!(
                    "label values have at most {MAX_LABEL_LEN} characters and contain only lowercase letters, digits, `_` and `-`"
                ),
            ));
        }
    }
}

fn check_base_url(raw: &str, out: &mut Vec<FieldViolation>) {
    const FIELD: &str = "api_base_url";
    let url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(err) => {
            // Echo the URL only when it cannot carry credentials.
            let shown = if raw.contains('@') {
                "the URL".to_owned()
            } else {
                format!("`{}`", raw.escape_debug())
            };
            out.push(FieldViolation::of_rule(
                FIELD,
                "INVALID_URL",
                format!("{shown} is not an absolute URL: {err}"),
            ));
            return;
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        out.push(FieldViolation::of_rule(
            FIELD,
            "UNSUPPORTED_URL_SCHEME",
            format!("the scheme must be http or https, got `{}`", url.scheme()),
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        out.push(FieldViolation::of_rule(
            FIELD,
            "INVALID_URL",
            "the URL has no host",
        ));
    }
    // Credentials in a URL end up in logs; keys belong in `api_key`.
    if !url.username().is_empty() || url.password().is_some() {
        out.push(FieldViolation::of_rule(
            FIELD,
            "URL_HAS_CREDENTIALS",
            "the URL must not carry a user or password; put the key in `api_key`",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        out.push(FieldViolation::of_rule(
            FIELD,
            "INVALID_URL",
            "the base URL must not have a query or fragment",
        ));
    }
}

#[cfg(test)]
mod tests;
