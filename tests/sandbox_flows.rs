//! The sandbox's modelled Stripe flows over real HTTP: PaymentIntents with Stripe's test cards,
//! PaymentMethods, invoices, quotes and the events they record.

#[path = "sandbox_support.rs"]
mod support;

use serde_json::Value;
use support::{Client, id, start, unlimited};

/// A card-only PaymentIntent (`payment_method_types=[card]`), as an integration that confirms on
/// the server without redirects creates it; automatic payment methods are tested in
/// `sandbox_fidelity.rs`.
async fn intent(client: &Client, extra: &[(&str, &str)]) -> support::Reply {
    let mut form = vec![
        ("amount", "1099"),
        ("currency", "usd"),
        ("payment_method_types[]", "card"),
    ];
    form.extend_from_slice(extra);
    client.post("/v1/payment_intents", &form).await
}

async fn card_method(client: &Client, number: &str) -> String {
    let method = client
        .ok(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", number),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2040"),
                ("card[cvc]", "123"),
            ],
        )
        .await;
    id(&method)
}

async fn event_types(client: &Client) -> Vec<String> {
    let events = client.get("/v1/events", &[("limit", "100")]).await.body;
    events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_visa_payment_succeeds_with_a_retrievable_charge() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let created = intent(&client, &[]).await.body;
    assert_eq!(created["status"], "requires_payment_method");
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}_secret_", id(&created)))
    );

    let updated = client
        .ok(
            &format!("/v1/payment_intents/{}", id(&created)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(updated["status"], "requires_confirmation");
    let method = updated["payment_method"].as_str().unwrap();
    assert!(
        method.starts_with("pm_") && method != "pm_card_visa",
        "test ids are cloned"
    );

    let confirmed = client
        .ok(
            &format!("/v1/payment_intents/{}/confirm", id(&created)),
            &[],
        )
        .await;
    assert_eq!(confirmed["status"], "succeeded");
    assert_eq!(confirmed["amount_received"], 1099);
    let charge = client
        .get(
            &format!(
                "/v1/charges/{}",
                confirmed["latest_charge"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(charge.status, 200);
    assert_eq!(charge.body["status"], "succeeded");
    assert_eq!(charge.body["payment_intent"], created["id"]);
    assert_eq!(
        charge.body["payment_method_details"]["card"]["last4"],
        "4242"
    );

    let types = event_types(&client).await;
    for expected in [
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ] {
        assert!(
            types.contains(&expected.to_owned()),
            "{expected} in {types:?}"
        );
    }
    // Stripe has no `payment_intent.updated` event type.
    assert!(!types.contains(&"payment_intent.updated".to_owned()));
}

#[tokio::test]
async fn insufficient_funds_declines_with_402_and_resets_the_intent() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let method = card_method(&client, "4000000000009995").await;
    let declined = intent(&client, &[("payment_method", &method), ("confirm", "true")]).await;
    assert_eq!(declined.status, 402);
    let error = &declined.body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "card_declined");
    assert_eq!(error["decline_code"], "insufficient_funds");
    assert!(error["charge"].as_str().unwrap().starts_with("ch_"));
    let embedded = &error["payment_intent"];
    assert_eq!(embedded["status"], "requires_payment_method");
    assert_eq!(
        embedded["last_payment_error"]["decline_code"],
        "insufficient_funds"
    );

    let stored = client
        .get(&format!("/v1/payment_intents/{}", id(embedded)), &[])
        .await
        .body;
    assert_eq!(stored["status"], "requires_payment_method");
    let charge = client
        .get(
            &format!("/v1/charges/{}", error["charge"].as_str().unwrap()),
            &[],
        )
        .await
        .body;
    assert_eq!(charge["status"], "failed");
    assert!(
        event_types(&client)
            .await
            .contains(&"payment_intent.payment_failed".to_owned())
    );
}

#[tokio::test]
async fn every_declining_test_card_gives_its_documented_error() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let by_method = [
        (
            "pm_card_visa_chargeDeclined",
            "card_declined",
            "generic_decline",
        ),
        (
            "pm_card_visa_chargeDeclinedInsufficientFunds",
            "card_declined",
            "insufficient_funds",
        ),
        (
            "pm_card_chargeDeclinedExpiredCard",
            "expired_card",
            "expired_card",
        ),
    ];
    for (method, code, decline) in by_method {
        let reply = intent(&client, &[("payment_method", method), ("confirm", "true")]).await;
        assert_eq!(
            (
                reply.status,
                &reply.body["error"]["code"],
                &reply.body["error"]["decline_code"]
            ),
            (402, &Value::from(code), &Value::from(decline)),
            "{method}"
        );
    }
    let generic = card_method(&client, "4000000000000002").await;
    let reply = intent(
        &client,
        &[("payment_method", &generic), ("confirm", "true")],
    )
    .await;
    assert_eq!(reply.body["error"]["decline_code"], "generic_decline");

    let created = client
        .ok(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "1"),
                ("card[exp_year]", "2041"),
            ],
        )
        .await;
    assert_eq!(created["card"]["brand"], "visa");
    assert_eq!(created["card"]["last4"], "4242");
    assert!(
        !created.to_string().contains("4242424242424242"),
        "the full number is never returned"
    );
    let typo = client
        .post(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424241"),
                ("card[exp_month]", "1"),
                ("card[exp_year]", "2041"),
            ],
        )
        .await;
    assert_eq!(
        (typo.status, &typo.body["error"]["code"]),
        (402, &Value::from("incorrect_number"))
    );
}

