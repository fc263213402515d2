//! The billing flows: invoice items summing into draft invoices, the invoice lifecycle (draft →
//! open → paid / void / uncollectible) and quotes (draft → open → accepted with an invoice, or
//! canceled). Synchronous; the caller holds the state lock.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::execute::{self, Call, Ctx};
use super::objects;
use super::payments;
use super::store::{Store, unix_now};
use crate::spec::model::EntitySpec;

const THIRTY_DAYS: i64 = 30 * 24 * 3600;

fn str_of<'m>(object: &'m Map<String, Value>, key: &str) -> &'m str {
    object.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn int_of(object: &Map<String, Value>, key: &str) -> i64 {
    object.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn id_of(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(id) => Some(id.clone()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

fn not_editable(message: &str) -> ApiError {
    ApiError::invalid(message).with_code("invoice_not_editable")
}

fn set_transition(object: &mut Map<String, Value>, key: &str) {
    let transitions = object
        .entry("status_transitions")
        .or_insert_with(|| json!({}));
    if !transitions.is_object() {
        *transitions = json!({});
    }
    transitions[key] = json!(unix_now());
}

fn param_name(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}[{key}]")
    }
}

/// Amount of an item from `amount`, or `unit_amount` / a stored price times `quantity`.
fn item_amount(
    ctx: &Ctx<'_>,
    params: &Map<String, Value>,
    param_prefix: &str,
) -> Result<(i64, i64, Value, Option<String>), ApiError> {
    let quantity = params.get("quantity").and_then(Value::as_i64).unwrap_or(1);
    if let Some(amount) = params.get("amount").and_then(Value::as_i64) {
        return Ok((amount, quantity, Value::Null, None));
    }
    if let Some(unit) = params.get("unit_amount").and_then(Value::as_i64) {
        return Ok((unit.saturating_mul(quantity), quantity, Value::Null, None));
    }
    if let Some(data) = params.get("price_data").and_then(Value::as_object) {
        let unit = data.get("unit_amount").and_then(Value::as_i64).unwrap_or(0);
        let currency = data
            .get("currency")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Ok((
            unit.saturating_mul(quantity),
            quantity,
            Value::Null,
            currency,
        ));
    }
    if let Some(price_id) = params.get("price").and_then(Value::as_str) {
        let price = ctx.load("price", price_id, Some(&param_name(param_prefix, "price")))?;
        let unit = int_of(&price, "unit_amount");
        let currency = price
            .get("currency")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Ok((
            unit.saturating_mul(quantity),
            quantity,
            Value::Object(price),
            currency,
        ));
    }
    Err(ApiError::parameter_missing(&param_name(
        param_prefix,
        "amount",
    )))
}

/// `POST /v1/invoiceitems`: attached to a draft invoice when `invoice` is given.
pub(crate) fn create_item(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let customer = call
        .str("customer")
        .ok_or_else(|| ApiError::parameter_missing("customer"))?;
    ctx.load("customer", customer, Some("customer"))?;
    if let Some(invoice_id) = call.str("invoice") {
        let invoice = ctx.load("invoice", invoice_id, Some("invoice"))?;
        if str_of(&invoice, "status") != "draft" {
            return Err(not_editable(
                "You can only add invoice items to draft invoices.",
            ));
        }
    }
    let (amount, quantity, price, currency) = item_amount(ctx, &call.params, "")?;
    let mut item = ctx.new_object("invoiceitem");
    objects::apply(&mut item, Some(entity), &call.params);
    let currency = call
        .str("currency")
        .map(str::to_owned)
        .or(currency)
        .unwrap_or_else(|| "usd".into());
    let values = json!({"amount": amount, "quantity": quantity, "price": price, "currency": currency,
                        "date": unix_now(), "invoice": call.str("invoice"), "customer": customer});
    if let Value::Object(values) = values {
        item.extend(values);
    }
    set_unit_and_period(&mut item);
    ctx.save(&item);
    ctx.event("invoiceitem.created", &item, None);
    if let Some(invoice_id) = call.str("invoice") {
        recompute(ctx, invoice_id);
    }
    Ok(Value::Object(item))
}

/// An invoice item's `unit_amount` (and its decimal string) from amount and quantity, and its
/// `period` (the day it was created, for a one-off item).
fn set_unit_and_period(item: &mut Map<String, Value>) {
    let amount = int_of(item, "amount");
    let quantity = int_of(item, "quantity").max(1);
    let unit = amount / quantity;
    item.insert("unit_amount".into(), json!(unit));
    item.insert("unit_amount_decimal".into(), json!(unit.to_string()));
    let date = item.get("date").cloned().unwrap_or(json!(unix_now()));
    item.insert("period".into(), json!({"start": date, "end": date}));
}

fn item_invoice_is_draft(ctx: &Ctx<'_>, item: &Map<String, Value>) -> bool {
    match item.get("invoice").and_then(Value::as_str) {
        Some(invoice) => ctx
            .store
            .get("invoice", invoice)
            .is_none_or(|i| str_of(i, "status") == "draft"),
        None => true,
    }
}

pub(crate) fn update_item(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let before = ctx.load("invoiceitem", &id, Some("invoiceitem"))?;
    if !item_invoice_is_draft(ctx, &before) {
        return Err(not_editable(
            "Invoice items on finalized invoices cannot be updated.",
        ));
    }
    let mut after = before.clone();
    objects::apply(&mut after, Some(entity), &call.params);
    if ["amount", "unit_amount", "quantity", "price"]
        .iter()
        .any(|k| call.params.contains_key(*k))
    {
        let mut basis = call.params.clone();
        basis
            .entry("quantity")
            .or_insert_with(|| before.get("quantity").cloned().unwrap_or(json!(1)));
        if let Ok((amount, quantity, _, _)) = item_amount(ctx, &basis, "") {
            after.insert("amount".into(), json!(amount));
            after.insert("quantity".into(), json!(quantity));
            set_unit_and_period(&mut after);
        }
    }
    let updated = execute::commit_update(ctx, &before, after);
    if let Some(invoice) = updated
        .get("invoice")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        recompute(ctx, &invoice);
    }
    Ok(Value::Object(updated))
}

