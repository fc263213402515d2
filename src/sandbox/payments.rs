//! The payment flows: PaymentMethods with Stripe's test cards (behaviour remembered, the number
//! never stored), PaymentIntent states (automatic payment methods, confirm, 3-D Secure, declines,
//! manual capture, cancel), the Charges they create with their BalanceTransactions, and refunds. Synchronous; the caller holds the state lock.

use serde_json::{Map, Value, json};

use super::cards::{
    brand_of, card_behaviour, decline, luhn_valid, magic_payment_method, token_card,
};
use super::error::ApiError;
use super::execute::{self, Call, Ctx};
use super::intents::{self, IntentKind, card_options, check_confirmable};
use super::store::{CardBehaviour, unix_now};
use super::{currency, objects};
use crate::spec::model::EntitySpec;

const AUTH_MESSAGE: &str = "This payment required an authentication action to complete, but \
`error_on_requires_action` was set. When you're ready, you can upgrade your integration to handle \
actions at https://stripe.com/docs/payments/payment-intents/upgrade-to-handle-actions.";

const CANCELABLE: &[&str] = &[
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
];

fn card_details(
    store_fingerprint: String,
    brand: &str,
    last4: &str,
    exp_month: i64,
    exp_year: i64,
) -> Value {
    json!({
        "brand": brand,
        "checks": {"address_line1_check": null, "address_postal_code_check": null, "cvc_check": "pass"},
        "country": "US",
        "exp_month": exp_month,
        "exp_year": exp_year,
        "fingerprint": store_fingerprint,
        "funding": "credit",
        "generated_from": null,
        "last4": last4,
        "networks": {"available": [brand], "preferred": null},
        "three_d_secure_usage": {"supported": true},
        "wallet": null,
    })
}

fn current_year() -> i64 {
    1970 + unix_now() / 31_556_952
}

fn store_card_method(
    ctx: &mut Ctx<'_>,
    behaviour: CardBehaviour,
    (brand, last4): (&str, &str),
    (exp_month, exp_year): (i64, i64),
    params: &Map<String, Value>,
) -> Map<String, Value> {
    let mut method = ctx.new_object("payment_method");
    let entity = execute::entity_by_object(ctx.spec, "payment_method");
    let mut rest = params.clone();
    rest.remove("card");
    objects::apply(&mut method, entity, &rest);
    let fingerprint = ctx.store.random_text(16);
    method.insert("type".into(), json!("card"));
    method.insert(
        "card".into(),
        card_details(fingerprint, brand, last4, exp_month, exp_year),
    );
    method.entry("customer").or_insert(Value::Null);
    let id = method["id"].as_str().unwrap_or_default().to_owned();
    ctx.store.cards.insert(id, behaviour);
    ctx.save(&method);
    method
}

/// Resolves a `payment_method` parameter: test ids are cloned into a new PaymentMethod; real ids
/// must exist and not have been detached.
pub(crate) fn resolve_method(ctx: &mut Ctx<'_>, id: &str, param: &str) -> Result<String, ApiError> {
    if let Some(card) = magic_payment_method(id) {
        let method = store_card_method(
            ctx,
            card.behaviour,
            (card.brand, card.last4),
            (12, current_year() + 3),
            &Map::new(),
        );
        return Ok(method["id"].as_str().unwrap_or_default().to_owned());
    }
    if ctx.store.get("payment_method", id).is_none() {
        return Err(ApiError::no_such("payment_method", id, Some(param)));
    }
    if ctx.store.spent.contains(id) {
        return Err(spent_error(param));
    }
    Ok(id.to_owned())
}

pub(crate) fn spent_error(param: &str) -> ApiError {
    ApiError::invalid(
        "This PaymentMethod was previously used without being attached to a Customer or was \
         detached from a Customer, and may not be used again.",
    )
    .with_code("payment_method_unexpected_state")
    .with_param(param)
}

