//! Executing one decoded Stripe API call against the store: the generic create / retrieve /
//! update / delete / list / search of every entity in the spec, and dispatch to the modelled
//! flows (`payments`, `setup`, `billing`); Events are recorded through `events`. Synchronous; the caller holds the state lock.

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::routes::{Matched, Target};
use super::store::{Store, unix_now};
use super::{billing, currency, defaults, events, json_schema, objects, payments, search, setup};
use crate::spec::model::{ConnectorSpec, EntitySpec, OperationKind};

/// Parameters a list endpoint always understands, besides its filters.
const LIST_RESERVED: &[&str] = &["limit", "starting_after", "ending_before", "expand"];

/// Everything an operation needs besides its own parameters.
pub(crate) struct Ctx<'a> {
    pub spec: &'a ConnectorSpec,
    pub store: &'a mut Store,
    pub request_id: &'a str,
    pub idempotency_key: Option<&'a str>,
    /// How long new objects stay out of search results.
    pub search_delay: std::time::Duration,
    /// The API version the request is served at (its `Stripe-Version`, or the spec's).
    pub api_version: &'a str,
    /// `http://host:port` of the sandbox as the caller reached it, for hosted pages' URLs.
    pub base_url: &'a str,
    /// The simulated clock of new objects' `created`, when configured.
    pub clock: Option<super::config::SimulatedClock>,
}

/// The API version from which PaymentIntents and SetupIntents created without
/// `payment_method_types` have automatic payment methods enabled.
const AUTOMATIC_PAYMENT_METHODS_SINCE: &str = "2023-08-16";

impl Ctx<'_> {
    /// True when the request's API version enables automatic payment methods by default.
    pub fn automatic_payment_methods_by_default(&self) -> bool {
        self.api_version >= AUTOMATIC_PAYMENT_METHODS_SINCE
    }
}

/// One decoded request.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub matched: Matched,
    /// The request path (used as a list's `url`).
    pub path: String,
    pub params: Map<String, Value>,
}

impl Call {
    pub fn str(&self, key: &str) -> Option<&str> {
        self.params.get(key).and_then(Value::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        self.params
            .get(key)
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }

    pub fn int(&self, key: &str) -> Option<i64> {
        self.params.get(key).and_then(Value::as_i64)
    }

    pub fn expand(&self) -> Vec<String> {
        match self.params.get("expand") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        }
    }

    /// The id in the path: the item placeholder of an entity, or an action's last placeholder.
    pub fn object_id(&self, entity: Option<&EntitySpec>) -> &str {
        let by_name = entity
            .and_then(|e| e.item_id_param.as_deref())
            .and_then(|name| self.matched.param(name));
        by_name
            .or_else(|| self.matched.params.last().map(|(_, v)| v.as_str()))
            .unwrap_or_default()
    }
}

pub(crate) fn entity_by_object<'s>(
    spec: &'s ConnectorSpec,
    object_type: &str,
) -> Option<&'s EntitySpec> {
    spec.entities
        .iter()
        .find(|e| e.object == object_type && e.parents.is_empty())
        .or_else(|| spec.entities.iter().find(|e| e.object == object_type))
}

fn entity_by_name<'s>(spec: &'s ConnectorSpec, name: &str) -> Option<&'s EntitySpec> {
    spec.entities.iter().find(|e| e.name == name)
}

/// Id prefix of an object type: the spec's, Stripe's well-known one, or the type itself.
pub(crate) fn prefix_for(spec: &ConnectorSpec, object_type: &str) -> String {
    if let Some(prefix) = entity_by_object(spec, object_type).and_then(|e| e.id_prefix.clone()) {
        return prefix;
    }
    let known = match object_type {
        "customer" => "cus",
        "payment_intent" => "pi",
        "payment_method" => "pm",
        "charge" => "ch",
        "invoice" => "in",
        "invoiceitem" => "ii",
        "line_item" => "il",
        "quote" => "qt",
        "event" => "evt",
        "price" => "price",
        "product" => "prod",
        "subscription" => "sub",
        "refund" => "re",
        other => other,
    };
    known.to_owned()
}

