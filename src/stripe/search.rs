//! Stripe's search query language as a push-down target for filter clauses.
//!
//! `/v1/<collection>/search?query=` understands `field:'v'` (exact, case-insensitive), `field~'v'`
//! (substring of at least 3 characters, case-insensitive), `field>n` and the other numeric
//! comparisons, `metadata['k']:'v'`, `-` negation, and either `AND` or `OR` (never both) across at
//! most 10 clauses, over the entity type's search fields. The runtime still evaluates the whole
//! clause on every row Search returns, so a pushed-down query only has to be a superset of the
//! clause's matches: anything it cannot express soundly is left out (under `AND`), or the clause
//! is not pushed down at all (under `OR`). Pure, no I/O.

use serde_json::Value;

use crate::engine::conditions::{Comparison, Condition, Op};
use crate::engine::request::UpstreamRequest;
use crate::engine::tier::SearchQuery;
use crate::spec::model::{EntitySpec, HttpMethod};

/// Clauses Stripe accepts in one query.
const MAX_SEARCH_CLAUSES: usize = 10;
/// Shortest substring `~` matches.
const MIN_SUBSTRING: usize = 3;

/// One translated part of a clause: a flat run of search clauses joined by AND or by OR.
#[derive(Debug, Clone)]
enum Part {
    All(Vec<String>),
    Any(Vec<String>),
}

/// The search query for `condition`, or `None` when Search cannot narrow it soundly (the entity
/// type is not searchable, or nothing of the clause maps onto its search fields).
pub fn push_down(entity: &EntitySpec, condition: &Condition) -> Option<SearchQuery> {
    entity.search_path.as_ref()?;
    let part = translate(entity, condition)?;
    let (clauses, joiner) = match &part {
        Part::All(clauses) => (clauses, " AND "),
        Part::Any(clauses) => (clauses, " OR "),
    };
    if clauses.is_empty() || clauses.len() > MAX_SEARCH_CLAUSES {
        return None;
    }
    Some(SearchQuery {
        text: clauses.join(joiner),
        clauses: clauses.len(),
    })
}

fn translate(entity: &EntitySpec, condition: &Condition) -> Option<Part> {
    match condition {
        Condition::Compare(comparison) => translate_comparison(entity, comparison, false),
        Condition::Not(inner) => match inner.as_ref() {
            Condition::Compare(comparison) => translate_comparison(entity, comparison, true),
            _ => None,
        },
        Condition::And(terms) => {
            // Under AND, leaving a term out only widens the result: keep what maps onto one
            // flat AND, at most MAX_SEARCH_CLAUSES clauses.
            let mut clauses = Vec::new();
            for part in terms.iter().filter_map(|t| translate(entity, t)) {
                match part {
                    Part::All(more) => clauses.extend(more),
                    Part::Any(one) if one.len() == 1 => clauses.extend(one),
                    Part::Any(_) => {}
                }
            }
            clauses.truncate(MAX_SEARCH_CLAUSES);
            (!clauses.is_empty()).then_some(Part::All(clauses))
        }
        Condition::Or(terms) => {
            // Under OR, every term must map, each onto one flat OR.
            let mut clauses = Vec::new();
            for term in terms {
                match translate(entity, term)? {
                    Part::All(one) | Part::Any(one) if one.len() == 1 => clauses.extend(one),
                    Part::Any(more) => clauses.extend(more),
                    Part::All(_) => return None,
                }
            }
            (clauses.len() <= MAX_SEARCH_CLAUSES).then_some(Part::Any(clauses))
        }
    }
}

/// Stripe's name of a searchable field (`email`, `metadata['plan']`) and whether it holds text.
fn search_field(entity: &EntitySpec, path: &str) -> Option<(String, bool)> {
    let (head, member) = match path.split_once('.') {
        Some((head, member)) => (head, Some(member)),
        None => (path, None),
    };
    let field = entity
        .fields
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(head) || f.source.eq_ignore_ascii_case(head))?;
    if !entity.search_fields.iter().any(|s| s == &field.name) {
        return None;
    }
    match member {
        // Only metadata keys are searchable members.
        Some(key) if field.source == "metadata" && !key.contains(['\'', '\\', '.']) => {
            Some((format!("metadata['{key}']"), true))
        }
        Some(_) => None,
        None if field.source == "metadata" => None,
        None => {
            let text = field.json_schema.to_string().contains("\"string\"");
            Some((field.source.clone(), text))
        }
    }
}

fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn number(value: &Value) -> Option<String> {
    value.as_number().map(ToString::to_string)
}

/// Text whose case cannot vary, so Stripe's case-insensitive `:` equals the runtime's `=`.
fn caseless(text: &str) -> bool {
    text.chars().all(|c| c.to_lowercase().eq(c.to_uppercase()))
}

/// The longest run of literal characters in a LIKE pattern.
fn longest_literal_run(pattern: &str) -> &str {
    pattern
        .split(['%', '_'])
        .max_by_key(|run| run.chars().count())
        .unwrap_or_default()
}