/// `POST /v1/payment_methods`: cards remember their test behaviour; other types are stored as given.
pub(crate) fn create_method(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let Some(Value::Object(card)) = call.params.get("card") else {
        return Ok(Value::Object(execute::create(ctx, entity, call)?));
    };
    if let Some(token) = card.get("token").and_then(Value::as_str) {
        let test = token_card(token)
            .ok_or_else(|| ApiError::no_such("token", token, Some("card[token]")))?;
        let method = store_card_method(
            ctx,
            test.behaviour,
            (test.brand, test.last4),
            (12, current_year() + 3),
            &call.params,
        );
        return Ok(Value::Object(method));
    }
    let number: String = match card.get("number") {
        Some(Value::String(n)) => n.chars().filter(|c| !c.is_whitespace()).collect(),
        _ => return Err(ApiError::parameter_missing("card[number]")),
    };
    if !luhn_valid(&number) {
        return Err(
            ApiError::card("incorrect_number", None, "Your card number is incorrect.")
                .with_param("card[number]"),
        );
    }
    let exp_month = card
        .get("exp_month")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::parameter_missing("card[exp_month]"))?;
    let exp_year = card
        .get("exp_year")
        .and_then(Value::as_i64)
        .ok_or_else(|| ApiError::parameter_missing("card[exp_year]"))?;
    if !(1..=12).contains(&exp_month) {
        return Err(ApiError::card(
            "invalid_expiry_month",
            None,
            "Your card's expiration month is invalid.",
        )
        .with_param("card[exp_month]"));
    }
    let exp_year = if exp_year < 100 {
        exp_year + 2000
    } else {
        exp_year
    };
    if exp_year < current_year() {
        return Err(ApiError::card(
            "invalid_expiry_year",
            None,
            "Your card's expiration year is invalid.",
        )
        .with_param("card[exp_year]"));
    }
    let last4 = &number[number.len() - 4..];
    let brand = brand_of(&number);
    let method = store_card_method(
        ctx,
        card_behaviour(&number),
        (brand, last4),
        (exp_month, exp_year),
        &call.params,
    );
    // Stripe has no `payment_method.created` event: a new PaymentMethod is announced when it is
    // attached to a customer.
    Ok(Value::Object(method))
}

pub(crate) fn method_object(ctx: &Ctx<'_>, id: &str) -> Value {
    ctx.store
        .get("payment_method", id)
        .cloned()
        .map_or(Value::Null, Value::Object)
}

fn str_of<'m>(object: &'m Map<String, Value>, key: &str) -> &'m str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn int_of(object: &Map<String, Value>, key: &str) -> i64 {
    object.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// `POST /v1/payment_intents`; `confirm=true` confirms at once.
pub(crate) fn create_intent(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let amount = call
        .int("amount")
        .ok_or_else(|| ApiError::parameter_missing("amount"))?;
    let currency = call
        .str("currency")
        .ok_or_else(|| ApiError::parameter_missing("currency"))?
        .to_lowercase();
    currency::check(&currency, "currency")?;
    if amount < 1 {
        return Err(
            ApiError::invalid("This value must be greater than or equal to 1.")
                .with_code("parameter_invalid_integer")
                .with_param("amount"),
        );
    }
    if amount < 50 && currency == "usd" {
        return Err(ApiError::invalid("Amount must be at least $0.50 usd")
            .with_code("amount_too_small")
            .with_param("amount"));
    }
    let kind = IntentKind {
        object: "payment_intent",
        secret_len: 25,
        for_payment: true,
        confirm,
    };
    intents::create(ctx, entity, call, &kind, |intent| {
        intent.insert("amount".into(), json!(amount));
        intent.insert("currency".into(), json!(currency));
        intent.insert("amount_capturable".into(), json!(0));
        intent.insert("amount_received".into(), json!(0));
        for (key, default) in [
            ("capture_method", "automatic"),
            ("confirmation_method", "automatic"),
        ] {
            if !intent.get(key).is_some_and(Value::is_string) || intent[key] == "" {
                intent.insert(key.into(), json!(default));
            }
        }
        for key in [
            "latest_charge",
            "last_payment_error",
            "next_action",
            "canceled_at",
            "cancellation_reason",
        ] {
            intent.insert(key.into(), Value::Null);
        }
    })
}

/// `POST /v1/payment_intents/{id}`: amount, currency and payment method change only before success.
pub(crate) fn update_intent(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let before = ctx.load(
        "payment_intent",
        &id,
        Some(entity.item_id_param.as_deref().unwrap_or("intent")),
    )?;
    let status = str_of(&before, "status").to_owned();
    let changes_payment = ["amount", "currency", "payment_method", "capture_method"]
        .iter()
        .any(|k| call.params.contains_key(*k));
    if changes_payment
        && !matches!(
            status.as_str(),
            "requires_payment_method" | "requires_confirmation" | "requires_action"
        )
    {
        return Err(unexpected_state(
            &format!("You cannot update this PaymentIntent because it has a status of {status}."),
            &before,
        ));
    }
    let mut after = before.clone();
    let mut rest = call.params.clone();
    if let Some(Value::String(method)) = rest.remove("payment_method") {
        let resolved = resolve_method(ctx, &method, "payment_method")?;
        after.insert("payment_method".into(), json!(resolved));
        if status == "requires_payment_method" {
            after.insert("status".into(), json!("requires_confirmation"));
        }
    }
    objects::apply(&mut after, Some(entity), &rest);
    Ok(Value::Object(execute::commit_update(ctx, &before, after)))
}

