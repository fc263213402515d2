//! Reading the JSON schemas carried by the connector spec: which types a value may take and what
//! a nested key's schema is. Pure, no I/O.

use serde_json::Value;

/// The alternatives of a schema: the branches of `anyOf`/`oneOf`/`allOf` (recursively), or the
/// schema itself.
pub(crate) fn branches(schema: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    collect(schema, &mut out);
    out
}

fn collect<'a>(schema: &'a Value, out: &mut Vec<&'a Value>) {
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(Value::Array(alternatives)) = schema.get(key) {
            for alternative in alternatives {
                collect(alternative, out);
            }
            return;
        }
    }
    out.push(schema);
}

/// The JSON types a schema allows (`string`, `integer`, `number`, `boolean`, `object`, `array`).
/// Empty when the schema says nothing (anything goes).
pub(crate) fn types(schema: &Value) -> Vec<&str> {
    let mut out = Vec::new();
    for branch in branches(schema) {
        match branch.get("type") {
            Some(Value::String(t)) => out.push(t.as_str()),
            Some(Value::Array(ts)) => out.extend(ts.iter().filter_map(Value::as_str)),
            _ => {
                if branch.get("properties").is_some()
                    || branch.get("additionalProperties").is_some()
                {
                    out.push("object");
                } else if branch.get("enum").is_some() {
                    out.push("string");
                } else if branch.get("items").is_some() {
                    out.push("array");
                }
            }
        }
    }
    out
}

/// True when one branch is Stripe's "emptyable" marker `{"enum": [""]}`: an empty value unsets.
pub(crate) fn is_emptyable(schema: &Value) -> bool {
    branches(schema).iter().any(|branch| {
        branch
            .get("enum")
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|v| v.as_str() == Some("")))
    })
}

/// What a schema says about a key inside an object value.
pub(crate) enum Child<'a> {
    /// The key is declared; its schema.
    Known(&'a Value),
    /// The object takes any key (free-form or `additionalProperties: true`).
    Free,
    /// The object declares its keys and this is not one of them.
    Unknown,
}

/// The schema of `key` inside an object described by `schema`.
pub(crate) fn child<'a>(schema: &'a Value, key: &str) -> Child<'a> {
    let object_branches: Vec<&Value> = branches(schema)
        .into_iter()
        .filter(|branch| {
            branch.get("type").and_then(Value::as_str) == Some("object")
                || branch.get("properties").is_some()
                || branch.get("additionalProperties").is_some()
        })
        .collect();
    if object_branches.is_empty() {
        return Child::Free;
    }
    for branch in &object_branches {
        if let Some(found) = branch.get("properties").and_then(|p| p.get(key)) {
            return Child::Known(found);
        }
    }
    for branch in &object_branches {
        match branch.get("additionalProperties") {
            Some(Value::Object(_)) => return Child::Known(&branch["additionalProperties"]),
            Some(Value::Bool(true)) => return Child::Free,
            _ => {}
        }
        if branch.get("properties").is_none() && branch.get("additionalProperties").is_none() {
            return Child::Free;
        }
    }
    Child::Unknown
}

/// The schema of an array's items, when the schema allows arrays.
pub(crate) fn items(schema: &Value) -> Option<&Value> {
    branches(schema)
        .into_iter()
        .find_map(|branch| branch.get("items"))
}

/// True when the schema describes one of Stripe's list objects (`{object: "list", data, ...}`).
pub(crate) fn is_list_object(schema: &Value) -> bool {
    branches(schema).iter().any(|branch| {
        branch
            .get("properties")
            .and_then(|p| p.get("object"))
            .and_then(|o| o.get("enum"))
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|v| v.as_str() == Some("list")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn any_of_branches_contribute_their_types() {
        let schema = json!({"anyOf": [{"type": "object", "properties": {"gt": {"type": "integer"}}}, {"type": "integer"}]});
        assert_eq!(types(&schema), vec!["object", "integer"]);
        assert!(matches!(child(&schema, "gt"), Child::Known(_)));
        assert!(matches!(child(&schema, "gx"), Child::Unknown));
    }

    #[test]
    fn metadata_takes_any_key_and_is_emptyable() {
        let schema = json!({"anyOf": [{"type": "object", "additionalProperties": {"type": "string"}}, {"type": "string", "enum": [""]}]});
        assert!(is_emptyable(&schema));
        assert!(matches!(child(&schema, "anything"), Child::Known(s) if s["type"] == "string"));
    }

    #[test]
    fn list_objects_are_recognised() {
        let schema = json!({"type": "object", "properties": {"object": {"type": "string", "enum": ["list"]}, "data": {"type": "array"}}});
        assert!(is_list_object(&schema));
        assert!(!is_list_object(&json!({"type": "string"})));
    }
}
