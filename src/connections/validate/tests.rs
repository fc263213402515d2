use std::collections::HashMap;

use super::*;
use crate::connections::model::{ProxySettings, ProxySslType};
use crate::stripe::dialect::StripeDialect;

const KEY: &str = "sk_test_51ValueThatMustNeverBePrinted";

fn secrets() -> SecretResolver {
    SecretResolver::with_env(
        None,
        HashMap::from([
            ("STRIPE_KEY".to_owned(), KEY.to_owned()),
            ("PK".to_owned(), "pk_test_publishable".to_owned()),
            ("PROXY_PASSWORD".to_owned(), "hunter2-proxy".to_owned()),
        ]),
    )
}

fn env_ref(var: &str) -> SecretRef {
    SecretRef {
        secret: format!("env:{var}"),
        version: "latest".to_owned(),
    }
}

fn valid() -> ConnectionSpec {
    let mut spec = ConnectionSpec::with_id("stripe-eu");
    spec.api_key = Some(env_ref("STRIPE_KEY"));
    spec
}

fn violations(spec: &ConnectionSpec) -> Vec<FieldViolation> {
    validate(spec, &secrets(), &StripeDialect)
        .err()
        .unwrap_or_default()
}

#[test]
fn a_default_connection_with_a_key_is_valid() {
    assert_eq!(validate(&valid(), &secrets(), &StripeDialect), Ok(()));
}

#[test]
fn a_full_connection_with_proxy_and_labels_is_valid() {
    let mut spec = valid();
    spec.account_id = Some("acct_1Nv0FGQ9RKHgCVdK".to_owned());
    spec.verbosity = 5;
    spec.proxy = ProxySettings {
        enabled: true,
        auth_scheme: ProxyAuthScheme::Basic,
        user: Some("svc".to_owned()),
        password: Some(env_ref("PROXY_PASSWORD")),
        ssl_type: ProxySslType::Tunnel,
        host: Some("proxy.internal.example".to_owned()),
        port: Some(3128),
    };
    spec.labels.insert("team".to_owned(), "payments".to_owned());
    spec.labels.insert("env".to_owned(), String::new());
    spec.api_base_url = "http://127.0.0.1:12111/stripe".to_owned();
    spec.nodes.min_node_count = 1;
    spec.nodes.max_node_count = 100;
    assert_eq!(validate(&spec, &secrets(), &StripeDialect), Ok(()));
}

