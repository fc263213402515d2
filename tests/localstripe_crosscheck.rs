//! An independent cross-check: the runtime's customer, payment-method and payment-intent flows
//! run against the built-in sandbox AND against `localstripe` (a stateful Stripe emulator written
//! elsewhere, from PyPI), with the same assertions, so the sandbox and the engine cannot agree on a
//! misunderstanding of Stripe. CI installs localstripe; elsewhere the localstripe half is skipped
//! with a note unless `CI` is set.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use connector_runtime::config::SandboxMode;
use connector_runtime::connections::model::ConnectionSpec;
use serde_json::{Value, json};
use tonic::Code;

fn id_of(name: &str) -> String {
    name.rsplit('/').next().unwrap_or_default().to_owned()
}

/// The flows, asserting only what Stripe documents and both backends must agree on.
async fn flows(service: &Service, c: &str) {
    // Customer: create, read, update, list with a filter, unknown id.
    let (customer, fields) = service
        .create(
            c,
            "Customer",
            json!({"Email": "cross@example.com", "Name": "Cross"}),
        )
        .await
        .unwrap();
    let customer = id_of(&customer);
    assert!(customer.starts_with("cus_"), "{customer}");
    assert_eq!(fields["Email"], json!("cross@example.com"));
    assert_eq!(
        service.get(c, "Customer", &customer).await.unwrap()["Name"],
        json!("Cross")
    );
    let update = connector_runtime::api::pb::UpdateEntityRequest {
        entity: Some(connector_runtime::api::pb::Entity {
            name: format!("connections/{c}/entityTypes/Customer/entities/{customer}"),
            fields: Some(connector_runtime::api::convert::to_proto_struct(
                json!({"Name": "John"}).as_object().unwrap(),
            )),
            metadata: None,
        }),
        request_id: String::new(),
    };
    service.entities().update_entity(update).await.unwrap();
    assert_eq!(
        service.get(c, "Customer", &customer).await.unwrap()["Name"],
        json!("John")
    );
    let listed = service
        .entities()
        .list_entities(connector_runtime::api::pb::ListEntitiesRequest {
            parent: format!("connections/{c}/entityTypes/Customer"),
            conditions: "Email = 'cross@example.com'".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.entities.len(), 1);
    let missing = service
        .get(c, "Customer", "cus_doesnotexist")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);

    // Payment method: create from a test card, attach, detach.
    let card = json!({"Type": "card", "Card": {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}});
    let (pm, _) = service.create(c, "PaymentMethod", card).await.unwrap();
    let pm = id_of(&pm);
    assert!(pm.starts_with("pm_"));
    let attached = service
        .execute(
            c,
            "AttachPaymentMethodToCustomer",
            json!({"PaymentMethodId": pm, "CustomerId": customer}),
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Object(attached[0].clone()),
        json!({"Success": "true"})
    );
    assert_eq!(
        service.get(c, "PaymentMethod", &pm).await.unwrap()["Customer"],
        json!(customer)
    );

    // Payment intents: confirm, manual capture, cancel.
    let (pi, fields) = service
        .create(
            c,
            "PaymentIntent",
            // Card only, so confirming needs no return URL (see the API version 2023-08-16).
            json!({"Amount": 2000.0, "Currency": "usd", "Customer": customer, "PaymentMethod": pm, "PaymentMethodTypes": ["card"]}),
        )
        .await
        .unwrap();
    assert_eq!(fields["Status"], json!("requires_confirmation"));
    let rows = service
        .execute(
            c,
            "ConfirmPaymentIntent",
            json!({"PaymentIntentId": id_of(&pi)}),
        )
        .await
        .unwrap();
    assert_eq!(rows[0]["Success"], json!("true"));
    assert_eq!(rows[0]["status"], json!("succeeded"));
    assert_eq!(rows[0]["amount"], json!("2000"));

    let manual = json!({"Amount": 3000, "Currency": "usd", "PaymentMethod": pm, "Customer": customer, "CaptureMethod": "manual", "Confirm": true, "PaymentMethodTypes": ["card"]});
    let (held, fields) = service
        .create(c, "PaymentIntent", manual.clone())
        .await
        .unwrap();
    assert_eq!(fields["Status"], json!("requires_capture"));
    let rows = service
        .execute(
            c,
            "CapturePaymentIntent",
            json!({"PaymentIntentId": id_of(&held)}),
        )
        .await
        .unwrap();
    assert_eq!(rows[0]["status"], json!("succeeded"));

    let (to_cancel, _) = service.create(c, "PaymentIntent", manual).await.unwrap();
    let rows = service
        .execute(
            c,
            "CancelPaymentIntent",
            json!({"PaymentIntentId": id_of(&to_cancel)}),
        )
        .await
        .unwrap();
    assert_eq!(rows[0]["status"], json!("canceled"));

    let detached = service
        .execute(
            c,
            "DetachPaymentMethodFromCustomer",
            json!({"PaymentMethodId": pm}),
        )
        .await
        .unwrap();
    assert_eq!(
        Value::Object(detached[0].clone()),
        json!({"Success": "true"})
    );
    assert_eq!(
        service.get(c, "PaymentMethod", &pm).await.unwrap()["Customer"],
        Value::Null
    );
}

#[tokio::test]
async fn the_flows_hold_against_the_built_in_sandbox() {
    let home = Home::new();
    let service = start(home.settings(false)).await;
    flows(&service, "stripe-sandbox").await;
    service.shutdown().await;
}

#[tokio::test]
async fn the_same_flows_hold_against_localstripe() {
    let available = Command::new("localstripe")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install localstripe (see .ci/run)"
        );
        println!("skipped: localstripe is not installed (pip install localstripe)");
        return;
    }
    let port = free_port();
    let _emulator = ChildGuard(
        Command::new("localstripe")
            .args(["--port", &port.to_string(), "--from-scratch"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let base_url = format!("http://127.0.0.1:{port}");
    // An external process: wait until it answers (bounded), the one place a poll is needed.
    let http = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if http
            .get(format!("{base_url}/v1/customers"))
            .basic_auth("sk_test_crosscheck", Some(""))
            .send()
            .await
            .is_ok()
        {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "localstripe did not start on port {port}");

    let home = Home::new();
    home.put_secret("localstripe-key", "1", "sk_test_crosscheck_0123456789");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = SandboxMode::Never;
    let mut connection = ConnectionSpec::with_id("localstripe");
    connection.api_key = Some(secret("localstripe-key"));
    connection.api_base_url = base_url;
    settings.connections = vec![connection];
    let service = start(settings).await;
    flows(&service, "localstripe").await;
    service.shutdown().await;
}