fn unexpected_state(message: &str, intent: &Map<String, Value>) -> ApiError {
    ApiError::invalid(message)
        .with_code("payment_intent_unexpected_state")
        .with_extra("payment_intent", Value::Object(intent.clone()))
}

/// A Charge for an intent's attempt.
fn new_charge(
    ctx: &mut Ctx<'_>,
    intent: &Map<String, Value>,
    method_id: &str,
    failure: Option<&ApiError>,
    captured: bool,
) -> Map<String, Value> {
    let mut charge = ctx.new_object("charge");
    let amount = int_of(intent, "amount");
    let card = ctx
        .store
        .get("payment_method", method_id)
        .and_then(|m| m.get("card").cloned())
        .unwrap_or(Value::Null);
    let succeeded = failure.is_none();
    let values = json!({
        "amount": amount,
        "amount_captured": if succeeded && captured { amount } else { 0 },
        "amount_refunded": 0,
        "captured": succeeded && captured,
        "currency": intent.get("currency"),
        "customer": intent.get("customer"),
        "description": intent.get("description"),
        "failure_code": failure.and_then(|f| f.code),
        "failure_message": failure.map(|f| f.message.clone()),
        "invoice": intent.get("invoice").cloned().unwrap_or(Value::Null),
        "metadata": intent.get("metadata").cloned().unwrap_or(json!({})),
        "outcome": {
            "network_status": if succeeded { "approved_by_network" } else { "declined_by_network" },
            "reason": failure.and_then(|f| f.decline_code.clone()),
            "risk_level": "normal",
            "risk_score": 32,
            "seller_message": if succeeded { "Payment complete." } else { "The bank did not return any further details with this decline." },
            "type": if succeeded { "authorized" } else { "issuer_declined" },
        },
        "paid": succeeded,
        "payment_intent": intent.get("id"),
        "payment_method": method_id,
        "payment_method_details": {"type": "card", "card": charge_card_details(&card)},
        "receipt_email": intent.get("receipt_email").cloned().unwrap_or(Value::Null),
        "refunded": false,
        "status": if succeeded { "succeeded" } else { "failed" },
    });
    if let Value::Object(values) = values {
        charge.extend(values);
    }
    if succeeded {
        settle(ctx, &mut charge);
    }
    ctx.save(&charge);
    ctx.event(
        if succeeded {
            "charge.succeeded"
        } else {
            "charge.failed"
        },
        &charge,
        None,
    );
    charge
}

/// A successful charge's money movement: its BalanceTransaction and its receipt page.
fn settle(ctx: &mut Ctx<'_>, charge: &mut Map<String, Value>) {
    let charge_id = str_of(charge, "id").to_owned();
    let amount = int_of(charge, "amount");
    let transaction = balance_transaction(
        ctx,
        (
            amount,
            charge.get("currency").cloned().unwrap_or(Value::Null),
        ),
        &charge_id,
        ("charge", "charge"),
    );
    charge.insert("balance_transaction".into(), json!(transaction));
    charge.insert(
        "receipt_url".into(),
        json!(format!("{}/hosted/receipts/{charge_id}", ctx.base_url)),
    );
}

/// Stores a BalanceTransaction for money moving through the sandbox's balance (no fees).
pub(crate) fn balance_transaction(
    ctx: &mut Ctx<'_>,
    (amount, currency): (i64, Value),
    source: &str,
    (kind, category): (&str, &str),
) -> String {
    let mut transaction = ctx.new_object("balance_transaction");
    let now = unix_now();
    let values = json!({
        "amount": amount, "available_on": now + 2 * 24 * 3600, "currency": currency,
        "description": null, "exchange_rate": null, "fee": 0, "fee_details": [], "net": amount,
        "reporting_category": category, "source": source, "status": "pending", "type": kind,
    });
    if let Value::Object(values) = values {
        transaction.extend(values);
    }
    let id = str_of(&transaction, "id").to_owned();
    ctx.save(&transaction);
    id
}

/// A PaymentMethod's `card` as a Charge's `payment_method_details.card` shows it.
fn charge_card_details(card: &Value) -> Value {
    let field = |key: &str| card.get(key).cloned().unwrap_or(Value::Null);
    json!({
        "brand": field("brand"), "checks": field("checks"), "country": field("country"),
        "exp_month": field("exp_month"), "exp_year": field("exp_year"),
        "fingerprint": field("fingerprint"), "funding": field("funding"), "installments": null,
        "last4": field("last4"), "mandate": null, "network": field("brand"),
        "network_token": {"used": false}, "three_d_secure": null, "wallet": null,
    })
}

