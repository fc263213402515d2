//! A real MCP client — the official Python SDK (`pip install mcp`) — drives the runtime as an
//! agent would, over stdio (`connector-runtime mcp`, a subprocess) and over streamable HTTP (the
//! service's `mcp.listen`, with a bearer token): it lists tools, is refused `delete_customer`
//! under the default policy, creates a customer, creates and confirms a PaymentIntent with
//! `pm_card_visa` once the policy allows it, and (over HTTP) checks every tool's schemas with
//! Python's `jsonschema` and runs every read-only tool against the sandbox, validating each result
//! against its output schema. The script is `tests/mcp/agent_client.py`.
//!
//! Needs `python3` with the `mcp` package: under CI (`CI` set) a missing one fails the test;
//! elsewhere the test is skipped with a note.

mod common;

use std::path::PathBuf;
use std::process::Stdio;

use common::{ADMIN_TOKEN, Home, INVOKER_TOKEN, Service, logs_text, start};
use connector_runtime::api::pb;
use serde_json::Value;

const STRIPE_TEST_KEY: &str = "sk_test_agents0123456789";

fn python_has_mcp() -> bool {
    std::process::Command::new("python3")
        .args(["-c", "import mcp, jsonschema"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Whether the test can run; panics under CI when it cannot.
fn python_ready() -> bool {
    if python_has_mcp() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "python3 with the `mcp` package is required under CI (.ci/run installs it)"
    );
    println!("skipped: python3 with the `mcp` package not found (pip install mcp)");
    false
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/mcp/agent_client.py")
}

/// Runs the agent script and returns its JSON summary, failing the test with its output when it
/// fails.
async fn run_agent(args: &[String]) -> Value {
    let output = tokio::process::Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "agent_client.py failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let last = stdout.lines().last().unwrap_or_default();
    println!("agent summary: {last}");
    serde_json::from_str(last).unwrap_or_else(|e| panic!("summary {last:?}: {e}"))
}

fn policy(allow: &[&str], allow_destructive: &[&str]) -> pb::ToolPolicy {
    pb::ToolPolicy {
        allow: allow.iter().map(|s| (*s).to_owned()).collect(),
        allow_destructive: allow_destructive.iter().map(|s| (*s).to_owned()).collect(),
        ..Default::default()
    }
}

/// `id` on the service's sandbox with a tool policy and a pool large enough for a sweep.
fn agent_connection(service: &Service, id: &str, tool_policy: pb::ToolPolicy) -> pb::Connection {
    pb::Connection {
        tool_policy: Some(tool_policy),
        node_config: Some(pb::NodeConfig {
            min_node_count: 20,
            max_node_count: 50,
        }),
        ..Service::connection_to(id, "stripe-key", &service.sandbox_url())
    }
}

fn settings(home: &Home) -> connector_runtime::config::Settings {
    home.put_secret("stripe-key", "1", STRIPE_TEST_KEY);
    let mut settings = home.settings(true);
    settings.mcp.listen = Some("127.0.0.1:0".parse().unwrap());
    settings.nodes.stripe_budget.test = 1000;
    settings
}

fn check_agent_payment(summary: &Value) {
    let payment = &summary["agent_payment"];
    assert_eq!(payment["status"], "succeeded", "{summary}");
    assert!(
        payment["second_confirm"]
            .as_str()
            .unwrap()
            .starts_with("STRIPE_INVALID_STATE: Stripe: "),
        "{summary}"
    );
    let refusal = summary["default_policy"]["delete_refusal"]
        .as_str()
        .unwrap();
    assert!(
        refusal.contains("tool_policy.allow_destructive"),
        "{refusal}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_mcp_sdk_over_streamable_http() {
    if !python_ready() {
        return;
    }
    let home = Home::new();
    let service = start(settings(&home)).await.with_token(ADMIN_TOKEN);
    service
        .add_connection(agent_connection(
            &service,
            "agents",
            policy(&["create_*"], &["confirm_payment_intent"]),
        ))
        .await;
    service
        .add_connection(agent_connection(
            &service,
            "everything",
            policy(&["*"], &["*"]),
        ))
        .await;
    let mcp = service.running.as_ref().unwrap().mcp_addr.unwrap();
    let summary = run_agent(&[
        "http".to_owned(),
        "--base".to_owned(),
        format!("http://{mcp}/mcp"),
        "--token".to_owned(),
        INVOKER_TOKEN.to_owned(),
    ])
    .await;
    check_agent_payment(&summary);
    let sweep = &summary["whole_spec"];
    let outcomes = sweep["read_only_outcomes"].as_object().unwrap();
    assert!(sweep["tools"].as_u64().unwrap() > 300, "{summary}");
    assert!(outcomes["OK"].as_u64().unwrap() > 50, "{summary}");

    // What the agent did is real: the runtime reads the confirmed PaymentIntent back over gRPC.
    let intent_id = summary["agent_payment"]["payment_intent"].as_str().unwrap();
    let intent = service
        .get("agents", "PaymentIntent", intent_id)
        .await
        .unwrap();
    assert_eq!(intent["Status"], "succeeded");

    // Every tool call is logged with the token's name, the tool and the outcome; never the token.
    let logs = logs_text();
    let line = |tool: &str, outcome: &str| {
        logs.lines().any(|l| {
            l.contains("tool call")
                && l.contains("caller=flows")
                && l.contains(&format!("tool=\"{tool}\""))
                && l.contains(&format!("outcome=\"{outcome}\""))
        })
    };
    assert!(
        line("confirm_payment_intent", "ok"),
        "no log line for the confirmation"
    );
    assert!(
        line("delete_customer", "refused"),
        "no log line for the refusal"
    );
    assert!(!logs.contains(INVOKER_TOKEN) && !logs.contains(STRIPE_TEST_KEY));
    service.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn python_mcp_sdk_over_stdio() {
    if !python_ready() {
        return;
    }
    // The stdio server runs its own engine in a subprocess. Its `agents` connection targets this
    // service's sandbox, so the test can read back what the agent did; its embedded
    // `stripe-sandbox` connection (default policy) gets a sandbox of its own.
    let home = Home::new();
    let service = start(settings(&home)).await.with_token(ADMIN_TOKEN);
    let config = home.dir.path().join("mcp.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"

[secrets]
dir = "{secrets}"

[sandbox]
enabled = "always"
rate_limit = 0

[[connections]]
id = "agents"
api_key = {{ secret = "stripe-key", version = "1" }}
api_base_url = "{sandbox}"

[connections.tool_policy]
allow = ["create_*"]
allow_destructive = ["confirm_payment_intent"]
"#,
            data = home.dir.path().join("stdio-data").display(),
            secrets = home.secrets_dir().display(),
            sandbox = service.sandbox_url(),
        ),
    )
    .unwrap();
    let summary = run_agent(&[
        "stdio".to_owned(),
        "--command".to_owned(),
        env!("CARGO_BIN_EXE_connector-runtime").to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ])
    .await;
    check_agent_payment(&summary);
    let intent_id = summary["agent_payment"]["payment_intent"].as_str().unwrap();
    let intent = service
        .get("stripe-sandbox", "PaymentIntent", intent_id)
        .await
        .unwrap();
    assert_eq!(intent["Status"], "succeeded");
    service.shutdown().await;
}

#[tokio::test]
async fn mcp_over_http_requires_a_bearer_token() {
    let home = Home::new();
    let service = start(settings(&home)).await;
    let mcp = service.running.as_ref().unwrap().mcp_addr.unwrap();
    let client = reqwest::Client::new();
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    });
    let post = |token: Option<&str>, path: &str| {
        let mut request = client
            .post(format!("http://{mcp}{path}"))
            .header("accept", "application/json, text/event-stream")
            .json(&initialize);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let missing = post(None, "/mcp/stripe-sandbox").await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let wrong = post(Some("not-a-token-at-all"), "/mcp/stripe-sandbox")
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let unknown = post(Some(INVOKER_TOKEN), "/mcp/no-such-connection")
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let good = post(Some(INVOKER_TOKEN), "/mcp/stripe-sandbox")
        .await
        .unwrap();
    assert_eq!(good.status(), 200, "{:?}", good.text().await);
    service.shutdown().await;
}