/// Each rule, named by its reason: the broken spec yields exactly that one violation on that field.
#[test]
fn each_rule_reports_its_own_reason_and_field() {
    type Breaker = fn(&mut ConnectionSpec);
    let cases: &[(&str, &str, Breaker)] = &[
        ("MISSING_NAME", "name", |s| s.id = String::new()),
        ("NAME_TOO_LONG", "name", |s| {
            s.id = format!("a{}", "b".repeat(49))
        }),
        ("INVALID_NAME", "name", |s| s.id = "stripe_eu".to_owned()),
        ("INVALID_NAME_START", "name", |s| {
            s.id = "1stripe".to_owned()
        }),
        ("INVALID_NAME_END", "name", |s| s.id = "stripe-".to_owned()),
        ("DESCRIPTION_TOO_LONG", "description", |s| {
            s.description = "x".repeat(2049)
        }),
        ("UNKNOWN_CONNECTOR", "connector", |s| {
            s.connector = "paypal".to_owned()
        }),
        ("UNKNOWN_CONNECTOR_VERSION", "connector_version", |s| {
            s.connector_version = "2".to_owned()
        }),
        ("INVALID_ACCOUNT_ID", "account_id", |s| {
            s.account_id = Some("cus_123".to_owned())
        }),
        ("MISSING_API_KEY", "api_key", |s| s.api_key = None),
        ("SECRET_NOT_FOUND", "api_key", |s| {
            s.api_key = Some(env_ref("NOPE"))
        }),
        ("INVALID_SECRET_NAME", "api_key.secret", |s| {
            s.api_key = Some(SecretRef {
                secret: "../x".to_owned(),
                version: "latest".to_owned(),
            })
        }),
        ("INVALID_SECRET_VERSION", "api_key.version", |s| {
            s.api_key = Some(SecretRef {
                secret: "stripe-key".to_owned(),
                version: "v2".to_owned(),
            })
        }),
        ("PUBLISHABLE_API_KEY", "api_key", |s| {
            s.api_key = Some(env_ref("PK"))
        }),
        ("INVALID_VERBOSITY", "verbosity", |s| s.verbosity = 0),
        ("INVALID_VERBOSITY", "verbosity", |s| s.verbosity = 6),
        (
            "MIN_NODE_COUNT_TOO_LOW",
            "node_config.min_node_count",
            |s| s.nodes.min_node_count = 0,
        ),
        (
            "MAX_NODE_COUNT_TOO_HIGH",
            "node_config.max_node_count",
            |s| s.nodes.max_node_count = 101,
        ),
        (
            "MAX_NODE_COUNT_BELOW_MIN",
            "node_config.max_node_count",
            |s| {
                s.nodes.min_node_count = 5;
                s.nodes.max_node_count = 4;
            },
        ),
        ("MISSING_PROXY_HOST", "proxy.server_host", |s| {
            s.proxy.enabled = true;
            s.proxy.port = Some(8080);
        }),
        ("INVALID_PROXY_HOST", "proxy.server_host", |s| {
            s.proxy.enabled = true;
            s.proxy.host = Some("http://proxy:8080".to_owned());
            s.proxy.port = Some(8080);
        }),
        ("MISSING_PROXY_PORT", "proxy.server_port", |s| {
            s.proxy.enabled = true;
            s.proxy.host = Some("10.0.0.1".to_owned());
        }),
        ("MISSING_PROXY_USER", "proxy.user", |s| {
            s.proxy = enabled_proxy(ProxyAuthScheme::Basic);
            s.proxy.user = None;
        }),
        ("PROXY_AUTH_SCHEME_UNSUPPORTED", "proxy.auth_scheme", |s| {
            s.proxy = enabled_proxy(ProxyAuthScheme::Digest);
            s.proxy.ssl_type = ProxySslType::Always;
        }),
        ("MISSING_PROXY_PASSWORD", "proxy.password", |s| {
            s.proxy = enabled_proxy(ProxyAuthScheme::Basic);
            s.proxy.password = None;
        }),
        ("SECRET_NOT_FOUND", "proxy.password", |s| {
            s.proxy = enabled_proxy(ProxyAuthScheme::Basic);
            s.proxy.password = Some(env_ref("MISSING_PROXY_SECRET"));
        }),
        ("INVALID_LABEL_KEY", "labels[\"Team\"]", |s| {
            s.labels.insert("Team".to_owned(), "a".to_owned());
        }),
        ("INVALID_LABEL_KEY", "labels[\"1team\"]", |s| {
            s.labels.insert("1team".to_owned(), "a".to_owned());
        }),
        ("INVALID_LABEL_KEY", "labels[\"\"]", |s| {
            s.labels.insert(String::new(), "a".to_owned());
        }),
        ("INVALID_LABEL_VALUE", "labels[\"team\"]", |s| {
            s.labels.insert("team".to_owned(), "Pay Ments".to_owned());
        }),
        ("INVALID_LABEL_VALUE", "labels[\"team\"]", |s| {
            s.labels.insert("team".to_owned(), "a".repeat(64));
        }),
        ("TOO_MANY_LABELS", "labels", |s| {
            for i in 0..65 {
                s.labels.insert(format!("k{i}"), String::new());
            }
        }),
        ("INVALID_URL", "api_base_url", |s| {
            s.api_base_url = "api.stripe.com".to_owned()
        }),
        ("UNSUPPORTED_URL_SCHEME", "api_base_url", |s| {
            s.api_base_url = "ftp://api.stripe.com".to_owned()
        }),
        ("URL_HAS_CREDENTIALS", "api_base_url", |s| {
            s.api_base_url = "https://user:pw@api.stripe.com".to_owned()
        }),
        ("INVALID_URL", "api_base_url", |s| {
            s.api_base_url = "https://api.stripe.com/?a=b".to_owned()
        }),
    ];
    for (reason, field, breaker) in cases {
        let mut spec = valid();
        breaker(&mut spec);
        let found = violations(&spec);
        assert_eq!(
            found.len(),
            1,
            "{reason}: expected one violation, got {found:#?}"
        );
        assert_eq!(
            (found[0].reason, found[0].field.as_str()),
            (*reason, *field),
            "{found:#?}"
        );
        assert!(!found[0].description.is_empty());
    }
}