/// `POST /v1/payment_intents/{id}/confirm` (also `confirm=true` on create).
pub(crate) fn confirm(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut intent = ctx.load("payment_intent", id, Some("intent"))?;
    let status = str_of(&intent, "status").to_owned();
    if !matches!(
        status.as_str(),
        "requires_payment_method" | "requires_confirmation" | "requires_action"
    ) {
        return Err(unexpected_state(
            &format!("You cannot confirm this PaymentIntent because it has a status of {status}."),
            &intent,
        ));
    }
    check_confirmable(
        intent
            .get("automatic_payment_methods")
            .unwrap_or(&Value::Null),
        params,
    )?;
    let options = ConfirmOptions::of(params);
    apply_confirm_params(ctx, &mut intent, params)?;
    let method_id = intents::confirming_method(ctx, &intent, "PaymentIntent", unexpected_state)?;
    let behaviour = ctx
        .store
        .cards
        .get(&method_id)
        .copied()
        .unwrap_or(CardBehaviour::Succeeds);
    let authenticated = status == "requires_action";
    if behaviour == CardBehaviour::AuthenticationRequired && !authenticated {
        return require_authentication(ctx, intent, &method_id, options);
    }
    if let Some(error) = decline(behaviour) {
        return Err(decline_payment(ctx, intent, &method_id, error));
    }
    Ok(pay(ctx, intent, &method_id))
}

/// The confirm parameters that steer the confirmation rather than change the intent.
struct ConfirmOptions {
    return_url: Option<String>,
    error_on_requires_action: bool,
    off_session: bool,
}

impl ConfirmOptions {
    fn of(params: &Map<String, Value>) -> Self {
        let flag = |key: &str| params.get(key).and_then(Value::as_bool).unwrap_or(false);
        Self {
            return_url: params
                .get("return_url")
                .and_then(Value::as_str)
                .map(str::to_owned),
            error_on_requires_action: flag("error_on_requires_action"),
            off_session: flag("off_session"),
        }
    }
}

/// The confirm parameters that change the intent: a new payment method (resolved) and the
/// intent's own fields.
fn apply_confirm_params(
    ctx: &mut Ctx<'_>,
    intent: &mut Map<String, Value>,
    params: &Map<String, Value>,
) -> Result<(), ApiError> {
    let mut rest = params.clone();
    if let Some(Value::String(method)) = rest.remove("payment_method") {
        let resolved = resolve_method(ctx, &method, "payment_method")?;
        intent.insert("payment_method".into(), json!(resolved));
    }
    for key in [
        "confirm",
        "error_on_requires_action",
        "off_session",
        "return_url",
        "mandate",
        "mandate_data",
        "payment_method_data",
    ] {
        rest.remove(key);
    }
    objects::apply(
        intent,
        execute::entity_by_object(ctx.spec, "payment_intent"),
        &rest,
    );
    Ok(())
}

/// A 3-D Secure card: the intent waits for authentication, or fails where nobody can
/// authenticate (off session) or the integration said it will not (`error_on_requires_action`).
fn require_authentication(
    ctx: &mut Ctx<'_>,
    mut intent: Map<String, Value>,
    method_id: &str,
    options: ConfirmOptions,
) -> Result<Map<String, Value>, ApiError> {
    if options.error_on_requires_action || options.off_session {
        // Off-session payments are declined by the issuer; `error_on_requires_action` is the
        // integration declining to handle the action.
        let error = if options.error_on_requires_action {
            ApiError::card(
                "authentication_required",
                Some("authentication_not_handled"),
                AUTH_MESSAGE,
            )
        } else {
            ApiError::card(
                "authentication_required",
                Some("authentication_required"),
                "Your card was declined. This transaction requires authentication.",
            )
        };
        let mut last_error = error.as_last_payment_error();
        last_error["payment_method"] = method_object(ctx, method_id);
        return Err(fail(ctx, intent, error, last_error));
    }
    intent.insert("status".into(), json!("requires_action"));
    let next_action = authentication_action(ctx, &id_of_intent(&intent), options.return_url);
    intent.insert("next_action".into(), next_action);
    ctx.save(&intent);
    ctx.event("payment_intent.requires_action", &intent, None);
    Ok(intent)
}

