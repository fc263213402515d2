//! OpenTelemetry export end to end: the real binary (`serve`) exports over OTLP/gRPC to a real
//! receiver on loopback (the `opentelemetry-proto` crate's tonic services), configured by the
//! standard `OTEL_*` variables. The spans and metrics arrive with their attributes, a caller's
//! `traceparent` is honoured, log lines carry the trace id, and nothing holds a secret. With the
//! collector down the service keeps serving.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{ChildGuard, free_port, wait_for_port};
use connector_runtime::api::convert::to_proto_struct;
use connector_runtime::api::pb;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, metric};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use serde_json::json;
use tokio::sync::mpsc;
use tonic::transport::{Channel, Server};
use tonic::{Request, Response, Status};

const KEY_MAIN: &str = "sk_test_otlp_main_secret_0123456789";
const KEY_TIGHT: &str = "sk_test_otlp_tight_secret_0123456789";
const KEY_DOWN: &str = "sk_test_otlp_down_secret_0123456789";
const CARD_NUMBER: &str = "4242424242424242";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_SPAN_ID: &str = "00f067aa0ba902b7";
const LOG_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// What the receiver got, in arrival order.
enum Export {
    Traces(ExportTraceServiceRequest),
    Metrics(ExportMetricsServiceRequest),
}

#[derive(Clone)]
struct Receiver(mpsc::UnboundedSender<Export>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let _ = self.0.send(Export::Traces(request.into_inner()));
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let _ = self.0.send(Export::Metrics(request.into_inner()));
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A real OTLP/gRPC receiver on 127.0.0.1:0.
async fn start_receiver() -> (String, mpsc::UnboundedReceiver<Export>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let receiver = Receiver(tx);
    tokio::spawn(
        Server::builder()
            .add_service(TraceServiceServer::new(receiver.clone()))
            .add_service(MetricsServiceServer::new(receiver))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), rx)
}

struct Process {
    _child: ChildGuard,
    channel: Channel,
    stderr: std::path::PathBuf,
}

/// Starts the binary with three connections to its sandbox (and one to a closed port) and the
/// OTLP endpoint given by `OTEL_EXPORTER_OTLP_ENDPOINT`.
async fn start_service(dir: &Path, endpoint: &str, telemetry: &str) -> Process {
    let port = free_port();
    let sandbox_port = free_port();
    let closed_port = free_port();
    let sandbox = format!("http://127.0.0.1:{sandbox_port}");
    let config = dir.join("otlp.toml");
    std::fs::write(
        &config,
        format!(
            r#"data_dir = "{data}"
[server]
listen = "127.0.0.1:{port}"
[sandbox]
enabled = "always"
listen = "127.0.0.1:{sandbox_port}"
rate_limit = 0
[upstream]
max_retries = 1
[nodes]
node_rate = 2
node_burst = 1
[nodes.stripe_budget]
test = 1000
[telemetry]
metrics_interval = "300ms"
{telemetry}
[[connections]]
id = "otlp"
api_key = {{ secret = "env:OTLP_KEY_MAIN" }}
api_base_url = "{sandbox}"
nodes = {{ min_node_count = 10, max_node_count = 10 }}
[[connections]]
id = "otlp-tight"
api_key = {{ secret = "env:OTLP_KEY_TIGHT" }}
api_base_url = "{sandbox}"
nodes = {{ min_node_count = 1, max_node_count = 1 }}
[[connections]]
id = "otlp-down"
api_key = {{ secret = "env:OTLP_KEY_DOWN" }}
api_base_url = "http://127.0.0.1:{closed_port}"
nodes = {{ min_node_count = 10, max_node_count = 10 }}
"#,
            data = dir.join("data").display()
        ),
    )
    .unwrap();
    let stderr = dir.join("stderr.log");
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
        .env("OTEL_SERVICE_NAME", "connector-otlp-test")
        .env("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "200")
        .env("OTLP_KEY_MAIN", KEY_MAIN)
        .env("OTLP_KEY_TIGHT", KEY_TIGHT)
        .env("OTLP_KEY_DOWN", KEY_DOWN)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .expect("starting connector-runtime");
    let child = ChildGuard(child);
    assert!(
        wait_for_port(port).await,
        "the service did not start: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    let channel = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Process {
        _child: child,
        channel,
        stderr,
    }
}

fn with_traceparent<T>(message: T, trace_id: &str) -> Request<T> {
    with_trace_flags(message, trace_id, "01")
}

fn with_trace_flags<T>(message: T, trace_id: &str, flags: &str) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "traceparent",
        format!("00-{trace_id}-{PARENT_SPAN_ID}-{flags}")
            .parse()
            .unwrap(),
    );
    request
}

