//! The connector spec as the API shows it: entity types, fields, actions. Pure conversions.

use serde_json::{Map, Value, json};

use super::convert::to_proto_struct;
use super::names;
use super::pb;
use crate::spec::model::{ActionSpec, DataType, EntitySpec, FieldSpec, OperationKind, ResultShape};

pub fn data_type(data_type: DataType) -> pb::DataType {
    match data_type {
        DataType::Varchar => pb::DataType::Varchar,
        DataType::Bigint => pb::DataType::Bigint,
        DataType::Integer => pb::DataType::Integer,
        DataType::Double => pb::DataType::Double,
        DataType::Decimal => pb::DataType::Decimal,
        DataType::Boolean => pb::DataType::Boolean,
        DataType::Timestamp => pb::DataType::Timestamp,
        DataType::Struct => pb::DataType::Struct,
        DataType::Array => pb::DataType::Array,
        DataType::Json => pb::DataType::Json,
    }
}

fn operation(kind: OperationKind) -> pb::Operation {
    match kind {
        OperationKind::List => pb::Operation::List,
        OperationKind::Get => pb::Operation::Get,
        OperationKind::Create => pb::Operation::Create,
        OperationKind::Update => pb::Operation::Update,
        OperationKind::Delete => pb::Operation::Delete,
    }
}

fn schema_struct(value: &Value) -> Option<prost_types::Struct> {
    value.as_object().map(to_proto_struct)
}

fn field(spec: &FieldSpec) -> pb::Field {
    pb::Field {
        name: spec.name.clone(),
        description: String::new(),
        data_type: data_type(spec.data_type) as i32,
        key: spec.key,
        nullable: spec.nullable,
        read_only: spec.read_only,
        reference: spec.reference.as_ref().map(|entity| pb::Reference {
            name: entity.clone(),
            r#type: "Id".to_owned(),
        }),
        default_value: None,
        json_schema: schema_struct(&spec.json_schema),
        source_name: spec.source.clone(),
    }
}

pub fn entity_type(connection: &str, entity: &EntitySpec, full: bool) -> pb::EntityType {
    let name = names::entity_type_name(connection, &entity.name);
    let operations = entity
        .operations
        .iter()
        .map(|(kind, _)| operation(kind) as i32)
        .collect();
    if !full {
        return pb::EntityType {
            name,
            operations,
            ..Default::default()
        };
    }
    let mut properties = Map::new();
    let mut required = Vec::new();
    for f in &entity.fields {
        properties.insert(f.name.clone(), (*f.json_schema).clone());
        if f.key {
            required.push(Value::String(f.name.clone()));
        }
    }
    let schema = json!({"type": "object", "properties": properties, "required": required});
    pb::EntityType {
        name,
        fields: entity.fields.iter().map(field).collect(),
        json_schema: schema_struct(&schema),
        operations,
        default_sort_by: entity
            .fields
            .iter()
            .find(|f| f.source == "created")
            .map(|f| f.name.clone())
            .unwrap_or_default(),
        filterable_fields: entity.filterable_fields(),
        searchable: entity.search_path.is_some(),
    }
}

fn display_name(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_uppercase() && i > 0 {
            out.push(' ');
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn result_rows(action: &ActionSpec) -> Vec<(String, pb::DataType, Value)> {
    let success = (
        "Success".to_owned(),
        pb::DataType::Varchar,
        json!({"type": "string", "enum": ["true"]}),
    );
    match &action.result {
        ResultShape::SuccessOnly => vec![success],
        ResultShape::Select { fields } => {
            let mut rows: Vec<_> = fields
                .iter()
                .map(|f| {
                    (
                        f.name.clone(),
                        pb::DataType::Varchar,
                        json!({"type": ["string", "null"]}),
                    )
                })
                .collect();
            rows.push(success);
            rows
        }
        // Scalars arrive as strings; nested objects arrive flattened under dotted names.
        ResultShape::Flatten => std::iter::once(success)
            .chain(action.result_fields.iter().map(|f| {
                (
                    f.source.clone(),
                    pb::DataType::Varchar,
                    json!({"type": ["string", "null"]}),
                )
            }))
            .collect(),
    }
}

pub fn action(connection: &str, action: &ActionSpec, full: bool) -> pb::Action {
    let name = names::action_name(connection, &action.name);
    let entity_type = action.entity.clone().unwrap_or_default();
    if !full {
        return pb::Action {
            name,
            display_name: display_name(&action.name),
            entity_type,
            ..Default::default()
        };
    }
    let params = &action.operation.params;
    let input_parameters = params
        .iter()
        .map(|p| pb::InputParameter {
            name: p.name.clone(),
            description: String::new(),
            data_type: data_type(p.data_type) as i32,
            nullable: !p.required,
            default_value: None,
            json_schema: schema_struct(&p.json_schema),
            required: p.required,
            source_name: p.source.clone(),
        })
        .collect();
    let mut properties = Map::new();
    for p in params {
        properties.insert(p.name.clone(), (*p.json_schema).clone());
    }
    let required: Vec<Value> = params
        .iter()
        .filter(|p| p.required)
        .map(|p| Value::String(p.name.clone()))
        .collect();
    let rows = result_rows(action);
    let mut result_properties = Map::new();
    for (row_name, _, schema) in &rows {
        result_properties.insert(row_name.clone(), schema.clone());
    }
    pb::Action {
        name,
        display_name: display_name(&action.name),
        description: String::new(),
        input_parameters,
        result_metadata: rows
            .into_iter()
            .map(|(row_name, dt, schema)| pb::ResultMetadata {
                name: row_name,
                description: String::new(),
                data_type: dt as i32,
                json_schema: schema_struct(&schema),
            })
            .collect(),
        input_json_schema: schema_struct(
            &json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false}),
        ),
        result_json_schema: schema_struct(
            &json!({"type": "object", "properties": result_properties}),
        ),
        entity_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_split_pascal_case() {
        assert_eq!(
            display_name("ConfirmPaymentIntent"),
            "Confirm payment intent"
        );
    }
}
