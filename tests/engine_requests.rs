//! Over the whole committed spec (not a sample): every request the engine builds for every
//! operation of every entity and every action is one Stripe's OpenAPI operation accepts: only
//! its parameters, in the right place, with the right method and path, and a form that validates
//! against the operation's request schema (`anyOf` branches, enums, required members). Then every
//! parameter in turn is set to each edge value (`null`, `[]`, `{}`, `""`): the engine refuses it
//! with a field violation on that parameter, or sends a form that still validates. Finally the
//! largest error any single bad parameter can produce is measured as it travels (gRPC headers).

use std::path::Path;

use connector_runtime::api::status::engine_error;
use connector_runtime::engine::EngineError;
use connector_runtime::engine::request::{self, UpstreamRequest};
use connector_runtime::spec::model::{HttpMethod, OperationSpec, ParamLocation, ParamSpec};
use serde_json::{Map, Value, json};

const OPENAPI: &str = "../shared/stripe-openapi/spec3.json";

/// Follows `$ref`s into `components.schemas`.
fn resolve<'a>(openapi: &'a Value, schema: &'a Value) -> &'a Value {
    let mut current = schema;
    while let Some(name) = current
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
    {
        current = &openapi["components"]["schemas"][name];
    }
    current
}

/// Stripe's `{"enum": [""]}` branch: the empty form that unsets a value.
fn is_unset_marker(schema: &Value) -> bool {
    schema["enum"]
        .as_array()
        .is_some_and(|e| e.len() == 1 && e[0] == "")
}

