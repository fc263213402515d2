//! Over the whole committed spec (not a sample): every request the engine builds for every
//! operation of every entity and every action uses only parameters that Stripe's OpenAPI
//! operation accepts, in the right place, with the right method and path.

use std::path::Path;

use connector_runtime::engine::request::{self, UpstreamRequest};
use connector_runtime::spec::model::{HttpMethod, OperationSpec, ParamLocation};
use connector_runtime::spec::overlay::Overlay;
use serde_json::{Map, Value, json};

const OPENAPI: &str = "../shared/stripe-openapi/spec3.json";

/// A value the schema accepts, covering nested members so nested encodings are exercised too.
fn sample(schema: &Value, depth: usize) -> Value {
    let Some(schema) = schema.as_object() else {
        return json!("x");
    };
    if let Some(branches) = schema.get("anyOf").and_then(Value::as_array) {
        return branches.first().map_or(json!("x"), |b| sample(b, depth));
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => json!(1),
        Some("number") => json!(1.5),
        Some("boolean") => json!(true),
        Some("array") => {
            if depth > 3 {
                return json!([]);
            }
            json!([sample(
                schema.get("items").unwrap_or(&json!({"type": "string"})),
                depth + 1
            )])
        }
        Some("object") => {
            let mut out = Map::new();
            if depth > 3 {
                return Value::Object(out);
            }
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in props {
                    out.insert(k.clone(), sample(v, depth + 1));
                }
            } else if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object())
            {
                out.insert("k".to_owned(), sample(extra, depth + 1));
            }
            Value::Object(out)
        }
        _ => json!("x"),
    }
}

fn method_name(method: HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
    }
}

/// Matches a concrete path against an OpenAPI path template.
fn template_matches(template: &str, concrete: &str) -> bool {
    let t: Vec<&str> = template.split('/').collect();
    let c: Vec<&str> = concrete.split('/').collect();
    t.len() == c.len()
        && t.iter()
            .zip(&c)
            .all(|(t, c)| (t.starts_with('{') && !c.is_empty()) || t == c)
}

/// The top-level parameter name of a bracket-encoded key: `items[0][price]` → `items`.
fn head(key: &str) -> &str {
    key.split('[').next().unwrap_or(key)
}

/// Parameters the overlay declares on purpose beyond the description (with its reason there).
fn declared_extras(op: &OperationSpec) -> Vec<String> {
    let overlay = Overlay::read(Path::new("connector-spec/stripe/overlay.toml")).unwrap();
    overlay
        .actions
        .get(&op.path)
        .map(|a| a.extra_params.iter().map(|p| p.source.clone()).collect())
        .unwrap_or_default()
}

fn check(
    openapi: &Value,
    what: &str,
    op: &OperationSpec,
    built: &UpstreamRequest,
    problems: &mut Vec<String>,
) {
    let Some(operation) = openapi["paths"]
        .get(&op.path)
        .and_then(|p| p.get(method_name(op.method)))
    else {
        problems.push(format!(
            "{what}: {} {} is not an OpenAPI operation",
            method_name(op.method),
            op.path
        ));
        return;
    };
    if !template_matches(&op.path, &built.path) {
        problems.push(format!(
            "{what}: built path {} does not match {}",
            built.path, op.path
        ));
    }
    if built.method != op.method {
        problems.push(format!("{what}: method changed"));
    }
    let query_params: Vec<&str> = operation["parameters"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let body_params: Vec<&str> = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (key, _) in &built.query {
        // A DELETE's form parameters travel in the query string, as Stripe's SDKs send them.
        let body_in_query = op.method != HttpMethod::Post && body_params.contains(&head(key));
        if !query_params.contains(&head(key)) && !body_in_query {
            problems.push(format!(
                "{what}: query parameter {key} is not accepted by {}",
                op.operation_id
            ));
        }
    }
    let extras = declared_extras(op);
    for (key, _) in &built.form {
        if !body_params.contains(&head(key)) && !extras.iter().any(|e| e == head(key)) {
            problems.push(format!(
                "{what}: body parameter {key} is not accepted by {}",
                op.operation_id
            ));
        }
    }
    if op.method != HttpMethod::Post && !built.form.is_empty() {
        problems.push(format!(
            "{what}: a {} carries a body",
            method_name(op.method)
        ));
    }
}

fn build_all(op: &OperationSpec) -> Result<UpstreamRequest, String> {
    let mut inputs = Map::new();
    for param in &op.params {
        let value = match param.location {
            ParamLocation::Path => json!("id_1"),
            _ => sample(&param.json_schema, 0),
        };
        inputs.insert(param.name.clone(), value);
    }
    // Placeholders the spec fills from resource names rather than parameters.
    let mut placeholders = Vec::new();
    let mut rest = op.path.as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        placeholders.push(rest[start + 1..end].to_owned());
        rest = &rest[(end + 1).min(rest.len())..];
    }
    let values: Vec<(&str, &str)> = placeholders.iter().map(|p| (p.as_str(), "id_1")).collect();
    request::build(op, &inputs, &values).map_err(|v| format!("{v:?}"))
}

#[test]
fn every_request_the_engine_builds_is_one_stripe_accepts() {
    if !Path::new(OPENAPI).exists() {
        println!("skipped: {OPENAPI} is not present");
        return;
    }
    let openapi: Value = serde_json::from_slice(&std::fs::read(OPENAPI).unwrap()).unwrap();
    let spec = connector_runtime::spec::stripe().unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for entity in &spec.entities {
        for (kind, op) in entity.operations.iter() {
            let what = format!("{}.{kind:?}", entity.name);
            match build_all(op) {
                Ok(built) => check(&openapi, &what, op, &built, &mut problems),
                Err(e) => {
                    problems.push(format!("{what}: engine refused its own sample inputs: {e}"))
                }
            }
            checked += 1;
        }
    }
    for action in &spec.actions {
        match build_all(&action.operation) {
            Ok(built) => check(
                &openapi,
                &action.name,
                &action.operation,
                &built,
                &mut problems,
            ),
            Err(e) => problems.push(format!(
                "{}: engine refused its own sample inputs: {e}",
                action.name
            )),
        }
        checked += 1;
    }
    assert!(checked > 200, "only {checked} operations checked");
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}