#[tokio::test]
async fn authentication_required_cards_need_action_or_fail_with_error_on_requires_action() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let method = card_method(&client, "4000002500003155").await;
    let action = intent(&client, &[("payment_method", &method), ("confirm", "true")]).await;
    assert_eq!(action.status, 200);
    assert_eq!(action.body["status"], "requires_action");
    assert_eq!(action.body["next_action"]["type"], "use_stripe_sdk");
    // Confirming again stands for the customer completing authentication.
    let done = client
        .ok(
            &format!("/v1/payment_intents/{}/confirm", id(&action.body)),
            &[],
        )
        .await;
    assert_eq!(done["status"], "succeeded");

    let failed = intent(
        &client,
        &[
            ("payment_method", "pm_card_authenticationRequired"),
            ("confirm", "true"),
            ("error_on_requires_action", "true"),
        ],
    )
    .await;
    assert_eq!(failed.status, 402);
    let error = &failed.body["error"];
    assert_eq!(error["type"], "card_error");
    assert_eq!(error["code"], "authentication_required");
    assert_eq!(error["decline_code"], "authentication_not_handled");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("error_on_requires_action")
    );
    assert_eq!(error["payment_intent"]["object"], "payment_intent");
    assert_eq!(error["payment_intent"]["status"], "requires_payment_method");
    assert_eq!(
        error["payment_intent"]["last_payment_error"]["code"],
        "authentication_required"
    );
}

#[tokio::test]
async fn off_session_payments_needing_authentication_are_declined() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let reply = intent(
        &client,
        &[
            ("customer", &customer),
            ("payment_method", "pm_card_authenticationRequired"),
            ("confirm", "true"),
            ("off_session", "true"),
        ],
    )
    .await;
    assert_eq!(reply.status, 402);
    assert_eq!(reply.body["error"]["code"], "authentication_required");
    assert_eq!(
        reply.body["error"]["decline_code"],
        "authentication_required"
    );
    assert_eq!(
        reply.body["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
}

#[tokio::test]
async fn manual_capture_holds_funds_until_captured_within_the_capturable_amount() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let held = intent(
        &client,
        &[
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
            ("capture_method", "manual"),
        ],
    )
    .await
    .body;
    assert_eq!(held["status"], "requires_capture");
    assert_eq!(held["amount_capturable"], 1099);
    let path = format!("/v1/payment_intents/{}/capture", id(&held));
    let too_much = client.post(&path, &[("amount_to_capture", "2000")]).await;
    assert_eq!(too_much.status, 400);
    assert_eq!(too_much.body["error"]["param"], "amount_to_capture");
    let captured = client.ok(&path, &[("amount_to_capture", "1000")]).await;
    assert_eq!(captured["status"], "succeeded");
    assert_eq!(captured["amount_received"], 1000);
    let charge = client
        .get(
            &format!(
                "/v1/charges/{}",
                captured["latest_charge"].as_str().unwrap()
            ),
            &[],
        )
        .await
        .body;
    assert_eq!(
        (
            charge["captured"].as_bool(),
            charge["amount_captured"].as_i64()
        ),
        (Some(true), Some(1000))
    );
    let twice = client.post(&path, &[]).await;
    assert_eq!(
        twice.body["error"]["code"],
        "payment_intent_unexpected_state"
    );
}