pub(crate) fn delete_item(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let item = ctx.load("invoiceitem", &id, Some("invoiceitem"))?;
    if !item_invoice_is_draft(ctx, &item) {
        return Err(not_editable(
            "Invoice items on finalized invoices cannot be deleted.",
        ));
    }
    let result = execute::delete(ctx, entity, call)?;
    if let Some(invoice) = item.get("invoice").and_then(Value::as_str) {
        recompute(ctx, invoice);
    }
    Ok(result)
}

/// The invoice line of an invoice item: its id (`il_` + the item's) and the line object.
fn line_of(item: &Map<String, Value>) -> (String, Value) {
    let item_id = str_of(item, "id");
    let line_id = format!(
        "il_{}",
        item_id.split_once('_').map_or(item_id, |(_, rest)| rest)
    );
    let date = item.get("date").cloned().unwrap_or(Value::Null);
    let amount = item.get("amount").cloned().unwrap_or(json!(0));
    let unit = item
        .get("unit_amount_decimal")
        .cloned()
        .unwrap_or_else(|| json!(amount.to_string()));
    let metadata = match item.get("metadata") {
        Some(Value::Object(metadata)) => Value::Object(metadata.clone()),
        _ => json!({}),
    };
    let line = json!({
        "id": line_id, "object": "line_item", "amount": amount, "amount_excluding_tax": amount,
        "currency": item.get("currency"), "description": item.get("description"),
        "discount_amounts": [], "discountable": true, "discounts": [], "invoice_item": item_id,
        "livemode": false, "metadata": metadata, "period": {"start": date, "end": date},
        "price": item.get("price"), "proration": false, "proration_details": {"credited_items": null},
        "quantity": item.get("quantity"), "subscription": null, "tax_amounts": [], "tax_rates": [],
        "type": "invoiceitem", "unit_amount_excluding_tax": unit,
    });
    (line_id, line)
}