fn enabled_proxy(scheme: ProxyAuthScheme) -> ProxySettings {
    ProxySettings {
        enabled: true,
        auth_scheme: scheme,
        user: Some("svc".to_owned()),
        password: Some(env_ref("PROXY_PASSWORD")),
        ssl_type: ProxySslType::Auto,
        host: Some("proxy.example".to_owned()),
        port: Some(3128),
    }
}

#[test]
fn reports_every_violation_at_once() {
    let mut spec = valid();
    spec.id = "Bad_Name-".to_owned();
    spec.verbosity = 9;
    spec.nodes.min_node_count = 0;
    spec.nodes.max_node_count = 500;
    spec.connector_version = "7".to_owned();
    spec.api_key = None;
    spec.proxy.enabled = true;
    spec.api_base_url = "not a url".to_owned();
    let reasons: Vec<_> = violations(&spec).iter().map(|v| v.reason).collect();
    for expected in [
        "INVALID_NAME",
        "INVALID_NAME_START",
        "INVALID_NAME_END",
        "INVALID_VERBOSITY",
        "MIN_NODE_COUNT_TOO_LOW",
        "MAX_NODE_COUNT_TOO_HIGH",
        "UNKNOWN_CONNECTOR_VERSION",
        "MISSING_API_KEY",
        "MISSING_PROXY_HOST",
        "MISSING_PROXY_PORT",
        "INVALID_URL",
    ] {
        assert!(
            reasons.contains(&expected),
            "{expected} missing from {reasons:?}"
        );
    }
}

#[test]
fn a_name_of_exactly_49_characters_is_accepted() {
    let mut spec = valid();
    spec.id = format!("a{}", "b".repeat(48));
    assert_eq!(validate(&spec, &secrets(), &StripeDialect), Ok(()));
}

#[test]
fn proxy_settings_are_not_checked_while_the_proxy_is_disabled() {
    let mut spec = valid();
    spec.proxy.auth_scheme = ProxyAuthScheme::Basic;
    spec.proxy.password = Some(env_ref("MISSING_PROXY_SECRET"));
    assert_eq!(validate(&spec, &secrets(), &StripeDialect), Ok(()));
}

#[test]
fn embedded_connections_may_omit_the_key_but_other_rules_apply() {
    let mut spec = valid();
    spec.api_key = None;
    assert_eq!(validate_embedded(&spec, &secrets(), &StripeDialect), Ok(()));
    spec.verbosity = 0;
    let found = validate_embedded(&spec, &secrets(), &StripeDialect).unwrap_err();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].reason, "INVALID_VERBOSITY");
}

#[test]
fn validate_name_checks_a_bare_connection_id() {
    assert!(validate_name("connection_id", "stripe-eu").is_empty());
    let found = validate_name("connection_id", "-x");
    assert!(found.iter().all(|v| v.field == "connection_id"));
    assert_eq!(found[0].reason, "INVALID_NAME_START");
}

#[test]
fn no_violation_ever_contains_a_secret_value() {
    let mut spec = valid();
    spec.api_key = Some(env_ref("PK"));
    spec.proxy = enabled_proxy(ProxyAuthScheme::Basic);
    spec.api_base_url = "https://user:s3cr3t-in-url@".to_owned();
    let found = violations(&spec);
    assert!(!found.is_empty());
    for v in &found {
        let shown = format!("{v} {v:?}");
        for value in [KEY, "pk_test_publishable", "hunter2-proxy", "s3cr3t-in-url"] {
            assert!(!shown.contains(value), "{shown}");
        }
    }
}
