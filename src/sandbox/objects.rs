//! Shaping stored objects: a new object carries the fields Stripe returns by default for its type
//! (null when nullable, a sensible empty value otherwise, never a `""` placeholder); parameters
//! merge into it the way Stripe merges them; `expand[]` includes the fields Stripe returns only on
//! request and replaces ids with the objects they name. No I/O.
//!
//! `shapes.json` is derived from Stripe's OpenAPI description and its sample objects (the
//! `sandbox_shapes` test checks it is in step with them and rewrites it with
//! `SANDBOX_SHAPES_WRITE=1`): per object type, `omit` lists the schema's fields that Stripe's
//! sample object leaves out (returned only when expanded, or only when they apply), and `samples`
//! holds Stripe's sample values for non-nullable fields the sandbox cannot know, used instead of
//! empty placeholders.

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::json_schema;
use super::store::Store;
use crate::spec::model::{DataType, EntitySpec, FieldSpec};

/// A new object of `object_type` with Stripe's common fields and every field of `entity`.
pub(crate) fn blank(
    entity: Option<&EntitySpec>,
    object_type: &str,
    id: &str,
    created: i64,
) -> Map<String, Value> {
    let mut object = Map::new();
    // Where the object's own sub-lists live, e.g. `/v1/customers/cus_1` → `.../sources`.
    let base = entity
        .and_then(|e| {
            let path = e.item_path.as_deref()?;
            let param = e.item_id_param.as_deref()?;
            let own = path.replace(&format!("{{{param}}}"), id);
            (!own.contains('{')).then_some(own)
        })
        .unwrap_or_else(|| format!("/v1/{object_type}s/{id}"));
    object.insert("id".into(), Value::String(id.to_owned()));
    object.insert("object".into(), Value::String(object_type.to_owned()));
    for field in entity.map(|e| e.fields.as_slice()).unwrap_or_default() {
        let mut parts = field.source.split('.');
        let Some(first) = parts.next() else { continue };
        if is_omitted(object_type, first) {
            continue;
        }
        if parts.next().is_some() {
            // A flattened nested field (`address.city`): its parent carries it.
            object.entry(first.to_owned()).or_insert(Value::Null);
            continue;
        }
        object
            .entry(first.to_owned())
            .or_insert_with(|| shaped_default(object_type, field, &base));
    }
    if entity.is_some_and(|e| e.fields.iter().any(|f| f.source == "created")) || entity.is_none() {
        object.insert("created".into(), json!(created));
    }
    if entity.is_some_and(|e| e.fields.iter().any(|f| f.source == "livemode")) || entity.is_none() {
        object.insert("livemode".into(), Value::Bool(false));
    }
    object
}

/// Per object type: `omit` (fields returned only when expanded or when they apply) and `samples`.
static SHAPES: LazyLock<Map<String, Value>> =
    LazyLock::new(|| serde_json::from_str(include_str!("shapes.json")).unwrap_or_default());

/// True when Stripe leaves `field` out of a `object_type` unless it is expanded or applies.
pub(crate) fn is_omitted(object_type: &str, field: &str) -> bool {
    SHAPES
        .get(object_type)
        .and_then(|shape| shape.get("omit"))
        .and_then(Value::as_array)
        .is_some_and(|omit| omit.iter().any(|f| f.as_str() == Some(field)))
}

fn sample(object_type: &str, field: &str) -> Option<Value> {
    SHAPES.get(object_type)?.get("samples")?.get(field).cloned()
}

/// True when a value holds an empty string anywhere: a placeholder Stripe never returns.
fn has_placeholder(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.iter().any(has_placeholder),
        Value::Object(map) => map.values().any(has_placeholder),
        _ => false,
    }
}

/// A field's value on a new object: `metadata` is `{}` and `active` is `true` as on every Stripe
/// object; otherwise the schema's empty value, or Stripe's sample value where that would hold a
/// placeholder.
fn shaped_default(object_type: &str, field: &FieldSpec, base: &str) -> Value {
    match field.source.as_str() {
        "metadata" => return json!({}),
        "active" if matches!(field.data_type, DataType::Boolean) => return Value::Bool(true),
        _ => {}
    }
    let value = default_value(field, base);
    if !has_placeholder(&value) {
        return value;
    }
    match sample(object_type, &field.source) {
        Some(sample) => sample,
        None if field.nullable => Value::Null,
        None => value,
    }
}