/// Rebuilds an invoice's lines and totals from the items attached to it.
fn recompute(ctx: &mut Ctx<'_>, invoice_id: &str) {
    let Some(mut invoice) = ctx.store.get("invoice", invoice_id).cloned() else {
        return;
    };
    let items: Vec<Map<String, Value>> = ctx
        .store
        .newest_first("invoiceitem")
        .filter(|(_, r)| r.object.get("invoice").and_then(Value::as_str) == Some(invoice_id))
        .map(|(_, r)| r.object.clone())
        .collect();
    let stale: Vec<String> = ctx
        .store
        .newest_first("line_item")
        .filter(|(_, r)| r.parents.iter().any(|(_, p)| p == invoice_id))
        .map(|(id, _)| id.clone())
        .collect();
    for id in stale {
        ctx.store.remove("line_item", &id);
    }
    let mut lines = Vec::new();
    for item in items.iter().rev() {
        let (line_id, line) = line_of(item);
        if let Value::Object(line) = line.clone() {
            ctx.store.insert(
                "line_item",
                &line_id,
                line,
                vec![("invoice".into(), invoice_id.to_owned())],
            );
        }
        lines.push(line);
    }
    let total = items
        .iter()
        .map(|i| int_of(i, "amount"))
        .fold(0i64, i64::saturating_add);
    let paid = int_of(&invoice, "amount_paid");
    invoice.insert(
        "lines".into(),
        json!({"object": "list", "data": lines, "has_more": false, "url": format!("/v1/invoices/{invoice_id}/lines")}),
    );
    for key in [
        "subtotal",
        "subtotal_excluding_tax",
        "total",
        "total_excluding_tax",
        "amount_due",
    ] {
        invoice.insert(key.into(), json!(total));
    }
    invoice.insert("amount_remaining".into(), json!((total - paid).max(0)));
    ctx.save(&invoice);
}

fn new_invoice(
    ctx: &mut Ctx<'_>,
    customer_id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let customer = ctx.load("customer", customer_id, Some("customer"))?;
    let mut invoice = ctx.new_object("invoice");
    objects::apply(
        &mut invoice,
        execute::entity_by_object(ctx.spec, "invoice"),
        params,
    );
    let defaults = json!({
        "customer": customer_id,
        "customer_email": customer.get("email"),
        "customer_name": customer.get("name"),
        "status": "draft",
        "paid": false,
        "paid_out_of_band": false,
        "attempted": false,
        "attempt_count": 0,
        "number": null,
        "billing_reason": "manual",
        "amount_paid": 0,
        "charge": null,
        "payment_intent": null,
        "status_transitions": {"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
    });
    if let Value::Object(defaults) = defaults {
        invoice.extend(defaults);
    }
    for (key, default) in [
        ("currency", "usd"),
        ("collection_method", "charge_automatically"),
    ] {
        if invoice
            .get(key)
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            invoice.insert(key.into(), json!(default));
        }
    }
    ctx.save(&invoice);
    Ok(invoice)
}

/// `POST /v1/invoices`: a draft; pending items join it with `pending_invoice_items_behavior=include`.
pub(crate) fn create_invoice(ctx: &mut Ctx<'_>, call: &Call) -> Result<Value, ApiError> {
    let customer = call
        .str("customer")
        .ok_or_else(|| ApiError::parameter_missing("customer"))?;
    let invoice = new_invoice(ctx, customer, &call.params)?;
    let id = str_of(&invoice, "id").to_owned();
    if call.str("pending_invoice_items_behavior") == Some("include") {
        let pending: Vec<String> = ctx
            .store
            .newest_first("invoiceitem")
            .filter(|(_, r)| {
                str_of(&r.object, "customer") == customer
                    && r.object.get("invoice").is_none_or(Value::is_null)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for item_id in pending {
            if let Some(item) = ctx.store.get_mut("invoiceitem", &item_id) {
                item.insert("invoice".into(), json!(id));
            }
        }
    }
    recompute(ctx, &id);
    let invoice = ctx.load("invoice", &id, None)?;
    ctx.event("invoice.created", &invoice, None);
    Ok(Value::Object(invoice))
}

/// Only drafts change freely; finalized invoices accept metadata-like fields only.
pub(crate) fn update_invoice(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let invoice = ctx.load("invoice", &id, Some("invoice"))?;
    let free = [
        "metadata",
        "description",
        "footer",
        "auto_advance",
        "expand",
    ];
    if str_of(&invoice, "status") != "draft"
        && call.params.keys().any(|k| !free.contains(&k.as_str()))
    {
        return Err(not_editable(
            "Finalized invoices can't be updated in this way.",
        ));
    }
    execute::update(ctx, entity, call)
}

pub(crate) fn delete_invoice(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity)).to_owned();
    let invoice = ctx.load("invoice", &id, Some("invoice"))?;
    if str_of(&invoice, "status") != "draft" {
        return Err(not_editable("You can only delete draft invoices."));
    }
    execute::delete(ctx, entity, call)
}