#[tokio::test]
async fn cancel_works_only_from_cancelable_states() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let open = intent(&client, &[]).await.body;
    let canceled = client
        .ok(
            &format!("/v1/payment_intents/{}/cancel", id(&open)),
            &[("cancellation_reason", "abandoned")],
        )
        .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "abandoned");
    let again = client
        .post(&format!("/v1/payment_intents/{}/cancel", id(&open)), &[])
        .await;
    assert_eq!(
        (again.status, &again.body["error"]["code"]),
        (400, &Value::from("payment_intent_unexpected_state"))
    );

    let paid = intent(
        &client,
        &[("payment_method", "pm_card_visa"), ("confirm", "true")],
    )
    .await
    .body;
    let refused = client
        .post(&format!("/v1/payment_intents/{}/cancel", id(&paid)), &[])
        .await;
    assert_eq!(
        refused.body["error"]["code"],
        "payment_intent_unexpected_state"
    );
    let confirm_canceled = client
        .post(
            &format!("/v1/payment_intents/{}/confirm", id(&open)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(confirm_canceled.status, 400);

    let held = intent(
        &client,
        &[
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
            ("capture_method", "manual"),
        ],
    )
    .await
    .body;
    assert_eq!(
        client
            .ok(&format!("/v1/payment_intents/{}/cancel", id(&held)), &[])
            .await["status"],
        "canceled"
    );
}

#[tokio::test]
async fn payment_methods_attach_and_detach_and_detached_ones_are_unusable() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let method = card_method(&client, "4242424242424242").await;
    let attached = client
        .ok(
            &format!("/v1/payment_methods/{method}/attach"),
            &[("customer", &customer)],
        )
        .await;
    assert_eq!(attached["customer"], customer.as_str());
    let listed = client
        .get(&format!("/v1/customers/{customer}/payment_methods"), &[])
        .await
        .body;
    assert_eq!(listed["data"][0]["id"], method.as_str());

    let detached = client
        .ok(&format!("/v1/payment_methods/{method}/detach"), &[])
        .await;
    assert_eq!(detached["customer"], Value::Null);
    let reattach = client
        .post(
            &format!("/v1/payment_methods/{method}/attach"),
            &[("customer", &customer)],
        )
        .await;
    assert_eq!(reattach.status, 400);
    let reuse = intent(&client, &[("payment_method", &method), ("confirm", "true")]).await;
    assert_eq!(reuse.status, 400);
    assert_eq!(
        reuse.body["error"]["code"],
        "payment_method_unexpected_state"
    );
    let detach_twice = client
        .post(&format!("/v1/payment_methods/{method}/detach"), &[])
        .await;
    assert_eq!(detach_twice.status, 400);

    let declining = card_method(&client, "4000000000000002").await;
    let refused = client
        .post(
            &format!("/v1/payment_methods/{declining}/attach"),
            &[("customer", &customer)],
        )
        .await;
    assert_eq!(refused.status, 402, "Stripe checks the card on attach");
    let missing_customer = client
        .post(
            &format!("/v1/payment_methods/{declining}/attach"),
            &[("customer", "cus_nope")],
        )
        .await;
    assert_eq!(missing_customer.status, 404);

    let types = event_types(&client).await;
    assert!(
        types.contains(&"payment_method.attached".to_owned())
            && types.contains(&"payment_method.detached".to_owned())
    );
}

