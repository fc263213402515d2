//! What PaymentIntents and SetupIntents share: creation (the customer, automatic payment methods
//! or listed types, the optional payment method, the client secret, card options, the first
//! status, `*.created`, and `confirm=true` handed to the flow's own confirm), and Stripe's checks
//! before confirming either. Synchronous; the caller holds the state lock.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::execute::{Call, Ctx};
use super::{objects, payments};
use crate::spec::model::EntitySpec;

/// A flow's confirm: the stored intent's id and the confirm parameters, the confirmed intent back.
pub(crate) type Confirm =
    fn(&mut Ctx<'_>, &str, &Map<String, Value>) -> Result<Map<String, Value>, ApiError>;

/// The differences between the two intents at creation.
pub(crate) struct IntentKind {
    /// The object type: `payment_intent` or `setup_intent`.
    pub object: &'static str,
    /// Random characters in the client secret after `{id}_secret_`.
    pub secret_len: usize,
    /// A PaymentIntent's card options carry `installments`; a SetupIntent's do not.
    pub for_payment: bool,
    /// The flow's confirm, run for `confirm=true`.
    pub confirm: Confirm,
}

/// `POST /v1/{payment,setup}_intents`: `fill` sets the kind's own fields on the new intent, after
/// the given parameters and the client secret; `confirm=true` confirms at once.
pub(crate) fn create(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
    kind: &IntentKind,
    fill: impl FnOnce(&mut Map<String, Value>),
) -> Result<Value, ApiError> {
    if let Some(customer) = call.str("customer") {
        ctx.load("customer", customer, Some("customer"))?;
    }
    let (automatic, types) = payment_method_setup(ctx, &call.params)?;
    let confirm_now = call.flag("confirm");
    if confirm_now {
        check_confirmable(&automatic, &call.params)?;
    }
    let method = call
        .str("payment_method")
        .map(|id| payments::resolve_method(ctx, id, "payment_method"))
        .transpose()?;
    let mut intent = ctx.new_object(kind.object);
    // The payment method is resolved above (a test card becomes a new PaymentMethod).
    let mut rest = call.params.clone();
    rest.remove("payment_method");
    objects::apply(&mut intent, Some(entity), &rest);
    let id = intent
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let secret = ctx.store.random_text(kind.secret_len);
    intent.insert(
        "client_secret".into(),
        json!(format!("{id}_secret_{secret}")),
    );
    fill(&mut intent);
    intent.insert("automatic_payment_methods".into(), automatic);
    intent.insert("payment_method_types".into(), types);
    intent.insert(
        "payment_method_options".into(),
        card_options(call.params.get("payment_method_options"), kind.for_payment),
    );
    let status = if method.is_some() {
        "requires_confirmation"
    } else {
        "requires_payment_method"
    };
    intent.insert(
        "payment_method".into(),
        method.map_or(Value::Null, Value::String),
    );
    intent.insert("status".into(), json!(status));
    ctx.save(&intent);
    ctx.event(&format!("{}.created", kind.object), &intent, None);
    if confirm_now {
        return (kind.confirm)(ctx, &id, &rest).map(Value::Object);
    }
    Ok(Value::Object(intent))
}

/// `automatic_payment_methods` and `payment_method_types` of a new PaymentIntent or SetupIntent:
/// from the API version 2023-08-16 on, an intent created without `payment_method_types` has
/// automatic payment methods enabled (redirects allowed unless `allow_redirects=never`); before
/// it, or with `payment_method_types`, it takes the listed types (card by default).
fn payment_method_setup(
    ctx: &Ctx<'_>,
    params: &Map<String, Value>,
) -> Result<(Value, Value), ApiError> {
    let types = params
        .get("payment_method_types")
        .and_then(Value::as_array)
        .filter(|types| !types.is_empty())
        .cloned();
    let requested = params
        .get("automatic_payment_methods")
        .and_then(Value::as_object);
    let enabled = requested
        .and_then(|a| a.get("enabled"))
        .and_then(Value::as_bool);
    if types.is_some() && enabled == Some(true) {
        return Err(ApiError::invalid(
            "You may only specify one of these parameters: automatic_payment_methods, \
             payment_method_types.",
        )
        .with_param("automatic_payment_methods"));
    }
    if let Some(types) = types {
        for kind in &types {
            if kind.as_str() != Some("card") {
                return Err(ApiError::invalid(format!(
                    "The sandbox models card payments only; payment method type {kind} is not \
                     modelled. Use Stripe's test mode for it."
                ))
                .with_code("sandbox_unsupported")
                .with_param("payment_method_types"));
            }
        }
        return Ok((Value::Null, Value::Array(types)));
    }
    let automatic = enabled.unwrap_or(ctx.automatic_payment_methods_by_default());
    if !automatic {
        return Ok((Value::Null, json!(["card"])));
    }
    let redirects = requested
        .and_then(|a| a.get("allow_redirects"))
        .and_then(Value::as_str)
        .unwrap_or("always");
    Ok((
        json!({"allow_redirects": redirects, "enabled": true}),
        json!(["card"]),
    ))
}

const RETURN_URL_REQUIRED: &str = "A `return_url` must be specified because this Payment Intent is \
configured to automatically accept the payment methods enabled in the Dashboard, some of which may \
require a full page redirect to succeed. If you do not want to accept redirect-based payment \
methods, set `automatic_payment_methods[enabled]` to `true` and \
`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment \
Intents.";

/// Stripe's checks before confirming an intent with automatic payment methods: a `return_url` is
/// needed unless redirects are off or the customer is not present (`off_session`), and
/// `error_on_requires_action` needs explicit `payment_method_types`.
pub(crate) fn check_confirmable(
    automatic: &Value,
    params: &Map<String, Value>,
) -> Result<(), ApiError> {
    if automatic.get("enabled").and_then(Value::as_bool) != Some(true) {
        return Ok(());
    }
    if params
        .get("error_on_requires_action")
        .and_then(Value::as_bool)
        == Some(true)
    {
        return Err(ApiError::invalid(
            "`error_on_requires_action` can only be used with `payment_method_types`; it cannot \
             be used when `automatic_payment_methods` is enabled.",
        )
        .with_param("error_on_requires_action"));
    }
    let redirects = automatic.get("allow_redirects").and_then(Value::as_str) != Some("never");
    let off_session = params.get("off_session").and_then(Value::as_bool) == Some(true);
    let has_return_url = params
        .get("return_url")
        .and_then(Value::as_str)
        .is_some_and(|url| !url.is_empty());
    if redirects && !off_session && !has_return_url {
        return Err(ApiError::invalid(RETURN_URL_REQUIRED).with_param("return_url"));
    }
    Ok(())
}

/// The payment method a confirmation charges or sets up: the intent's (`name`: `PaymentIntent`
/// or `SetupIntent`), refused as the flow's `unexpected_state` when there is none, and refused
/// when it was already used once.
pub(crate) fn confirming_method(
    ctx: &Ctx<'_>,
    intent: &Map<String, Value>,
    name: &str,
    unexpected_state: fn(&str, &Map<String, Value>) -> ApiError,
) -> Result<String, ApiError> {
    let Some(method_id) = intent
        .get("payment_method")
        .and_then(Value::as_str)
        .map(str::to_owned)
    else {
        return Err(unexpected_state(
            &format!(
                "You cannot confirm this {name} because it's missing a payment method. Update \
                 the {name} with a payment method and then confirm it again."
            ),
            intent,
        ));
    };
    if ctx.store.spent.contains(&method_id) {
        return Err(payments::spent_error("payment_method"));
    }
    Ok(method_id)
}

/// `payment_method_options` with Stripe's card defaults, merged with the given options' `card`.
pub(crate) fn card_options(given: Option<&Value>, for_payment: bool) -> Value {
    let mut card = if for_payment {
        json!({"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"})
    } else {
        json!({"mandate_options": null, "network": null, "request_three_d_secure": "automatic"})
    };
    if let (Some(Value::Object(given)), Value::Object(card)) =
        (given.and_then(|o| o.get("card")), &mut card)
    {
        for (key, value) in given {
            card.insert(key.clone(), value.clone());
        }
    }
    json!({ "card": card })
}