impl Ctx<'_> {
    /// A new object of `object_type` shaped by its entity (when the spec has one).
    pub fn new_object(&mut self, object_type: &str) -> Map<String, Value> {
        let id = self
            .store
            .new_id_for(object_type, &prefix_for(self.spec, object_type));
        let created = self
            .clock
            .map_or_else(unix_now, |clock| clock.at(self.store.object_count()));
        objects::blank(
            entity_by_object(self.spec, object_type),
            object_type,
            &id,
            created,
        )
    }

    /// A stored object, cloned, or Stripe's 404.
    pub fn load(
        &self,
        object_type: &str,
        id: &str,
        param: Option<&str>,
    ) -> Result<Map<String, Value>, ApiError> {
        self.store
            .get(object_type, id)
            .cloned()
            .ok_or_else(|| ApiError::no_such(object_type, id, param))
    }

    /// Stores (inserts or replaces) an object, keeping its parents when it already existed.
    pub fn save(&mut self, object: &Map<String, Value>) {
        let (Some(object_type), Some(id)) = (
            object.get("object").and_then(Value::as_str),
            object.get("id").and_then(Value::as_str),
        ) else {
            return;
        };
        match self.store.get_mut(object_type, id) {
            Some(existing) => *existing = object.clone(),
            None => {
                let (object_type, id) = (object_type.to_owned(), id.to_owned());
                self.store
                    .insert(&object_type, &id, object.clone(), Vec::new());
            }
        }
    }

    /// Records an Event of `event_type` about `object` (see `events`).
    pub fn event(
        &mut self,
        event_type: &str,
        object: &Map<String, Value>,
        previous: Option<Map<String, Value>>,
    ) {
        events::record(self, event_type, object, previous);
    }
}

/// Runs one call and applies `expand[]` to its result.
pub(crate) fn execute(ctx: &mut Ctx<'_>, call: &Call) -> Result<Value, ApiError> {
    let spec = ctx.spec;
    if let Some(currency) = call.str("currency") {
        currency::check(&currency.to_lowercase(), "currency")?;
    }
    let mut result = match call.matched.target {
        Target::Entity { entity, kind } => {
            let entity = &spec.entities[entity];
            let object = entity.object.as_str();
            match kind {
                OperationKind::List => list(ctx, &entity.object, Some(entity), call)?,
                OperationKind::Get => retrieve(ctx, entity, call)?,
                OperationKind::Create => match object {
                    "payment_intent" => payments::create_intent(ctx, entity, call)?,
                    "payment_method" => payments::create_method(ctx, entity, call)?,
                    "setup_intent" => setup::create_intent(ctx, entity, call)?,
                    "invoice" => billing::create_invoice(ctx, call)?,
                    "invoiceitem" => billing::create_item(ctx, entity, call)?,
                    "quote" => billing::create_quote(ctx, call)?,
                    "charge" => payments::create_charge(ctx, entity, call)?,
                    "refund" => payments::create_refund(ctx, entity, call)?,
                    _ => Value::Object(create(ctx, entity, call)?),
                },
                OperationKind::Update => match object {
                    "payment_intent" => payments::update_intent(ctx, entity, call)?,
                    "setup_intent" => setup::update_intent(ctx, entity, call)?,
                    "invoice" => billing::update_invoice(ctx, entity, call)?,
                    "invoiceitem" => billing::update_item(ctx, entity, call)?,
                    _ => update(ctx, entity, call)?,
                },
                OperationKind::Delete => match object {
                    "invoice" => billing::delete_invoice(ctx, entity, call)?,
                    "invoiceitem" => billing::delete_item(ctx, entity, call)?,
                    _ => delete(ctx, entity, call)?,
                },
            }
        }
        Target::Search { entity } => search_entity(ctx, &spec.entities[entity], call)?,
        Target::Action { action } => {
            let action = &spec.actions[action];
            verb(ctx, &action.name, &action.operation.path, call)?
        }
        Target::EventList => list(ctx, "event", None, call)?,
        Target::EventGet => {
            let id = call.object_id(None);
            Value::Object(ctx.load("event", id, Some("id"))?)
        }
    };
    let expand = call.expand();
    include_expanded(ctx, &mut result, &expand);
    objects::expand(ctx.store, &mut result, &expand)?;
    Ok(result)
}

