//! The sandbox behaves like Stripe's test mode for an integration pinned to API version
//! 2023-08-16, checked over real HTTP: automatic payment methods and the `return_url` rule,
//! SetupIntents, invoices that collect from finalization, quote line items and totals, test cards
//! given as tokens, currency validation, only Stripe's event types, Stripe's defaults on new
//! objects, and ids that never repeat across restarts.

#[path = "sandbox_support.rs"]
mod support;

use serde_json::{Value, json};
use support::{Client, id, start, unlimited};

const RETURN_URL: &str = "https://shop.example/checkout/done";

async fn customer(client: &Client) -> String {
    id(&client
        .ok(
            "/v1/customers",
            &[("email", "ada@example.com"), ("name", "Ada Lovelace")],
        )
        .await)
}

#[tokio::test]
async fn intents_without_payment_method_types_have_automatic_payment_methods_and_need_a_return_url()
{
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let created = client
        .ok(
            "/v1/payment_intents",
            &[("amount", "1099"), ("currency", "usd")],
        )
        .await;
    assert_eq!(
        created["automatic_payment_methods"],
        json!({"allow_redirects": "always", "enabled": true})
    );
    assert_eq!(created["payment_method_types"], json!(["card"]));
    assert_eq!(
        created["payment_method_options"]["card"]["request_three_d_secure"],
        "automatic"
    );

    let without_return_url = client
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1099"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
            ],
        )
        .await;
    assert_eq!(without_return_url.status, 400);
    let error = &without_return_url.body["error"];
    assert_eq!(error["type"], "invalid_request_error");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("A `return_url` must be specified"),
        "{error}"
    );
    // Nothing was created by the refused request.
    let listed = client.get("/v1/payment_intents", &[]).await.body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);

    // The separate confirm follows the same rule; with a return_url it succeeds.
    let pending = client
        .ok(
            &format!("/v1/payment_intents/{}", id(&created)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    let refused = client
        .post(
            &format!("/v1/payment_intents/{}/confirm", id(&pending)),
            &[],
        )
        .await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    let confirmed = client
        .ok(
            &format!("/v1/payment_intents/{}/confirm", id(&pending)),
            &[("return_url", RETURN_URL)],
        )
        .await;
    assert_eq!(confirmed["status"], "succeeded");

    // Redirects turned off, or card only: no return_url needed.
    for extra in [
        [
            ("automatic_payment_methods[enabled]", "true"),
            ("automatic_payment_methods[allow_redirects]", "never"),
        ],
        [
            ("payment_method_types[]", "card"),
            ("description", "card only"),
        ],
    ] {
        let mut form = vec![
            ("amount", "1099"),
            ("currency", "usd"),
            ("payment_method", "pm_card_visa"),
            ("confirm", "true"),
        ];
        form.extend_from_slice(&extra);
        let paid = client.ok("/v1/payment_intents", &form).await;
        assert_eq!(paid["status"], "succeeded", "{extra:?}");
    }
}

#[tokio::test]
async fn error_on_requires_action_needs_payment_method_types() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let base = [
        ("amount", "1099"),
        ("currency", "usd"),
        ("payment_method", "pm_card_authenticationRequired"),
        ("confirm", "true"),
        ("error_on_requires_action", "true"),
    ];
    let automatic = client.post("/v1/payment_intents", &base).await;
    assert_eq!(automatic.status, 400, "{}", automatic.body);
    assert_eq!(automatic.body["error"]["param"], "error_on_requires_action");

    let mut card_only = base.to_vec();
    card_only.push(("payment_method_types[]", "card"));
    let declined = client.post("/v1/payment_intents", &card_only).await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    assert_eq!(
        declined.body["error"]["decline_code"],
        "authentication_not_handled"
    );
}

#[tokio::test]
async fn an_older_pinned_api_version_keeps_card_only_intents() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let response = client
        .http
        .post(format!("{}/v1/payment_intents", client.base))
        .bearer_auth(&client.key)
        .header("Stripe-Version", "2022-11-15")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("amount=1099&currency=usd&payment_method=pm_card_visa&confirm=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["stripe-version"], "2022-11-15");
    let intent: Value = response.json().await.unwrap();
    assert_eq!(intent["automatic_payment_methods"], Value::Null);
    assert_eq!(intent["status"], "succeeded");
}

