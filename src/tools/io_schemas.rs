//! Tool input and output JSON schemas, derived from the spec's fields and parameters. Pure.
//!
//! Inputs use the names gRPC callers use (PascalCase fields and parameters, `request_id`);
//! list tools take the filter clause and paging. Outputs describe what a tool call returns:
//! an entity's PascalCase fields, a page of them, or Stripe's object for an action. Output
//! property types admit `null`, since Stripe omits or nulls most fields depending on state.

use serde_json::{Map, Value, json};

use crate::engine::MAX_PAGE_SIZE;
use crate::spec::model::{
    ActionSpec, DataType, EntitySpec, FieldSpec, OperationKind, ParamLocation, ParamSpec,
};

/// Argument carrying the caller's request id (idempotency).
pub const REQUEST_ID: &str = "request_id";
/// Arguments of list tools.
pub const CONDITIONS: &str = "conditions";
pub const PAGE_SIZE: &str = "page_size";
pub const PAGE_TOKEN: &str = "page_token";

/// Appended to the description of every tool that takes a `request_id`.
pub const REQUEST_ID_USAGE: &str = "Pass a new unique request_id per intended change; sending the same request_id again returns the first call's result instead of acting twice.";

fn request_id_schema() -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": 200,
        "description": "Idempotency: the same request_id sent again replays the first call's result."
    })
}

fn object(properties: Map<String, Value>, required: Vec<String>) -> Map<String, Value> {
    let mut schema = Map::new();
    schema.insert("type".to_owned(), json!("object"));
    schema.insert("properties".to_owned(), Value::Object(properties));
    if !required.is_empty() {
        schema.insert("required".to_owned(), json!(required));
    }
    schema
}

/// The key properties naming one entity: the parent ids of a nested type, then `Id`.
fn key_properties(entity: &EntitySpec, properties: &mut Map<String, Value>) -> Vec<String> {
    let mut required = Vec::new();
    for parent in &entity.parents {
        let of = parent.entity.as_deref().unwrap_or(&parent.field);
        properties.insert(
            parent.field.clone(),
            json!({"type": "string", "minLength": 1, "pattern": "^[^/]+$", "description": format!("Id of the parent {of}.")}),
        );
        required.push(parent.field.clone());
    }
    let example = entity
        .id_prefix
        .as_deref()
        .map(|prefix| format!(", e.g. {prefix}_…"))
        .unwrap_or_default();
    properties.insert(
        "Id".to_owned(),
        json!({"type": "string", "minLength": 1, "pattern": "^[^/]+$", "description": format!("Id of the {}{example}.", entity.name)}),
    );
    required.push("Id".to_owned());
    required
}

fn param_properties<'a>(
    params: impl Iterator<Item = &'a ParamSpec>,
    properties: &mut Map<String, Value>,
    required: &mut Vec<String>,
) {
    for param in params {
        properties.insert(param.name.clone(), (*param.json_schema).clone());
        if param.required && !required.contains(&param.name) {
            required.push(param.name.clone());
        }
    }
}

/// The input schema of an entity operation's tool.
pub fn entity_input(entity: &EntitySpec, kind: OperationKind) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    match kind {
        OperationKind::List => {
            let mut conditions = json!({"type": "string", "description": conditions_text(entity)});
            if !required_filters(entity).is_empty() {
                conditions["minLength"] = json!(1);
                required.push(CONDITIONS.to_owned());
            }
            properties.insert(CONDITIONS.to_owned(), conditions);
            properties.insert(
                PAGE_SIZE.to_owned(),
                json!({"type": "integer", "minimum": 0, "maximum": MAX_PAGE_SIZE, "description": "Entities per page; 0 or absent means 25."}),
            );
            properties.insert(
                PAGE_TOKEN.to_owned(),
                json!({"type": "string", "description": "next_page_token of the previous page, with the same conditions."}),
            );
        }
        OperationKind::Get | OperationKind::Delete => {
            required = key_properties(entity, &mut properties);
            if kind == OperationKind::Delete {
                properties.insert(REQUEST_ID.to_owned(), request_id_schema());
            }
        }
        OperationKind::Create => {
            if let Some(op) = &entity.operations.create {
                param_properties(op.params.iter(), &mut properties, &mut required);
            }
            properties.insert(REQUEST_ID.to_owned(), request_id_schema());
            required.push(REQUEST_ID.to_owned());
        }
        OperationKind::Update => {
            required = key_properties(entity, &mut properties);
            if let Some(op) = &entity.operations.update {
                let changes = op
                    .params
                    .iter()
                    .filter(|p| p.location != ParamLocation::Path);
                param_properties(changes, &mut properties, &mut required);
            }
            properties.insert(REQUEST_ID.to_owned(), request_id_schema());
        }
    }
    object(properties, required)
}

/// The input schema of an action's tool.
pub fn action_input(action: &ActionSpec) -> Map<String, Value> {
    let mut properties = Map::new();
    let mut required = Vec::new();
    param_properties(
        action.operation.params.iter(),
        &mut properties,
        &mut required,
    );
    properties.insert(REQUEST_ID.to_owned(), request_id_schema());
    required.push(REQUEST_ID.to_owned());
    object(properties, required)
}

