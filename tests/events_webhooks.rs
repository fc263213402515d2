//! Events end to end, offline: the sandbox sends signed webhooks to its WebhookEndpoints, the
//! runtime verifies and stores them, fills gaps from the event log, and delivers each event once
//! to subscribers on a gRPC stream or over HTTP. Real sockets on loopback throughout.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Home, Service};
use connector_runtime::api::pb;
use connector_runtime::api::pb::event_subscription_service_client::EventSubscriptionServiceClient;
use connector_runtime::config::Settings;
use connector_runtime::sandbox::{self, SandboxConfig, SandboxHandle, WebhookFaults};
use connector_runtime::stripe::webhook;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tonic::Code;
use tonic::transport::Channel;

const CONNECTION: &str = "stripe-test";
const KEY: &str = "sk_test_events_0123456789abcdef";
const WAIT: Duration = Duration::from_secs(60);

async fn start_sandbox(faults: WebhookFaults) -> SandboxHandle {
    let config = SandboxConfig {
        rate_limit: None,
        webhooks: faults,
        seed: 14,
        ..SandboxConfig::default()
    };
    let spec = connector_runtime::spec::stripe_shared().unwrap();
    sandbox::start(spec, "127.0.0.1:0".parse().unwrap(), config)
        .await
        .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// POSTs a form to the sandbox as Stripe's API; the JSON answer.
async fn stripe_post(sandbox: &str, path: &str, form: &[(&str, &str)]) -> Value {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let response = http()
        .post(format!("{sandbox}{path}"))
        .bearer_auth(KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

/// A successful card payment made directly at "Stripe" (the sandbox); its id.
async fn pay(sandbox: &str, amount: u32) -> String {
    let amount = amount.to_string();
    let intent = stripe_post(
        sandbox,
        "/v1/payment_intents",
        &[
            ("amount", amount.as_str()),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("payment_method_types[]", "card"),
            ("confirm", "true"),
        ],
    )
    .await;
    assert_eq!(intent["status"], "succeeded");
    intent["id"].as_str().unwrap().to_owned()
}

fn settings(home: &Home, listen: SocketAddr) -> Settings {
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Never;
    settings.events.listen = Some(listen);
    settings
}

/// The runtime with a connection to `sandbox` whose webhooks it verifies with the endpoint's
/// secret, as the seed's billing system keeps it.
async fn runtime_with_connection(home: &Home, sandbox: &str, webhook_secret: &str) -> Service {
    home.put_secret("stripe-key", "1", KEY);
    home.put_secret("stripe-webhook", "1", webhook_secret);
    let service = common::start(settings(home, "127.0.0.1:0".parse().unwrap())).await;
    let mut connection = Service::connection_to(CONNECTION, "stripe-key", sandbox);
    connection.webhook_signing_secrets = vec![pb::SecretRef {
        secret: "stripe-webhook".to_owned(),
        version: "1".to_owned(),
    }];
    service.add_connection(connection).await;
    service
}

fn webhook_addr(service: &Service) -> SocketAddr {
    service.running.as_ref().unwrap().webhook_addr.unwrap()
}

/// Creates a WebhookEndpoint in the sandbox pointing at the runtime; its `whsec_` secret.
async fn register_endpoint(sandbox: &str, listener: SocketAddr, types: &[&str]) -> String {
    let url = format!("http://{listener}/webhooks/{CONNECTION}");
    let mut form = vec![("url", url.as_str())];
    for t in types {
        form.push(("enabled_events[]", t));
    }
    let endpoint = stripe_post(sandbox, "/v1/webhook_endpoints", &form).await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    secret
}

fn subscriptions(service: &Service) -> EventSubscriptionServiceClient<Channel> {
    EventSubscriptionServiceClient::new(service.channel.clone())
}

async fn subscribe(service: &Service, id: &str, types: &[&str]) -> String {
    subscriptions(service)
        .create_event_subscription(pb::CreateEventSubscriptionRequest {
            parent: format!("connections/{CONNECTION}"),
            event_subscription_id: id.to_owned(),
            event_subscription: Some(pb::EventSubscription {
                event_types: types.iter().map(|t| (*t).to_owned()).collect(),
                destination: Some(pb::event_subscription::Destination::Stream(true)),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .name
}

/// The first page of the test connection's subscriptions.
async fn listed_subscriptions(service: &Service) -> Vec<pb::EventSubscription> {
    subscriptions(service)
        .list_event_subscriptions(pb::ListEventSubscriptionsRequest {
            parent: format!("connections/{CONNECTION}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .event_subscriptions
}

/// Reads a stream into a channel until it ends.
async fn consume(
    service: &Service,
    subscription: &str,
    resume_token: &str,
) -> mpsc::UnboundedReceiver<pb::Event> {
    let mut stream = subscriptions(service)
        .stream_events(pb::StreamEventsRequest {
            subscription: subscription.to_owned(),
            resume_token: resume_token.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(Some(event)) = stream.message().await {
            if tx.send(event).is_err() {
                return;
            }
        }
    });
    rx
}

async fn next(events: &mut mpsc::UnboundedReceiver<pb::Event>) -> pb::Event {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("an event within the wait")
        .expect("the stream is open")
}

fn paid_intent(event: &pb::Event) -> String {
    let payload: Value = serde_json::from_str(&event.payload).unwrap();
    payload["data"]["object"]["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_seeds_payment_reaches_the_subscriber_once_with_its_entity_name() {
    let sandbox = start_sandbox(WebhookFaults {
        duplicate_rate: 1.0,
        ..WebhookFaults::default()
    })
    .await;
    let home = Home::new();
    // The endpoint needs the listener's address, the connection needs the endpoint's secret.
    home.put_secret("stripe-key", "1", KEY);
    let service = common::start(settings(&home, "127.0.0.1:0".parse().unwrap())).await;
    let secret = register_endpoint(
        &sandbox.base_url(),
        webhook_addr(&service),
        &["payment_intent.succeeded"],
    )
    .await;
    home.put_secret("stripe-webhook", "1", &secret);
    let mut connection = Service::connection_to(CONNECTION, "stripe-key", &sandbox.base_url());
    connection.webhook_signing_secrets = vec![pb::SecretRef {
        secret: "stripe-webhook".to_owned(),
        version: "1".to_owned(),
    }];
    service.add_connection(connection).await;
    let name = subscribe(&service, "invoices-paid", &["payment_intent.succeeded"]).await;
    let mut events = consume(&service, &name, "").await;

    // The billing system's payment, through the runtime: confirmed with pm_card_visa, card only.
    let (entity, fields) = service
        .create(
            CONNECTION,
            "PaymentIntent",
            json!({"Amount": 1500, "Currency": "usd", "PaymentMethod": "pm_card_visa",
                   "PaymentMethodTypes": ["card"], "Confirm": true}),
        )
        .await
        .unwrap();
    assert_eq!(fields["Status"], "succeeded");
    let intent = fields["Id"].as_str().unwrap().to_owned();

    let event = next(&mut events).await;
    assert_eq!(event.r#type, "payment_intent.succeeded");
    assert_eq!(event.connection, format!("connections/{CONNECTION}"));
    assert_eq!(
        event.entity_name,
        format!("connections/{CONNECTION}/entityTypes/PaymentIntent/entities/{intent}")
    );
    assert_eq!(event.entity_name, entity);
    assert_eq!(paid_intent(&event), intent);
    assert!(event.id.starts_with("evt_"));
    // A workflow can GetEntity what the event names.
    let got = service
        .get(CONNECTION, "PaymentIntent", &intent)
        .await
        .unwrap();
    assert_eq!(got["Status"], "succeeded");

    // The sandbox sent it twice and the event log has it too: still one event. The next event on
    // the stream is the next payment's.
    service.running.as_ref().unwrap().catch_up_now().await;
    let second = pay(&sandbox.base_url(), 2000).await;
    let event = next(&mut events).await;
    assert_eq!(paid_intent(&event), second);
    let stats: Value = http()
        .get(format!("{}/_sandbox/stats", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        stats["webhooks"]["duplicated"].as_u64().unwrap() >= 2,
        "{stats}"
    );
    service.shutdown().await;
    sandbox.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_payments_through_lost_doubled_reordered_webhooks_and_a_restart_arrive_exactly_once()
 {
    let sandbox = start_sandbox(WebhookFaults {
        drop_rate: 0.3,
        duplicate_rate: 0.2,
        reorder_rate: 0.5,
        reorder_window: Duration::from_millis(30),
        ..WebhookFaults::default()
    })
    .await;
    let base = sandbox.base_url();
    let home = Home::new();
    home.put_secret("stripe-key", "1", KEY);
    let service = common::start(settings(&home, "127.0.0.1:0".parse().unwrap())).await;
    let listener = webhook_addr(&service);
    let secret = register_endpoint(&base, listener, &["payment_intent.succeeded"]).await;
    home.put_secret("stripe-webhook", "1", &secret);
    let mut connection = Service::connection_to(CONNECTION, "stripe-key", &base);
    connection.webhook_signing_secrets = vec![pb::SecretRef {
        secret: "stripe-webhook".to_owned(),
        version: "1".to_owned(),
    }];
    service.add_connection(connection).await;
    let name = subscribe(&service, "payments", &["payment_intent.succeeded"]).await;

    let received = Arc::new(Mutex::new(Vec::<pb::Event>::new()));
    let mut events = consume(&service, &name, "").await;
    let sink = received.clone();
    let first_reader = tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            sink.lock().unwrap().push(event);
        }
    });

    let paid = Arc::new(Mutex::new(BTreeSet::new()));
    let pay_range = |range: std::ops::Range<u32>| {
        let base = base.clone();
        let paid = paid.clone();
        async move {
            let mut tasks = Vec::new();
            for worker in 0..8 {
                let (base, paid, range) = (base.clone(), paid.clone(), range.clone());
                tasks.push(tokio::spawn(async move {
                    for n in range.filter(|n| n % 8 == worker) {
                        let id = pay(&base, 100 + n).await;
                        paid.lock().unwrap().insert(id);
                    }
                }));
            }
            for task in tasks {
                task.await.unwrap();
            }
        }
    };

    pay_range(0..250).await;
    // Restart in the middle: streams end, webhooks sent meanwhile fail and are retried, then lost.
    service.shutdown().await;
    first_reader.await.unwrap();
    let before_restart = received.lock().unwrap().len();
    assert!(before_restart > 0);
    let token = received
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .resume_token
        .clone();
    pay_range(250..350).await;

    let service = common::start(settings(&home, listener)).await;
    let mut events = consume(&service, &name, &token).await;
    pay_range(350..500).await;
    service.running.as_ref().unwrap().catch_up_now().await;
    // A last payment after the catch-up marks the end: everything before it is in.
    let sentinel = pay(&base, 9999).await;
    service.running.as_ref().unwrap().catch_up_now().await;
    loop {
        let event = next(&mut events).await;
        let done = paid_intent(&event) == sentinel;
        received.lock().unwrap().push(event);
        if done {
            break;
        }
    }

    let received = std::mem::take(&mut *received.lock().unwrap());
    let intents: Vec<String> = received.iter().map(paid_intent).collect();
    let distinct: BTreeSet<String> = intents.iter().cloned().collect();
    assert_eq!(
        intents.len(),
        distinct.len(),
        "an event was delivered twice"
    );
    let mut expected = paid.lock().unwrap().clone();
    expected.insert(sentinel);
    let missing: Vec<&String> = expected.difference(&distinct).collect();
    assert!(
        missing.is_empty(),
        "{} events missing: {missing:?}",
        missing.len()
    );
    assert_eq!(distinct, expected);
    assert_eq!(intents.len(), 501);
    assert!(
        received
            .iter()
            .all(|e| e.r#type == "payment_intent.succeeded")
    );

    let stats: Value = http()
        .get(format!("{base}/_sandbox/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhooks = &stats["webhooks"];
    for fault in ["dropped", "duplicated", "reordered"] {
        assert!(
            webhooks[fault].as_u64().unwrap() > 20,
            "{fault}: {webhooks}"
        );
    }
    service.shutdown().await;
    sandbox.shutdown().await;
}

/// Signs like Stripe, with `secret`, at `t`.
fn signed(secret: &str, t: i64, body: &str) -> String {
    webhook::sign_header(&[secret], t, body.as_bytes())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn event_body(id: &str, pi: &str) -> String {
    json!({"id": id, "object": "event", "type": "payment_intent.succeeded", "created": now(),
           "data": {"object": {"id": pi, "object": "payment_intent", "status": "succeeded"}}})
    .to_string()
}

async fn post_webhook(
    listener: SocketAddr,
    connection: &str,
    signature: Option<&str>,
    body: String,
) -> reqwest::StatusCode {
    let mut request = http()
        .post(format!("http://{listener}/webhooks/{connection}"))
        .header("content-type", "application/json")
        .body(body);
    if let Some(signature) = signature {
        request = request.header("Stripe-Signature", signature);
    }
    request.send().await.unwrap().status()
}

#[tokio::test]
async fn forged_stale_wrongly_signed_oversized_or_unknown_webhooks_get_400_and_store_nothing() {
    const SECRET: &str = "whsec_listener_test_secret_0123456789";
    let sandbox = start_sandbox(WebhookFaults::default()).await;
    let home = Home::new();
    home.put_secret("stripe-key", "1", KEY);
    home.put_secret("stripe-webhook", "1", SECRET);
    let mut settings = settings(&home, "127.0.0.1:0".parse().unwrap());
    settings.events.max_body_bytes = 4096;
    let service = common::start(settings).await;
    let mut connection = Service::connection_to(CONNECTION, "stripe-key", &sandbox.base_url());
    connection.webhook_signing_secrets = vec![pb::SecretRef {
        secret: "stripe-webhook".to_owned(),
        version: "1".to_owned(),
    }];
    service.add_connection(connection).await;
    let listener = webhook_addr(&service);
    let name = subscribe(&service, "all", &["*"]).await;
    let mut events = consume(&service, &name, "").await;

    let forged_body = event_body("evt_forged", "pi_forged");
    let forged = format!("t={},v1={}", now(), "ab".repeat(32));
    let stale = signed(SECRET, now() - 301, &forged_body);
    let wrong = signed("whsec_someone_else", now(), &forged_body);
    let big = json!({"id": "evt_big", "object": "event", "type": "payment_intent.succeeded",
        "created": now(), "data": {"object": {"id": "pi_big", "object": "payment_intent",
        "description": "x".repeat(5000)}}})
    .to_string();
    let big_signature = signed(SECRET, now(), &big);
    let good = signed(SECRET, now(), &forged_body);
    let refused = [
        ("missing", CONNECTION, None, forged_body.clone()),
        (
            "malformed",
            CONNECTION,
            Some("t=soon,v1=zz"),
            forged_body.clone(),
        ),
        (
            "forged",
            CONNECTION,
            Some(forged.as_str()),
            forged_body.clone(),
        ),
        (
            "stale",
            CONNECTION,
            Some(stale.as_str()),
            forged_body.clone(),
        ),
        (
            "wrong secret",
            CONNECTION,
            Some(wrong.as_str()),
            forged_body.clone(),
        ),
        ("oversized", CONNECTION, Some(big_signature.as_str()), big),
        (
            "unknown connection",
            "nobody",
            Some(good.as_str()),
            forged_body.clone(),
        ),
        (
            "not an event",
            CONNECTION,
            Some(&signed(
                SECRET,
                now(),
                r#"{"id":"pi_1","object":"payment_intent"}"#,
            )),
            r#"{"id":"pi_1","object":"payment_intent"}"#.to_owned(),
        ),
    ];
    for (what, connection, signature, body) in refused {
        let status = post_webhook(listener, connection, signature, body).await;
        assert_eq!(status, reqwest::StatusCode::BAD_REQUEST, "{what}");
    }

    // A valid webhook after them all is the first (and only) thing stored.
    let body = event_body("evt_good", "pi_good");
    let signature = signed(SECRET, now(), &body);
    assert_eq!(
        post_webhook(listener, CONNECTION, Some(&signature), body.clone()).await,
        reqwest::StatusCode::OK
    );
    // Sent again (Stripe retries): accepted, stored once.
    assert_eq!(
        post_webhook(listener, CONNECTION, Some(&signature), body).await,
        reqwest::StatusCode::OK
    );
    let body = event_body("evt_after", "pi_after");
    let signature = signed(SECRET, now(), &body);
    assert_eq!(
        post_webhook(listener, CONNECTION, Some(&signature), body).await,
        reqwest::StatusCode::OK
    );
    assert_eq!(next(&mut events).await.id, "evt_good");
    assert_eq!(next(&mut events).await.id, "evt_after");

    let logs = common::logs_text();
    assert!(logs.contains("webhook refused"));
    for secret in [SECRET, "whsec_someone_else", KEY] {
        assert!(!logs.contains(secret), "a secret leaked into the logs");
    }
    assert!(
        !logs.contains(&"ab".repeat(32)),
        "a signature leaked into the logs"
    );
    service.shutdown().await;
    sandbox.shutdown().await;
}

/// A subscriber's HTTP endpoint: verifies each delivery's signature, answers `status`, and
/// reports every attempt (verified, body, status answered).
struct Receiver {
    url: String,
    status: Arc<Mutex<u16>>,
    attempts: mpsc::UnboundedReceiver<(bool, Value, u16)>,
}

impl Receiver {
    async fn attempt(&mut self) -> (bool, Value, u16) {
        tokio::time::timeout(WAIT, self.attempts.recv())
            .await
            .expect("a delivery within the wait")
            .expect("the receiver runs")
    }
}

async fn start_receiver(secret: &'static str) -> Receiver {
    use axum::body::Bytes;
    use axum::http::{HeaderMap, StatusCode};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/events", listener.local_addr().unwrap());
    let status = Arc::new(Mutex::new(500u16));
    let (tx, attempts) = mpsc::unbounded_channel();
    let answer = status.clone();
    let app = axum::Router::new().route(
        "/events",
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let (tx, answer) = (tx.clone(), answer.clone());
            async move {
                let signature = headers
                    .get("stripe-signature")
                    .and_then(|v| v.to_str().ok());
                let verified = webhook::verify(signature, &body, &[secret], now(), 300).is_ok();
                let code = *answer.lock().unwrap();
                let _ = tx.send((verified, serde_json::from_slice(&body).unwrap(), code));
                StatusCode::from_u16(code).unwrap()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        status,
        attempts,
    }
}

#[tokio::test]
async fn http_subscribers_get_signed_posts_and_dead_letters_are_redelivered_on_retry() {
    const SECRET: &str = "whsec_listener_test_secret_0123456789";
    const SUBSCRIBER_SECRET: &str = "whsec_subscriber_own_secret_987654321";
    let sandbox = start_sandbox(WebhookFaults::default()).await;
    let home = Home::new();
    home.put_secret("subscriber-signing", "1", SUBSCRIBER_SECRET);
    let mut receiver = start_receiver(SUBSCRIBER_SECRET).await;
    home.put_secret("stripe-key", "1", KEY);
    home.put_secret("stripe-webhook", "1", SECRET);
    let mut settings = settings(&home, "127.0.0.1:0".parse().unwrap());
    settings.events.delivery_max_attempts = 2;
    settings.events.delivery_backoff = Duration::from_millis(10);
    let service = common::start(settings).await;
    let mut connection = Service::connection_to(CONNECTION, "stripe-key", &sandbox.base_url());
    connection.webhook_signing_secrets = vec![pb::SecretRef {
        secret: "stripe-webhook".to_owned(),
        version: "1".to_owned(),
    }];
    service.add_connection(connection).await;
    let created = subscriptions(&service)
        .create_event_subscription(pb::CreateEventSubscriptionRequest {
            parent: format!("connections/{CONNECTION}"),
            event_subscription_id: "billing-hook".to_owned(),
            event_subscription: Some(pb::EventSubscription {
                event_types: vec!["payment_intent.*".to_owned()],
                destination: Some(pb::event_subscription::Destination::HttpEndpoint(
                    pb::HttpEndpoint {
                        uri: receiver.url.clone(),
                        signing_secret: Some(pb::SecretRef {
                            secret: "subscriber-signing".to_owned(),
                            version: "1".to_owned(),
                        }),
                    },
                )),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner();
    let listener = webhook_addr(&service);

    // The subscriber fails: two attempts, then a dead letter.
    let body = event_body("evt_dead", "pi_dead");
    let signature = signed(SECRET, now(), &body);
    assert_eq!(
        post_webhook(listener, CONNECTION, Some(&signature), body).await,
        reqwest::StatusCode::OK
    );
    for _ in 0..2 {
        let (verified, delivered, answered) = receiver.attempt().await;
        assert!(verified && answered == 500);
        assert_eq!(delivered["id"], "evt_dead");
    }
    // The dead letter is written right after the last failed attempt.
    let mut dead = 0;
    for _ in 0..5000 {
        dead = subscriptions(&service)
            .get_event_subscription(pb::GetEventSubscriptionRequest {
                name: created.name.clone(),
            })
            .await
            .unwrap()
            .into_inner()
            .dead_letter_count;
        if dead == 1 {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert_eq!(dead, 1);

    // It recovers; the retry redelivers the dead letter, and new events flow again.
    *receiver.status.lock().unwrap() = 200;
    let retried = subscriptions(&service)
        .retry_event_subscription(pb::RetryEventSubscriptionRequest {
            name: created.name.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(retried.redelivering, 1);
    let (verified, delivered, _) = receiver.attempt().await;
    assert!(
        verified,
        "the delivery verifies with the subscriber's own secret"
    );
    assert_eq!(delivered["id"], "evt_dead");
    assert_eq!(delivered["connection"], format!("connections/{CONNECTION}"));
    assert_eq!(
        delivered["entity_name"],
        format!("connections/{CONNECTION}/entityTypes/PaymentIntent/entities/pi_dead")
    );
    assert_eq!(delivered["data"]["object"]["id"], "pi_dead");

    let body = event_body("evt_live", "pi_live");
    let signature = signed(SECRET, now(), &body);
    post_webhook(listener, CONNECTION, Some(&signature), body).await;
    let (verified, delivered, _) = receiver.attempt().await;
    assert!(verified);
    assert_eq!(delivered["id"], "evt_live");
    service.shutdown().await;
    sandbox.shutdown().await;
}

#[tokio::test]
async fn subscriptions_are_validated_listed_updated_and_deleted() {
    let sandbox = start_sandbox(WebhookFaults::default()).await;
    let home = Home::new();
    let service = runtime_with_connection(&home, &sandbox.base_url(), "whsec_x").await;
    let mut client = subscriptions(&service);
    let bad = client
        .create_event_subscription(pb::CreateEventSubscriptionRequest {
            parent: format!("connections/{CONNECTION}"),
            event_subscription_id: "Bad Id".to_owned(),
            event_subscription: Some(pb::EventSubscription {
                event_types: vec!["inv*".to_owned()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(
        common::violation_fields(&bad),
        ["event_subscription_id", "event_types[0]"]
    );
    let missing = client
        .create_event_subscription(pb::CreateEventSubscriptionRequest {
            parent: "connections/nobody".to_owned(),
            event_subscription_id: "x".to_owned(),
            event_subscription: Some(pb::EventSubscription {
                event_types: vec!["*".to_owned()],
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    let name = subscribe(&service, "invoices", &["invoice.*"]).await;
    subscribe(&service, "charges", &["charge.succeeded"]).await;
    let listed = client
        .list_event_subscriptions(pb::ListEventSubscriptionsRequest {
            parent: format!("connections/{CONNECTION}"),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed
        .event_subscriptions
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "connections/stripe-test/eventSubscriptions/charges",
            "connections/stripe-test/eventSubscriptions/invoices"
        ]
    );
    let updated = client
        .update_event_subscription(pb::UpdateEventSubscriptionRequest {
            event_subscription: Some(pb::EventSubscription {
                name: name.clone(),
                event_types: vec!["invoice.paid".to_owned()],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["event_types".to_owned()],
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.event_types, ["invoice.paid"]);
    let retry = client
        .retry_event_subscription(pb::RetryEventSubscriptionRequest { name: name.clone() })
        .await
        .unwrap_err();
    assert_eq!(retry.code(), Code::FailedPrecondition);
    client
        .delete_event_subscription(pb::DeleteEventSubscriptionRequest { name: name.clone() })
        .await
        .unwrap();
    let gone = client
        .get_event_subscription(pb::GetEventSubscriptionRequest { name })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);
    assert_eq!(common::reason(&gone), "EVENT_SUBSCRIPTION_NOT_FOUND");

    // Deleting the connection deletes its subscriptions: a connection created again under the
    // same id starts with none, and none come back after a restart.
    service
        .connections()
        .delete_connection(pb::DeleteConnectionRequest {
            name: format!("connections/{CONNECTION}"),
        })
        .await
        .unwrap();
    service
        .add_connection(Service::connection_to(
            CONNECTION,
            "stripe-key",
            &sandbox.base_url(),
        ))
        .await;
    let listed = listed_subscriptions(&service).await;
    assert!(listed.is_empty(), "{listed:?}");
    service.shutdown().await;
    let service = common::start(settings(&home, "127.0.0.1:0".parse().unwrap())).await;
    let listed = listed_subscriptions(&service).await;
    assert!(listed.is_empty(), "{listed:?}");
    service.shutdown().await;
    sandbox.shutdown().await;
}

#[tokio::test]
async fn without_any_webhook_the_event_log_alone_fills_a_wildcard_subscription() {
    let sandbox = start_sandbox(WebhookFaults::default()).await;
    let home = Home::new();
    let service = runtime_with_connection(&home, &sandbox.base_url(), "whsec_unused").await;
    let name = subscribe(&service, "intents", &["payment_intent.*"]).await;
    let mut events = consume(&service, &name, "").await;
    let intent = pay(&sandbox.base_url(), 4200).await;
    // No WebhookEndpoint exists: only the log (`type=payment_intent.*`) can bring the events.
    service.running.as_ref().unwrap().catch_up_now().await;
    let first = next(&mut events).await;
    let second = next(&mut events).await;
    assert_eq!(
        (first.r#type.as_str(), second.r#type.as_str()),
        ("payment_intent.created", "payment_intent.succeeded"),
        "stored oldest first"
    );
    assert_eq!(paid_intent(&second), intent);
    // The charge's events are not payment_intent.*: the next one is the next payment's.
    let later = pay(&sandbox.base_url(), 4300).await;
    service.running.as_ref().unwrap().catch_up_now().await;
    let third = next(&mut events).await;
    assert_eq!(third.r#type, "payment_intent.created");
    assert_eq!(paid_intent(&third), later);
    service.shutdown().await;
    sandbox.shutdown().await;
}