#[tokio::test]
async fn three_d_secure_with_a_return_url_redirects_to_a_served_page() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let intent = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "1099"),
                ("currency", "usd"),
                ("payment_method", "pm_card_threeDSecure2Required"),
                ("confirm", "true"),
                ("return_url", RETURN_URL),
            ],
        )
        .await;
    assert_eq!(intent["status"], "requires_action");
    let next = &intent["next_action"];
    assert_eq!(next["type"], "redirect_to_url");
    assert_eq!(next["redirect_to_url"]["return_url"], RETURN_URL);
    let page = reqwest::get(next["redirect_to_url"]["url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains(&id(&intent)));
}

#[tokio::test]
async fn setup_intents_save_a_card_for_the_customer() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = customer(&client).await;
    let created = client
        .ok(
            "/v1/setup_intents",
            &[("customer", &customer), ("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(created["status"], "requires_confirmation");
    assert_eq!(created["usage"], "off_session");
    assert_eq!(created["metadata"], json!({}));
    assert!(
        created["client_secret"]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}_secret_", id(&created)))
    );
    let method = created["payment_method"].as_str().unwrap().to_owned();
    assert!(method.starts_with("pm_") && method != "pm_card_visa");

    let refused = client
        .post(&format!("/v1/setup_intents/{}/confirm", id(&created)), &[])
        .await;
    assert_eq!(
        refused.status, 400,
        "automatic payment methods need a return_url"
    );
    let succeeded = client
        .ok(
            &format!("/v1/setup_intents/{}/confirm", id(&created)),
            &[("return_url", RETURN_URL)],
        )
        .await;
    assert_eq!(succeeded["status"], "succeeded");
    let saved = client
        .get(&format!("/v1/payment_methods/{method}"), &[])
        .await
        .body;
    assert_eq!(saved["customer"], customer.as_str());

    // Confirmed on creation, card only.
    let at_once = client
        .ok(
            "/v1/setup_intents",
            &[
                ("customer", &customer),
                ("payment_method", "pm_card_mastercard"),
                ("payment_method_types[]", "card"),
                ("confirm", "true"),
                ("usage", "on_session"),
            ],
        )
        .await;
    assert_eq!(at_once["status"], "succeeded");
    assert_eq!(at_once["usage"], "on_session");
    assert_eq!(at_once["automatic_payment_methods"], Value::Null);

    // A declining card fails the setup with the SetupIntent embedded.
    let declined = client
        .post(
            "/v1/setup_intents",
            &[
                ("customer", &customer),
                ("payment_method", "pm_card_chargeDeclinedInsufficientFunds"),
                ("confirm", "true"),
                ("return_url", RETURN_URL),
            ],
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    let embedded = &declined.body["error"]["setup_intent"];
    assert_eq!(embedded["status"], "requires_payment_method");
    assert_eq!(
        embedded["last_setup_error"]["decline_code"],
        "insufficient_funds"
    );

    // 3-D Secure waits for the customer; the SetupIntent can be canceled until it succeeds.
    let action = client
        .ok(
            "/v1/setup_intents",
            &[
                ("payment_method", "pm_card_authenticationRequired"),
                ("confirm", "true"),
                ("return_url", RETURN_URL),
            ],
        )
        .await;
    assert_eq!(action["status"], "requires_action");
    assert_eq!(action["next_action"]["type"], "redirect_to_url");
    let canceled = client
        .ok(
            &format!("/v1/setup_intents/{}/cancel", id(&action)),
            &[("cancellation_reason", "abandoned")],
        )
        .await;
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "abandoned");
    let again = client
        .post(&format!("/v1/setup_intents/{}/cancel", id(&succeeded)), &[])
        .await;
    assert_eq!(again.status, 400);
    assert_eq!(again.body["error"]["code"], "setup_intent_unexpected_state");

    let events = event_types(&client).await;
    for expected in [
        "setup_intent.created",
        "setup_intent.succeeded",
        "setup_intent.setup_failed",
        "setup_intent.requires_action",
        "setup_intent.canceled",
        "payment_method.attached",
    ] {
        assert!(
            events.contains(&expected.to_owned()),
            "{expected} in {events:?}"
        );
    }
}

#[tokio::test]
async fn finalized_invoices_collect_through_a_payment_intent_and_hosted_pages() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = customer(&client).await;
    let invoice = client.ok("/v1/invoices", &[("customer", &customer)]).await;
    assert_eq!(invoice["metadata"], json!({}));
    let item = client
        .ok(
            "/v1/invoiceitems",
            &[
                ("customer", &customer),
                ("invoice", &id(&invoice)),
                ("unit_amount", "1250"),
                ("quantity", "2"),
                ("description", "Consulting"),
            ],
        )
        .await;
    assert_eq!(item["amount"], 2500);
    assert_eq!(item["unit_amount"], 1250);
    assert_eq!(item["unit_amount_decimal"], "1250");
    assert!(item["period"]["start"].is_i64());
    assert_eq!(item["metadata"], json!({}));

    let open = client
        .ok(&format!("/v1/invoices/{}/finalize", id(&invoice)), &[])
        .await;
    assert_eq!(open["status"], "open");
    let intent_id = open["payment_intent"].as_str().expect("payment_intent set");
    let intent = client
        .get(&format!("/v1/payment_intents/{intent_id}"), &[])
        .await
        .body;
    assert_eq!(intent["amount"], 2500);
    assert_eq!(intent["invoice"], open["id"]);
    assert_eq!(intent["status"], "requires_payment_method");

    let page = reqwest::get(open["hosted_invoice_url"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(
        page.text()
            .await
            .unwrap()
            .contains(open["number"].as_str().unwrap())
    );
    let pdf = reqwest::get(open["invoice_pdf"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(pdf.status(), 200);
    assert_eq!(pdf.headers()["content-type"], "application/pdf");
    assert!(pdf.bytes().await.unwrap().starts_with(b"%PDF-"));

    let paid = client
        .ok(
            &format!("/v1/invoices/{}/pay", id(&invoice)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(
        paid["payment_intent"], intent_id,
        "the same PaymentIntent collects"
    );
    let collected = client
        .get(&format!("/v1/payment_intents/{intent_id}"), &[])
        .await
        .body;
    assert_eq!(collected["status"], "succeeded");
    assert_eq!(paid["charge"], collected["latest_charge"]);
    let number = open["number"].as_str().unwrap();
    assert!(number.ends_with("-0001"), "{number}");
    let after = client
        .get(&format!("/v1/customers/{customer}"), &[])
        .await
        .body;
    assert_eq!(after["next_invoice_sequence"], 2);
    assert!(number.starts_with(after["invoice_prefix"].as_str().unwrap()));
}

#[tokio::test]
async fn quotes_list_their_line_items_and_compute_totals() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = customer(&client).await;
    let product = client.ok("/v1/products", &[("name", "Support plan")]).await;
    assert_eq!(product["active"], true);
    let price = client
        .ok(
            "/v1/prices",
            &[
                ("product", &id(&product)),
                ("unit_amount", "4000"),
                ("currency", "usd"),
            ],
        )
        .await;
    assert_eq!(price["active"], true);
    assert_eq!(price["tax_behavior"], "unspecified");
    assert_eq!(price["unit_amount_decimal"], "4000");
    let quote = client
        .ok(
            "/v1/quotes",
            &[
                ("customer", &customer),
                ("line_items[0][price]", &id(&price)),
                ("line_items[0][quantity]", "3"),
            ],
        )
        .await;
    assert!(quote.get("line_items").is_none(), "only when expanded");
    assert_eq!(quote["amount_total"], 12000);
    assert_eq!(quote["computed"]["upfront"]["amount_total"], 12000);
    assert_eq!(quote["computed"]["upfront"]["amount_subtotal"], 12000);

    let lines = client
        .get(&format!("/v1/quotes/{}/line_items", id(&quote)), &[])
        .await
        .body;
    let data = lines["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["object"], "item");
    assert_eq!(data[0]["quantity"], 3);
    assert_eq!(data[0]["amount_total"], 12000);
    assert_eq!(data[0]["description"], "Support plan");
    assert_eq!(data[0]["price"]["id"], price["id"]);

    let expanded = client
        .get(
            &format!("/v1/quotes/{}", id(&quote)),
            &[("expand[]", "line_items")],
        )
        .await
        .body;
    assert_eq!(expanded["line_items"]["data"][0]["id"], data[0]["id"]);
}

#[tokio::test]
async fn test_cards_work_as_tokens_and_as_test_payment_methods() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let tokenised = client
        .ok(
            "/v1/payment_methods",
            &[("type", "card"), ("card[token]", "tok_visa")],
        )
        .await;
    assert_eq!(tokenised["card"]["brand"], "visa");
    assert_eq!(tokenised["card"]["last4"], "4242");
    assert_eq!(tokenised["metadata"], json!({}));
    assert!(
        tokenised.get("sepa_debit").is_none(),
        "only the card's own details"
    );

    let unknown = client
        .post(
            "/v1/payment_methods",
            &[("type", "card"), ("card[token]", "tok_nonsense")],
        )
        .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["error"]["param"], "card[token]");

    let declining = client
        .ok(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[token]", "tok_chargeDeclinedInsufficientFunds"),
            ],
        )
        .await;
    for method in [
        "pm_card_chargeDeclinedInsufficientFunds",
        declining["id"].as_str().unwrap(),
    ] {
        let reply = client
            .post(
                "/v1/payment_intents",
                &[
                    ("amount", "1099"),
                    ("currency", "usd"),
                    ("payment_method", method),
                    ("confirm", "true"),
                    ("return_url", RETURN_URL),
                ],
            )
            .await;
        assert_eq!(reply.status, 402, "{method}: {}", reply.body);
        assert_eq!(reply.body["error"]["decline_code"], "insufficient_funds");
    }
}

#[tokio::test]
async fn unsupported_currencies_are_refused() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    for (path, form) in [
        (
            "/v1/payment_intents",
            vec![("amount", "1099"), ("currency", "usdx")],
        ),
        (
            "/v1/prices",
            vec![
                ("product_data[name]", "Gold"),
                ("unit_amount", "100"),
                ("currency", "usdx"),
            ],
        ),
    ] {
        let reply = client.post(path, &form).await;
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(reply.body["error"]["param"], "currency");
        assert!(
            reply.body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("Invalid currency: usdx.")
        );
    }
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

/// Stripe's event types: those a webhook endpoint may subscribe to, from Stripe's OpenAPI.
fn stripe_event_types() -> Vec<String> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/stripe-openapi/spec3.json");
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("spec3.json")).expect("JSON");
    spec["paths"]["/v1/webhook_endpoints"]["post"]["requestBody"]["content"]
        ["application/x-www-form-urlencoded"]["schema"]["properties"]["enabled_events"]["items"]
        ["enum"]
        .as_array()
        .expect("the list of event types")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn only_stripes_event_types_are_recorded_with_objects_after_the_change() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = customer(&client).await;
    let method = client
        .ok(
            "/v1/payment_methods",
            &[("type", "card"), ("card[token]", "tok_visa")],
        )
        .await;
    client
        .ok(
            &format!("/v1/payment_methods/{}/attach", id(&method)),
            &[("customer", &customer)],
        )
        .await;
    client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "1099"),
                ("currency", "usd"),
                ("customer", &customer),
                ("payment_method", &id(&method)),
                ("confirm", "true"),
                ("return_url", RETURN_URL),
            ],
        )
        .await;
    client
        .ok(
            &format!("/v1/customers/{customer}"),
            &[("metadata[plan]", "gold")],
        )
        .await;

    let known = stripe_event_types();
    let types = event_types(&client).await;
    for event_type in &types {
        assert!(
            known.contains(event_type),
            "{event_type} is no Stripe event type"
        );
    }
    assert!(!types.contains(&"payment_method.created".to_owned()));
    for expected in [
        "customer.created",
        "customer.updated",
        "payment_method.attached",
        "payment_intent.created",
        "charge.succeeded",
        "payment_intent.succeeded",
    ] {
        assert!(
            types.contains(&expected.to_owned()),
            "{expected} in {types:?}"
        );
    }
    let attached = client
        .get("/v1/events", &[("type", "payment_method.attached")])
        .await
        .body;
    assert_eq!(
        attached["data"][0]["data"]["object"]["customer"],
        customer.as_str(),
        "the event carries the method as attached"
    );
}