fn default_value(field: &FieldSpec, base: &str) -> Value {
    if json_schema::is_list_object(&field.json_schema) {
        return empty_list(&format!("{base}/{}", field.source));
    }
    if field.nullable {
        return Value::Null;
    }
    if json_schema::types(&field.json_schema).is_empty() {
        return match field.data_type {
            DataType::Boolean => Value::Bool(false),
            DataType::Bigint
            | DataType::Integer
            | DataType::Double
            | DataType::Decimal
            | DataType::Timestamp => json!(0),
            DataType::Array => json!([]),
            DataType::Struct | DataType::Json => json!({}),
            DataType::Varchar => Value::String(String::new()),
        };
    }
    schema_default(&field.json_schema, 0)
}

/// The empty value of a schema: null when nullable, `false`, `0`, `""` (or the first enum value),
/// `[]`, and objects with each declared property filled the same way (two levels deep).
fn schema_default(schema: &Value, depth: usize) -> Value {
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        return Value::Null;
    }
    if json_schema::is_list_object(schema) {
        return empty_list("");
    }
    let first_enum = json_schema::branches(schema).into_iter().find_map(|b| {
        b.get("enum")
            .and_then(Value::as_array)
            .and_then(|v| v.first().cloned())
    });
    match json_schema::types(schema).first().copied() {
        Some("boolean") => Value::Bool(false),
        Some("integer") | Some("number") => json!(0),
        Some("array") => json!([]),
        Some("object") => {
            let mut object = Map::new();
            let properties = json_schema::branches(schema)
                .into_iter()
                .find_map(|b| b.get("properties").and_then(Value::as_object));
            if let Some(properties) = properties.filter(|_| depth < 2) {
                for (key, property) in properties {
                    object.insert(key.clone(), schema_default(property, depth + 1));
                }
            }
            Value::Object(object)
        }
        Some("string") => first_enum.unwrap_or_else(|| Value::String(String::new())),
        _ => Value::Null,
    }
}

/// The status a newly created object starts in, where the schema's first enum value would be
/// wrong (e.g. a Subscription starts `active`, a Topup `pending`).
pub(crate) fn initial_status(object_type: &str) -> Option<&'static str> {
    Some(match object_type {
        "subscription" | "subscription_schedule" | "issuing.cardholder" => "active",
        "credit_note" => "issued",
        "identity.verification_session" => "requires_input",
        "issuing.card" => "inactive",
        "issuing.dispute" => "unsubmitted",
        "setup_intent" => "requires_payment_method",
        "test_helpers.test_clock" => "ready",
        "topup" | "payout" => "pending",
        "treasury.financial_account" => "open",
        "treasury.credit_reversal"
        | "treasury.debit_reversal"
        | "treasury.inbound_transfer"
        | "treasury.outbound_payment"
        | "treasury.outbound_transfer" => "processing",
        "checkout.session" => "open",
        "webhook_endpoint" => "enabled",
        "source" => "chargeable",
        "bank_account" => "new",
        "refund" => "succeeded",
        _ => return None,
    })
}

/// Stripe's list object.
pub(crate) fn empty_list(url: &str) -> Value {
    json!({"object": "list", "data": [], "has_more": false, "url": url})
}

