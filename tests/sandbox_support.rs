//! Shared helpers of the sandbox tests: start a sandbox on the real Stripe spec and talk to it
//! over real HTTP, form-encoded like Stripe's SDKs. Included with `#[path]` by `sandbox_*.rs`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use connector_runtime::sandbox::{self, SANDBOX_API_KEY, SandboxConfig, SandboxHandle};
use serde_json::Value;

pub async fn start(config: SandboxConfig) -> SandboxHandle {
    let spec = connector_runtime::spec::stripe().expect("the embedded Stripe spec loads");
    let listen: SocketAddr = "127.0.0.1:0".parse().expect("address");
    sandbox::start(Arc::new(spec.clone()), listen, config)
        .await
        .expect("sandbox starts")
}

/// No rate limit, no faults.
pub fn unlimited() -> SandboxConfig {
    SandboxConfig {
        rate_limit: None,
        ..SandboxConfig::default()
    }
}

pub struct Client {
    pub base: String,
    pub http: reqwest::Client,
    pub key: String,
}

pub struct Reply {
    pub status: u16,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

impl Client {
    pub fn new(handle: &SandboxHandle) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            // No idle-pool timer: tests under paused time must not see the clock jump.
            .pool_idle_timeout(None)
            .build()
            .expect("client");
        Self {
            base: handle.base_url(),
            http,
            key: SANDBOX_API_KEY.to_owned(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        form: &[(&str, &str)],
        idempotency_key: Option<&str>,
    ) -> Reply {
        let encoded = {
            let mut serializer = form_urlencoded::Serializer::new(String::new());
            for (k, v) in form {
                serializer.append_pair(k, v);
            }
            serializer.finish()
        };
        let mut request = if method == reqwest::Method::POST {
            self.http
                .request(method, format!("{}{path}", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(encoded)
        } else {
            let separator = if path.contains('?') { "&" } else { "?" };
            let url = if encoded.is_empty() {
                format!("{}{path}", self.base)
            } else {
                format!("{}{path}{separator}{encoded}", self.base)
            };
            self.http.request(method, url)
        };
        request = request.bearer_auth(&self.key);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.expect("response");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            body,
            headers,
        }
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::POST, path, form, None).await
    }

    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(reqwest::Method::GET, path, query, None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send(reqwest::Method::DELETE, path, &[], None).await
    }

    /// POST that must succeed; returns the object.
    pub async fn ok(&self, path: &str, form: &[(&str, &str)]) -> Value {
        let reply = self.post(path, form).await;
        assert_eq!(reply.status, 200, "POST {path}: {}", reply.body);
        reply.body
    }

    pub async fn customer(&self) -> String {
        self.ok("/v1/customers", &[("email", "jenny@example.com")])
            .await["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    /// Admin JSON call.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("admin response");
        serde_json::from_slice(&response.bytes().await.expect("admin body")).expect("admin JSON")
    }
}

pub fn id(value: &Value) -> String {
    value["id"].as_str().expect("object id").to_owned()
}

/// Times a race is staged before giving up on an overlap.
pub const RACE_ATTEMPTS: usize = 5;

/// Sends `request(attempt)` twice at once, as two callers racing for one thing (a key, an
/// object). No sleep orders them: whichever arrives first is the holder, and they overlap when
/// the other is refused. If both succeeded, one finished before the other arrived (a loaded
/// machine), so the race is staged again with the next `attempt`, at most [`RACE_ATTEMPTS`]
/// times. Returns the caller that succeeded first, then the other.
pub async fn race<F, Fut>(request: F) -> (Reply, Reply)
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    for attempt in 0..RACE_ATTEMPTS {
        let (a, b) = tokio::join!(request(attempt), request(attempt));
        if a.status != 200 || b.status != 200 {
            return if a.status == 200 { (a, b) } else { (b, a) };
        }
    }
    panic!("the two requests never overlapped in {RACE_ATTEMPTS} attempts");
}