/// A Customer's own objects behind its expandable lists (`sources`, `subscriptions`, `tax_ids`),
/// newest first.
fn customer_children(store: &Store, customer: &str, field: &str) -> Vec<Value> {
    let types: &[&str] = match field {
        "sources" => &["card", "bank_account", "source"],
        "subscriptions" => &["subscription"],
        "tax_ids" => &["tax_id"],
        _ => &[],
    };
    let wanted = ("customer".to_owned(), customer.to_owned());
    types
        .iter()
        .flat_map(|object_type| store.newest_first(object_type))
        .filter(|(_, record)| has_parent(&record.parents, &record.object, &wanted))
        .map(|(_, record)| Value::Object(record.object.clone()))
        .collect()
}

/// Adds the fields Stripe returns only when asked for (`expand[]=line_items` on a Quote,
/// `expand[]=sources` on a Customer), on an object or on each object of a list (`data.…`).
fn include_expanded(ctx: &Ctx<'_>, result: &mut Value, paths: &[String]) {
    for path in paths {
        let (in_list, field) = match path.split('.').collect::<Vec<_>>().as_slice() {
            ["data", field, ..] => (true, (*field).to_owned()),
            [field, ..] => (false, (*field).to_owned()),
            [] => continue,
        };
        let targets: Vec<&mut Value> = match (in_list, result.get_mut("data")) {
            (true, Some(Value::Array(items))) => items.iter_mut().collect(),
            (false, _) => vec![&mut *result],
            _ => Vec::new(),
        };
        for target in targets {
            let Value::Object(object) = target else {
                continue;
            };
            let object_type = object.get("object").and_then(Value::as_str).unwrap_or("");
            if object.contains_key(&field) || !objects::is_omitted(object_type, &field) {
                continue;
            }
            let id = object.get("id").and_then(Value::as_str).unwrap_or("");
            let value = if object_type == "quote" && field == "line_items" {
                billing::quote_line_list(ctx.store, id)
            } else {
                let Some(mut value) = entity_by_object(ctx.spec, object_type)
                    .and_then(|entity| objects::included_default(entity, &field, id))
                else {
                    continue;
                };
                if object_type == "customer"
                    && let Some(Value::Array(data)) = value.get_mut("data")
                {
                    *data = customer_children(ctx.store, id, &field);
                }
                value
            };
            object.insert(field.clone(), value);
        }
    }
}

/// The path's shape with placeholders erased: `/v1/payment_intents/{}/confirm`.
fn shape(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "{}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn verb(ctx: &mut Ctx<'_>, name: &str, path: &str, call: &Call) -> Result<Value, ApiError> {
    let id = call.object_id(None).to_owned();
    let object = match shape(path).as_str() {
        "/v1/payment_intents/{}/confirm" => payments::confirm(ctx, &id, &call.params)?,
        "/v1/payment_intents/{}/capture" => payments::capture(ctx, &id, &call.params)?,
        "/v1/payment_intents/{}/cancel" => payments::cancel(ctx, &id, &call.params)?,
        "/v1/charges/{}/capture" => payments::capture_charge(ctx, &id, &call.params)?,
        "/v1/charges/{}/refund" => payments::refund_charge(ctx, &id, &call.params)?,
        "/v1/setup_intents/{}/confirm" => setup::confirm(ctx, &id, &call.params)?,
        "/v1/setup_intents/{}/cancel" => setup::cancel(ctx, &id, &call.params)?,
        "/v1/payment_methods/{}/attach" => payments::attach(ctx, &id, &call.params)?,
        "/v1/payment_methods/{}/detach" => payments::detach(ctx, &id)?,
        "/v1/invoices/{}/finalize" => billing::finalize_invoice(ctx, &id, &call.params)?,
        "/v1/invoices/{}/pay" => billing::pay_invoice(ctx, &id, &call.params)?,
        "/v1/invoices/{}/void" => billing::void_invoice(ctx, &id)?,
        "/v1/invoices/{}/mark_uncollectible" => billing::mark_uncollectible(ctx, &id)?,
        "/v1/invoices/{}/send" => billing::send_invoice(ctx, &id)?,
        "/v1/quotes/{}/finalize" => billing::finalize_quote(ctx, &id, &call.params)?,
        "/v1/quotes/{}/accept" => billing::accept_quote(ctx, &id)?,
        "/v1/quotes/{}/cancel" => billing::cancel_quote(ctx, &id)?,
        _ => {
            return Err(ApiError::invalid(format!(
                "The sandbox does not model {name} ({path}); use Stripe's test mode for it."
            ))
            .with_code("sandbox_unsupported"));
        }
    };
    Ok(Value::Object(object))
}

