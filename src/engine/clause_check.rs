//! Checks a parsed filter clause against an entity type before anything is read: every field
//! (and every member of a dotted path, e.g. `Address.city`, `Metadata.plan`) exists, and every
//! literal fits its field's JSON schema. Each problem is one field violation on `conditions` that
//! names the entity field. Pure, no I/O.

use serde_json::Value;

use super::FieldViolation;
use super::conditions::{Comparison, Condition, Op};
use crate::spec::model::EntitySpec;

/// Most violations reported for one clause; the rest are left out to keep errors small.
const MAX_VIOLATIONS: usize = 10;

/// The kinds of literal a schema accepts.
#[derive(Debug, Default, Clone, Copy)]
struct Kinds {
    text: bool,
    number: bool,
    boolean: bool,
    object: bool,
    array: bool,
}

impl Kinds {
    fn any() -> Self {
        Self {
            text: true,
            number: true,
            boolean: true,
            object: true,
            array: true,
        }
    }

    fn of(schema: &Value) -> Self {
        let mut kinds = Self::default();
        let alternatives = ["anyOf", "oneOf"]
            .iter()
            .filter_map(|key| schema.get(*key).and_then(Value::as_array))
            .flatten()
            .collect::<Vec<_>>();
        for alternative in &alternatives {
            kinds = kinds.union(Self::of(alternative));
        }
        let named: Vec<&str> = match schema.get("type") {
            Some(Value::String(name)) => vec![name.as_str()],
            Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
            _ if alternatives.is_empty() => return Self::any(),
            _ => Vec::new(),
        };
        for name in named {
            match name {
                "string" => kinds.text = true,
                "integer" | "number" => kinds.number = true,
                "boolean" => kinds.boolean = true,
                "object" => kinds.object = true,
                "array" => kinds.array = true,
                _ => return Self::any(),
            }
        }
        kinds
    }

    fn union(self, other: Self) -> Self {
        Self {
            text: self.text || other.text,
            number: self.number || other.number,
            boolean: self.boolean || other.boolean,
            object: self.object || other.object,
            array: self.array || other.array,
        }
    }

    fn scalar(self) -> bool {
        self.text || self.number || self.boolean
    }

    /// Whether a literal fits; numbers written as text fit numeric fields.
    fn accepts(self, literal: &Value) -> bool {
        match literal {
            Value::Null => true,
            Value::String(text) => self.text || (self.number && text.parse::<f64>().is_ok()),
            Value::Number(_) => self.number,
            Value::Bool(_) => self.boolean,
            _ => false,
        }
    }

    fn describe(self) -> &'static str {
        match (self.text, self.number, self.boolean) {
            (true, _, _) => "text",
            (false, true, _) => "a number",
            (false, false, true) => "true or false",
            _ if self.array => "a list",
            _ => "an object",
        }
    }
}

/// The JSON schema a (possibly dotted) field path resolves to, or why it does not resolve.
fn resolve<'a>(entity: &'a EntitySpec, path: &str) -> Result<(String, &'a Value), String> {
    static TEXT: Value = Value::Null;
    let mut parts = path.split('.');
    let head = parts.next().unwrap_or_default();
    let field = entity
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(head) || f.source.eq_ignore_ascii_case(head));
    let (name, mut schema) = match field {
        Some(field) => (field.name.clone(), &*field.json_schema),
        None => match entity
            .parents
            .iter()
            .find(|p| p.field.eq_ignore_ascii_case(head) || p.param.eq_ignore_ascii_case(head))
        {
            // A parent key is an id: text. `Null` stands for "any schema".
            Some(parent) => (parent.field.clone(), &TEXT),
            None => return Err(format!("{} has no field {head:?}", entity.name)),
        },
    };
    let mut walked = name;
    for member in parts {
        let properties = schema.get("properties").and_then(Value::as_object);
        let found = properties.and_then(|p| {
            p.iter()
                .find(|(k, _)| k.as_str() == member || k.eq_ignore_ascii_case(member))
        });
        schema = match (found, schema.get("additionalProperties")) {
            (Some((_, member_schema)), _) => member_schema,
            (None, Some(open @ Value::Object(_))) => open,
            (None, Some(Value::Bool(true))) => &TEXT,
            (None, _) if properties.is_some() => {
                return Err(format!("{walked} has no member {member:?}"));
            }
            (None, _) if Kinds::of(schema).object || schema.is_null() => &TEXT,
            (None, _) => return Err(format!("{walked} is not an object; it has no members")),
        };
        walked = format!("{walked}.{member}");
    }
    Ok((walked, schema))
}