fn translate_comparison(
    entity: &EntitySpec,
    comparison: &Comparison,
    negated: bool,
) -> Option<Part> {
    let (field, text) = search_field(entity, &comparison.field)?;
    let one = |clause: String| Some(Part::All(vec![clause]));
    let sign = if negated { "-" } else { "" };
    match (comparison.op, &comparison.value) {
        // `:` is case-insensitive: a superset of `=`, but its negation would drop rows `!=`
        // keeps, unless the value has no case.
        (Op::Eq, Value::String(v)) if text && (!negated || caseless(v)) => {
            one(format!("{sign}{field}:{}", quote(v)))
        }
        (Op::Eq, v @ Value::Number(_)) => one(format!("{sign}{field}:{}", number(v)?)),
        (Op::Eq, Value::Bool(b)) if !text => {
            one(format!("{sign}{field}:{}", quote(&b.to_string())))
        }
        (Op::Ne, Value::String(v)) if text && !negated && caseless(v) => {
            one(format!("-{field}:{}", quote(v)))
        }
        (Op::Ne, v @ Value::Number(_)) if !negated => one(format!("-{field}:{}", number(v)?)),
        (Op::Gt | Op::Ge | Op::Lt | Op::Le, v @ Value::Number(_)) if !text => {
            let op = match comparison.op {
                Op::Gt => ">",
                Op::Ge => ">=",
                Op::Lt => "<",
                _ => "<=",
            };
            one(format!("{sign}{field}{op}{}", number(v)?))
        }
        (Op::Like, Value::String(pattern)) if text && !negated => {
            let run = longest_literal_run(pattern);
            (run.chars().count() >= MIN_SUBSTRING)
                .then(|| Part::All(vec![format!("{field}~{}", quote(run))]))
        }
        (Op::In, Value::Array(values)) if !negated && !values.is_empty() => {
            let clauses = values
                .iter()
                .map(|v| match v {
                    Value::String(s) if text => Some(format!("{field}:{}", quote(s))),
                    Value::Number(_) => Some(format!("{field}:{}", number(v)?)),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Part::Any(clauses))
        }
        _ => None,
    }
}

/// The search call for one page: `page` is Stripe's `next_page` of the previous one.
pub fn request(
    entity: &EntitySpec,
    query: &SearchQuery,
    limit: u64,
    page: Option<&str>,
) -> Option<UpstreamRequest> {
    let path = entity.search_path.clone()?;
    let mut pairs = vec![
        ("query".to_owned(), query.text.clone()),
        ("limit".to_owned(), limit.to_string()),
    ];
    if let Some(page) = page {
        pairs.push(("page".to_owned(), page.to_owned()));
    }
    Some(UpstreamRequest {
        method: HttpMethod::Get,
        // Search paths have no ids: the path is its own template.
        path_template: path.clone(),
        path,
        query: pairs,
        form: Vec::new(),
        json: None,
        operation_id: format!("Get{}Search", entity.name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::conditions::parse;

    fn query(entity: &str, clause: &str) -> Option<String> {
        let spec = crate::spec::stripe().unwrap();
        let entity = spec.entity(entity).unwrap();
        push_down(entity, &parse(clause).unwrap().unwrap()).map(|q| q.text)
    }

    #[test]
    fn maps_what_search_can_narrow() {
        assert_eq!(
            query("Customer", "Email LIKE '%rosen%' AND Metadata.plan = 'pro'").as_deref(),
            Some("email~'rosen' AND metadata['plan']:'pro'")
        );
        assert_eq!(
            query("Customer", "Name IN ('Ada', 'O''Brien')").as_deref(),
            Some(r"name:'Ada' OR name:'O\'Brien'")
        );
        assert_eq!(
            query(
                "Charge",
                "Amount >= 500 AND NOT (Amount > 900) AND Refunded = false"
            )
            .as_deref(),
            Some("amount>=500 AND -amount>900 AND refunded:'false'")
        );
        assert_eq!(
            query("Customer", "Created > 1700000000 OR Email = 'a@b.c'").as_deref(),
            Some("created>1700000000 OR email:'a@b.c'")
        );
        // What cannot be expressed under AND is left to the runtime.
        assert_eq!(
            query(
                "Customer",
                "Email LIKE 'jen%' AND Balance > 5 AND (Name = 'x' OR Phone = 'y')"
            )
            .as_deref(),
            Some("email~'jen'")
        );
    }

    #[test]
    fn refuses_what_search_cannot_narrow_soundly() {
        for (entity, clause) in [
            ("Customer", "Balance > 5"),                // not a search field
            ("Customer", "Email LIKE 'j%'"),            // substring shorter than 3
            ("Customer", "Email != 'a@b.c'"),           // `:` ignores case; its negation drops rows
            ("Customer", "Email = 'x' OR Balance = 1"), // one OR term cannot map
            ("Customer", "NOT (Email = 'a' AND Name = 'b')"),
            ("Customer", "Metadata = 'x'"),
            ("CustomerTaxId", "Customer = 'cus_1'"), // not searchable at all
        ] {
            assert_eq!(query(entity, clause), None, "{clause}");
        }
        assert_eq!(
            query("Customer", "Phone != '+15550100'").as_deref(),
            Some("-phone:'+15550100'")
        );
    }
}