/// A value Stripe's own request schema accepts, with every member it can carry (so nested
/// encodings are exercised too); `None` where no non-empty value exists.
fn sample(openapi: &Value, schema: &Value, depth: usize) -> Option<Value> {
    let schema = resolve(openapi, schema);
    if depth > 8 {
        return None;
    }
    if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        return branches
            .iter()
            .filter(|b| !is_unset_marker(b))
            .find_map(|b| sample(openapi, b, depth));
    }
    if let Some(values) = schema["enum"].as_array() {
        return values.iter().find(|v| *v != "").cloned();
    }
    match schema["type"].as_str() {
        Some("integer") => Some(json!(1)),
        Some("number") => Some(json!(1.5)),
        Some("boolean") => Some(json!(true)),
        Some("string") if schema["format"] == "decimal" => Some(json!("1.5")),
        Some("array") => {
            sample(openapi, &schema["items"], depth + 1).map(|item| Value::Array(vec![item]))
        }
        Some("object") | None if schema.get("properties").is_some() => {
            let mut out = Map::new();
            for (k, v) in schema["properties"].as_object().into_iter().flatten() {
                if let Some(value) = sample(openapi, v, depth + 1) {
                    out.insert(k.clone(), value);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Some("object") => schema
            .get("additionalProperties")
            .filter(|v| v.is_object())
            .and_then(|extra| sample(openapi, extra, depth + 1))
            .map(|value| json!({ "k": value })),
        _ => Some(json!("x")),
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

/// A decoded form: `a[b][0]=x` becomes `{a: {b: {0: "x"}}}`; what each level means (object or
/// array) is up to the schema it is checked against, as on Stripe's side.
#[derive(Debug)]
enum Form {
    Leaf(String),
    Node(Vec<(String, Form)>),
}

impl Form {
    fn insert(&mut self, path: &[&str], value: &str) -> Result<(), String> {
        let Form::Node(children) = self else {
            return Err("a value and members under the same key".to_owned());
        };
        let (first, rest) = path.split_first().ok_or("empty key")?;
        let index = match children.iter().position(|(k, _)| k == first) {
            Some(index) => index,
            None => {
                let child = if rest.is_empty() {
                    Form::Leaf(value.to_owned())
                } else {
                    Form::Node(Vec::new())
                };
                children.push(((*first).to_owned(), child));
                if rest.is_empty() {
                    return Ok(());
                }
                children.len() - 1
            }
        };
        if rest.is_empty() {
            return Err(format!("{first} given twice"));
        }
        children[index].1.insert(rest, value)
    }

    fn decode(pairs: &[(String, String)]) -> Result<Form, String> {
        let mut root = Form::Node(Vec::new());
        for (key, value) in pairs {
            let (head, tail) = key.split_once('[').unwrap_or((key, ""));
            let mut path = vec![head];
            if !tail.is_empty() {
                let inner = tail.strip_suffix(']').ok_or(format!("bad key {key}"))?;
                path.extend(inner.split("]["));
            }
            root.insert(&path, value)
                .map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(root)
    }
}

/// Checks a decoded form value against an OpenAPI schema the way Stripe reads forms: every
/// leaf is a string, parsed by the type the schema asks for.
fn validate(openapi: &Value, form: &Form, schema: &Value, at: &str) -> Result<(), String> {
    let schema = resolve(openapi, schema);
    if let Some(branches) = schema["anyOf"].as_array().or(schema["oneOf"].as_array()) {
        let mut reasons = Vec::new();
        for branch in branches {
            match validate(openapi, form, branch, at) {
                Ok(()) => return Ok(()),
                Err(reason) => reasons.push(reason),
            }
        }
        return Err(format!(
            "{at}: no anyOf branch matches ({})",
            reasons.join(" | ")
        ));
    }
    match form {
        Form::Leaf(text) => {
            if let Some(allowed) = schema["enum"].as_array() {
                let listed = allowed
                    .iter()
                    .any(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned) == *text);
                if !listed {
                    return Err(format!("{at}: {text:?} is not in the enum"));
                }
            }
            let fits = match schema["type"].as_str() {
                Some("string") => schema["maxLength"]
                    .as_u64()
                    .is_none_or(|max| text.chars().count() as u64 <= max),
                Some("integer") => text.parse::<i64>().is_ok(),
                Some("number") => text.parse::<f64>().is_ok(),
                Some("boolean") => text == "true" || text == "false",
                Some("object") | Some("array") => false,
                _ => schema.get("properties").is_none(),
            };
            if fits {
                Ok(())
            } else {
                Err(format!("{at}: {text:?} is not a valid {}", schema["type"]))
            }
        }
        Form::Node(children) => match schema["type"].as_str() {
            Some("array") => {
                for (index, (key, child)) in children.iter().enumerate() {
                    if key != &index.to_string() {
                        return Err(format!("{at}: array member {key} out of order"));
                    }
                    validate(openapi, child, &schema["items"], &format!("{at}[{key}]"))?;
                }
                Ok(())
            }
            Some("object") | None
                if schema["type"] == "object" || schema.get("properties").is_some() =>
            {
                let properties = schema["properties"].as_object();
                for (key, child) in children {
                    let member = format!("{at}[{key}]");
                    match (
                        properties.and_then(|p| p.get(key)),
                        schema.get("additionalProperties"),
                    ) {
                        (Some(member_schema), _) => {
                            validate(openapi, child, member_schema, &member)?
                        }
                        (None, Some(extra)) if extra.is_object() => {
                            validate(openapi, child, extra, &member)?
                        }
                        (None, Some(Value::Bool(true))) => {}
                        (None, _) if properties.is_none() => {}
                        (None, _) => return Err(format!("{member}: unknown member")),
                    }
                }
                for name in schema["required"].as_array().into_iter().flatten() {
                    let name = name.as_str().unwrap_or_default();
                    if !children.iter().any(|(k, _)| k == name) {
                        return Err(format!("{at}[{name}]: required member missing"));
                    }
                }
                Ok(())
            }
            other => Err(format!(
                "{at}: members given where the schema says {other:?}"
            )),
        },
    }
}

/// Stripe's schema for one of the operation's parameters, wherever it travels.
fn openapi_param<'a>(operation: &'a Value, param: &ParamSpec) -> Option<&'a Value> {
    let in_parameters = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == param.source.as_str() && p["in"] != "header")
        .map(|p| &p["schema"]);
    in_parameters.or_else(|| {
        operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
            ["properties"]
            .get(&param.source)
    })
}

/// Problems with one built request: an unknown operation, path or method, parameters in the
/// wrong place, or a form that Stripe's request schema rejects.
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
    if op.method != HttpMethod::Post && !built.form.is_empty() {
        problems.push(format!(
            "{what}: a {} carries a body",
            method_name(op.method)
        ));
    }
    let body_schema =
        &operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"];
    let query_schemas: Map<String, Value> = operation["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["in"] == "query")
        .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["schema"].clone())))
        .collect();

    match Form::decode(&built.query) {
        Err(e) => problems.push(format!("{what}: query does not decode: {e}")),
        Ok(Form::Node(children)) => {
            for (key, value) in &children {
                // A DELETE's form parameters travel in the query string, as Stripe's SDKs send them.
                let schema = query_schemas.get(key).or_else(|| {
                    (op.method != HttpMethod::Post)
                        .then(|| body_schema["properties"].get(key))
                        .flatten()
                });
                match schema {
                    Some(schema) => {
                        if let Err(e) = validate(openapi, value, schema, key) {
                            problems.push(format!("{what}: query {e}"));
                        }
                    }
                    None => problems.push(format!(
                        "{what}: query parameter {key} is not accepted by {}",
                        op.operation_id
                    )),
                }
            }
        }
        Ok(Form::Leaf(_)) => unreachable!("a decoded form is a node"),
    }

    if op.method == HttpMethod::Post {
        let root = match Form::decode(&built.form) {
            Ok(root) => root,
            Err(e) => {
                problems.push(format!("{what}: body does not decode: {e}"));
                return;
            }
        };
        let schema = if body_schema.is_null() {
            json!({"type": "object", "properties": {}})
        } else {
            body_schema.clone()
        };
        if let Err(e) = validate(openapi, &root, &schema, "body") {
            problems.push(format!("{what}: {e} (operation {})", op.operation_id));
        }
    }
}