#[tokio::test]
async fn invoices_sum_their_items_and_go_through_their_lifecycle() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let draft = client.ok("/v1/invoices", &[("customer", &customer)]).await;
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["number"], Value::Null);
    let invoice = id(&draft);
    client
        .ok(
            "/v1/invoiceitems",
            &[
                ("customer", &customer),
                ("invoice", &invoice),
                ("amount", "1500"),
                ("currency", "usd"),
            ],
        )
        .await;
    client
        .ok(
            "/v1/invoiceitems",
            &[
                ("customer", &customer),
                ("invoice", &invoice),
                ("unit_amount", "250"),
                ("quantity", "2"),
            ],
        )
        .await;
    let summed = client
        .get(&format!("/v1/invoices/{invoice}"), &[])
        .await
        .body;
    assert_eq!(summed["amount_due"], 2000);
    assert_eq!(summed["lines"]["data"].as_array().unwrap().len(), 2);
    let lines = client
        .get(&format!("/v1/invoices/{invoice}/lines"), &[])
        .await
        .body;
    assert_eq!(lines["data"].as_array().unwrap().len(), 2);

    let open = client
        .ok(&format!("/v1/invoices/{invoice}/finalize"), &[])
        .await;
    assert_eq!(open["status"], "open");
    assert!(open["number"].as_str().unwrap().ends_with("-0001"));
    let refinalize = client
        .post(&format!("/v1/invoices/{invoice}/finalize"), &[])
        .await;
    assert_eq!(refinalize.status, 400);
    let late_item = client
        .post(
            "/v1/invoiceitems",
            &[
                ("customer", &customer),
                ("invoice", &invoice),
                ("amount", "1"),
            ],
        )
        .await;
    assert_eq!(late_item.status, 400);

    let paid = client
        .ok(
            &format!("/v1/invoices/{invoice}/pay"),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(
        (
            paid["status"].as_str(),
            paid["paid"].as_bool(),
            paid["amount_paid"].as_i64()
        ),
        (Some("paid"), Some(true), Some(2000))
    );
    let intent = client
        .get(
            &format!(
                "/v1/payment_intents/{}",
                paid["payment_intent"].as_str().unwrap()
            ),
            &[("expand[]", "invoice")],
        )
        .await
        .body;
    assert_eq!(intent["status"], "succeeded");
    assert_eq!(
        intent["invoice"]["id"],
        invoice.as_str(),
        "expand[]=invoice"
    );
    let void_paid = client
        .post(&format!("/v1/invoices/{invoice}/void"), &[])
        .await;
    assert_eq!(void_paid.status, 400);

    let second = id(&client.ok("/v1/invoices", &[("customer", &customer)]).await);
    client
        .ok(
            "/v1/invoiceitems",
            &[
                ("customer", &customer),
                ("invoice", &second),
                ("amount", "700"),
            ],
        )
        .await;
    let finalized = client
        .ok(&format!("/v1/invoices/{second}/finalize"), &[])
        .await;
    assert!(finalized["number"].as_str().unwrap().ends_with("-0002"));
    let declined = client
        .post(
            &format!("/v1/invoices/{second}/pay"),
            &[("payment_method", "pm_card_visa_chargeDeclined")],
        )
        .await;
    assert_eq!(declined.status, 402);
    assert_eq!(
        client
            .ok(&format!("/v1/invoices/{second}/mark_uncollectible"), &[])
            .await["status"],
        "uncollectible"
    );
    assert_eq!(
        client.ok(&format!("/v1/invoices/{second}/void"), &[]).await["status"],
        "void"
    );

    let empty = id(&client.ok("/v1/invoices", &[("customer", &customer)]).await);
    let zero = client
        .ok(&format!("/v1/invoices/{empty}/finalize"), &[])
        .await;
    assert_eq!(
        (zero["status"].as_str(), zero["paid"].as_bool()),
        (Some("paid"), Some(true)),
        "a zero invoice is paid on finalize"
    );

    let types = event_types(&client).await;
    for expected in [
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.payment_failed",
        "invoice.marked_uncollectible",
        "invoice.voided",
    ] {
        assert!(types.contains(&expected.to_owned()), "{expected}");
    }
}

