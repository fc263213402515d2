//! An event subscription as the runtime keeps it: which connection, which event types (exact,
//! `invoice.*` or `*`), and where events go (a gRPC stream, or an HTTP endpoint signed with the
//! subscription's own secret). Plain data and pure checks, no I/O.

use serde::{Deserialize, Serialize};

use super::store::StoredEvent;
use crate::connections::model::SecretRef;

/// Most event type patterns one subscription may name.
pub const MAX_EVENT_TYPES: usize = 100;

/// Longest subscription id: lowercase letters, digits and hyphens, as connection ids.
pub const MAX_ID_LEN: usize = 63;

/// How far the upstream's clock may lag ours: an event stamped up to this long before a
/// subscription was created is still delivered to it, so a slow upstream clock loses nothing.
pub const CLOCK_SKEW_SECS: i64 = 60;

/// Where a subscription's events go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Destination {
    /// Consumers read them with `StreamEvents`.
    Stream,
    /// The runtime POSTs each event, signed in Stripe's scheme with `signing_secret`.
    Http {
        url: String,
        signing_secret: SecretRef,
    },
}

/// One subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Short id: `connections/{connection}/eventSubscriptions/{id}`.
    pub id: String,
    pub connection: String,
    /// Exact types, `prefix.*` wildcards, or `*` for every type.
    pub event_types: Vec<String>,
    pub destination: Destination,
    #[serde(default)]
    pub description: String,
    /// Unix seconds. Events created more than [`CLOCK_SKEW_SECS`] before it are not delivered
    /// (e.g. old ones a catch-up finds).
    pub create_time: i64,
    pub update_time: i64,
    /// Only events stored after this position are delivered.
    pub start_seq: i64,
}

impl Subscription {
    /// `connections/{connection}/eventSubscriptions/{id}`.
    pub fn name(&self) -> String {
        subscription_name(&self.connection, &self.id)
    }

    /// Whether `event` is for this subscription.
    pub fn wants(&self, event: &StoredEvent) -> bool {
        event.connection == self.connection
            && event.seq > self.start_seq
            && event.created >= self.create_time - CLOCK_SKEW_SECS
            && self
                .event_types
                .iter()
                .any(|pattern| type_matches(pattern, &event.event_type))
    }
}

/// `connections/{connection}/eventSubscriptions/{id}`.
pub fn subscription_name(connection: &str, id: &str) -> String {
    format!("connections/{connection}/eventSubscriptions/{id}")
}

/// `*` matches every type; `invoice.*` every type starting with `invoice.`; anything else only
/// itself.
pub fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) if prefix.ends_with('.') => event_type.starts_with(prefix),
        _ => pattern == event_type,
    }
}

/// Checks a subscription's id, types and destination URL; each problem as (field, description).
pub fn check(subscription: &Subscription) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let id = &subscription.id;
    let id_ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !id_ok {
        out.push((
            "event_subscription_id".to_owned(),
            format!(
                "must be lowercase letters, digits and hyphens, start with a letter, end with a letter or digit, at most {MAX_ID_LEN} characters"
            ),
        ));
    }
    if subscription.event_types.is_empty() {
        out.push((
            "event_types".to_owned(),
            "name at least one event type (e.g. `payment_intent.succeeded`, `invoice.*` or `*`)"
                .to_owned(),
        ));
    }
    if subscription.event_types.len() > MAX_EVENT_TYPES {
        out.push((
            "event_types".to_owned(),
            format!("at most {MAX_EVENT_TYPES} types"),
        ));
    }
    for (i, pattern) in subscription.event_types.iter().enumerate() {
        if let Err(problem) = check_pattern(pattern) {
            out.push((format!("event_types[{i}]"), problem.to_owned()));
        }
    }
    if let Destination::Http { url, .. } = &subscription.destination {
        match url::Url::parse(url) {
            Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => {
                if !parsed.username().is_empty() || parsed.password().is_some() {
                    out.push((
                        "http_endpoint.uri".to_owned(),
                        "must not carry a user or password".to_owned(),
                    ));
                }
            }
            _ => out.push((
                "http_endpoint.uri".to_owned(),
                "must be an absolute http:// or https:// URL".to_owned(),
            )),
        }
    }
    out
}

fn check_pattern(pattern: &str) -> Result<(), &'static str> {
    if pattern.is_empty() || pattern.len() > 255 {
        return Err("must be 1 to 255 characters");
    }
    if !pattern
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '*'))
    {
        return Err("may hold only letters, digits, `.`, `_` and a final `*`");
    }
    match pattern.find('*') {
        None => Ok(()),
        Some(at) if at + 1 == pattern.len() && (pattern == "*" || pattern.ends_with(".*")) => {
            Ok(())
        }
        Some(_) => Err("a wildcard may only end the type after a dot (`invoice.*`) or stand alone"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subscription(types: &[&str]) -> Subscription {
        Subscription {
            id: "billing".into(),
            connection: "stripe-a".into(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            destination: Destination::Stream,
            description: String::new(),
            create_time: 100,
            update_time: 100,
            start_seq: 5,
        }
    }

    fn event(seq: i64, event_type: &str, created: i64) -> StoredEvent {
        StoredEvent {
            seq,
            id: format!("evt_{seq}"),
            connection: "stripe-a".into(),
            event_type: event_type.into(),
            created,
            entity_name: None,
            payload: "{}".into(),
        }
    }

    #[test]
    fn wildcards_match_a_dotted_prefix_or_everything() {
        assert!(type_matches("invoice.*", "invoice.paid"));
        assert!(type_matches("invoice.*", "invoice.payment.failed"));
        assert!(!type_matches("invoice.*", "invoiceitem.created"));
        assert!(type_matches("*", "charge.refunded"));
        assert!(type_matches(
            "payment_intent.succeeded",
            "payment_intent.succeeded"
        ));
        assert!(!type_matches(
            "payment_intent.succeeded",
            "payment_intent.created"
        ));
    }

    #[test]
    fn delivers_only_new_matching_events_of_its_connection() {
        let s = subscription(&["payment_intent.succeeded"]);
        assert!(s.wants(&event(6, "payment_intent.succeeded", 100)));
        assert!(
            !s.wants(&event(5, "payment_intent.succeeded", 100)),
            "stored before"
        );
        assert!(
            s.wants(&event(7, "payment_intent.succeeded", 40)),
            "within the clock skew"
        );
        assert!(
            !s.wants(&event(7, "payment_intent.succeeded", 39)),
            "created before"
        );
        assert!(!s.wants(&event(8, "payment_intent.created", 200)));
        let mut other = event(9, "payment_intent.succeeded", 200);
        other.connection = "stripe-b".into();
        assert!(!s.wants(&other));
    }

    #[test]
    fn checks_ids_patterns_and_urls() {
        assert!(check(&subscription(&["invoice.*", "*", "charge.succeeded"])).is_empty());
        let mut bad = subscription(&["inv*oice", "", "a.*.b"]);
        bad.id = "Bad_Id".into();
        bad.destination = Destination::Http {
            url: "ftp://x".into(),
            signing_secret: SecretRef {
                secret: "s".into(),
                version: "latest".into(),
            },
        };
        let fields: Vec<String> = check(&bad).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "event_subscription_id",
                "event_types[0]",
                "event_types[1]",
                "event_types[2]",
                "http_endpoint.uri"
            ]
        );
        assert_eq!(check(&subscription(&[]))[0].0, "event_types");
    }
}