/// A declining card: a failed charge, and the intent back to `requires_payment_method`.
fn decline_payment(
    ctx: &mut Ctx<'_>,
    mut intent: Map<String, Value>,
    method_id: &str,
    error: ApiError,
) -> ApiError {
    let charge = new_charge(ctx, &intent, method_id, Some(&error), false);
    spend_if_unattached(ctx, method_id);
    let charge_id = str_of(&charge, "id").to_owned();
    let error = error.with_extra("charge", json!(charge_id));
    let mut last_error = error.as_last_payment_error();
    last_error["payment_method"] = method_object(ctx, method_id);
    intent.insert("latest_charge".into(), json!(charge_id));
    fail(
        ctx,
        intent,
        error.with_extra("payment_method", method_object(ctx, method_id)),
        last_error,
    )
}

/// A card that pays: the charge, captured now or held for a manual capture.
fn pay(ctx: &mut Ctx<'_>, mut intent: Map<String, Value>, method_id: &str) -> Map<String, Value> {
    let manual = str_of(&intent, "capture_method") == "manual";
    let charge = new_charge(ctx, &intent, method_id, None, !manual);
    save_for_future_use(ctx, &intent, method_id);
    spend_if_unattached(ctx, method_id);
    let amount = int_of(&intent, "amount");
    intent.insert("latest_charge".into(), charge["id"].clone());
    intent.insert("last_payment_error".into(), Value::Null);
    intent.insert("next_action".into(), Value::Null);
    if manual {
        intent.insert("status".into(), json!("requires_capture"));
        intent.insert("amount_capturable".into(), json!(amount));
        ctx.save(&intent);
        ctx.event("payment_intent.amount_capturable_updated", &intent, None);
    } else {
        intent.insert("status".into(), json!("succeeded"));
        intent.insert("amount_received".into(), json!(amount));
        ctx.save(&intent);
        ctx.event("payment_intent.succeeded", &intent, None);
    }
    intent
}

fn id_of_intent(intent: &Map<String, Value>) -> String {
    str_of(intent, "id").to_owned()
}

/// The `next_action` of an intent waiting for 3-D Secure: with a `return_url`, a redirect to the
/// sandbox's authentication page that comes back to it; without one, the data Stripe.js needs.
pub(crate) fn authentication_action(ctx: &Ctx<'_>, id: &str, return_url: Option<String>) -> Value {
    let url = format!("{}/hosted/authenticate/{id}", ctx.base_url);
    match return_url {
        Some(return_url) => json!({
            "type": "redirect_to_url",
            "redirect_to_url": {"url": url, "return_url": return_url},
        }),
        None => json!({
            "type": "use_stripe_sdk",
            "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url},
        }),
    }
}

/// With `setup_future_usage` and a customer, a successful payment attaches its method to the
/// customer, as Stripe does.
fn save_for_future_use(ctx: &mut Ctx<'_>, intent: &Map<String, Value>, method_id: &str) {
    let wants = intent
        .get("setup_future_usage")
        .is_some_and(Value::is_string);
    let Some(customer) = intent.get("customer").and_then(Value::as_str) else {
        return;
    };
    if !wants {
        return;
    }
    if let Some(mut method) = ctx.store.get("payment_method", method_id).cloned()
        && method.get("customer").is_none_or(Value::is_null)
    {
        method.insert("customer".into(), json!(customer));
        ctx.save(&method);
        ctx.event("payment_method.attached", &method, None);
    }
}

/// A PaymentMethod never attached to a customer can be used for one payment only, as in Stripe.
fn spend_if_unattached(ctx: &mut Ctx<'_>, method_id: &str) {
    let unattached = ctx
        .store
        .get("payment_method", method_id)
        .is_some_and(|m| m.get("customer").is_none_or(Value::is_null));
    if unattached {
        ctx.store.spent.insert(method_id.to_owned());
    }
}

/// A failed attempt: back to `requires_payment_method`, `last_payment_error` set, the intent embedded in the error.
fn fail(
    ctx: &mut Ctx<'_>,
    mut intent: Map<String, Value>,
    error: ApiError,
    last_error: Value,
) -> ApiError {
    intent.insert("status".into(), json!("requires_payment_method"));
    intent.insert("last_payment_error".into(), last_error);
    intent.insert("payment_method".into(), Value::Null);
    intent.insert("next_action".into(), Value::Null);
    ctx.save(&intent);
    ctx.event("payment_intent.payment_failed", &intent, None);
    error.with_extra("payment_intent", Value::Object(intent))
}

