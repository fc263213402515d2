//! The SetupIntent flow: saving a card for later without charging it. Created with a payment
//! method it waits for confirmation; confirming runs Stripe's card check with the test cards
//! (success attaches the method to the customer, 3-D Secure cards wait for authentication,
//! declining cards fail with a 402), and it can be canceled until it succeeds. Synchronous; the
//! caller holds the state lock.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::execute::{self, Call, Ctx};
use super::intents::{self, IntentKind};
use super::objects;
use super::store::CardBehaviour;
use super::{cards, payments};
use crate::spec::model::EntitySpec;

const CONFIRMABLE: &[&str] = &[
    "requires_payment_method",
    "requires_confirmation",
    "requires_action",
];

fn str_of<'m>(object: &'m Map<String, Value>, key: &str) -> &'m str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn unexpected_state(message: &str, intent: &Map<String, Value>) -> ApiError {
    ApiError::invalid(message)
        .with_code("setup_intent_unexpected_state")
        .with_extra("setup_intent", Value::Object(intent.clone()))
}

/// `POST /v1/setup_intents`; `confirm=true` confirms at once.
pub(crate) fn create_intent(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let kind = IntentKind {
        object: "setup_intent",
        secret_len: 32,
        for_payment: false,
        confirm,
    };
    intents::create(ctx, entity, call, &kind, |intent| {
        if intent
            .get("usage")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            intent.insert("usage".into(), json!("off_session"));
        }
    })
}

/// `POST /v1/setup_intents/{id}`: a new payment method makes it wait for confirmation.
pub(crate) fn update_intent(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let before = ctx.load("setup_intent", &id, Some("intent"))?;
    let status = str_of(&before, "status").to_owned();
    let mut after = before.clone();
    let mut rest = call.params.clone();
    if let Some(Value::String(method)) = rest.remove("payment_method") {
        if !CONFIRMABLE.contains(&status.as_str()) {
            return Err(unexpected_state(
                &format!("You cannot update this SetupIntent because it has a status of {status}."),
                &before,
            ));
        }
        let resolved = payments::resolve_method(ctx, &method, "payment_method")?;
        after.insert("payment_method".into(), json!(resolved));
        after.insert("status".into(), json!("requires_confirmation"));
    }
    objects::apply(&mut after, Some(entity), &rest);
    Ok(Value::Object(execute::commit_update(ctx, &before, after)))
}

/// `POST /v1/setup_intents/{id}/confirm` (also `confirm=true` on create).
pub(crate) fn confirm(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut intent = ctx.load("setup_intent", id, Some("intent"))?;
    let status = str_of(&intent, "status").to_owned();
    if !CONFIRMABLE.contains(&status.as_str()) {
        return Err(unexpected_state(
            &format!("You cannot confirm this SetupIntent because it has a status of {status}."),
            &intent,
        ));
    }
    intents::check_confirmable(
        intent
            .get("automatic_payment_methods")
            .unwrap_or(&Value::Null),
        params,
    )?;
    let method_id = method_to_confirm(ctx, &mut intent, params)?;
    let behaviour = ctx
        .store
        .cards
        .get(&method_id)
        .copied()
        .unwrap_or(CardBehaviour::Succeeds);
    if behaviour == CardBehaviour::AuthenticationRequired && status != "requires_action" {
        return Ok(require_authentication(ctx, id, intent, params));
    }
    // A card that attaches and only declines charges passes the setup check.
    if behaviour != CardBehaviour::AttachesThenDeclines
        && let Some(error) = cards::decline(behaviour)
    {
        return Err(fail_setup(ctx, intent, &method_id, error));
    }
    attach_to_customer(ctx, &intent, &method_id);
    intent.insert("status".into(), json!("succeeded"));
    intent.insert("last_setup_error".into(), Value::Null);
    intent.insert("next_action".into(), Value::Null);
    ctx.save(&intent);
    ctx.event("setup_intent.succeeded", &intent, None);
    Ok(intent)
}

/// The payment method the confirmation sets up: the one given (resolved and set on the intent)
/// or the intent's own; refused when there is none or it was already used.
fn method_to_confirm(
    ctx: &mut Ctx<'_>,
    intent: &mut Map<String, Value>,
    params: &Map<String, Value>,
) -> Result<String, ApiError> {
    if let Some(method) = params.get("payment_method").and_then(Value::as_str) {
        let resolved = payments::resolve_method(ctx, method, "payment_method")?;
        intent.insert("payment_method".into(), json!(resolved));
    }
    intents::confirming_method(ctx, intent, "SetupIntent", unexpected_state)
}

/// A card that asks for 3-D Secure: the intent waits in `requires_action` with the next action.
fn require_authentication(
    ctx: &mut Ctx<'_>,
    id: &str,
    mut intent: Map<String, Value>,
    params: &Map<String, Value>,
) -> Map<String, Value> {
    let return_url = params
        .get("return_url")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let next_action = payments::authentication_action(ctx, id, return_url);
    intent.insert("status".into(), json!("requires_action"));
    intent.insert("next_action".into(), next_action);
    ctx.save(&intent);
    ctx.event("setup_intent.requires_action", &intent, None);
    intent
}

/// A declined card: the intent goes back to `requires_payment_method` with the error, which
/// carries the intent.
fn fail_setup(
    ctx: &mut Ctx<'_>,
    mut intent: Map<String, Value>,
    method_id: &str,
    error: ApiError,
) -> ApiError {
    let mut last_error = error.as_last_payment_error();
    last_error["payment_method"] = payments::method_object(ctx, method_id);
    intent.insert("status".into(), json!("requires_payment_method"));
    intent.insert("last_setup_error".into(), last_error);
    intent.insert("payment_method".into(), Value::Null);
    intent.insert("next_action".into(), Value::Null);
    ctx.save(&intent);
    ctx.event("setup_intent.setup_failed", &intent, None);
    error.with_extra("setup_intent", Value::Object(intent))
}

/// A successful setup attaches its method to the intent's customer, as Stripe does.
fn attach_to_customer(ctx: &mut Ctx<'_>, intent: &Map<String, Value>, method_id: &str) {
    let Some(customer) = intent.get("customer").and_then(Value::as_str) else {
        return;
    };
    if let Some(mut method) = ctx.store.get("payment_method", method_id).cloned()
        && method.get("customer").is_none_or(Value::is_null)
    {
        method.insert("customer".into(), json!(customer));
        ctx.save(&method);
        ctx.event("payment_method.attached", &method, None);
    }
}

/// `POST /v1/setup_intents/{id}/cancel`, until it succeeds.
pub(crate) fn cancel(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut intent = ctx.load("setup_intent", id, Some("intent"))?;
    let status = str_of(&intent, "status").to_owned();
    if !CONFIRMABLE.contains(&status.as_str()) {
        return Err(unexpected_state(
            &format!(
                "You cannot cancel this SetupIntent because it has a status of {status}. Only a \
                 SetupIntent with one of the following statuses may be canceled: {}.",
                CONFIRMABLE.join(", ")
            ),
            &intent,
        ));
    }
    intent.insert("status".into(), json!("canceled"));
    intent.insert(
        "cancellation_reason".into(),
        params
            .get("cancellation_reason")
            .cloned()
            .unwrap_or(Value::Null),
    );
    intent.insert("next_action".into(), Value::Null);
    ctx.save(&intent);
    ctx.event("setup_intent.canceled", &intent, None);
    Ok(intent)
}