/// Inputs for every parameter, each a value Stripe's schema accepts.
fn full_inputs(openapi: &Value, op: &OperationSpec) -> Map<String, Value> {
    let operation = &openapi["paths"][&op.path][method_name(op.method)];
    let mut inputs = Map::new();
    for param in &op.params {
        let value = match param.location {
            ParamLocation::Path => Some(json!("id_1")),
            _ => openapi_param(operation, param).and_then(|schema| sample(openapi, schema, 0)),
        };
        if let Some(value) = value {
            inputs.insert(param.name.clone(), value);
        }
    }
    inputs
}

/// Values for the path placeholders the spec fills from resource names rather than parameters.
fn placeholders(op: &OperationSpec) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = op.path.as_str();
    while let Some(start) = rest.find('{') {
        let end = rest[start..].find('}').map_or(rest.len(), |e| start + e);
        names.push(rest[start + 1..end].to_owned());
        rest = &rest[(end + 1).min(rest.len())..];
    }
    names
}

fn build(op: &OperationSpec, inputs: &Map<String, Value>) -> Result<UpstreamRequest, EngineError> {
    let names = placeholders(op);
    let values: Vec<(&str, &str)> = names.iter().map(|p| (p.as_str(), "id_1")).collect();
    request::build(op, inputs, &values).map_err(EngineError::InvalidInput)
}

fn openapi() -> Value {
    assert!(
        Path::new(OPENAPI).exists(),
        "{OPENAPI} (Stripe's OpenAPI description) is missing"
    );
    serde_json::from_slice(&std::fs::read(OPENAPI).unwrap()).unwrap()
}

/// Every operation of every entity type and every action, named for messages.
fn all_operations(
    spec: &connector_runtime::spec::model::ConnectorSpec,
) -> Vec<(String, &OperationSpec)> {
    let mut out = Vec::new();
    for entity in &spec.entities {
        for (kind, op) in entity.operations.iter() {
            out.push((format!("{}.{kind:?}", entity.name), op));
        }
    }
    for action in &spec.actions {
        out.push((action.name.clone(), &action.operation));
    }
    out
}