#[tokio::test]
async fn quotes_finalize_and_accept_into_an_invoice_or_cancel() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let product = id(&client.ok("/v1/products", &[("name", "Seat")]).await);
    let price = id(&client
        .ok(
            "/v1/prices",
            &[
                ("product", &product),
                ("unit_amount", "1200"),
                ("currency", "usd"),
            ],
        )
        .await);
    let quote = client
        .ok(
            "/v1/quotes",
            &[
                ("customer", &customer),
                ("line_items[0][price]", &price),
                ("line_items[0][quantity]", "3"),
            ],
        )
        .await;
    assert_eq!(quote["status"], "draft");
    assert_eq!(quote["amount_total"], 3600);
    let qid = id(&quote);
    let accept_draft = client.post(&format!("/v1/quotes/{qid}/accept"), &[]).await;
    assert_eq!(accept_draft.status, 400);
    let open = client.ok(&format!("/v1/quotes/{qid}/finalize"), &[]).await;
    assert_eq!(open["status"], "open");
    assert!(open["number"].as_str().unwrap().starts_with("QT-"));
    let accepted = client.ok(&format!("/v1/quotes/{qid}/accept"), &[]).await;
    assert_eq!(accepted["status"], "accepted");
    let invoice = client
        .get(
            &format!("/v1/invoices/{}", accepted["invoice"].as_str().unwrap()),
            &[],
        )
        .await
        .body;
    assert_eq!(invoice["amount_due"], 3600);
    assert_eq!(invoice["customer"], customer.as_str());
    let cancel_accepted = client.post(&format!("/v1/quotes/{qid}/cancel"), &[]).await;
    assert_eq!(cancel_accepted.status, 400);

    let other = id(&client
        .ok(
            "/v1/quotes",
            &[("customer", &customer), ("line_items[0][price]", &price)],
        )
        .await);
    assert_eq!(
        client.ok(&format!("/v1/quotes/{other}/cancel"), &[]).await["status"],
        "canceled"
    );
    let missing_price = client
        .post(
            "/v1/quotes",
            &[
                ("customer", &customer),
                ("line_items[0][price]", "price_nope"),
            ],
        )
        .await;
    assert_eq!(missing_price.status, 404);
    assert_eq!(missing_price.body["error"]["param"], "line_items[0][price]");

    let types = event_types(&client).await;
    for expected in [
        "quote.created",
        "quote.finalized",
        "quote.accepted",
        "quote.canceled",
        "invoice.created",
    ] {
        assert!(types.contains(&expected.to_owned()), "{expected}");
    }
}

#[tokio::test]
async fn events_are_listable_filterable_and_retrievable() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    client
        .ok(
            &format!("/v1/customers/{customer}"),
            &[("name", "New name")],
        )
        .await;
    client.delete(&format!("/v1/customers/{customer}")).await;
    let events = client.get("/v1/events", &[]).await.body;
    let types: Vec<&str> = events["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        ["customer.deleted", "customer.updated", "customer.created"]
    );
    let updated = &events["data"][1];
    assert_eq!(updated["data"]["object"]["name"], "New name");
    assert_eq!(updated["data"]["previous_attributes"]["name"], Value::Null);
    assert!(
        updated["request"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
    let only = client
        .get("/v1/events", &[("type", "customer.created")])
        .await
        .body;
    assert_eq!(only["data"].as_array().unwrap().len(), 1);
    let event_id = updated["id"].as_str().unwrap();
    assert!(event_id.starts_with("evt_"));
    assert_eq!(
        client
            .get(&format!("/v1/events/{event_id}"), &[])
            .await
            .body["type"],
        "customer.updated"
    );
}

#[tokio::test]
async fn charges_capture_and_refund_through_the_legacy_api_and_refunds() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let charge = client
        .ok(
            "/v1/charges",
            &[
                ("amount", "5000"),
                ("currency", "usd"),
                ("source", "tok_visa"),
                ("capture", "false"),
            ],
        )
        .await;
    assert_eq!(
        (charge["status"].as_str(), charge["captured"].as_bool()),
        (Some("succeeded"), Some(false))
    );
    let captured = client
        .ok(&format!("/v1/charges/{}/capture", id(&charge)), &[])
        .await;
    assert_eq!(captured["amount_captured"], 5000);
    let refund = client
        .ok(
            "/v1/refunds",
            &[("charge", &id(&charge)), ("amount", "2000")],
        )
        .await;
    assert_eq!(
        (refund["status"].as_str(), refund["amount"].as_i64()),
        (Some("succeeded"), Some(2000))
    );
    let too_much = client
        .post(
            "/v1/refunds",
            &[("charge", &id(&charge)), ("amount", "4000")],
        )
        .await;
    assert_eq!(too_much.status, 400);
    let rest = client
        .ok(&format!("/v1/charges/{}/refund", id(&charge)), &[])
        .await;
    assert_eq!(
        (rest["amount_refunded"].as_i64(), rest["refunded"].as_bool()),
        (Some(5000), Some(true))
    );

    let declined = client
        .post(
            "/v1/charges",
            &[
                ("amount", "5000"),
                ("currency", "usd"),
                ("source", "tok_chargeDeclinedInsufficientFunds"),
            ],
        )
        .await;
    assert_eq!(
        (declined.status, &declined.body["error"]["decline_code"]),
        (402, &Value::from("insufficient_funds"))
    );

    let paid = intent(
        &client,
        &[("payment_method", "pm_card_visa"), ("confirm", "true")],
    )
    .await
    .body;
    let by_intent = client
        .ok("/v1/refunds", &[("payment_intent", &id(&paid))])
        .await;
    assert_eq!(by_intent["amount"], 1099);
    assert_eq!(by_intent["charge"], paid["latest_charge"]);
}

