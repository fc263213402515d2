//! The shape of a Stripe Event (`{"id": "evt_…", "object": "event", "type", "created",
//! "data": {"object": {...}}}`) and of a read of the event log (`GET /v1/events` with
//! `created[gt]` and a type filter). Pure: parsing and parameters only, no I/O.

use serde_json::{Map, Value};

/// Most exact types Stripe's `types[]` filter takes in one request.
pub const MAX_TYPES_FILTER: usize = 20;

/// Why a body is not a Stripe Event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventShapeError {
    #[error("the body is not a JSON object")]
    NotJson,
    #[error("the body is not a Stripe event: {0}")]
    NotAnEvent(&'static str),
}

/// What the runtime reads from an event; the event itself is kept as it came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventSummary {
    /// `evt_…`.
    pub id: String,
    /// E.g. `payment_intent.succeeded`.
    pub event_type: String,
    /// Unix seconds.
    pub created: i64,
    /// `data.object.object`, e.g. `payment_intent`.
    pub object_type: Option<String>,
    /// `data.object.id`, e.g. `pi_…`.
    pub object_id: Option<String>,
}

/// Reads an event's id, type, creation time and subject.
pub fn summarize(event: &Map<String, Value>) -> Result<EventSummary, EventShapeError> {
    if event.get("object").and_then(Value::as_str) != Some("event") {
        return Err(EventShapeError::NotAnEvent("`object` is not \"event\""));
    }
    let id = event
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty() && id.len() <= 255)
        .ok_or(EventShapeError::NotAnEvent("no `id`"))?;
    let event_type = event
        .get("type")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && t.len() <= 255)
        .ok_or(EventShapeError::NotAnEvent("no `type`"))?;
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .ok_or(EventShapeError::NotAnEvent("no `created`"))?;
    let subject = event
        .get("data")
        .and_then(|d| d.get("object"))
        .and_then(Value::as_object);
    let text = |key: &str| {
        subject
            .and_then(|o| o.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    Ok(EventSummary {
        id: id.to_owned(),
        event_type: event_type.to_owned(),
        created,
        object_type: text("object"),
        object_id: text("id"),
    })
}

/// Parses a webhook body as an event.
pub fn parse(body: &[u8]) -> Result<(Map<String, Value>, EventSummary), EventShapeError> {
    let Ok(Value::Object(event)) = serde_json::from_slice::<Value>(body) else {
        return Err(EventShapeError::NotJson);
    };
    let summary = summarize(&event)?;
    Ok((event, summary))
}

/// The list parameters of one read of the event log: events created after `since`, narrowed to
/// `patterns` when Stripe can: one pattern (exact or `invoice.*`) goes in `type`, up to 20 exact
/// types in `types[]`; otherwise every type is read and the caller filters.
pub fn log_query(since: i64, patterns: &[String]) -> Map<String, Value> {
    let mut query = Map::new();
    let mut created = Map::new();
    created.insert("gt".to_owned(), Value::from(since));
    query.insert("created".to_owned(), Value::Object(created));
    let everything = patterns.iter().any(|p| p == "*");
    if everything || patterns.is_empty() {
        return query;
    }
    if let [one] = patterns {
        query.insert("type".to_owned(), Value::String(one.clone()));
    } else if patterns.len() <= MAX_TYPES_FILTER && patterns.iter().all(|p| !p.contains('*')) {
        query.insert(
            "types".to_owned(),
            Value::Array(patterns.iter().cloned().map(Value::String).collect()),
        );
    }
    query
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn reads_id_type_created_and_subject() {
        let body = json!({"id": "evt_1", "object": "event", "type": "payment_intent.succeeded",
            "created": 1764000000, "data": {"object": {"id": "pi_1", "object": "payment_intent"}}})
        .to_string();
        let (_, summary) = parse(body.as_bytes()).unwrap();
        assert_eq!(
            summary,
            EventSummary {
                id: "evt_1".into(),
                event_type: "payment_intent.succeeded".into(),
                created: 1_764_000_000,
                object_type: Some("payment_intent".into()),
                object_id: Some("pi_1".into()),
            }
        );
    }

    #[test]
    fn refuses_what_is_not_an_event() {
        assert_eq!(parse(b"[1]"), Err(EventShapeError::NotJson));
        assert_eq!(parse(b"not json"), Err(EventShapeError::NotJson));
        assert!(matches!(
            parse(br#"{"id": "pi_1", "object": "payment_intent"}"#),
            Err(EventShapeError::NotAnEvent(_))
        ));
        assert!(matches!(
            parse(br#"{"id": "evt_1", "object": "event", "created": 1}"#),
            Err(EventShapeError::NotAnEvent("no `type`"))
        ));
    }

    #[test]
    fn narrows_the_log_read_as_far_as_stripe_allows() {
        let one = log_query(100, &["invoice.*".to_owned()]);
        assert_eq!(
            Value::Object(one),
            json!({"created": {"gt": 100}, "type": "invoice.*"})
        );
        let exact = log_query(5, &["a.b".to_owned(), "c.d".to_owned()]);
        assert_eq!(exact["types"], json!(["a.b", "c.d"]));
        let mixed = log_query(5, &["a.*".to_owned(), "c.d".to_owned()]);
        assert!(!mixed.contains_key("types") && !mixed.contains_key("type"));
        let all = log_query(5, &["*".to_owned()]);
        assert_eq!(all.len(), 1);
    }
}