/// Merges request parameters into an object: only the entity's own fields are stored (or every
/// parameter when the object has no entity); `metadata` merges key by key and an empty value
/// removes a key; an empty top-level value unsets the field.
pub(crate) fn apply(
    object: &mut Map<String, Value>,
    entity: Option<&EntitySpec>,
    params: &Map<String, Value>,
) {
    for (key, value) in params {
        if key == "expand" {
            continue;
        }
        let known = match entity {
            Some(entity) => entity
                .fields
                .iter()
                .any(|f| f.source.split('.').next() == Some(key.as_str())),
            None => true,
        };
        if !known {
            continue;
        }
        if key == "metadata" {
            merge_metadata(object, value);
            continue;
        }
        let is_list = object
            .get(key)
            .is_some_and(|v| v.get("object").and_then(Value::as_str) == Some("list"));
        match (is_list, value) {
            (true, Value::Array(items)) => {
                if let Some(list) = object.get_mut(key) {
                    list["data"] = Value::Array(items.clone());
                }
            }
            _ => {
                object.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_metadata(object: &mut Map<String, Value>, value: &Value) {
    let entry = object.entry("metadata").or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    match value {
        Value::Object(changes) => {
            if let Value::Object(metadata) = entry {
                for (k, v) in changes {
                    match v {
                        Value::Null => {
                            metadata.remove(k);
                        }
                        Value::String(s) if s.is_empty() => {
                            metadata.remove(k);
                        }
                        Value::String(_) => {
                            metadata.insert(k.clone(), v.clone());
                        }
                        other => {
                            metadata.insert(k.clone(), Value::String(other.to_string()));
                        }
                    }
                }
            }
        }
        // `metadata=` clears every key.
        _ => *entry = json!({}),
    }
}

/// The value of a field Stripe returns only when expanded: its schema's empty value (an empty
/// list for sub-lists such as a Customer's `sources`).
pub(crate) fn included_default(entity: &EntitySpec, field: &str, id: &str) -> Option<Value> {
    let spec = entity.fields.iter().find(|f| f.source == field)?;
    let base = entity
        .item_path
        .as_deref()
        .zip(entity.item_id_param.as_deref())
        .map(|(path, param)| path.replace(&format!("{{{param}}}"), id))
        .unwrap_or_default();
    Some(default_value(spec, &base))
}

/// Applies `expand[]` paths (`customer`, `latest_charge.customer`, `data.customer` on lists).
pub(crate) fn expand(store: &Store, value: &mut Value, paths: &[String]) -> Result<(), ApiError> {
    for path in paths {
        let parts: Vec<&str> = path.split('.').collect();
        // Stripe expands at most four levels (five with a list's `data`).
        if parts.len() > 5 {
            return Err(ApiError::invalid(format!(
                "You cannot expand more than 4 levels of a property ({path})."
            ))
            .with_param("expand"));
        }
        if !expand_path(store, value, &parts) {
            return Err(
                ApiError::invalid(format!("This property cannot be expanded ({path})."))
                    .with_param("expand"),
            );
        }
    }
    Ok(())
}

fn expand_path(store: &Store, value: &mut Value, parts: &[&str]) -> bool {
    let Some((first, rest)) = parts.split_first() else {
        return true;
    };
    let Value::Object(map) = value else {
        return false;
    };
    if *first == "data"
        && let Some(Value::Array(items)) = map.get_mut("data")
    {
        return items.iter_mut().all(|item| expand_path(store, item, rest));
    }
    let Some(field) = map.get_mut(*first) else {
        return false;
    };
    if let Value::String(id) = field {
        match store.find(id) {
            Some(found) => *field = Value::Object(found.clone()),
            // Stripe's test ids (e.g. `pm_card_visa`) and foreign ids stay as they are.
            None => return rest.is_empty(),
        }
    }
    match field {
        Value::Null => true,
        Value::Object(_) => expand_path(store, field, rest),
        _ => rest.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::Operations;

    fn field(source: &str, nullable: bool, schema: Value) -> FieldSpec {
        FieldSpec {
            name: source.to_owned(),
            source: source.to_owned(),
            data_type: DataType::Varchar,
            key: source == "id",
            nullable,
            read_only: false,
            reference: None,
            json_schema: schema.into(),
        }
    }

    fn entity() -> EntitySpec {
        EntitySpec {
            name: "Customer".into(),
            object: "customer".into(),
            id_prefix: Some("cus".into()),
            collection_path: "/v1/customers".into(),
            item_path: Some("/v1/customers/{customer}".into()),
            item_id_param: Some("customer".into()),
            parents: Vec::new(),
            search_path: None,
            search_fields: Vec::new(),
            fields: vec![
                field("id", false, json!({"type": "string"})),
                field("created", false, json!({"type": "integer"})),
                field("livemode", false, json!({"type": "boolean"})),
                field("email", true, json!({"type": "string"})),
                field("balance", false, json!({"type": "integer"})),
                field("metadata", false, json!({"type": "object"})),
                field(
                    "tax_exempt",
                    false,
                    json!({"type": "string", "enum": ["none", "exempt"]}),
                ),
                field(
                    "sources",
                    false,
                    json!({"type": "object", "properties": {"object": {"enum": ["list"]}}}),
                ),
            ],
            operations: Operations::default(),
        }
    }

    #[test]
    fn blank_objects_have_the_fields_stripe_returns_by_default() {
        let object = blank(Some(&entity()), "customer", "cus_1", 42);
        // A Customer's `sources` is returned only when expanded.
        assert_eq!(
            Value::Object(object),
            json!({"id": "cus_1", "object": "customer", "created": 42, "livemode": false, "email": null,
                   "balance": 0, "metadata": {}, "tax_exempt": "none"})
        );
        assert_eq!(
            included_default(&entity(), "sources", "cus_1"),
            Some(
                json!({"object": "list", "data": [], "has_more": false, "url": "/v1/customers/cus_1/sources"})
            )
        );
    }

    #[test]
    fn placeholders_give_way_to_stripes_sample_values_or_null() {
        let mut currency = field("currency", false, json!({"type": "string"}));
        assert_eq!(shaped_default("subscription", &currency, ""), json!("usd"));
        currency.nullable = true;
        assert_eq!(shaped_default("no_such_type", &currency, ""), Value::Null);
        let metadata = field("metadata", true, json!({"type": "object"}));
        assert_eq!(shaped_default("refund", &metadata, ""), json!({}));
    }

    #[test]
    fn nested_objects_get_their_declared_properties() {
        let settings = field(
            "invoice_settings",
            false,
            json!({"type": "object", "properties": {
                "footer": {"type": "string", "nullable": true},
                "rendering_options": {"type": "object", "nullable": true},
                "custom": {"type": "object", "properties": {"on": {"type": "boolean"}}}
            }}),
        );
        assert_eq!(
            default_value(&settings, "/v1/customers/cus_1"),
            json!({"footer": null, "rendering_options": null, "custom": {"on": false}})
        );
    }

    #[test]
    fn metadata_merges_and_empty_values_remove_keys() {
        let entity = entity();
        let mut object = blank(Some(&entity), "customer", "cus_1", 0);
        apply(
            &mut object,
            Some(&entity),
            json!({"metadata": {"a": "1", "b": "2"}})
                .as_object()
                .unwrap(),
        );
        apply(
            &mut object,
            Some(&entity),
            json!({"metadata": {"a": "", "c": "3"}, "email": "x@y"})
                .as_object()
                .unwrap(),
        );
        assert_eq!(object["metadata"], json!({"b": "2", "c": "3"}));
        assert_eq!(object["email"], "x@y");
        apply(
            &mut object,
            Some(&entity),
            json!({"metadata": null, "email": null, "colour": "red"})
                .as_object()
                .unwrap(),
        );
        assert_eq!(object["metadata"], json!({}));
        assert_eq!(object["email"], Value::Null);
        assert!(!object.contains_key("colour"));
    }

    #[test]
    fn expand_replaces_known_ids_and_rejects_unknown_fields() {
        let mut store = Store::new();
        store.insert(
            "customer",
            "cus_1",
            json!({"id": "cus_1", "object": "customer"})
                .as_object()
                .unwrap()
                .clone(),
            vec![],
        );
        let mut value = json!({"object": "list", "data": [{"customer": "cus_1", "payment_method": "pm_card_visa"}]});
        expand(
            &store,
            &mut value,
            &["data.customer".into(), "data.payment_method".into()],
        )
        .unwrap();
        assert_eq!(value["data"][0]["customer"]["object"], "customer");
        assert_eq!(value["data"][0]["payment_method"], "pm_card_visa");
        let mut single = json!({"customer": "cus_1"});
        assert!(expand(&store, &mut single, &["colour".into()]).is_err());
    }
}