/// Parent ids from the path, each checked to exist when its entity is known.
fn parents(
    ctx: &Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for parent in &entity.parents {
        let Some(id) = call.matched.param(&parent.param) else {
            continue;
        };
        if let Some(parent_entity) = parent
            .entity
            .as_deref()
            .and_then(|name| entity_by_name(ctx.spec, name))
            && ctx.store.get(&parent_entity.object, id).is_none()
        {
            return Err(ApiError::no_such(
                &parent_entity.object,
                id,
                Some(&parent.param),
            ));
        }
        out.push((parent.param.clone(), id.to_owned()));
    }
    Ok(out)
}

/// A record belongs to a parent when it was created under it or names it (a PaymentMethod's
/// `customer` puts it in `/v1/customers/{customer}/payment_methods`).
fn has_parent(
    parents: &[(String, String)],
    object: &Map<String, Value>,
    wanted: &(String, String),
) -> bool {
    parents.contains(wanted)
        || object.get(&wanted.0).and_then(Value::as_str) == Some(wanted.1.as_str())
}

/// Ids given for reference fields must name stored objects (Stripe's `No such customer`).
pub(crate) fn check_references(
    ctx: &Ctx<'_>,
    entity: &EntitySpec,
    params: &Map<String, Value>,
) -> Result<(), ApiError> {
    for field in &entity.fields {
        let (Some(reference), Some(Value::String(id))) =
            (&field.reference, params.get(&field.source))
        else {
            continue;
        };
        let Some(target) = entity_by_name(ctx.spec, reference) else {
            continue;
        };
        let prefix = prefix_for(ctx.spec, &target.object);
        if id.starts_with(&format!("{prefix}_")) && ctx.store.get(&target.object, id).is_none() {
            return Err(ApiError::no_such(&target.object, id, Some(&field.source)));
        }
    }
    Ok(())
}