fn mark_paid(ctx: &mut Ctx<'_>, invoice: &mut Map<String, Value>) {
    let due = int_of(invoice, "amount_due");
    invoice.insert("status".into(), json!("paid"));
    invoice.insert("paid".into(), json!(true));
    invoice.insert("amount_paid".into(), json!(due));
    invoice.insert("amount_remaining".into(), json!(0));
    set_transition(invoice, "paid_at");
    ctx.save(invoice);
    ctx.event("invoice.paid", invoice, None);
    ctx.event("invoice.payment_succeeded", invoice, None);
}

/// `POST /v1/invoices/{id}/finalize`: draft → open with a number; a zero total is paid at once.
pub(crate) fn finalize_invoice(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut invoice = ctx.load("invoice", id, Some("invoice"))?;
    if str_of(&invoice, "status") != "draft" {
        return Err(not_editable(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
        ));
    }
    let customer_id = str_of(&invoice, "customer").to_owned();
    let mut prefix = ctx
        .store
        .get("customer", &customer_id)
        .and_then(|c| {
            c.get("invoice_prefix")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    if prefix.is_empty() {
        prefix = ctx.store.random_hex_upper(8);
        if let Some(customer) = ctx.store.get_mut("customer", &customer_id) {
            customer.insert("invoice_prefix".into(), json!(prefix));
        }
    }
    // The customer's `next_invoice_sequence` numbers its invoices, as in Stripe.
    let sequence = match ctx.store.get_mut("customer", &customer_id) {
        Some(customer) => {
            let next = customer
                .get("next_invoice_sequence")
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
                .unwrap_or(1);
            customer.insert("next_invoice_sequence".into(), json!(next + 1));
            next
        }
        None => 1,
    };
    let number = format!("{prefix}-{sequence:04}");
    if let Some(auto_advance) = params.get("auto_advance") {
        invoice.insert("auto_advance".into(), auto_advance.clone());
    }
    invoice.insert("number".into(), json!(number));
    invoice.insert("status".into(), json!("open"));
    invoice.insert("effective_at".into(), json!(unix_now()));
    if str_of(&invoice, "collection_method") == "send_invoice"
        && invoice.get("due_date").is_none_or(Value::is_null)
    {
        invoice.insert("due_date".into(), json!(unix_now() + THIRTY_DAYS));
    }
    set_transition(&mut invoice, "finalized_at");
    invoice.insert(
        "hosted_invoice_url".into(),
        json!(format!("{}/hosted/invoices/{id}", ctx.base_url)),
    );
    invoice.insert(
        "invoice_pdf".into(),
        json!(format!("{}/hosted/invoices/{id}/pdf", ctx.base_url)),
    );
    if int_of(&invoice, "amount_due") > 0 {
        // As Stripe does: the PaymentIntent that collects the invoice exists from finalization.
        let intent = payments::intent_for_invoice(ctx, &invoice);
        invoice.insert("payment_intent".into(), json!(intent));
    }
    ctx.save(&invoice);
    ctx.event("invoice.finalized", &invoice, None);
    if int_of(&invoice, "amount_due") == 0 {
        mark_paid(ctx, &mut invoice);
    }
    Ok(invoice)
}

/// Stripe pays an open or uncollectible invoice; a paid one, a draft or a void one is refused.
fn check_payable(invoice: &Map<String, Value>) -> Result<(), ApiError> {
    match str_of(invoice, "status") {
        "open" | "uncollectible" => Ok(()),
        "paid" => {
            Err(ApiError::invalid("Invoice is already paid.").with_code("invoice_already_paid"))
        }
        status => Err(ApiError::invalid(format!(
            "You can only pay an invoice that is open or uncollectible; this one is {status}."
        ))),
    }
}

/// The payment method an invoice is paid with: the one given, else the invoice's default, the
/// customer's invoice default, then the customer's default source.
fn payment_method_for(
    ctx: &mut Ctx<'_>,
    invoice: &Map<String, Value>,
    params: &Map<String, Value>,
) -> Result<String, ApiError> {
    if let Some(method) = params.get("payment_method").and_then(Value::as_str) {
        return payments::resolve_method(ctx, method, "payment_method");
    }
    let customer = ctx
        .store
        .get("customer", str_of(invoice, "customer"))
        .cloned()
        .unwrap_or_default();
    id_of(invoice.get("default_payment_method"))
        .or_else(|| {
            id_of(
                customer
                    .get("invoice_settings")
                    .and_then(|s| s.get("default_payment_method")),
            )
        })
        .or_else(|| id_of(customer.get("default_source")))
        .ok_or_else(|| {
            ApiError::invalid(
                "This customer has no attached payment source or default payment method. Please \
                 consider adding a default payment method.",
            )
        })
}

/// `POST /v1/invoices/{id}/pay`: open or uncollectible invoices, out of band or with a card.
pub(crate) fn pay_invoice(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut invoice = ctx.load("invoice", id, Some("invoice"))?;
    check_payable(&invoice)?;
    if params.get("paid_out_of_band").and_then(Value::as_bool) == Some(true) {
        invoice.insert("paid_out_of_band".into(), json!(true));
        mark_paid(ctx, &mut invoice);
        return Ok(invoice);
    }
    if int_of(&invoice, "amount_due") == 0 {
        mark_paid(ctx, &mut invoice);
        return Ok(invoice);
    }
    let method = payment_method_for(ctx, &invoice, params)?;
    invoice.insert("attempted".into(), json!(true));
    invoice.insert(
        "attempt_count".into(),
        json!(int_of(&invoice, "attempt_count") + 1),
    );
    let intent = match invoice.get("payment_intent").and_then(Value::as_str) {
        Some(intent) => intent.to_owned(),
        None => payments::intent_for_invoice(ctx, &invoice),
    };
    match payments::charge_for_invoice(ctx, &intent, &method) {
        Ok(intent) => {
            invoice.insert("payment_intent".into(), intent["id"].clone());
            invoice.insert(
                "charge".into(),
                intent.get("latest_charge").cloned().unwrap_or(Value::Null),
            );
            mark_paid(ctx, &mut invoice);
            Ok(invoice)
        }
        Err(error) => {
            if let Some(intent) = error
                .extra
                .get("payment_intent")
                .and_then(|pi| pi.get("id"))
            {
                invoice.insert("payment_intent".into(), intent.clone());
            }
            ctx.save(&invoice);
            ctx.event("invoice.payment_failed", &invoice, None);
            Err(error)
        }
    }
}

/// `POST /v1/invoices/{id}/void`: open or uncollectible only.
pub(crate) fn void_invoice(ctx: &mut Ctx<'_>, id: &str) -> Result<Map<String, Value>, ApiError> {
    let mut invoice = ctx.load("invoice", id, Some("invoice"))?;
    let status = str_of(&invoice, "status").to_owned();
    if !matches!(status.as_str(), "open" | "uncollectible") {
        return Err(ApiError::invalid(format!(
            "You can only void an open or uncollectible invoice; this one is {status}."
        )));
    }
    invoice.insert("status".into(), json!("void"));
    invoice.insert("amount_remaining".into(), json!(0));
    set_transition(&mut invoice, "voided_at");
    ctx.save(&invoice);
    ctx.event("invoice.voided", &invoice, None);
    Ok(invoice)
}

/// `POST /v1/invoices/{id}/mark_uncollectible`: open only.
pub(crate) fn mark_uncollectible(
    ctx: &mut Ctx<'_>,
    id: &str,
) -> Result<Map<String, Value>, ApiError> {
    let mut invoice = ctx.load("invoice", id, Some("invoice"))?;
    let status = str_of(&invoice, "status").to_owned();
    if status != "open" {
        return Err(ApiError::invalid(format!(
            "You can only mark an open invoice as uncollectible; this one is {status}."
        )));
    }
    invoice.insert("status".into(), json!("uncollectible"));
    set_transition(&mut invoice, "marked_uncollectible_at");
    ctx.save(&invoice);
    ctx.event("invoice.marked_uncollectible", &invoice, None);
    Ok(invoice)
}

/// `POST /v1/invoices/{id}/send`: open `send_invoice` invoices only (no email leaves the sandbox).
pub(crate) fn send_invoice(ctx: &mut Ctx<'_>, id: &str) -> Result<Map<String, Value>, ApiError> {
    let invoice = ctx.load("invoice", id, Some("invoice"))?;
    if str_of(&invoice, "status") != "open"
        || str_of(&invoice, "collection_method") != "send_invoice"
    {
        return Err(ApiError::invalid(
            "You can only send open invoices whose collection_method is send_invoice.",
        ));
    }
    ctx.event("invoice.sent", &invoice, None);
    Ok(invoice)
}

/// `POST /v1/quotes`: a draft whose totals come from its line items' prices. The line items are
/// listed at `/v1/quotes/{id}/line_items` and shown on the quote only with `expand[]=line_items`.
pub(crate) fn create_quote(ctx: &mut Ctx<'_>, call: &Call) -> Result<Value, ApiError> {
    if let Some(customer) = call.str("customer") {
        ctx.load("customer", customer, Some("customer"))?;
    }
    let mut lines = Vec::new();
    let mut currency = call.str("currency").map(str::to_owned);
    if let Some(Value::Array(items)) = call.params.get("line_items") {
        for (index, item) in items.iter().enumerate() {
            let params = item.as_object().cloned().unwrap_or_default();
            let (amount, quantity, price, price_currency) =
                item_amount(ctx, &params, &format!("line_items[{index}]"))?;
            currency = currency.or(price_currency);
            let description = price
                .get("product")
                .and_then(Value::as_str)
                .and_then(|product| ctx.store.get("product", product))
                .and_then(|product| product.get("name").and_then(Value::as_str))
                .unwrap_or("Quote line")
                .to_owned();
            let line_id = ctx.store.new_id("li");
            lines.push(json!({
                "id": line_id, "object": "item", "amount_discount": 0, "amount_subtotal": amount,
                "amount_tax": 0, "amount_total": amount,
                "currency": currency.clone().unwrap_or_else(|| "usd".into()),
                "description": description, "price": price, "quantity": quantity,
            }));
        }
    }
    let total = lines
        .iter()
        .filter_map(|l| l["amount_total"].as_i64())
        .fold(0i64, i64::saturating_add);
    let mut quote = ctx.new_object("quote");
    let mut rest = call.params.clone();
    rest.remove("line_items");
    objects::apply(
        &mut quote,
        execute::entity_by_object(ctx.spec, "quote"),
        &rest,
    );
    let id = str_of(&quote, "id").to_owned();
    let no_discounts = json!({"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0});
    let values = json!({
        "status": "draft", "number": null, "invoice": null, "amount_subtotal": total, "amount_total": total,
        "currency": currency.unwrap_or_else(|| "usd".into()),
        "expires_at": call.int("expires_at").unwrap_or(unix_now() + THIRTY_DAYS),
        "status_transitions": {"accepted_at": null, "canceled_at": null, "finalized_at": null},
        "total_details": no_discounts,
        "computed": {"recurring": null, "upfront": {"amount_subtotal": total, "amount_total": total, "total_details": no_discounts}},
    });
    if let Value::Object(values) = values {
        quote.extend(values);
    }
    if quote
        .get("collection_method")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        quote.insert("collection_method".into(), json!("charge_automatically"));
    }
    for line in &lines {
        if let (Value::Object(line), Some(line_id)) = (line, line["id"].as_str()) {
            ctx.store.insert(
                "item",
                line_id,
                line.clone(),
                vec![("quote".into(), id.clone())],
            );
        }
    }
    ctx.store.quote_lines.insert(id.clone(), lines);
    ctx.save(&quote);
    ctx.event("quote.created", &quote, None);
    Ok(Value::Object(quote))
}

/// A quote's line items as Stripe's list object (for `expand[]=line_items`).
pub(crate) fn quote_line_list(store: &Store, quote_id: &str) -> Value {
    let lines = store.quote_lines.get(quote_id).cloned().unwrap_or_default();
    json!({"object": "list", "data": lines, "has_more": false, "url": format!("/v1/quotes/{quote_id}/line_items")})
}

/// `POST /v1/quotes/{id}/finalize`: draft → open with a number; needs a customer.
pub(crate) fn finalize_quote(
    ctx: &mut Ctx<'_>,
    id: &str,
    params: &Map<String, Value>,
) -> Result<Map<String, Value>, ApiError> {
    let mut quote = ctx.load("quote", id, Some("quote"))?;
    let status = str_of(&quote, "status").to_owned();
    if status != "draft" {
        return Err(ApiError::invalid(format!(
            "This quote cannot be finalized because it has a status of {status}."
        )));
    }
    if quote.get("customer").is_none_or(Value::is_null) {
        return Err(
            ApiError::invalid("A customer is required to finalize a quote.").with_param("customer"),
        );
    }
    ctx.store.quote_sequence += 1;
    let number = format!(
        "QT-{}-{:04}",
        ctx.store.random_hex_upper(8),
        ctx.store.quote_sequence
    );
    quote.insert("number".into(), json!(number));
    quote.insert("status".into(), json!("open"));
    if let Some(expires_at) = params.get("expires_at") {
        quote.insert("expires_at".into(), expires_at.clone());
    }
    set_transition(&mut quote, "finalized_at");
    ctx.save(&quote);
    ctx.event("quote.finalized", &quote, None);
    Ok(quote)
}

/// `POST /v1/quotes/{id}/accept`: open → accepted, creating a draft invoice from its lines.
pub(crate) fn accept_quote(ctx: &mut Ctx<'_>, id: &str) -> Result<Map<String, Value>, ApiError> {
    let mut quote = ctx.load("quote", id, Some("quote"))?;
    let status = str_of(&quote, "status").to_owned();
    if status != "open" {
        return Err(ApiError::invalid(format!(
            "This quote cannot be accepted because it has a status of {status}."
        )));
    }
    let customer = str_of(&quote, "customer").to_owned();
    let mut params = Map::new();
    params.insert(
        "currency".into(),
        quote.get("currency").cloned().unwrap_or(json!("usd")),
    );
    params.insert(
        "collection_method".into(),
        quote
            .get("collection_method")
            .cloned()
            .unwrap_or(Value::Null),
    );
    let mut invoice = new_invoice(ctx, &customer, &params)?;
    let invoice_id = str_of(&invoice, "id").to_owned();
    invoice.insert("quote".into(), json!(id));
    ctx.save(&invoice);
    for line in ctx.store.quote_lines.get(id).cloned().unwrap_or_default() {
        let mut item = ctx.new_object("invoiceitem");
        let values = json!({"amount": line["amount_total"], "quantity": line["quantity"], "price": line["price"],
                            "currency": line["currency"], "customer": customer, "invoice": invoice_id, "date": unix_now()});
        if let Value::Object(values) = values {
            item.extend(values);
        }
        set_unit_and_period(&mut item);
        ctx.save(&item);
        ctx.event("invoiceitem.created", &item, None);
    }
    recompute(ctx, &invoice_id);
    let invoice = ctx.load("invoice", &invoice_id, None)?;
    ctx.event("invoice.created", &invoice, None);
    quote.insert("status".into(), json!("accepted"));
    quote.insert("invoice".into(), json!(invoice_id));
    set_transition(&mut quote, "accepted_at");
    ctx.save(&quote);
    ctx.event("quote.accepted", &quote, None);
    Ok(quote)
}

/// `POST /v1/quotes/{id}/cancel`: draft or open only.
pub(crate) fn cancel_quote(ctx: &mut Ctx<'_>, id: &str) -> Result<Map<String, Value>, ApiError> {
    let mut quote = ctx.load("quote", id, Some("quote"))?;
    let status = str_of(&quote, "status").to_owned();
    if !matches!(status.as_str(), "draft" | "open") {
        return Err(ApiError::invalid(format!(
            "This quote cannot be canceled because it has a status of {status}."
        )));
    }
    quote.insert("status".into(), json!("canceled"));
    set_transition(&mut quote, "canceled_at");
    ctx.save(&quote);
    ctx.event("quote.canceled", &quote, None);
    Ok(quote)
}