/// GetEntity of an id the sandbox does not have: NOT_FOUND, whatever the trace context.
async fn get_missing(
    entities: &mut EntityServiceClient<Channel>,
    request: impl tonic::IntoRequest<pb::GetEntityRequest>,
) {
    let missing = entities.get_entity(request).await.unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

fn get_request(connection: &str, id: &str) -> pb::GetEntityRequest {
    pb::GetEntityRequest {
        name: format!("connections/{connection}/entityTypes/Customer/entities/{id}"),
    }
}

/// The traffic: a create, a traced get, a traced miss, queueing and throttling on the one-node
/// connection, and retries against the closed port.
async fn traffic(channel: &Channel) {
    let mut entities = EntityServiceClient::new(channel.clone());
    let fields = json!({"Email": "otlp@example.com", "Description": format!("card {CARD_NUMBER}")});
    let created = entities
        .create_entity(pb::CreateEntityRequest {
            parent: "connections/otlp/entityTypes/Customer".to_owned(),
            entity: Some(pb::Entity {
                fields: Some(to_proto_struct(fields.as_object().unwrap())),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    let id = created.name.rsplit('/').next().unwrap().to_owned();
    entities
        .get_entity(with_traceparent(get_request("otlp", &id), TRACE_ID))
        .await
        .unwrap();
    let missing = entities
        .get_entity(get_request("otlp", "cus_missing"))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // One node of 2 transactions/s with a burst of 1: the first call takes the node, the next
    // queues behind it; one with a 150 ms deadline is refused at once (NODE_CAPACITY).
    entities
        .get_entity(get_request("otlp-tight", &id))
        .await
        .unwrap();
    let mut queued = EntityServiceClient::new(channel.clone());
    let mut hurried = EntityServiceClient::new(channel.clone());
    let mut too_soon = Request::new(get_request("otlp-tight", &id));
    too_soon.set_timeout(Duration::from_millis(150));
    let (served, refused) = tokio::join!(
        queued.get_entity(get_request("otlp-tight", &id)),
        hurried.get_entity(too_soon)
    );
    served.unwrap();
    assert_eq!(refused.unwrap_err().code(), tonic::Code::ResourceExhausted);

    // Nothing listens there: one attempt, one retry, then UNAVAILABLE.
    let down = entities
        .get_entity(with_traceparent(
            get_request("otlp-down", "cus_1"),
            LOG_TRACE_ID,
        ))
        .await
        .unwrap_err();
    assert_eq!(down.code(), tonic::Code::Unavailable, "{down:?}");
}

fn attr<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v: &AnyValue| v.value.as_ref())
}

fn text<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    match attr(attributes, key) {
        Some(any_value::Value::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn int(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attr(attributes, key) {
        Some(any_value::Value::IntValue(n)) => Some(*n),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Everything received so far.
#[derive(Default)]
struct Received {
    spans: Vec<Span>,
    metrics: Vec<Metric>,
    resources: Vec<Vec<KeyValue>>,
    bytes: Vec<u8>,
}

impl Received {
    fn take(&mut self, export: Export) {
        match export {
            Export::Traces(request) => {
                self.bytes.extend(request.encode_to_vec());
                for resource_spans in request.resource_spans {
                    if let Some(resource) = resource_spans.resource {
                        self.resources.push(resource.attributes);
                    }
                    for scope in resource_spans.scope_spans {
                        self.spans.extend(scope.spans);
                    }
                }
            }
            Export::Metrics(request) => {
                self.bytes.extend(request.encode_to_vec());
                for resource_metrics in request.resource_metrics {
                    if let Some(resource) = resource_metrics.resource {
                        self.resources.push(resource.attributes);
                    }
                    for scope in resource_metrics.scope_metrics {
                        self.metrics.extend(scope.metrics);
                    }
                }
            }
        }
    }

    fn span(&self, name: &str, pred: impl Fn(&Span) -> bool) -> Option<&Span> {
        self.spans.iter().find(|s| s.name == name && pred(s))
    }

    /// Data point attributes of the metric `name`.
    fn points(&self, name: &str) -> Vec<&[KeyValue]> {
        let mut points: Vec<&[KeyValue]> = Vec::new();
        for m in self.metrics.iter().filter(|m| m.name == name) {
            match &m.data {
                Some(metric::Data::Sum(sum)) => {
                    points.extend(sum.data_points.iter().map(|p| &p.attributes[..]))
                }
                Some(metric::Data::Gauge(gauge)) => {
                    points.extend(gauge.data_points.iter().map(|p| &p.attributes[..]))
                }
                Some(metric::Data::Histogram(h)) => {
                    points.extend(h.data_points.iter().map(|p| &p.attributes[..]))
                }
                _ => {}
            }
        }
        points
    }

    fn has_point(&self, name: &str, wanted: &[(&str, &str)]) -> bool {
        self.points(name)
            .iter()
            .any(|attributes| wanted.iter().all(|(k, v)| text(attributes, k) == Some(*v)))
    }

    /// Whether everything the test looks for has arrived.
    fn complete(&self) -> bool {
        self.span("connectors.v1.EntityService/GetEntity", |s| {
            hex(&s.trace_id) == TRACE_ID
        })
        .is_some()
            && self
                .span("GET /v1/customers/{customer}", |s| {
                    hex(&s.trace_id) == TRACE_ID
                })
                .is_some()
            && self
                .spans
                .iter()
                .any(|s| s.events.iter().any(|e| e.name == "retrying"))
            && self
                .spans
                .iter()
                .any(|s| s.events.iter().any(|e| e.name == "throttled"))
            && self
                .spans
                .iter()
                .any(|s| s.events.iter().any(|e| e.name == "queued"))
            && self.has_point("connector.throttled_calls", &[("connection", "otlp-tight")])
            && self.has_point("connector.upstream.retries", &[("connection", "otlp-down")])
            && self.has_point("connector.node.utilization", &[("connection", "otlp")])
            && self.has_point("rpc.server.call.duration", &[("connection", "otlp")])
            && self.has_point("http.client.request.duration", &[("connection", "otlp")])
    }
}

#[tokio::test]
async fn spans_and_metrics_reach_an_otlp_receiver_with_their_attributes_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, mut exports) = start_receiver().await;
    let service = start_service(dir.path(), &endpoint, "").await;
    traffic(&service.channel).await;

    let mut received = Received::default();
    let waited = tokio::time::timeout(Duration::from_secs(60), async {
        while !received.complete() {
            match exports.recv().await {
                Some(export) => received.take(export),
                None => break,
            }
        }
    })
    .await;
    assert!(
        waited.is_ok(),
        "not everything arrived: {} spans, metrics {:?}",
        received.spans.len(),
        received.metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
    );

    // The call span: a child of the caller's traceparent, with the call's attributes.
    let call = received
        .span("connectors.v1.EntityService/GetEntity", |s| {
            hex(&s.trace_id) == TRACE_ID
        })
        .unwrap();
    assert_eq!(hex(&call.parent_span_id), PARENT_SPAN_ID);
    assert_eq!(call.kind, span::SpanKind::Server as i32);
    assert_eq!(text(&call.attributes, "connection"), Some("otlp"));
    assert_eq!(text(&call.attributes, "entity_type"), Some("Customer"));
    assert_eq!(text(&call.attributes, "rpc.method"), Some("GetEntity"));
    assert_eq!(
        text(&call.attributes, "rpc.service"),
        Some("connectors.v1.EntityService")
    );
    assert_eq!(int(&call.attributes, "rpc.grpc.status_code"), Some(0));
    // Its upstream child: method, path template (no id), status, Stripe's request id, attempt.
    let upstream = received
        .span("GET /v1/customers/{customer}", |s| {
            hex(&s.trace_id) == TRACE_ID
        })
        .unwrap();
    assert_eq!(upstream.parent_span_id, call.span_id);
    assert_eq!(upstream.kind, span::SpanKind::Client as i32);
    assert_eq!(
        text(&upstream.attributes, "http.request.method"),
        Some("GET")
    );
    assert_eq!(
        text(&upstream.attributes, "url.template"),
        Some("/v1/customers/{customer}")
    );
    assert_eq!(
        int(&upstream.attributes, "http.response.status_code"),
        Some(200),
        "{:?}",
        upstream.attributes
    );
    assert_eq!(int(&upstream.attributes, "attempt"), Some(1));
    let request_id = text(&upstream.attributes, "stripe.request_id").unwrap();
    assert!(request_id.starts_with("req_"), "{request_id}");

    // Throttling: the refused call's span names the reason, with a `throttled` event.
    let throttled = received
        .span("connectors.v1.EntityService/GetEntity", |s| {
            text(&s.attributes, "error.reason") == Some("NODE_CAPACITY")
        })
        .unwrap();
    assert_eq!(int(&throttled.attributes, "rpc.grpc.status_code"), Some(8));
    assert_eq!(
        text(&throttled.attributes, "connection"),
        Some("otlp-tight")
    );
    let event = throttled
        .events
        .iter()
        .find(|e| e.name == "throttled")
        .unwrap();
    assert_eq!(text(&event.attributes, "reason"), Some("NODE_CAPACITY"));
    // Retries: a second attempt against the closed port, with the `retrying` event on the call.
    let down_call = received
        .span("connectors.v1.EntityService/GetEntity", |s| {
            text(&s.attributes, "connection") == Some("otlp-down")
        })
        .unwrap();
    assert!(down_call.events.iter().any(|e| e.name == "retrying"));
    assert_eq!(int(&down_call.attributes, "rpc.grpc.status_code"), Some(14));
    assert!(text(&down_call.attributes, "error.reason").is_some());
    let second_attempt = received
        .span("GET /v1/customers/{customer}", |s| {
            s.trace_id == down_call.trace_id && int(&s.attributes, "attempt") == Some(2)
        })
        .unwrap();
    assert_eq!(
        text(&second_attempt.attributes, "error.type"),
        Some("transport")
    );

    // Metrics, with their attributes, and the resource from the standard variables.
    assert!(received.has_point(
        "connector.calls",
        &[("connection", "otlp"), ("rpc.method", "CreateEntity")]
    ));
    assert!(received.has_point(
        "connector.throttled_calls",
        &[
            ("connection", "otlp-tight"),
            ("connector.throttle.reason", "NODE_CAPACITY")
        ]
    ));
    for gauge in [
        "connector.nodes.current",
        "connector.nodes.desired",
        "connector.nodes.min",
        "connector.nodes.max",
        "connector.node.utilization",
        "connector.queue.length",
        "connector.stripe_budget.used",
    ] {
        assert!(
            received.has_point(gauge, &[("connection", "otlp-tight")]),
            "{gauge}"
        );
    }
    assert!(received.has_point(
        "connector.upstream.requests",
        &[("connection", "otlp"), ("http.request.method", "POST")]
    ));
    assert!(
        received
            .resources
            .iter()
            .all(|r| text(r, "service.name") == Some("connector-otlp-test"))
    );
    assert!(
        received
            .resources
            .iter()
            .all(|r| text(r, "deployment.environment") == Some("test"))
    );

    // No key, no card number, in anything exported or logged.
    let exported = String::from_utf8_lossy(&received.bytes).into_owned();
    let logs = std::fs::read_to_string(&service.stderr).unwrap();
    for secret in [KEY_MAIN, KEY_TIGHT, KEY_DOWN, CARD_NUMBER, "sk_test_"] {
        assert!(!exported.contains(secret), "an export holds {secret}");
        assert!(!logs.contains(secret), "the log holds {secret}");
    }
    // The log line of the traced failure carries the caller's trace id.
    assert_eq!(hex(&down_call.trace_id), LOG_TRACE_ID);
    assert!(
        logs.lines().any(|l| l.contains("upstream call failed")
            && l.contains(&format!("trace_id=\"{LOG_TRACE_ID}\""))),
        "{logs}"
    );
}

#[tokio::test]
async fn the_service_keeps_serving_when_the_collector_is_down() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let service = start_service(dir.path(), &endpoint, "").await;
    let mut entities = EntityServiceClient::new(service.channel.clone());
    for round in 0..200 {
        let mut request = Request::new(pb::ListEntitiesRequest {
            parent: "connections/otlp/entityTypes/Customer".to_owned(),
            page_size: 1,
            ..Default::default()
        });
        // Generous for a debug build on a shared machine; an export blocking calls would take
        // the exporter's 5 s timeout.
        request.set_timeout(Duration::from_secs(4));
        entities
            .list_entities(request)
            .await
            .unwrap_or_else(|e| panic!("call {round} failed: {e:?}"));
    }
    let logs = std::fs::read_to_string(&service.stderr).unwrap();
    assert!(
        logs.contains("exporting traces and metrics over OTLP"),
        "{logs}"
    );
}

/// Sampling is decided when a call arrives: with `trace_sample_ratio = 0` new calls and callers
/// whose `traceparent` says "not sampled" export nothing (not even their upstream spans), while a
/// caller's sampled `traceparent` is followed, its upstream span included.
#[tokio::test]
async fn calls_are_sampled_on_arrival_and_a_sampled_traceparent_is_followed() {
    const UNSAMPLED_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let dir = tempfile::tempdir().unwrap();
    let (endpoint, mut exports) = start_receiver().await;
    let service = start_service(dir.path(), &endpoint, "trace_sample_ratio = 0.0").await;
    let mut entities = EntityServiceClient::new(service.channel.clone());
    for _ in 0..5 {
        get_missing(&mut entities, get_request("otlp", "cus_unsampled")).await;
    }
    get_missing(
        &mut entities,
        with_trace_flags(get_request("otlp", "cus_declined"), UNSAMPLED_TRACE, "00"),
    )
    .await;
    get_missing(
        &mut entities,
        with_traceparent(get_request("otlp", "cus_followed"), TRACE_ID),
    )
    .await;
    // Calls after a sampled one are decided afresh: nothing of the sampled call lingers.
    for _ in 0..5 {
        get_missing(&mut entities, get_request("otlp", "cus_after")).await;
    }
    // Last: the batch processor exports spans in the order they end, so once this call's span
    // has arrived, every span of the calls before it would have too.
    const LAST_TRACE: &str = "5b8efff798038103d269b633813fc60c";
    get_missing(
        &mut entities,
        with_trace_flags(get_request("otlp", "cus_last"), LAST_TRACE, "01"),
    )
    .await;

    let mut received = Received::default();
    let arrived = tokio::time::timeout(Duration::from_secs(60), async {
        while !received.spans.iter().any(|s| {
            s.name == "connectors.v1.EntityService/GetEntity" && hex(&s.trace_id) == LAST_TRACE
        }) {
            match exports.recv().await {
                Some(export) => received.take(export),
                None => break,
            }
        }
    })
    .await;
    assert!(arrived.is_ok(), "the sampled call's span never arrived");
    let traces: Vec<String> = received.spans.iter().map(|s| hex(&s.trace_id)).collect();
    assert!(
        traces.iter().all(|t| t == TRACE_ID || t == LAST_TRACE),
        "only the sampled callers' traces are exported, got {traces:?}"
    );
    let call = received
        .span("connectors.v1.EntityService/GetEntity", |s| {
            hex(&s.trace_id) == TRACE_ID
        })
        .unwrap();
    assert_eq!(hex(&call.parent_span_id), PARENT_SPAN_ID);
    let upstream = received
        .span("GET /v1/customers/{customer}", |s| {
            s.parent_span_id == call.span_id
        })
        .expect("the upstream span of the sampled call");
    assert_eq!(hex(&upstream.trace_id), TRACE_ID);
}
