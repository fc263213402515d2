//! The proof that nothing is lost and nothing is charged twice: 1,000 creates, actions and reads
//! through gRPC while the sandbox fails 20 % of upstream requests (500s, 429 rate limits and lock
//! timeouts, dropped connections, responses slower than the request timeout), half of the 500s
//! and drops landing after the state change. Afterwards exactly the intended objects exist, every
//! PaymentIntent was confirmed and captured once, and no secret reached a log line at verbosity 5.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use connector_runtime::api::convert::{from_proto_struct, to_proto_struct};
use connector_runtime::api::pb;
use futures::StreamExt;
use serde_json::{Value, json};
use tonic::Code;

const KEY: &str = "sk_test_faults_SECRET_0123456789abcdef";
const C: &str = "faulty";
const N: usize = 200;

/// Codes that tell the caller the same request may be sent again.
fn safe_to_retry(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable | Code::ResourceExhausted | Code::Aborted | Code::DeadlineExceeded
    )
}

/// Sends one operation until it succeeds, as a client would, with the same request_id each time.
async fn until_success<F, Fut, T>(what: String, mut call: F) -> (T, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tonic::Status>>,
{
    for attempt in 1..=6 {
        match call().await {
            Ok(value) => return (value, attempt - 1),
            Err(status) if safe_to_retry(status.code()) => continue,
            Err(status) => panic!("{what}: a failure that is not safe to retry: {status:?}"),
        }
    }
    panic!("{what}: still failing after 6 client-level attempts");
}

async fn sandbox_get(http: &reqwest::Client, base: &str, path: &str) -> Value {
    let response = http
        .get(format!("{base}{path}"))
        .bearer_auth(KEY)
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

/// Every object of a list, following Stripe's cursor.
async fn sandbox_list_all(http: &reqwest::Client, base: &str, path: &str) -> Vec<Value> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let separator = if path.contains('?') { '&' } else { '?' };
        let cursor = after
            .as_ref()
            .map(|a| format!("&starting_after={a}"))
            .unwrap_or_default();
        let page = sandbox_get(http, base, &format!("{path}{separator}limit=100{cursor}")).await;
        let data = page["data"].as_array().cloned().unwrap_or_default();
        after = data
            .last()
            .and_then(|o| o["id"].as_str())
            .map(str::to_owned);
        all.extend(data);
        if page["has_more"] != json!(true) {
            return all;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_calls_under_twenty_percent_faults_lose_nothing_and_repeat_nothing() {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("faulty-key", "1", KEY);
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.nodes.node_rate = 100_000;
    settings.nodes.node_burst = 100_000;
    settings.nodes.stripe_budget.test = 100_000;
    settings.upstream.request_timeout = Duration::from_secs(1);
    // Reads get no client-level retry below: with a fifth of attempts failing, the default 4
    // retries (5 attempts) leave 0.2^5 per read, about a 6 % chance that one of 200 reads fails
    // on every attempt; 7 retries make that 0.05 %.
    settings.upstream.max_retries = 7;
    let service = start(settings).await;
    let base = service.sandbox_url();
    let connection = pb::Connection {
        verbosity: 5,
        log_level: pb::connection::LogLevel::Debug as i32,
        ..Service::connection_to(C, "faulty-key", &base)
    };
    service.add_connection(connection).await;

    let http = reqwest::Client::new();
    let faults = json!({"seed": 7, "faults": {
        "server_error_rate": 0.05, "rate_limit_rate": 0.04, "lock_timeout_rate": 0.03,
        "drop_rate": 0.04, "slow_rate": 0.04, "slow_delay": "1500ms", "phase": "either"
    }});
    let answer = http
        .post(format!("{base}/_sandbox/config"))
        .json(&faults)
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success());

    let entities = service.entities();
    let actions = service.actions();
    let create = |entity: &'static str, fields: Value, rid: String| {
        let mut client = entities.clone();
        async move {
            let request = pb::CreateEntityRequest {
                parent: format!("connections/{C}/entityTypes/{entity}"),
                entity: Some(pb::Entity {
                    fields: Some(to_proto_struct(fields.as_object().unwrap())),
                    ..Default::default()
                }),
                request_id: rid,
            };
            client
                .create_entity(request)
                .await
                .map(|r| from_proto_struct(r.into_inner().fields.as_ref().unwrap()))
        }
    };
    let execute = |action: &'static str, parameters: Value, rid: String| {
        let mut client = actions.clone();
        async move {
            let request = pb::ExecuteActionRequest {
                name: format!("connections/{C}/actions/{action}"),
                parameters: Some(to_proto_struct(parameters.as_object().unwrap())),
                request_id: rid,
                result_format: 0,
            };
            client
                .execute_action(request)
                .await
                .map(|r| from_proto_struct(&r.into_inner().results[0]))
        }
    };

    // 200 customers and 200 manual-capture PaymentIntents.
    let customers: Vec<(String, usize)> = futures::stream::iter(0..N)
        .map(|i| {
            let fields =
                json!({"Email": format!("c{i}@example.com"), "Metadata": {"order": i.to_string()}});
            until_success(format!("customer {i}"), move || {
                let create = create("Customer", fields.clone(), format!("customer-{i}"));
                async move { create.await.map(|f| f["Id"].as_str().unwrap().to_owned()) }
            })
        })
        .buffer_unordered(25)
        .collect()
        .await;
    let intents: Vec<(String, usize)> = futures::stream::iter(0..N)
        .map(|i| {
            let fields = json!({"Amount": 1000 + i, "Currency": "usd", "PaymentMethod": "pm_card_visa",
                                 "PaymentMethodTypes": ["card"], "CaptureMethod": "manual",
                                 "Metadata": {"order": i.to_string()}});
            until_success(format!("payment intent {i}"), move || {
                let create = create("PaymentIntent", fields.clone(), format!("intent-{i}"));
                async move { create.await.map(|f| f["Id"].as_str().unwrap().to_owned()) }
            })
        })
        .buffer_unordered(25)
        .collect()
        .await;
    // Confirm, then capture, each once per intent; and read every customer back.
    let mut retried: usize = customers.iter().chain(&intents).map(|(_, r)| r).sum();
    for (verb, action) in [
        ("confirm", "ConfirmPaymentIntent"),
        ("capture", "CapturePaymentIntent"),
    ] {
        let done: Vec<(Value, usize)> = futures::stream::iter(intents.iter().cloned())
            .map(|(pi, _)| {
                until_success(format!("{verb} {pi}"), move || {
                    let call = execute(
                        action,
                        json!({"PaymentIntentId": pi}),
                        format!("{verb}-{pi}"),
                    );
                    async move { call.await.map(|row| row["status"].clone()) }
                })
            })
            .buffer_unordered(25)
            .collect()
            .await;
        let expected = if verb == "confirm" {
            "requires_capture"
        } else {
            "succeeded"
        };
        assert!(
            done.iter().all(|(status, _)| status == expected),
            "{verb}: {done:?}"
        );
        retried += done.iter().map(|(_, r)| r).sum::<usize>();
    }
    let reads: Vec<(Value, usize)> = futures::stream::iter(customers.iter().cloned())
        .map(|(id, _)| {
            let entities = entities.clone();
            async move {
                let mut client = entities;
                let name = format!("connections/{C}/entityTypes/Customer/entities/{id}");
                let entity = client
                    .get_entity(pb::GetEntityRequest { name })
                    .await
                    .expect("reads all succeed");
                (
                    from_proto_struct(entity.into_inner().fields.as_ref().unwrap())["Id"].clone(),
                    0,
                )
            }
        })
        .buffer_unordered(25)
        .collect()
        .await;
    assert_eq!(reads.len(), N);

    // The sandbox really failed about a fifth of the requests.
    let stats = sandbox_get(&http, &base, "/_sandbox/stats").await;
    println!("sandbox stats: {stats}; client-level retries: {retried}");
    http.post(format!("{base}/_sandbox/config"))
        .json(
            &json!({"faults": {"server_error_rate": 0.0, "rate_limit_rate": 0.0,
        "lock_timeout_rate": 0.0, "drop_rate": 0.0, "slow_rate": 0.0}}),
        )
        .send()
        .await
        .unwrap();

    // Exactly the intended objects: one customer and one intent per order, no duplicates.
    let all_customers = sandbox_list_all(&http, &base, "/v1/customers").await;
    let mut orders: HashMap<String, usize> = HashMap::new();
    for customer in &all_customers {
        *orders
            .entry(
                customer["metadata"]["order"]
                    .as_str()
                    .unwrap_or("?")
                    .to_owned(),
            )
            .or_default() += 1;
    }
    assert_eq!(all_customers.len(), N, "customers: {orders:?}");
    assert!(orders.values().all(|n| *n == 1));
    let all_intents = sandbox_list_all(&http, &base, "/v1/payment_intents").await;
    assert_eq!(all_intents.len(), N);
    for intent in &all_intents {
        assert_eq!(intent["status"], json!("succeeded"), "{intent}");
        assert_eq!(
            intent["amount_received"], intent["amount"],
            "captured exactly once: {intent}"
        );
    }
    // Each intent succeeded and was captured exactly once, as Stripe's events record.
    for kind in [
        "payment_intent.succeeded",
        "charge.captured",
        "payment_intent.amount_capturable_updated",
    ] {
        let events = sandbox_list_all(&http, &base, &format!("/v1/events?type={kind}")).await;
        assert_eq!(events.len(), N, "{kind}");
    }

    // No secret at verbosity 5, across all of it.
    let logs = logs_text();
    assert!(
        logs.contains("upstream request detail"),
        "verbosity 5 logs request details"
    );
    assert!(!logs.contains(KEY), "the API key leaked into the logs");
    for intent in &all_intents {
        let secret = intent["client_secret"].as_str().unwrap();
        assert!(
            !logs.contains(secret),
            "a client secret leaked into the logs"
        );
    }
    service.shutdown().await;
}