#[tokio::test]
async fn new_objects_carry_stripes_defaults() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let created = client
        .ok("/v1/customers", &[("email", "grace@example.com")])
        .await;
    assert_eq!(created["delinquent"], false);
    assert_eq!(created["next_invoice_sequence"], 1);
    assert_eq!(created["preferred_locales"], json!([]));
    assert_eq!(created["tax_exempt"], "none");
    assert!(
        created["invoice_prefix"]
            .as_str()
            .is_some_and(|p| !p.is_empty())
    );
    for field in ["sources", "subscriptions", "tax_ids", "cash_balance", "tax"] {
        assert!(created.get(field).is_none(), "{field} only when expanded");
    }
    let expanded = client
        .get(
            &format!("/v1/customers/{}", id(&created)),
            &[("expand[]", "sources")],
        )
        .await
        .body;
    assert_eq!(expanded["sources"]["object"], "list");
    let tax_id = client
        .ok(
            &format!("/v1/customers/{}/tax_ids", id(&created)),
            &[("type", "eu_vat"), ("value", "DE123456789")],
        )
        .await;
    let with_tax_ids = client
        .get(
            &format!("/v1/customers/{}", id(&created)),
            &[("expand[]", "tax_ids")],
        )
        .await
        .body;
    assert_eq!(with_tax_ids["tax_ids"]["data"][0]["id"], tax_id["id"]);

    let intent = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "1099"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("return_url", RETURN_URL),
            ],
        )
        .await;
    let charge = client
        .get(
            &format!("/v1/charges/{}", intent["latest_charge"].as_str().unwrap()),
            &[],
        )
        .await
        .body;
    assert!(charge.get("transfer").is_none());
    let transaction = client
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                charge["balance_transaction"]
                    .as_str()
                    .expect("balance_transaction")
            ),
            &[],
        )
        .await
        .body;
    assert_eq!(transaction["amount"], 1099);
    assert_eq!(transaction["source"], charge["id"]);
    let receipt = reqwest::get(charge["receipt_url"].as_str().expect("receipt_url"))
        .await
        .unwrap();
    assert_eq!(receipt.status(), 200);

    let refund = client
        .ok("/v1/refunds", &[("payment_intent", &id(&intent))])
        .await;
    assert_eq!(refund["metadata"], json!({}));
    assert!(refund.get("failure_reason").is_none());
    assert!(refund["balance_transaction"].as_str().is_some());
}

