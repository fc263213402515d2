//! Checks JSON inputs against the compact JSON schemas of the connector spec. Pure, no I/O.
//!
//! Understands the subset the spec uses: `type`, `enum`, `anyOf`, `items`, `properties`,
//! `required` and `additionalProperties`. Numbers given for integer parameters must be integral
//! (`1500.0` is accepted as `1500`). Values that would travel as an empty form (`null`, `{}`,
//! `[]`) pass only where the schema accepts one (see `upstream::form`). Error texts stay short:
//! long enums are summarised, never listed in full.

use serde_json::{Map, Value};

use super::error::FieldViolation;
use crate::upstream::form;

/// Appends a violation for every way `value` fails `schema`, naming fields by `path`.
pub fn check(path: &str, schema: &Value, value: &Value, out: &mut Vec<FieldViolation>) {
    if let Err(description) = check_one(path, schema, value, out) {
        out.push(FieldViolation::new(path, description));
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integral(value: &Value) -> bool {
    match value {
        Value::Number(n) => {
            n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

/// Enums up to this long are listed whole in errors; longer ones are summarised.
const MAX_LISTED_VALUES: usize = 12;
/// How many values a summarised enum shows.
const EXAMPLE_VALUES: usize = 4;

/// What a schema allows, in a few words: `an integer or "now"`, `one of "a", "b"`, `an object`.
/// Long enums are cut to their first values, so the text stays short whatever the schema.
pub fn describe(schema: &Value) -> String {
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        let mut parts: Vec<String> = Vec::new();
        for part in branches.iter().map(describe) {
            if !parts.contains(&part) {
                parts.push(part);
            }
        }
        return parts.join(" or ");
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        return describe_enum(allowed);
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") => "a string",
        Some("integer") => "an integer",
        Some("number") => "a number",
        Some("boolean") => "a boolean",
        Some("array") => "a non-empty array",
        Some("object") => "a non-empty object",
        _ => "a value",
    }
    .to_owned()
}

/// `one of "a", "b"`, or for long enums `one of 230 values such as "a", "b", …`.
fn describe_enum(allowed: &[Value]) -> String {
    let listed: Vec<String> = allowed
        .iter()
        .take(if allowed.len() <= MAX_LISTED_VALUES {
            MAX_LISTED_VALUES
        } else {
            EXAMPLE_VALUES
        })
        .map(|v| match v.as_str() {
            Some("") => "\"\" (unset)".to_owned(),
            _ => v.to_string(),
        })
        .collect();
    match allowed.len() {
        1 => listed.join(""),
        n if n <= MAX_LISTED_VALUES => format!("one of {}", listed.join(", ")),
        n => format!(
            "one of {n} values such as {}, … (see the API reference)",
            listed.join(", ")
        ),
    }
}

/// Why an empty value (`null`, `{}`, `[]`) cannot be sent where the schema has no empty form.
fn empty_refusal(value: &Value, schema: &Value) -> String {
    let what = match value {
        Value::Null => "null",
        Value::Array(_) => "an empty array",
        _ => "an empty object",
    };
    format!(
        "cannot be {what} (the API reads an empty value as unsetting, which this parameter does not allow); give {}",
        describe(schema)
    )
}

/// Checks members of a value whose shape the schema does not declare: only empty values,
/// which would be sent as an unset the upstream cannot check here, are refused.
fn check_open(path: &str, value: &Value, out: &mut Vec<FieldViolation>) {
    match value {
        Value::Object(members) => {
            for (key, member) in members {
                check(
                    &format!("{path}.{key}"),
                    &Value::Object(Map::new()),
                    member,
                    out,
                );
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                check(
                    &format!("{path}[{index}]"),
                    &Value::Object(Map::new()),
                    item,
                    out,
                );
            }
        }
        _ => {}
    }
}

/// Returns Err(description) when the value fails at this level; nested failures go to `out`.
fn check_one(
    path: &str,
    schema: &Value,
    value: &Value,
    out: &mut Vec<FieldViolation>,
) -> Result<(), String> {
    let Some(schema_map) = schema.as_object() else {
        return Ok(());
    };
    // `null`, `{}` and `[]` all travel as `key=`: allowed only where the schema has that form.
    if form::encodes_as_empty(value) {
        return if form::accepts_empty_form(schema) {
            Ok(())
        } else {
            Err(empty_refusal(value, schema))
        };
    }
    let schema = schema_map;
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return check_any_of(path, branches, value, out);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        return Err(format!("must be {}", describe_enum(allowed)));
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("string") if !value.is_string() => {
            Err(format!("expected a string, got {}", type_name(value)))
        }
        Some("integer") if !is_integral(value) => {
            Err(format!("expected an integer, got {}", type_name(value)))
        }
        Some("number") if !value.is_number() => {
            Err(format!("expected a number, got {}", type_name(value)))
        }
        Some("boolean") if !value.is_boolean() => {
            Err(format!("expected a boolean, got {}", type_name(value)))
        }
        Some("array") => {
            let Some(items) = value.as_array() else {
                return Err(format!("expected an array, got {}", type_name(value)));
            };
            if let Some(item_schema) = schema.get("items") {
                for (index, item) in items.iter().enumerate() {
                    check(&format!("{path}[{index}]"), item_schema, item, out);
                }
            }
            Ok(())
        }
        Some("object") => {
            let Some(members) = value.as_object() else {
                return Err(format!("expected an object, got {}", type_name(value)));
            };
            check_members(path, schema, members, out);
            Ok(())
        }
        Some(_) => Ok(()),
        None => {
            check_open(path, value, out);
            Ok(())
        }
    }
}

/// A value against `anyOf`: fine when one branch takes it whole; otherwise the violations of the
/// branch it came closest to (fewest violations), or that it matches no form at all.
fn check_any_of(
    path: &str,
    branches: &[Value],
    value: &Value,
    out: &mut Vec<FieldViolation>,
) -> Result<(), String> {
    let mut best: Option<Vec<FieldViolation>> = None;
    for branch in branches {
        let mut nested = Vec::new();
        if check_one(path, branch, value, &mut nested).is_ok() && nested.is_empty() {
            return Ok(());
        }
        if best.as_ref().is_none_or(|b| nested.len() < b.len()) && !nested.is_empty() {
            best = Some(nested);
        }
    }
    match best {
        Some(nested) => {
            out.extend(nested);
            Ok(())
        }
        None => Err(format!(
            "{} does not match any allowed form",
            type_name(value)
        )),
    }
}

/// An object's members against its schema's `properties` and `additionalProperties`, and the
/// members it requires.
fn check_members(
    path: &str,
    schema: &Map<String, Value>,
    members: &Map<String, Value>,
    out: &mut Vec<FieldViolation>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    for (key, member) in members {
        let member_path = format!("{path}.{key}");
        match (properties.and_then(|p| p.get(key)), additional) {
            (Some(member_schema), _) => check(&member_path, member_schema, member, out),
            (None, Some(extra @ Value::Object(_))) => check(&member_path, extra, member, out),
            (None, Some(Value::Bool(false))) => out.push(FieldViolation::new(
                &member_path,
                "unknown field".to_owned(),
            )),
            // A declared shape without this member: unknown unless the schema is open.
            (None, None) if properties.is_some() => out.push(FieldViolation::new(
                &member_path,
                "unknown field".to_owned(),
            )),
            _ => check(&member_path, &Value::Object(Map::new()), member, out),
        }
    }
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !members.contains_key(name) {
                out.push(FieldViolation::new(
                    &format!("{path}.{name}"),
                    "is required".to_owned(),
                ));
            }
        }
    }
}

/// The members of a range object, `{gt, gte, lt, lte}` (e.g. Stripe's `created[gte]=…`).
const RANGE_MEMBERS: [&str; 4] = ["gt", "gte", "lt", "lte"];

/// Whether a parameter takes a range object (alone or as a branch of a union), so range
/// comparisons (`>`, `>=`, `<`, `<=`) can be pushed into it.
pub fn accepts_range(schema: &Value) -> bool {
    if let Some(branches) = schema
        .get("anyOf")
        .or_else(|| schema.get("oneOf"))
        .and_then(Value::as_array)
    {
        return branches.iter().any(accepts_range);
    }
    schema
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|members| RANGE_MEMBERS.iter().any(|m| members.contains_key(*m)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn violations(schema: Value, value: Value) -> Vec<String> {
        let mut out = Vec::new();
        check("X", &schema, &value, &mut out);
        out.into_iter()
            .map(|v| format!("{}: {}", v.field, v.description))
            .collect()
    }

    #[test]
    fn accepts_integral_floats_for_integers() {
        assert!(violations(json!({"type": "integer"}), json!(1500.0)).is_empty());
        assert_eq!(
            violations(json!({"type": "integer"}), json!(1.5)),
            vec!["X: expected an integer, got number"]
        );
    }

    #[test]
    fn rejects_values_outside_an_enum() {
        let v = violations(
            json!({"type": "string", "enum": ["automatic", "manual"]}),
            json!("later"),
        );
        assert_eq!(v, vec![r#"X: must be one of "automatic", "manual""#]);
    }

    #[test]
    fn empty_values_pass_only_where_the_schema_has_the_empty_form() {
        let unsettable = json!({"anyOf": [
            {"type": "object", "additionalProperties": {"type": "string"}},
            {"type": "string", "enum": [""]}
        ]});
        for empty in [json!(null), json!({}), json!([])] {
            assert!(violations(unsettable.clone(), empty).is_empty());
        }
        let metadata = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert_eq!(
            violations(metadata, json!({})),
            vec![
                "X: cannot be an empty object (the API reads an empty value as unsetting, which this parameter does not allow); give a non-empty object"
            ]
        );
        let capture = json!({"type": "string", "enum": ["automatic", "manual"]});
        assert_eq!(
            violations(capture, Value::Null),
            vec![
                r#"X: cannot be null (the API reads an empty value as unsetting, which this parameter does not allow); give one of "automatic", "manual""#
            ]
        );
        let trial_end =
            json!({"anyOf": [{"type": "integer"}, {"type": "string", "enum": ["now"]}]});
        assert_eq!(
            violations(trial_end, Value::Null),
            vec![
                r#"X: cannot be null (the API reads an empty value as unsetting, which this parameter does not allow); give an integer or "now""#
            ]
        );
        let events = json!({"type": "array", "items": {"type": "string"}});
        assert!(violations(events.clone(), json!([]))[0].contains("cannot be an empty array"));
        assert!(violations(json!({"type": "string"}), Value::Null).is_empty());
    }

    #[test]
    fn empty_members_of_an_undeclared_shape_are_refused() {
        let open = json!({"type": "object"});
        assert_eq!(
            violations(open, json!({"a": {"b": null}})),
            vec![
                "X.a.b: cannot be null (the API reads an empty value as unsetting, which this parameter does not allow); give a value"
            ]
        );
    }

    #[test]
    fn long_enums_are_summarised_not_listed() {
        let values: Vec<String> = (0..230).map(|i| format!("event.type_{i}")).collect();
        let v = violations(json!({"type": "string", "enum": values}), json!("nope"));
        assert_eq!(v.len(), 1);
        assert!(
            v[0].starts_with(r#"X: must be one of 230 values such as "event.type_0""#),
            "{}",
            v[0]
        );
        assert!(v[0].len() < 300, "{}", v[0]);
    }

    #[test]
    fn names_unknown_nested_fields() {
        let schema = json!({"type": "object", "properties": {"line1": {"type": "string"}}});
        assert_eq!(
            violations(schema, json!({"line1": "a", "lne2": "b"})),
            vec!["X.lne2: unknown field"]
        );
    }

    #[test]
    fn any_of_accepts_either_branch() {
        let schema = json!({"anyOf": [{"type": "string"}, {"type": "object", "properties": {"gt": {"type": "integer"}}}]});
        assert!(violations(schema.clone(), json!("x")).is_empty());
        assert!(violations(schema.clone(), json!({"gt": 3})).is_empty());
        assert!(!violations(schema, json!(true)).is_empty());
    }

    #[test]
    fn maps_take_their_value_schema_from_additional_properties() {
        let schema = json!({"type": "object", "additionalProperties": {"type": "string"}});
        assert!(violations(schema.clone(), json!({"k": "v"})).is_empty());
        assert_eq!(
            violations(schema, json!({"k": 1})),
            vec!["X.k: expected a string, got integer"]
        );
    }

    #[test]
    fn range_objects_are_told_from_objects_that_nest_one() {
        let created = json!({"anyOf": [
            {"type": "object", "properties": {"gt": {"type": "integer"}, "gte": {"type": "integer"}}},
            {"type": "integer"}
        ]});
        assert!(accepts_range(&created));
        let nested = json!({"type": "object", "properties": {"posted_at": created}});
        assert!(!accepts_range(&nested));
        assert!(!accepts_range(&json!({"type": "string"})));
    }
}
