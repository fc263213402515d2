//! ListEntities' order (Google's `sort_by` / `sort_order`, one column). The upstream's own order
//! (the dialect's `native_order`; Stripe's is newest first, `Created DESC`) or no sort at all
//! streams page by page on the upstream's cursor. Any
//! other order of a scalar field reads the matching set first, at most MAX_SORTED_ENTITIES, and
//! pages it by keyset: a page token carries the last row's sort key and id. Pure, no I/O.

use std::cmp::Ordering;

use serde_json::Value;

use super::conditions::field_value;
use super::{EngineError, EntityRecord, clause_check};
use crate::spec::model::EntitySpec;

/// Most matching entities an order other than the upstream's may sort; beyond it the caller narrows
/// the clause (FAILED_PRECONDITION).
pub const MAX_SORTED_ENTITIES: usize = 10_000;

/// How a list is ordered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sort {
    /// The upstream's order: read page by page.
    Upstream,
    /// Any other order: read the matching set, then sort here.
    Column { field: String, descending: bool },
}

/// Resolves `sort_by` / `sort_order` against the entity type; `native` is the upstream's own
/// order as `(field source, descending)`, if it has one.
pub fn resolve(
    entity: &EntitySpec,
    sort_by: &[String],
    sort_order: &[String],
    native: Option<(&str, bool)>,
) -> Result<Sort, EngineError> {
    if sort_by.len() > 1 {
        return Err(EngineError::invalid("sort_by", "at most one sort column"));
    }
    if sort_order.len() > sort_by.len().max(1) {
        return Err(EngineError::invalid(
            "sort_order",
            "has more entries than sort_by",
        ));
    }
    let descending = match sort_order.first() {
        None => false,
        Some(order) if order.eq_ignore_ascii_case("ASC") => false,
        Some(order) if order.eq_ignore_ascii_case("DESC") => true,
        Some(_) => return Err(EngineError::invalid("sort_order", "must be ASC or DESC")),
    };
    let Some(column) = sort_by.first() else {
        return Ok(Sort::Upstream);
    };
    let field = clause_check::scalar_path(entity, column)
        .map_err(|message| EngineError::invalid("sort_by", message))?;
    let upstream_order = native.is_some_and(|(source, native_descending)| {
        native_descending == descending
            && entity
                .fields
                .iter()
                .any(|f| f.source == source && f.name == field)
    });
    if upstream_order {
        return Ok(Sort::Upstream);
    }
    Ok(Sort::Column { field, descending })
}

/// Total order of sort keys: nulls (and absent values) last; numbers by value, text and booleans
/// naturally; different kinds by kind.
fn compare_keys(a: &Value, b: &Value) -> Ordering {
    fn rank(value: &Value) -> u8 {
        match value {
            Value::Bool(_) => 0,
            Value::Number(_) => 1,
            Value::String(_) => 2,
            Value::Array(_) | Value::Object(_) => 3,
            Value::Null => 4,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .unwrap_or(0.0)
            .total_cmp(&y.as_f64().unwrap_or(0.0)),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => rank(a).cmp(&rank(b)),
    }
}

/// The row order: the key (reversed when descending, so nulls come last ascending and first
/// descending, as in PostgreSQL), then the id ascending, so equal keys page deterministically.
fn compare_rows(
    (key_a, id_a): (&Value, &str),
    (key_b, id_b): (&Value, &str),
    descending: bool,
) -> Ordering {
    let by_key = compare_keys(key_a, key_b);
    let by_key = if descending { by_key.reverse() } else { by_key };
    by_key.then_with(|| id_a.cmp(id_b))
}

/// A record's sort key.
pub fn key_of(record: &EntityRecord, field: &str) -> Value {
    field_value(&record.fields, field)
        .cloned()
        .unwrap_or(Value::Null)
}

/// Sorts `records` and keeps those after `after` (the previous page's last key and id).
pub fn sort_after(
    mut records: Vec<EntityRecord>,
    field: &str,
    descending: bool,
    after: Option<(&Value, &str)>,
) -> Vec<EntityRecord> {
    let id_of = |r: &EntityRecord| r.id.to_string();
    let mut keyed: Vec<(Value, String, EntityRecord)> = records
        .drain(..)
        .map(|r| (key_of(&r, field), id_of(&r), r))
        .collect();
    if let Some(after) = after {
        keyed
            .retain(|(key, id, _)| compare_rows((key, id), after, descending) == Ordering::Greater);
    }
    keyed.sort_by(|(ka, ia, _), (kb, ib, _)| compare_rows((ka, ia), (kb, ib), descending));
    keyed.into_iter().map(|(_, _, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EntityId;
    use serde_json::{Map, json};

    fn record(id: &str, balance: Value) -> EntityRecord {
        let mut fields = Map::new();
        fields.insert("Balance".to_owned(), balance);
        EntityRecord {
            id: EntityId {
                parents: Vec::new(),
                id: id.to_owned(),
            },
            fields,
            request_id: None,
        }
    }

    fn ids(records: &[EntityRecord]) -> Vec<String> {
        records.iter().map(|r| r.id.id.clone()).collect()
    }

    #[test]
    fn stripe_order_streams_and_other_orders_sort_here() {
        let spec = crate::spec::stripe().unwrap();
        let customer = spec.entity("Customer").unwrap();
        let s = |by: &[&str], order: &[&str]| {
            let by: Vec<String> = by.iter().map(|s| (*s).to_owned()).collect();
            let order: Vec<String> = order.iter().map(|s| (*s).to_owned()).collect();
            resolve(customer, &by, &order, Some(("created", true)))
        };
        assert_eq!(s(&[], &[]).unwrap(), Sort::Upstream);
        assert_eq!(s(&["Created"], &["DESC"]).unwrap(), Sort::Upstream);
        assert_eq!(s(&["created"], &["desc"]).unwrap(), Sort::Upstream);
        assert_eq!(
            s(&["Created"], &[]).unwrap(),
            Sort::Column {
                field: "Created".to_owned(),
                descending: false
            }
        );
        assert_eq!(
            s(&["email"], &["DESC"]).unwrap(),
            Sort::Column {
                field: "Email".to_owned(),
                descending: true
            }
        );
        assert!(s(&["Address.City"], &[]).is_ok());
        for (by, order) in [
            (&["Nope"][..], &[][..]),
            (&["Metadata"], &[]),
            (&["Email", "Name"], &[]),
            (&["Email"], &["UP"]),
        ] {
            assert!(
                matches!(s(by, order), Err(EngineError::InvalidInput(_))),
                "{by:?} {order:?}"
            );
        }
    }

    #[test]
    fn keyset_pages_follow_the_order_with_nulls_last_and_ids_breaking_ties() {
        let rows = || {
            vec![
                record("c", json!(5)),
                record("a", json!(5)),
                record("b", Value::Null),
                record("d", json!(-1)),
            ]
        };
        assert_eq!(
            ids(&sort_after(rows(), "Balance", false, None)),
            ["d", "a", "c", "b"]
        );
        assert_eq!(
            ids(&sort_after(rows(), "Balance", true, None)),
            ["b", "a", "c", "d"]
        );
        let five = json!(5);
        assert_eq!(
            ids(&sort_after(rows(), "Balance", false, Some((&five, "a")))),
            ["c", "b"]
        );
        assert_eq!(
            ids(&sort_after(rows(), "Balance", true, Some((&five, "c")))),
            ["d"]
        );
    }
}