/// `POST /v1/payment_intents/{id}/capture`.
pub(crate) fn capture(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut intent = ctx.load("payment_intent", id, Some("intent"))?;
    let status = str_of(&intent, "status").to_owned();
    if status != "requires_capture" {
        return Err(unexpected_state(
            &format!(
                "This PaymentIntent could not be captured because it has a status of {status}. Only a \
                 PaymentIntent with one of the following statuses may be captured: requires_capture."
            ),
            &intent,
        ));
    }
    let capturable = int_of(&intent, "amount_capturable");
    let amount = params
        .get("amount_to_capture")
        .and_then(Value::as_i64)
        .unwrap_or(capturable);
    if amount > capturable || amount <= 0 {
        return Err(ApiError::invalid(format!(
            "The amount to capture ({amount}) must be positive and at most the amount capturable ({capturable})."
        ))
        .with_code("amount_too_large")
        .with_param("amount_to_capture"));
    }
    let mut rest = params.clone();
    rest.remove("amount_to_capture");
    objects::apply(
        &mut intent,
        execute::entity_by_object(ctx.spec, "payment_intent"),
        &rest,
    );
    let charge_id = intent
        .get("latest_charge")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if let Some(mut charge) = ctx.store.get("charge", charge_id).cloned() {
        let total = int_of(&charge, "amount");
        charge.insert("captured".into(), json!(true));
        charge.insert("amount_captured".into(), json!(amount));
        charge.insert("amount_refunded".into(), json!(total - amount));
        ctx.save(&charge);
        ctx.event("charge.captured", &charge, None);
    }
    intent.insert("status".into(), json!("succeeded"));
    intent.insert("amount_received".into(), json!(amount));
    intent.insert("amount_capturable".into(), json!(0));
    ctx.save(&intent);
    ctx.event("payment_intent.succeeded", &intent, None);
    Ok(intent)
}

/// `POST /v1/payment_intents/{id}/cancel`, only from Stripe's cancelable states.
pub(crate) fn cancel(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut intent = ctx.load("payment_intent", id, Some("intent"))?;
    let status = str_of(&intent, "status").to_owned();
    if !CANCELABLE.contains(&status.as_str()) {
        return Err(unexpected_state(
            &format!(
                "You cannot cancel this PaymentIntent because it has a status of {status}. Only a \
                 PaymentIntent with one of the following statuses may be canceled: {}.",
                CANCELABLE.join(", ")
            ),
            &intent,
        ));
    }
    intent.insert("status".into(), json!("canceled"));
    intent.insert("canceled_at".into(), json!(unix_now()));
    intent.insert(
        "cancellation_reason".into(),
        params
            .get("cancellation_reason")
            .cloned()
            .unwrap_or(Value::Null),
    );
    intent.insert("amount_capturable".into(), json!(0));
    intent.insert("next_action".into(), Value::Null);
    ctx.save(&intent);
    ctx.event("payment_intent.canceled", &intent, None);
    Ok(intent)
}

/// `POST /v1/payment_methods/{id}/attach`: declining cards fail Stripe's card check.
pub(crate) fn attach(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let customer = params
        .get("customer")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::parameter_missing("customer"))?;
    ctx.load("customer", customer, Some("customer"))?;
    let id = resolve_method(ctx, id, "payment_method")?;
    let mut method = ctx.load("payment_method", &id, Some("payment_method"))?;
    match method.get("customer").and_then(Value::as_str) {
        Some(current) if current == customer => return Ok(method),
        Some(_) => {
            return Err(ApiError::invalid(
                "The payment method you provided has already been attached to a customer.",
            )
            .with_code("payment_method_unexpected_state"));
        }
        None => {}
    }
    let behaviour = ctx
        .store
        .cards
        .get(&id)
        .copied()
        .unwrap_or(CardBehaviour::Succeeds);
    if behaviour != CardBehaviour::AttachesThenDeclines
        && let Some(error) = decline(behaviour)
    {
        return Err(error.with_param("payment_method"));
    }
    method.insert("customer".into(), json!(customer));
    ctx.save(&method);
    ctx.event("payment_method.attached", &method, None);
    Ok(method)
}

/// `POST /v1/payment_methods/{id}/detach`: a detached method can never be used again.
pub(crate) fn detach(ctx: &mut Ctx<'_>, id: &str) -> Result<Map<String, Value>, ApiError> {
    let mut method = ctx.load("payment_method", id, Some("payment_method"))?;
    if method.get("customer").and_then(Value::as_str).is_none() {
        return Err(ApiError::invalid(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
        )
        .with_code("payment_method_unexpected_state"));
    }
    method.insert("customer".into(), Value::Null);
    ctx.save(&method);
    ctx.store.spent.insert(id.to_owned());
    ctx.event("payment_method.detached", &method, None);
    Ok(method)
}