#[tokio::test]
async fn setup_future_usage_attaches_the_method_to_the_customer() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let paid = intent(
        &client,
        &[
            ("customer", &customer),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
            ("setup_future_usage", "off_session"),
        ],
    )
    .await
    .body;
    let method = client
        .get(
            &format!(
                "/v1/payment_methods/{}",
                paid["payment_method"].as_str().unwrap()
            ),
            &[],
        )
        .await
        .body;
    assert_eq!(method["customer"], customer.as_str());
}

#[tokio::test]
async fn generic_entities_start_in_a_sensible_status() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let topup = client
        .ok("/v1/topups", &[("amount", "1000"), ("currency", "usd")])
        .await;
    assert_eq!(topup["status"], "pending");
    assert!(topup["id"].as_str().unwrap().starts_with("tu_"));
}

#[tokio::test]
async fn refunds_nested_under_a_charge_use_the_charge_in_the_path() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let paid = intent(
        &client,
        &[("payment_method", "pm_card_visa"), ("confirm", "true")],
    )
    .await
    .body;
    let charge = paid["latest_charge"].as_str().unwrap();
    let refund = client
        .ok(
            &format!("/v1/charges/{charge}/refunds"),
            &[("amount", "99")],
        )
        .await;
    assert_eq!(refund["charge"], charge);
    let listed = client
        .get(&format!("/v1/charges/{charge}/refunds"), &[])
        .await
        .body;
    assert_eq!(listed["data"][0]["id"], refund["id"]);
    let fetched = client.get(&format!("/v1/charges/{charge}"), &[]).await.body;
    assert_eq!(fetched["amount_refunded"], 99);
}

#[tokio::test]
async fn a_payment_method_without_customer_pays_only_once() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let method = card_method(&client, "4242424242424242").await;
    let first = intent(&client, &[("payment_method", &method), ("confirm", "true")]).await;
    assert_eq!(first.status, 200);
    let second = intent(&client, &[("payment_method", &method), ("confirm", "true")]).await;
    assert_eq!(second.status, 400);
    assert_eq!(
        second.body["error"]["code"],
        "payment_method_unexpected_state"
    );

    let customer = client.customer().await;
    let saved = card_method(&client, "4242424242424242").await;
    client
        .ok(
            &format!("/v1/payment_methods/{saved}/attach"),
            &[("customer", &customer)],
        )
        .await;
    for _ in 0..2 {
        let paid = intent(
            &client,
            &[
                ("customer", &customer),
                ("payment_method", &saved),
                ("confirm", "true"),
            ],
        )
        .await;
        assert_eq!(paid.status, 200, "attached methods are reusable");
    }
}
