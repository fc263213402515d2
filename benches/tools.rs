//! Listing agent tools for the full Stripe spec: building the catalog, applying a connection's
//! tool policy and encoding the listing for MCP (JSON) and gRPC (protobuf), in process; then
//! `ListTools` over gRPC and `tools/list` over MCP streamable HTTP against a running service.
//!
//! Run: `cargo bench --bench tools` (`-- --quick` for fewer rounds). Prints figures; the goal is
//! a full listing under 5 ms.

use std::time::{Duration, Instant};

use connector_runtime::api::mcp::mcp_tool;
use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::tool_service_client::ToolServiceClient;
use connector_runtime::api::tools::ToolMessages;
use connector_runtime::connections::model::ToolPolicy;
use connector_runtime::tools::{ToolCatalog, ToolPolicyCheck};
use prost::Message;
use serde_json::json;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn time<T>(rounds: usize, mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut samples = Vec::with_capacity(rounds);
    let mut last = None;
    for _ in 0..rounds {
        let start = Instant::now();
        let value = f();
        samples.push(start.elapsed());
        last = Some(value);
    }
    (median(samples), last.expect("at least one round"))
}

fn row(what: &str, took: Duration, note: &str) {
    println!(
        "| {what} | {:.3} ms | {note} |",
        took.as_secs_f64() * 1000.0
    );
}

fn everything() -> ToolPolicy {
    ToolPolicy {
        allow: vec!["*".to_owned()],
        allow_destructive: vec!["*".to_owned()],
        ..ToolPolicy::default()
    }
}

fn in_process(rounds: usize) {
    let spec = connector_runtime::spec::stripe().expect("embedded spec");
    let (build, catalog) = time(rounds, || {
        ToolCatalog::new(spec, &connector_runtime::stripe::dialect::StripeDialect)
    });
    let all = everything();
    let default = ToolPolicy::default();
    let check = |policy| ToolPolicyCheck {
        policy,
        connection: "bench",
        live_mode: false,
    };
    let (mcp, bytes) = time(rounds, || {
        let check = check(&all);
        let tools: Vec<_> = catalog
            .iter()
            .filter(|t| check.allows(t))
            .map(mcp_tool)
            .collect();
        serde_json::to_vec(&rmcp::model::ListToolsResult::with_all_items(tools))
            .expect("tools serialize")
    });
    let (messages_build, messages) = time(rounds, || ToolMessages::new(&catalog));
    let (grpc, encoded) = time(rounds, || {
        let check = check(&all);
        messages
            .listing(catalog.iter().filter(|t| check.allows(t)), String::new())
            .encode_to_vec()
    });
    let (read_only, visible) = time(rounds, || {
        let check = check(&default);
        catalog.iter().filter(|t| check.allows(t)).count()
    });
    println!(
        "| step (full spec, {} tools) | median | note |",
        catalog.len()
    );
    println!("|---|---:|---|");
    row("build the catalog (once, on first use)", build, "");
    row(
        "build and encode the gRPC messages (once, on first ListTools)",
        messages_build,
        "",
    );
    row(
        "policy + MCP tools/list payload (JSON)",
        mcp,
        &format!("{} tools, {} KB", catalog.len(), bytes.len() / 1024),
    );
    row(
        "policy + gRPC ListToolsResponse (protobuf)",
        grpc,
        &format!("{} KB", encoded.len() / 1024),
    );
    row(
        "policy only, default policy",
        read_only,
        &format!("{visible} read-only tools visible"),
    );
}

async fn over_the_wire(rounds: usize) {
    let home = tempfile::tempdir().expect("temp dir");
    let mut settings = connector_runtime::config::Settings {
        data_dir: home.path().join("data"),
        ..Default::default()
    };
    settings.mcp.listen = Some("127.0.0.1:0".parse().expect("address"));
    settings.log.level = "warn".to_owned();
    let secrets = home.path().join("secrets");
    std::fs::create_dir_all(secrets.join("bench-key")).expect("secret dir");
    std::fs::write(secrets.join("bench-key/1"), "sk_test_bench0123456789").expect("secret");
    settings.secrets.dir = Some(secrets);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let running = connector_runtime::app::start(settings, false, listener, std::future::pending())
        .await
        .expect("service starts");
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", running.addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    ConnectionServiceClient::new(channel.clone())
        .create_connection(pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(pb::Connection {
                name: "connections/everything".to_owned(),
                api_key: Some(pb::SecretRef {
                    secret: "bench-key".to_owned(),
                    version: "1".to_owned(),
                }),
                api_base_url: running.sandbox_url.clone().expect("sandbox"),
                tool_policy: Some(pb::ToolPolicy {
                    allow: vec!["*".to_owned()],
                    allow_destructive: vec!["*".to_owned()],
                    ..Default::default()
                }),
                ..Default::default()
            }),
        })
        .await
        .expect("connection created");
    let mut tools = ToolServiceClient::new(channel);
    let mut samples = Vec::new();
    let mut count = 0;
    for _ in 0..rounds {
        let start = Instant::now();
        let response = tools
            .list_tools(pb::ListToolsRequest {
                parent: "connections/everything".to_owned(),
                ..Default::default()
            })
            .await
            .expect("ListTools");
        samples.push(start.elapsed());
        count = response.into_inner().tools.len();
    }
    row(
        "ListTools over gRPC (loopback, client decode included)",
        median(samples),
        &format!("{count} tools"),
    );

    let mcp = format!(
        "http://{}/mcp/everything",
        running.mcp_addr.expect("mcp listens")
    );
    let client = reqwest::Client::new();
    let post = |body: serde_json::Value, session: Option<String>| {
        let mut request = client
            .post(&mcp)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18")
            .json(&body);
        if let Some(session) = session {
            request = request.header("mcp-session-id", session);
        }
        request.send()
    };
    let initialized = post(
        json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}}),
        None,
    )
    .await
    .expect("initialize");
    let session = initialized
        .headers()
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let _ = initialized.bytes().await;
    let _ = post(
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        session.clone(),
    )
    .await
    .expect("initialized")
    .bytes()
    .await;
    let mut samples = Vec::new();
    let mut size = 0;
    for id in 1..=rounds {
        let start = Instant::now();
        let body = post(
            json!({"jsonrpc": "2.0", "id": id, "method": "tools/list"}),
            session.clone(),
        )
        .await
        .expect("tools/list")
        .bytes()
        .await
        .expect("body");
        samples.push(start.elapsed());
        size = body.len();
    }
    row(
        "tools/list over MCP streamable HTTP (loopback)",
        median(samples),
        &format!("{} KB", size / 1024),
    );
    running.shutdown().await.expect("shutdown");
}

#[tokio::main]
async fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 20 } else { 200 };
    in_process(rounds);
    over_the_wire(rounds).await;
}