/// The PaymentIntent that collects a finalized invoice: its amount due, waiting for a payment
/// method; returns its id.
pub(crate) fn intent_for_invoice(ctx: &mut Ctx<'_>, invoice: &Map<String, Value>) -> String {
    let mut intent = ctx.new_object("payment_intent");
    let id = str_of(&intent, "id").to_owned();
    let secret = ctx.store.random_text(25);
    let number = invoice.get("number").and_then(Value::as_str).unwrap_or("");
    let values = json!({
        "amount": invoice.get("amount_due"),
        "currency": invoice.get("currency"),
        "customer": invoice.get("customer"),
        "description": format!("Invoice {number}"),
        "invoice": invoice.get("id"),
        "client_secret": format!("{id}_secret_{secret}"),
        "capture_method": "automatic",
        "confirmation_method": "automatic",
        "payment_method_types": ["card"],
        "payment_method_options": card_options(None, true),
        "automatic_payment_methods": null,
        "payment_method": null,
        "amount_capturable": 0,
        "amount_received": 0,
        "status": "requires_payment_method",
    });
    if let Value::Object(values) = values {
        intent.extend(values);
    }
    ctx.save(&intent);
    ctx.event("payment_intent.created", &intent, None);
    id
}

/// Pays an invoice's PaymentIntent with a payment method: confirmed at once, off session.
pub(crate) fn charge_for_invoice(
    ctx: &mut Ctx<'_>,
    intent_id: &str,
    method_id: &str,
) -> Result<Map<String, Value>, ApiError> {
    let mut params = Map::new();
    params.insert("payment_method".into(), json!(method_id));
    params.insert("off_session".into(), json!(true));
    confirm(ctx, intent_id, &params)
}