fn check_comparison(entity: &EntitySpec, comparison: &Comparison) -> Option<String> {
    let (name, schema) = match resolve(entity, &comparison.field) {
        Ok(resolved) => resolved,
        Err(message) => return Some(message),
    };
    let kinds = if schema.is_null() {
        Kinds::any()
    } else {
        Kinds::of(schema)
    };
    let literals: Vec<&Value> = match &comparison.value {
        Value::Array(values) => values.iter().collect(),
        value => vec![value],
    };
    let null_test =
        literals.iter().all(|v| v.is_null()) && matches!(comparison.op, Op::Eq | Op::Ne);
    if !kinds.scalar() && !null_test {
        return Some(format!(
            "{name} is {}; compare one of its members ({name}.<member>) or test {name} IS NULL",
            kinds.describe()
        ));
    }
    if comparison.op == Op::Like && !kinds.text {
        return Some(format!(
            "{name} is {}; LIKE applies to text fields",
            kinds.describe()
        ));
    }
    literals
        .iter()
        .find(|literal| !kinds.accepts(literal))
        .map(|literal| format!("{name} is {}, not {literal}", kinds.describe()))
}

/// The canonical name of a scalar field path (for sorting), or why it is not one.
pub fn scalar_path(entity: &EntitySpec, path: &str) -> Result<String, String> {
    let (name, schema) = resolve(entity, path)?;
    if schema.is_null() || Kinds::of(schema).scalar() {
        Ok(name)
    } else {
        Err(format!(
            "{name} is {}; sort by a text, number or boolean field",
            Kinds::of(schema).describe()
        ))
    }
}

/// Every problem of `condition` against `entity`, as violations of the `conditions` field.
pub fn check(entity: &EntitySpec, condition: &Condition) -> Vec<FieldViolation> {
    let mut violations: Vec<FieldViolation> = Vec::new();
    for comparison in condition.comparisons() {
        if let Some(description) = check_comparison(entity, comparison)
            && !violations.iter().any(|v| v.description == description)
        {
            violations.push(FieldViolation::new("conditions", description));
        }
        if violations.len() == MAX_VIOLATIONS {
            break;
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conditions::parse;

    fn problems(entity: &str, clause: &str) -> Vec<String> {
        let spec = crate::spec::stripe().unwrap();
        let entity = spec.entity(entity).unwrap();
        check(entity, &parse(clause).unwrap().unwrap())
            .into_iter()
            .map(|v| v.description)
            .collect()
    }

    #[test]
    fn well_typed_clauses_pass() {
        for clause in [
            "Email = 'a@b.c' AND Created > 1700000000",
            "Created >= '1700000000'",
            "Metadata.plan = 'pro'",
            "Address.City LIKE 'Par%'",
            "Email IN ('a', 'b') OR Name IS NULL",
            "Address IS NOT NULL",
            "Delinquent = true",
        ] {
            assert_eq!(
                problems("Customer", clause),
                Vec::<String>::new(),
                "{clause}"
            );
        }
        assert!(problems("CustomerTaxId", "Customer = 'cus_1'").is_empty());
    }

    #[test]
    fn unknown_fields_and_mismatched_literals_name_the_field() {
        assert_eq!(
            problems("Customer", "Emial = 'x'"),
            vec![r#"Customer has no field "Emial""#]
        );
        assert_eq!(
            problems("Customer", "Created > 'yesterday'"),
            vec![r#"Created is a number, not "yesterday""#]
        );
        assert_eq!(
            problems("Customer", "Email = 5"),
            vec!["Email is text, not 5"]
        );
        assert_eq!(
            problems("Customer", "Address.Town = 'x'"),
            vec![r#"Address has no member "Town""#]
        );
        assert!(problems("Customer", "Created LIKE '17%'")[0].contains("LIKE applies to text"));
        assert!(problems("Customer", "Metadata = 'x'")[0].contains("Metadata.<member>"));
        assert!(problems("Customer", "Email.x = 'y'")[0].contains("not an object"));
        assert!(problems("Customer", "Balance IN (1, 'two')")[0].contains("\"two\""));
    }
}