#[test]
fn every_request_the_engine_builds_is_one_stripe_accepts() {
    let openapi = openapi();
    let spec = connector_runtime::spec::stripe().unwrap();
    let mut problems = Vec::new();
    let operations = all_operations(spec);
    for (what, op) in &operations {
        match build(op, &full_inputs(&openapi, op)) {
            Ok(built) => check(&openapi, what, op, &built, &mut problems),
            Err(e) => problems.push(format!("{what}: engine refused valid inputs: {e}")),
        }
    }
    assert!(
        operations.len() > 200,
        "only {} operations checked",
        operations.len()
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// Whether the refusal names the parameter (or a member of it).
fn names_param(error: &EngineError, param: &ParamSpec) -> bool {
    let EngineError::InvalidInput(violations) = error else {
        return false;
    };
    violations.iter().any(|v| {
        v.field == param.name
            || v.field.starts_with(&format!("{}.", param.name))
            || v.field.starts_with(&format!("{}[", param.name))
    })
}

#[test]
fn edge_values_are_refused_or_sent_in_a_form_stripe_accepts() {
    let openapi = openapi();
    let spec = connector_runtime::spec::stripe().unwrap();
    let edges = [json!(null), json!([]), json!({}), json!("")];
    let mut problems = Vec::new();
    let (mut refused, mut sent) = (0usize, 0usize);
    for (what, op) in all_operations(spec) {
        let valid = full_inputs(&openapi, op);
        for param in &op.params {
            for edge in &edges {
                let mut inputs = valid.clone();
                inputs.insert(param.name.clone(), edge.clone());
                let case = format!("{what} with {} = {edge}", param.name);
                match build(op, &inputs) {
                    Ok(built) => {
                        sent += 1;
                        check(&openapi, &case, op, &built, &mut problems);
                    }
                    Err(error) if names_param(&error, param) => refused += 1,
                    Err(error) => problems.push(format!(
                        "{case}: refused, but not for {}: {error}",
                        param.name
                    )),
                }
            }
        }
    }
    println!("edge values: {refused} refused before sending, {sent} sent and valid");
    assert!(
        refused > 1000 && sent > 1000,
        "too few cases: {refused} refused, {sent} sent"
    );
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

/// The bytes a status takes as gRPC trailers: `grpc-status`, `grpc-message` (percent-encoded)
/// and `grpc-status-details-bin` (base64), names included.
fn wire_size(status: &tonic::Status) -> usize {
    let mut headers = http::HeaderMap::new();
    status.add_header(&mut headers).unwrap();
    headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum()
}

/// Bad values of every kind for one parameter: out of an enum, the wrong type, many bad items,
/// many unknown members, a long unknown key, deep nesting.
fn bad_values(param: &ParamSpec) -> Vec<(String, Value)> {
    let long_key = "ключ".repeat(1000);
    let many_members: Map<String, Value> = (0..300)
        .map(|i| (format!("unknown_member_{i}"), json!(true)))
        .collect();
    let mut deep = json!("x");
    for _ in 0..100 {
        deep = json!({ "nested_member": deep });
    }
    vec![
        (param.name.clone(), json!("not-one-of-the-allowed-values")),
        (param.name.clone(), json!(true)),
        (param.name.clone(), json!(12.5)),
        (
            param.name.clone(),
            Value::Array(vec![json!({"x": true}); 300]),
        ),
        (param.name.clone(), Value::Array(vec![json!(true); 300])),
        (param.name.clone(), Value::Object(many_members)),
        (param.name.clone(), deep),
        (format!("{}{long_key}", param.name), json!(1)),
    ]
}

#[test]
fn the_largest_error_for_one_bad_parameter_fits_any_grpc_client() {
    let openapi = openapi();
    let spec = connector_runtime::spec::stripe().unwrap();
    let mut largest = (0usize, String::new());
    let mut measured = 0usize;
    for (what, op) in all_operations(spec) {
        // Only what is required: the error is the bad parameter's alone.
        let mut valid = full_inputs(&openapi, op);
        valid.retain(|name, _| op.params.iter().any(|p| &p.name == name && p.required));
        for param in &op.params {
            for (key, value) in bad_values(param) {
                let mut inputs = valid.clone();
                inputs.insert(key.clone(), value);
                let Err(error) = build(op, &inputs) else {
                    continue;
                };
                let size = wire_size(&engine_error(&error));
                measured += 1;
                if size > largest.0 {
                    largest = (
                        size,
                        format!("{what} {}", key.chars().take(40).collect::<String>()),
                    );
                }
            }
        }
    }
    println!(
        "largest error for one bad parameter: {} bytes as gRPC trailers ({}), of {measured} measured",
        largest.0, largest.1
    );
    assert!(measured > 1000, "only {measured} errors measured");
    assert!(
        largest.0 < 8 * 1024,
        "{} bytes for {}: over 8 KB",
        largest.0,
        largest.1
    );
}