/// Generic create: a full-shaped object with the given fields, stored under its parents.
pub(crate) fn create(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Map<String, Value>, ApiError> {
    let parents = parents(ctx, entity, call)?;
    check_references(ctx, entity, &call.params)?;
    let mut object = ctx.new_object(&entity.object);
    for (param, id) in &parents {
        object.insert(param.clone(), Value::String(id.clone()));
    }
    objects::apply(&mut object, Some(entity), &call.params);
    embed_objects(ctx, entity, &mut object)?;
    defaults::complete_new(&entity.object, &mut object, ctx.store);
    if object.contains_key("status")
        && !call.params.contains_key("status")
        && let Some(status) = objects::initial_status(&entity.object)
    {
        object.insert("status".into(), Value::String(status.to_owned()));
    }
    let id = object["id"].as_str().unwrap_or_default().to_owned();
    ctx.store
        .insert(&entity.object, &id, object.clone(), parents);
    ctx.event(&format!("{}.created", entity.object), &object, None);
    Ok(object)
}

/// Fields Stripe always shows as whole objects (a PromotionCode's `coupon`), given by id: the
/// stored object takes the id's place; an unknown id is Stripe's 404.
fn embed_objects(
    ctx: &Ctx<'_>,
    entity: &EntitySpec,
    object: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    for field in &entity.fields {
        let types = json_schema::types(&field.json_schema);
        if !types.contains(&"object") || types.contains(&"string") {
            continue;
        }
        let Some(Value::String(id)) = object.get(&field.source) else {
            continue;
        };
        let found = ctx
            .store
            .find(id)
            .cloned()
            .ok_or_else(|| ApiError::no_such(&field.source, id, Some(&field.source)))?;
        object.insert(field.source.clone(), Value::Object(found));
    }
    Ok(())
}

fn load_item(
    ctx: &Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Map<String, Value>, ApiError> {
    let wanted = parents(ctx, entity, call)?;
    let id = call.object_id(Some(entity));
    let param = entity.item_id_param.as_deref().unwrap_or("id");
    match ctx.store.record(&entity.object, id) {
        Some(record)
            if wanted
                .iter()
                .all(|p| has_parent(&record.parents, &record.object, p)) =>
        {
            Ok(record.object.clone())
        }
        _ => Err(ApiError::no_such(&entity.object, id, Some(param))),
    }
}

fn retrieve(ctx: &mut Ctx<'_>, entity: &EntitySpec, call: &Call) -> Result<Value, ApiError> {
    let id = call.object_id(Some(entity));
    if entity.object == "customer" && ctx.store.deleted_customers.contains(id) {
        // As Stripe does: a deleted customer still answers, as a stub.
        return Ok(json!({"id": id, "object": "customer", "deleted": true}));
    }
    Ok(Value::Object(load_item(ctx, entity, call)?))
}

/// Generic update: merge the parameters, record `<object>.updated` with the previous values.
pub(crate) fn update(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let before = load_item(ctx, entity, call)?;
    check_references(ctx, entity, &call.params)?;
    let mut after = before.clone();
    objects::apply(&mut after, Some(entity), &call.params);
    Ok(Value::Object(commit_update(ctx, &before, after)))
}

/// Saves an updated object and records `<object>.updated` when something changed.
pub(crate) fn commit_update(
    ctx: &mut Ctx<'_>,
    before: &Map<String, Value>,
    after: Map<String, Value>,
) -> Map<String, Value> {
    let previous: Map<String, Value> = before
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    ctx.save(&after);
    if !previous.is_empty() {
        let object_type = after
            .get("object")
            .and_then(Value::as_str)
            .unwrap_or("object")
            .to_owned();
        ctx.event(&format!("{object_type}.updated"), &after, Some(previous));
    }
    after
}

/// Generic delete: `{id, object, deleted: true}` and `<object>.deleted`.
pub(crate) fn delete(
    ctx: &mut Ctx<'_>,
    entity: &EntitySpec,
    call: &Call,
) -> Result<Value, ApiError> {
    let object = load_item(ctx, entity, call)?;
    let id = call.object_id(Some(entity)).to_owned();
    ctx.store.remove(&entity.object, &id);
    if entity.object == "customer" {
        ctx.store.deleted_customers.insert(id.clone());
    }
    ctx.event(&format!("{}.deleted", entity.object), &object, None);
    Ok(json!({"id": id, "object": entity.object, "deleted": true}))
}

fn limit(call: &Call) -> Result<usize, ApiError> {
    match call.params.get("limit") {
        None | Some(Value::Null) => Ok(10),
        Some(value) => match value.as_i64() {
            Some(n) if (1..=100).contains(&n) => Ok(usize::try_from(n).unwrap_or(10)),
            _ => Err(
                ApiError::invalid("Invalid limit: must be an integer between 1 and 100.")
                    .with_code("parameter_invalid_integer")
                    .with_param("limit"),
            ),
        },
    }
}

fn text_of(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Object(map) => map.get("id").and_then(Value::as_str).map(str::to_owned),
        _ => None,
    }
}

/// A list filter: a field's value equals the parameter; `{gt, gte, lt, lte}` is a range; any
/// other object matches the field's members; an array (e.g. Events' `types[]`) is membership in the singular field.
fn filter_matches(object: &Map<String, Value>, key: &str, wanted: &Value) -> bool {
    match wanted {
        Value::Object(range)
            if range
                .keys()
                .all(|k| matches!(k.as_str(), "gt" | "gte" | "lt" | "lte")) =>
        {
            let Some(have) = object.get(key).and_then(Value::as_i64) else {
                return false;
            };
            range.iter().all(|(op, bound)| {
                let Some(bound) = bound.as_i64() else {
                    return true;
                };
                match op.as_str() {
                    "gt" => have > bound,
                    "gte" => have >= bound,
                    "lt" => have < bound,
                    _ => have <= bound,
                }
            })
        }
        // An object parameter (a secret's `scope[type]=account`) matches member by member.
        Value::Object(members) => match object.get(key).and_then(Value::as_object) {
            Some(have) => members.iter().all(|(k, v)| filter_matches(have, k, v)),
            None => true,
        },
        Value::Array(options) => {
            let singular = key.strip_suffix('s').unwrap_or(key);
            let Some(have) = object
                .get(singular)
                .or_else(|| object.get(key))
                .and_then(text_of)
            else {
                return true;
            };
            options
                .iter()
                .filter_map(text_of)
                .any(|option| option == have)
        }
        Value::Null => true,
        _ => match object.get(key) {
            // A filter on something the object does not carry cannot be evaluated here.
            None => true,
            Some(have) => text_of(have).is_some_and(|have| {
                Some(&have) == text_of(wanted).as_ref()
                    || super::webhooks::event_type_pattern(key, wanted, &have)
            }),
        },
    }
}

/// Generic list: newest first, cursor paging, equality and range filters.
pub(crate) fn list(
    ctx: &mut Ctx<'_>,
    object_type: &str,
    entity: Option<&EntitySpec>,
    call: &Call,
) -> Result<Value, ApiError> {
    let limit = limit(call)?;
    let wanted_parents = match entity {
        Some(entity) => parents(ctx, entity, call)?,
        None => Vec::new(),
    };
    let starting_after = call.str("starting_after").filter(|s| !s.is_empty());
    let ending_before = call.str("ending_before").filter(|s| !s.is_empty());
    if starting_after.is_some() && ending_before.is_some() {
        return Err(ApiError::invalid(
            "You may only specify one of these parameters: ending_before, starting_after.",
        ));
    }
    let all: Vec<&Map<String, Value>> = ctx
        .store
        .newest_first(object_type)
        .filter(|(_, record)| {
            wanted_parents
                .iter()
                .all(|p| has_parent(&record.parents, &record.object, p))
        })
        .map(|(_, record)| &record.object)
        .collect();
    let position = |cursor: &str, param: &str| {
        all.iter()
            .position(|o| o.get("id").and_then(Value::as_str) == Some(cursor))
            .ok_or_else(|| ApiError::no_such(object_type, cursor, Some(param)))
    };
    let filters: Vec<(&String, &Value)> = call
        .params
        .iter()
        .filter(|(k, _)| !LIST_RESERVED.contains(&k.as_str()))
        .collect();
    let keep = |o: &&&Map<String, Value>| filters.iter().all(|(k, v)| filter_matches(o, k, v));
    let (page, has_more): (Vec<&Map<String, Value>>, bool) = if let Some(cursor) = starting_after {
        first_page(
            all[position(cursor, "starting_after")? + 1..]
                .iter()
                .filter(keep)
                .copied(),
            limit,
        )
    } else if let Some(cursor) = ending_before {
        let before: Vec<_> = all[..position(cursor, "ending_before")?]
            .iter()
            .filter(keep)
            .copied()
            .collect();
        let start = before.len().saturating_sub(limit);
        (before[start..].to_vec(), start > 0)
    } else {
        first_page(all.iter().filter(keep).copied(), limit)
    };
    let data: Vec<Value> = page.into_iter().map(|o| Value::Object(o.clone())).collect();
    Ok(json!({"object": "list", "data": data, "has_more": has_more, "url": call.path}))
}

/// The first `limit` matches and whether more exist; matches past the one extra are never
/// scanned.
fn first_page<'a>(
    matches: impl Iterator<Item = &'a Map<String, Value>>,
    limit: usize,
) -> (Vec<&'a Map<String, Value>>, bool) {
    let mut page: Vec<_> = matches.take(limit.saturating_add(1)).collect();
    let has_more = page.len() > limit;
    page.truncate(limit);
    (page, has_more)
}

fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `GET /v1/<collection>/search`: Stripe's query language, `page` / `next_page` paging.
fn search_entity(ctx: &mut Ctx<'_>, entity: &EntitySpec, call: &Call) -> Result<Value, ApiError> {
    let text = call
        .str("query")
        .ok_or_else(|| ApiError::parameter_missing("query"))?;
    let query =
        search::parse(text).map_err(|e| ApiError::invalid(e.to_string()).with_param("query"))?;
    let allowed: Vec<String> = if entity.search_fields.is_empty() {
        entity
            .fields
            .iter()
            .filter_map(|f| f.source.split('.').next())
            .map(str::to_owned)
            .collect()
    } else {
        entity
            .search_fields
            .iter()
            .map(|name| {
                entity
                    .fields
                    .iter()
                    .find(|f| &f.name == name)
                    .map_or_else(|| snake_case(name), |f| f.source.clone())
            })
            .collect()
    };
    let collection = entity
        .collection_path
        .rsplit('/')
        .next()
        .unwrap_or(&entity.object);
    for field in query.fields() {
        if !allowed.iter().any(|a| a == field) {
            return Err(ApiError::invalid(format!(
                "Field `{field}` is an unsupported search field for resource `{collection}`."
            ))
            .with_param("query"));
        }
    }
    let limit = limit(call)?;
    let offset = match call.str("page") {
        None | Some("") => 0,
        Some(token) => token
            .strip_prefix("page_")
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| {
                ApiError::invalid(format!("Invalid page: {token}")).with_param("page")
            })?,
    };
    let hits: Vec<Value> = ctx
        .store
        .newest_first(&entity.object)
        .filter(|(id, _)| ctx.store.older_than(id, ctx.search_delay))
        .filter(|(_, record)| query.matches(&record.object))
        .map(|(_, record)| Value::Object(record.object.clone()))
        .collect();
    let has_more = hits.len() > offset + limit;
    let data: Vec<Value> = hits.into_iter().skip(offset).take(limit).collect();
    let next_page = if has_more {
        Value::String(format!("page_{}", offset + limit))
    } else {
        Value::Null
    };
    let url = entity
        .search_path
        .clone()
        .unwrap_or_else(|| call.path.clone());
    Ok(
        json!({"object": "search_result", "data": data, "has_more": has_more, "next_page": next_page, "url": url}),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object() -> Map<String, Value> {
        json!({"id": "evt_1", "type": "customer.created", "created": 100, "customer": {"id": "cus_1"}, "livemode": false, "scope": {"type": "account"}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    #[test]
    fn list_filters_compare_equality_ranges_and_membership() {
        let object = object();
        assert!(filter_matches(&object, "type", &json!("customer.created")));
        assert!(!filter_matches(&object, "type", &json!("customer.updated")));
        assert!(
            filter_matches(&object, "customer", &json!("cus_1")),
            "expanded references compare by id"
        );
        assert!(filter_matches(
            &object,
            "created",
            &json!({"gte": 100, "lt": 101})
        ));
        assert!(!filter_matches(&object, "created", &json!({"gt": 100})));
        assert!(filter_matches(
            &object,
            "types",
            &json!(["invoice.paid", "customer.created"])
        ));
        assert!(!filter_matches(&object, "types", &json!(["invoice.paid"])));
        assert!(filter_matches(&object, "livemode", &json!(false)));
        assert!(filter_matches(
            &object,
            "scope",
            &json!({"type": "account"})
        ));
        assert!(!filter_matches(&object, "scope", &json!({"type": "user"})));
    }

    #[test]
    fn verb_paths_are_recognised_whatever_the_placeholder_names() {
        assert_eq!(
            shape("/v1/payment_intents/{intent}/confirm"),
            "/v1/payment_intents/{}/confirm"
        );
        assert_eq!(shape("/v1/quotes/{quote}/accept"), "/v1/quotes/{}/accept");
    }

    #[test]
    fn snake_case_converts_search_field_names() {
        assert_eq!(snake_case("Created"), "created");
        assert_eq!(snake_case("PaymentIntent"), "payment_intent");
    }
}