/// A loose schema for an output value of `data_type`: its JSON type or null.
fn output_type(data_type: DataType) -> Value {
    let types: &[&str] = match data_type {
        DataType::Varchar => &["string"],
        DataType::Bigint | DataType::Integer | DataType::Timestamp => &["integer"],
        DataType::Double => &["number"],
        DataType::Decimal => &["string", "number"],
        DataType::Boolean => &["boolean"],
        DataType::Struct => &["object"],
        DataType::Array => &["array"],
        DataType::Json => return json!({}),
    };
    let mut all: Vec<&str> = types.to_vec();
    all.push("null");
    json!({"type": all})
}

fn fields_schema<'a>(
    fields: impl Iterator<Item = &'a FieldSpec>,
    key: impl Fn(&FieldSpec) -> &str,
) -> Map<String, Value> {
    let properties = fields
        .map(|field| (key(field).to_owned(), output_type(field.data_type)))
        .collect();
    object(properties, Vec::new())
}

fn entity_schema(entity: &EntitySpec) -> Map<String, Value> {
    let mut schema = fields_schema(entity.fields.iter(), |f| &f.name);
    schema.insert("required".to_owned(), json!(["Id"]));
    schema
}

/// The output schema of an entity operation's tool.
pub fn entity_output(entity: &EntitySpec, kind: OperationKind) -> Map<String, Value> {
    match kind {
        OperationKind::List => {
            let mut properties = Map::new();
            properties.insert(
                "entities".to_owned(),
                json!({"type": "array", "items": Value::Object(entity_schema(entity))}),
            );
            properties.insert(
                "next_page_token".to_owned(),
                json!({"type": "string", "description": "Empty on the last page."}),
            );
            object(properties, vec!["entities".to_owned()])
        }
        OperationKind::Get | OperationKind::Create | OperationKind::Update => entity_schema(entity),
        OperationKind::Delete => {
            let mut properties = Map::new();
            properties.insert("deleted".to_owned(), json!({"type": "boolean"}));
            properties.insert("Id".to_owned(), json!({"type": "string"}));
            object(properties, vec!["deleted".to_owned(), "Id".to_owned()])
        }
    }
}

/// The output schema of an action's tool: Stripe's object, by Stripe's field names.
pub fn action_output(action: &ActionSpec) -> Map<String, Value> {
    fields_schema(action.result_fields.iter(), |f| &f.source)
}

fn conditions_text(entity: &EntitySpec) -> String {
    let mut text = String::from(
        "Filter clause: FIELD op literal joined with AND, OR, NOT and parentheses; op is one of = != <> < <= > >=; literals are 'text', numbers, true, false, null. Example: Created > 1700000000.",
    );
    let pushed = entity.filterable_fields();
    if !pushed.is_empty() {
        text.push_str(" The upstream filters by: ");
        text.push_str(&pushed.join(", "));
        text.push('.');
    }
    let needed = required_filters(entity);
    if !needed.is_empty() {
        let equalities: Vec<String> = needed
            .iter()
            .map(|(field, example)| format!("{field} = '{example}'"))
            .collect();
        text.push_str(&format!(" Required: {}.", equalities.join(" AND ")));
    }
    text
}

/// Fields a List needs an equality on, each with an example value: the parent keys of a nested
/// type, then the filters Stripe's list endpoint requires (`ValueList` for value list items,
/// `Scope.type` for app secrets).
pub fn required_filters(entity: &EntitySpec) -> Vec<(String, String)> {
    const ID: &str = "<id>";
    let mut fields: Vec<(String, String)> = entity
        .parents
        .iter()
        .map(|p| (p.field.clone(), ID.to_owned()))
        .collect();
    if let Some(list) = &entity.operations.list {
        for param in list
            .params
            .iter()
            .filter(|p| p.required && p.location == ParamLocation::Query)
        {
            let field = entity
                .fields
                .iter()
                .find(|f| f.source == param.source)
                .map_or(param.name.as_str(), |f| f.name.as_str());
            // An object filter is named by its first required member (`Scope.type`).
            let member = param
                .json_schema
                .pointer("/required/0")
                .and_then(Value::as_str);
            let (field, schema) = match member {
                Some(member) => (
                    format!("{field}.{member}"),
                    param.json_schema.pointer(&format!("/properties/{member}")),
                ),
                None => (field.to_owned(), Some(&*param.json_schema)),
            };
            let example = schema
                .and_then(|s| s.pointer("/enum/0"))
                .and_then(Value::as_str)
                .unwrap_or(ID);
            if !fields.iter().any(|(known, _)| *known == field) {
                fields.push((field, example.to_owned()));
            }
        }
    }
    fields
}

/// How to call an entity operation's tool, appended to Stripe's description.
pub fn usage(entity: &EntitySpec, kind: OperationKind) -> String {
    match kind {
        OperationKind::List => format!(
            "Returns {} entities newest first; narrow with conditions, page with page_size and page_token.",
            entity.name
        ),
        OperationKind::Get => format!("Returns the {} named by its key.", entity.name),
        OperationKind::Create => format!(
            "Fields are the {} parameters in PascalCase. {REQUEST_ID_USAGE}",
            entity.name
        ),
        OperationKind::Update => {
            "Name the entity by its key; the other arguments are the changes.".to_owned()
        }
        OperationKind::Delete => format!("Deletes the {} named by its key.", entity.name),
    }
}
