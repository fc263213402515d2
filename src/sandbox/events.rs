//! Recording Events: every change the sandbox makes is recorded as a Stripe Event
//! (`evt_…`, listable at `/v1/events`), carrying the object as it is after the change and, for
//! updates, `previous_attributes`. Only Stripe's own event types are recorded: the list is the
//! one Stripe's API accepts in a webhook endpoint's `enabled_events`, read from the connector
//! spec. This is the one place events come from, so a delivery mechanism (webhooks) can hook in
//! here. Synchronous; the caller holds the state lock.

use serde_json::{Map, Value, json};

use super::execute::Ctx;
use super::store::unix_now;
use crate::spec::model::ConnectorSpec;

/// True when `event_type` is one of Stripe's event types. A spec without the webhook endpoint's
/// list accepts every type.
pub(crate) fn is_stripe_event_type(spec: &ConnectorSpec, event_type: &str) -> bool {
    let Some(types) = stripe_event_types(spec) else {
        return true;
    };
    types.iter().any(|t| t.as_str() == Some(event_type))
}

fn stripe_event_types(spec: &ConnectorSpec) -> Option<&Vec<Value>> {
    let endpoint = spec
        .entities
        .iter()
        .find(|e| e.object == "webhook_endpoint")?;
    let create = endpoint.operations.create.as_ref()?;
    let param = create
        .params
        .iter()
        .find(|p| p.source == "enabled_events")?;
    param.json_schema.get("items")?.get("enum")?.as_array()
}

/// Records an Event of `event_type` about `object` (as it is now); other types are not Stripe's
/// and are not recorded.
pub(crate) fn record(
    ctx: &mut Ctx<'_>,
    event_type: &str,
    object: &Map<String, Value>,
    previous: Option<Map<String, Value>>,
) {
    if !is_stripe_event_type(ctx.spec, event_type) {
        return;
    }
    let id = ctx.store.new_id("evt");
    let mut data = Map::new();
    data.insert("object".into(), Value::Object(object.clone()));
    if let Some(previous) = previous {
        data.insert("previous_attributes".into(), Value::Object(previous));
    }
    let event = json!({
        "id": id,
        "object": "event",
        "api_version": ctx.spec.connector.api_version,
        "created": unix_now(),
        "data": data,
        "livemode": false,
        "pending_webhooks": 0,
        "request": {"id": ctx.request_id, "idempotency_key": ctx.idempotency_key},
        "type": event_type,
    });
    if let Value::Object(event) = event {
        ctx.store.insert("event", &id, event, Vec::new());
    }
}
