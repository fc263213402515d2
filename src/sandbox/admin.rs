//! The admin endpoint under `/_sandbox/`: read and patch the configuration (rate limit, faults,
//! seed), reset all state, read request counters. Unauthenticated: the sandbox listens on loopback.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::config::SandboxConfig;
use super::server::{Sandbox, lock};

pub(crate) fn routes() -> Router<Arc<Sandbox>> {
    Router::new()
        .route("/_sandbox/config", get(read_config).post(patch_config))
        .route("/_sandbox/reset", post(reset))
        .route("/_sandbox/stats", get(stats))
}

async fn read_config(State(sandbox): State<Arc<Sandbox>>) -> Json<SandboxConfig> {
    Json(lock(&sandbox.config).clone())
}

fn bad_request(message: String) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": {"type": "invalid_request_error", "message": message}})),
    )
        .into_response()
}

/// Merges `patch` into `target` (JSON merge patch: objects merge, everything else replaces).
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                merge(target.entry(key).or_insert(Value::Null), value);
            }
        }
        (target, patch) => *target = patch,
    }
}

/// `POST /_sandbox/config` with a partial config, e.g. `{"rate_limit": 100}` or
/// `{"faults": {"server_error_rate": 0.1, "phase": "after"}}`; answers the whole new config.
async fn patch_config(State(sandbox): State<Arc<Sandbox>>, body: Bytes) -> Response {
    let patch: Value = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(error) => return bad_request(format!("the body is not JSON: {error}")),
    };
    let current = lock(&sandbox.config).clone();
    let mut merged = match serde_json::to_value(&current) {
        Ok(value) => value,
        Err(error) => return bad_request(error.to_string()),
    };
    merge(&mut merged, patch);
    let config: SandboxConfig = match serde_json::from_value(merged) {
        Ok(config) => config,
        Err(error) => return bad_request(format!("invalid sandbox config: {error}")),
    };
    if let Err(message) = config.validate() {
        return bad_request(message);
    }
    sandbox.reconfigure(config.clone());
    Json(config).into_response()
}

async fn reset(State(sandbox): State<Arc<Sandbox>>) -> Json<Value> {
    sandbox.reset();
    Json(json!({"reset": true}))
}

async fn stats(State(sandbox): State<Arc<Sandbox>>) -> Response {
    let mut stats = serde_json::to_value(&*lock(&sandbox.stats)).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut stats {
        let webhooks = lock(&sandbox.webhooks.stats).clone();
        map.insert(
            "webhooks".to_owned(),
            serde_json::to_value(webhooks).unwrap_or(Value::Null),
        );
    }
    Json(stats).into_response()
}