/// A stored card PaymentMethod's behaviour, brand and last four digits.
fn stored_card(ctx: &Ctx<'_>, id: &str) -> Option<(CardBehaviour, String, String)> {
    let behaviour = ctx.store.cards.get(id).copied()?;
    let card = ctx.store.get("payment_method", id)?.get("card")?;
    let text = |key: &str| {
        card.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    Some((behaviour, text("brand"), text("last4")))
}

/// `POST /v1/charges` (the legacy API): a test token, card or customer pays at once.
pub(crate) fn create_charge(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let amount = call
        .int("amount")
        .ok_or_else(|| ApiError::parameter_missing("amount"))?;
    let currency = call
        .str("currency")
        .ok_or_else(|| ApiError::parameter_missing("currency"))?
        .to_lowercase();
    if let Some(customer) = call.str("customer") {
        ctx.load("customer", customer, Some("customer"))?;
    }
    let source = call.str("source");
    if source.is_none() && call.str("customer").is_none() {
        return Err(ApiError::invalid("Must provide source or customer.").with_param("source"));
    }
    let (behaviour, brand, last4) = source
        .and_then(token_card)
        .map(|card| (card.behaviour, card.brand.to_owned(), card.last4.to_owned()))
        .or_else(|| stored_card(ctx, source?))
        .unwrap_or((CardBehaviour::Succeeds, "visa".into(), "4242".into()));
    let capture = call
        .params
        .get("capture")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let mut charge = ctx.new_object("charge");
    let mut rest = call.params.clone();
    rest.remove("source");
    rest.remove("capture");
    objects::apply(&mut charge, Some(entity), &rest);
    let failure = match behaviour {
        CardBehaviour::AuthenticationRequired => Some(ApiError::card(
            "authentication_required",
            Some("authentication_required"),
            "Your card was declined. This transaction requires authentication.",
        )),
        other => decline(other),
    };
    let succeeded = failure.is_none();
    let fingerprint = ctx.store.random_text(16);
    let card = card_details(fingerprint, &brand, &last4, 12, current_year() + 3);
    let values = json!({
        "amount": amount,
        "currency": currency,
        "amount_captured": if succeeded && capture { amount } else { 0 },
        "amount_refunded": 0,
        "captured": succeeded && capture,
        "paid": succeeded,
        "refunded": false,
        "status": if succeeded { "succeeded" } else { "failed" },
        "failure_code": failure.as_ref().and_then(|f| f.code),
        "failure_message": failure.as_ref().map(|f| f.message.clone()),
        "payment_method_details": {"type": "card", "card": charge_card_details(&card)},
    });
    if let Value::Object(values) = values {
        charge.extend(values);
    }
    if succeeded {
        settle(ctx, &mut charge);
    }
    ctx.save(&charge);
    match failure {
        None => {
            ctx.event("charge.succeeded", &charge, None);
            Ok(Value::Object(charge))
        }
        Some(error) => {
            ctx.event("charge.failed", &charge, None);
            Err(error.with_extra("charge", charge["id"].clone()))
        }
    }
}

/// `POST /v1/charges/{id}/capture`: an uncaptured successful charge, up to its amount.
pub(crate) fn capture_charge(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut charge = ctx.load("charge", id, Some("charge"))?;
    if str_of(&charge, "status") != "succeeded" || charge.get("captured") == Some(&json!(true)) {
        return Err(ApiError::invalid(format!(
            "Charge {id} has already been captured or cannot be captured."
        ))
        .with_code("charge_already_captured"));
    }
    let total = int_of(&charge, "amount");
    let amount = params
        .get("amount")
        .and_then(Value::as_i64)
        .unwrap_or(total);
    if amount > total || amount <= 0 {
        return Err(ApiError::invalid(format!(
            "The amount to capture ({amount}) must be positive and at most the charge amount ({total})."
        ))
        .with_code("amount_too_large")
        .with_param("amount"));
    }
    charge.insert("captured".into(), json!(true));
    charge.insert("amount_captured".into(), json!(amount));
    charge.insert("amount_refunded".into(), json!(total - amount));
    ctx.save(&charge);
    ctx.event("charge.captured", &charge, None);
    Ok(charge)
}

/// Refunds part or all of a captured charge; returns the Refund.
fn refund(
    ctx: &mut Ctx<'_>,
    charge_id: &str,
    params: &Map<String, Value>,
    charge_param: &str,
) -> Result<Map<String, Value>, ApiError> {
    let mut charge = ctx.load("charge", charge_id, Some(charge_param))?;
    let captured = int_of(&charge, "amount_captured");
    let refunded = int_of(&charge, "amount_refunded");
    let remaining = captured - refunded;
    if str_of(&charge, "status") != "succeeded" || remaining <= 0 {
        return Err(ApiError::invalid(format!(
            "Charge {charge_id} has already been refunded or has nothing captured to refund."
        ))
        .with_code("charge_already_refunded"));
    }
    let amount = params
        .get("amount")
        .and_then(Value::as_i64)
        .unwrap_or(remaining);
    if amount > remaining || amount <= 0 {
        return Err(ApiError::invalid(format!(
            "Refund amount ({amount}) is greater than the unrefunded amount on the charge ({remaining})."
        ))
        .with_code("amount_too_large")
        .with_param("amount"));
    }
    let mut refund = ctx.new_object("refund");
    objects::apply(
        &mut refund,
        execute::entity_by_object(ctx.spec, "refund"),
        params,
    );
    let currency = charge.get("currency").cloned().unwrap_or(Value::Null);
    let refund_id = str_of(&refund, "id").to_owned();
    let transaction = balance_transaction(
        ctx,
        (-amount, currency.clone()),
        &refund_id,
        ("refund", "refund"),
    );
    let values = json!({
        "amount": amount,
        "balance_transaction": transaction,
        "charge": charge_id,
        "currency": currency,
        "payment_intent": charge.get("payment_intent"),
        "status": "succeeded",
    });
    if let Value::Object(values) = values {
        refund.extend(values);
    }
    ctx.save(&refund);
    ctx.event("refund.created", &refund, None);
    charge.insert("amount_refunded".into(), json!(refunded + amount));
    charge.insert("refunded".into(), json!(refunded + amount >= captured));
    ctx.save(&charge);
    ctx.event("charge.refunded", &charge, None);
    Ok(refund)
}

/// `POST /v1/refunds`: by `charge` or by `payment_intent` (its latest charge).
pub(crate) fn create_refund(
    ctx: &mut Ctx<'_>,
    _entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    // `/v1/charges/{charge}/refunds` names the charge in the path.
    let charge = call.matched.param("charge").or_else(|| call.str("charge"));
    let (charge_id, param) = match (charge, call.str("payment_intent")) {
        (Some(charge), _) => (charge.to_owned(), "charge"),
        (None, Some(intent)) => {
            let intent = ctx.load("payment_intent", intent, Some("payment_intent"))?;
            let charge = intent
                .get("latest_charge")
                .and_then(Value::as_str)
                .unwrap_or_default();
            (charge.to_owned(), "payment_intent")
        }
        (None, None) => {
            return Err(
                ApiError::invalid("One of `charge` or `payment_intent` is required.")
                    .with_code("parameter_missing")
                    .with_param("charge"),
            );
        }
    };
    let mut params = call.params.clone();
    params.remove("charge");
    params.remove("payment_intent");
    refund(ctx, &charge_id, &params, param).map(Value::Object)
}

/// `POST /v1/charges/{id}/refund` (the legacy verb): refunds and answers the Charge.
pub(crate) fn refund_charge(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    refund(ctx, id, params, "charge")?;
    ctx.load("charge", id, Some("charge"))
}