#[tokio::test]
async fn ids_have_stripes_lengths_and_never_repeat_across_restarts() {
    let mut seen = Vec::new();
    for _ in 0..2 {
        // The same configuration (and seed) each time, as after a restart.
        let sandbox = start(unlimited()).await;
        let client = Client::new(&sandbox);
        let customer = customer(&client).await;
        assert_eq!(customer.len(), "cus_".len() + 14, "{customer}");
        let intent = client
            .ok(
                "/v1/payment_intents",
                &[("amount", "1099"), ("currency", "usd")],
            )
            .await;
        assert_eq!(id(&intent).len(), "pi_".len() + 24);
        seen.push((customer, id(&intent)));
        sandbox.shutdown().await;
    }
    assert_ne!(seen[0].0, seen[1].0);
    assert_ne!(seen[0].1, seen[1].1);
}

/// What `docs/sandbox.md` lists as not modelled answers as documented there.
#[tokio::test]
async fn what_is_not_modelled_answers_as_documented() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let sepa = client
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "1099"),
                ("currency", "eur"),
                ("payment_method_types[]", "sepa_debit"),
            ],
        )
        .await;
    assert_eq!(sepa.status, 400);
    assert_eq!(sepa.body["error"]["code"], "sandbox_unsupported");
    assert_eq!(sepa.body["error"]["param"], "payment_method_types");

    let clock = client
        .post(
            "/v1/test_helpers/test_clocks/clock_1/advance",
            &[("frozen_time", "1800000000")],
        )
        .await;
    assert_eq!(clock.status, 400);
    assert_eq!(clock.body["error"]["code"], "sandbox_unsupported");
    assert!(
        clock.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("AdvanceTestClock")
    );

    let quote = client.ok("/v1/quotes", &[]).await;
    let nested = client
        .get(
            &format!("/v1/quotes/{}", id(&quote)),
            &[("expand[]", "computed.upfront.line_items")],
        )
        .await;
    assert_eq!(nested.status, 400);
    assert_eq!(nested.body["error"]["param"], "expand");
}
