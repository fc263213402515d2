//! Every operation of the committed Stripe spec is one that Stripe's OpenAPI description has,
//! and every parameter is one that operation accepts, in the stated location.
//!
//! Needs `../shared/stripe-openapi/spec3.json`; skipped with a note when absent, failed under `CI`.

use std::path::PathBuf;

use connector_runtime::spec::model::{OperationSpec, ParamLocation};
use connector_runtime::spec::openapi::OpenApi;
use connector_runtime::spec::overlay::Overlay;
use connector_runtime::spec::stripe;

fn openapi() -> Option<OpenApi> {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/stripe-openapi/spec3.json");
    if !path.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must have {} (shared/ beside the clone)",
            path.display()
        );
        println!("skipped: {} not found", path.display());
        return None;
    }
    Some(OpenApi::read(&path).unwrap())
}

/// Parameters the overlay adds on purpose (gated features absent from the description), by
/// operation path and Stripe name.
fn overlay_extras() -> Vec<(String, String)> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("connector-spec/stripe/overlay.toml");
    let overlay = Overlay::read(&path).unwrap();
    overlay
        .actions
        .iter()
        .flat_map(|(path, action)| {
            action
                .extra_params
                .iter()
                .map(move |param| (path.clone(), param.source.clone()))
        })
        .collect()
}

/// Problems with one operation, as readable lines.
fn check(api: &OpenApi, owner: &str, op: &OperationSpec) -> Vec<String> {
    let extras = overlay_extras();
    let Some(upstream) = api.operation(&op.path, op.method) else {
        return vec![format!(
            "{owner}: {:?} {} is not in the OpenAPI description",
            op.method, op.path
        )];
    };
    let mut problems = Vec::new();
    if upstream.operation_id() != Some(op.operation_id.as_str()) {
        problems.push(format!(
            "{owner}: operation_id {} != {:?}",
            op.operation_id,
            upstream.operation_id()
        ));
    }
    for param in &op.params {
        if extras.contains(&(op.path.clone(), param.source.clone())) {
            continue;
        }
        let accepted = upstream.all_params().find(|candidate| {
            candidate.name == param.source && candidate.location == param.location
        });
        match accepted {
            None => problems.push(format!(
                "{owner}: {} ({:?} {}) is not accepted by {:?} {}",
                param.name, param.location, param.source, op.method, op.path
            )),
            Some(accepted) if param.location == ParamLocation::Path && !param.required => {
                problems.push(format!(
                    "{owner}: path parameter {} {} not required",
                    param.name, accepted.name
                ));
            }
            Some(accepted) if accepted.required && !param.required => problems.push(format!(
                "{owner}: {} is required upstream but not in the spec",
                param.name
            )),
            Some(_) => {}
        }
    }
    problems
}

#[test]
fn every_entity_operation_and_parameter_exists_in_the_openapi_description() {
    let Some(api) = openapi() else { return };
    let spec = stripe().unwrap();
    let mut problems = Vec::new();
    let mut checked = 0;
    for entity in &spec.entities {
        for (kind, op) in entity.operations.iter() {
            problems.extend(check(&api, &format!("{} {kind:?}", entity.name), op));
            checked += 1;
        }
        if let Some(search) = &entity.search_path {
            assert!(
                api.has_path(search),
                "{}: search path {search} missing",
                entity.name
            );
        }
    }
    assert!(checked > 200, "only {checked} operations checked");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_action_operation_and_parameter_exists_in_the_openapi_description() {
    let Some(api) = openapi() else { return };
    let spec = stripe().unwrap();
    let problems: Vec<String> = spec
        .actions
        .iter()
        .flat_map(|action| check(&api, &action.name, &action.operation))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn every_upstream_body_parameter_of_an_action_is_exposed_except_expand() {
    let Some(api) = openapi() else { return };
    let spec = stripe().unwrap();
    let mut problems = Vec::new();
    for action in &spec.actions {
        let op = &action.operation;
        let upstream = api.operation(&op.path, op.method).unwrap();
        for param in upstream.all_params().filter(|param| param.name != "expand") {
            if op.param_by_source(param.location, param.name).is_none() {
                problems.push(format!(
                    "{}: upstream {} not exposed",
                    action.name, param.name
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
