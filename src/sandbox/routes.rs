//! Matching request paths to what the connector spec declares: every entity's standard operations,
//! its search endpoint and every action's operation. Literal segments win over placeholders
//! (`/v1/customers/search` before `/v1/customers/{customer}`). Pure, no I/O.

use std::collections::HashSet;

use crate::spec::model::{ConnectorSpec, HttpMethod, OperationKind};

/// What a matched route does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// A standard operation of `spec.entities[entity]`.
    Entity { entity: usize, kind: OperationKind },
    /// The search endpoint of `spec.entities[entity]`.
    Search { entity: usize },
    /// The operation of `spec.actions[action]`.
    Action { action: usize },
    /// `/v1/events` when the spec has no Event entity.
    EventList,
    /// `/v1/events/{id}` when the spec has no Event entity.
    EventGet,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
}

#[derive(Debug, Clone)]
struct Route {
    method: HttpMethod,
    template: String,
    segments: Vec<Segment>,
    target: Target,
}

/// A successful match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Matched {
    pub target: Target,
    /// The path template, e.g. `/v1/customers/{customer}` (used as the stats label).
    pub template: String,
    /// Placeholder values, percent-decoded.
    pub params: Vec<(String, String)>,
}

impl Matched {
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct RouteTable {
    routes: Vec<Route>,
}

fn parse_template(template: &str) -> Vec<Segment> {
    template
        .trim_matches('/')
        .split('/')
        .map(
            |segment| match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => Segment::Param(name.to_owned()),
                None => Segment::Literal(segment.to_owned()),
            },
        )
        .collect()
}

/// The route's shape with placeholder names erased, to spot duplicates.
fn shape(method: HttpMethod, segments: &[Segment]) -> String {
    let mut out = format!("{method:?} ");
    for segment in segments {
        out.push('/');
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::Param(_) => out.push_str("{}"),
        }
    }
    out
}

impl RouteTable {
    pub fn new(spec: &ConnectorSpec) -> Self {
        let mut table = Self::default();
        let mut seen = HashSet::new();
        let mut add = |table: &mut Self, method: HttpMethod, template: &str, target: Target| {
            let segments = parse_template(template);
            if seen.insert(shape(method, &segments)) {
                table.routes.push(Route {
                    method,
                    template: template.to_owned(),
                    segments,
                    target,
                });
            }
        };
        for (index, entity) in spec.entities.iter().enumerate() {
            for (kind, operation) in entity.operations.iter() {
                add(
                    &mut table,
                    operation.method,
                    &operation.path,
                    Target::Entity {
                        entity: index,
                        kind,
                    },
                );
            }
            if let Some(search) = &entity.search_path {
                add(
                    &mut table,
                    HttpMethod::Get,
                    search,
                    Target::Search { entity: index },
                );
            }
        }
        for (index, action) in spec.actions.iter().enumerate() {
            add(
                &mut table,
                action.operation.method,
                &action.operation.path,
                Target::Action { action: index },
            );
        }
        add(&mut table, HttpMethod::Get, "/v1/events", Target::EventList);
        add(
            &mut table,
            HttpMethod::Get,
            "/v1/events/{id}",
            Target::EventGet,
        );
        table
    }

    /// Finds the route for a method and path; the most literal match wins.
    pub fn find(&self, method: HttpMethod, path: &str) -> Option<Matched> {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        // (literal segments, route, placeholder values) of the best match so far.
        type Candidate<'r> = (usize, &'r Route, Vec<(String, String)>);
        let mut best: Option<Candidate<'_>> = None;
        for route in self
            .routes
            .iter()
            .filter(|r| r.method == method && r.segments.len() == parts.len())
        {
            let mut params = Vec::new();
            let mut literals = 0;
            let matched = route
                .segments
                .iter()
                .zip(&parts)
                .all(|(segment, part)| match segment {
                    Segment::Literal(text) => {
                        literals += 1;
                        text == part
                    }
                    Segment::Param(name) => {
                        let decoded = percent_decode(part);
                        params.push((name.clone(), decoded));
                        !part.is_empty()
                    }
                });
            if matched && best.as_ref().is_none_or(|(score, _, _)| literals > *score) {
                best = Some((literals, route, params));
            }
        }
        best.map(|(_, route, params)| Matched {
            target: route.target,
            template: route.template.clone(),
            params,
        })
    }
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::model::{ConnectorMeta, EntitySpec, OperationSpec, Operations};

    fn op(method: HttpMethod, path: &str) -> Option<OperationSpec> {
        Some(OperationSpec {
            method,
            path: path.into(),
            operation_id: String::new(),
            params: Vec::new(),
            body: Default::default(),
        })
    }

    fn spec() -> ConnectorSpec {
        ConnectorSpec {
            connector: ConnectorMeta {
                name: "stripe".into(),
                version: "1".into(),
                api_version: "2023-08-16".into(),
                default_base_url: "https://api.stripe.com".into(),
                dialect: "stripe".into(),
            },
            entities: vec![EntitySpec {
                name: "Customer".into(),
                object: "customer".into(),
                id_prefix: Some("cus".into()),
                collection_path: "/v1/customers".into(),
                item_path: Some("/v1/customers/{customer}".into()),
                item_id_param: Some("customer".into()),
                parents: Vec::new(),
                search_path: Some("/v1/customers/search".into()),
                search_fields: Vec::new(),
                fields: Vec::new(),
                operations: Operations {
                    list: op(HttpMethod::Get, "/v1/customers"),
                    get: op(HttpMethod::Get, "/v1/customers/{customer}"),
                    create: op(HttpMethod::Post, "/v1/customers"),
                    update: op(HttpMethod::Post, "/v1/customers/{customer}"),
                    delete: op(HttpMethod::Delete, "/v1/customers/{customer}"),
                },
            }],
            actions: Vec::new(),
            descriptions: Default::default(),
        }
    }

    #[test]
    fn literal_segments_win_over_placeholders() {
        let table = RouteTable::new(&spec());
        let search = table.find(HttpMethod::Get, "/v1/customers/search").unwrap();
        assert_eq!(search.target, Target::Search { entity: 0 });
        let get = table
            .find(HttpMethod::Get, "/v1/customers/cus_123")
            .unwrap();
        assert_eq!(
            get.target,
            Target::Entity {
                entity: 0,
                kind: OperationKind::Get
            }
        );
        assert_eq!(get.param("customer"), Some("cus_123"));
    }

    #[test]
    fn method_and_length_must_match() {
        let table = RouteTable::new(&spec());
        assert!(table.find(HttpMethod::Delete, "/v1/customers").is_none());
        assert!(
            table
                .find(HttpMethod::Get, "/v1/customers/cus_1/extra")
                .is_none()
        );
        assert_eq!(
            table.find(HttpMethod::Get, "/v1/events").unwrap().target,
            Target::EventList
        );
    }
}
