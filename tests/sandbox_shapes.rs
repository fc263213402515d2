//! The proof that the sandbox's objects are shaped like Stripe's: for every object type the sandbox
//! creates, over real HTTP, the response is compared with Stripe's sample object of that type and
//! with the response schema of Stripe's OpenAPI description (`../shared/stripe-openapi`): the same
//! keys (fields Stripe returns only when expanded are absent unless expanded), the schema's types
//! and nullability, no `""` placeholders, ids as long as Stripe's. Also checks that the sandbox's
//! derived shape table (`src/sandbox/shapes.json`) is in step with those files.

#[path = "sandbox_support.rs"]
mod support;

#[path = "sandbox_shapes/checker.rs"]
mod checker;

use std::collections::BTreeMap;

use checker::Stripe;
use serde_json::Value;
use support::{Client, id, start, unlimited};

/// Objects collected by type, with the fields each request expanded.
#[derive(Default)]
struct Seen {
    objects: BTreeMap<String, Vec<(Value, Vec<&'static str>)>>,
}

impl Seen {
    fn add(&mut self, object: &Value) {
        self.add_expanded(object, &[]);
    }

    fn add_expanded(&mut self, object: &Value, expanded: &[&'static str]) {
        let object_type = object["object"]
            .as_str()
            .unwrap_or_else(|| panic!("an object with a type: {object}"))
            .to_owned();
        self.objects
            .entry(object_type)
            .or_default()
            .push((object.clone(), expanded.to_vec()));
    }

    /// Every difference from Stripe's shapes, and the id length of each object.
    fn differences(&self, stripe: &Stripe) -> Vec<String> {
        let mut out = Vec::new();
        for (object_type, objects) in &self.objects {
            for (object, expanded) in objects {
                out.extend(stripe.differences(object_type, object, expanded));
                let id = object["id"].as_str().unwrap_or_default();
                let length = id.rfind('_').map(|i| id.len() - i - 1);
                if let Some(expected) = stripe.id_length(object_type)
                    && length != Some(expected)
                {
                    out.push(format!(
                        "{object_type}: id {id} has {length:?} characters after the prefix, Stripe's {expected}"
                    ));
                }
            }
        }
        out
    }
}

#[test]
fn the_derived_shape_table_is_in_step_with_stripes_openapi() {
    let stripe = Stripe::load();
    let derived = stripe.derive_shapes();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox/shapes.json");
    if std::env::var_os("SANDBOX_SHAPES_WRITE").is_some() {
        let text = serde_json::to_string_pretty(&derived).expect("JSON") + "\n";
        std::fs::write(&path, text).expect("shapes.json written");
    }
    let committed: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("shapes.json")).expect("JSON");
    assert_eq!(
        committed, derived,
        "src/sandbox/shapes.json is stale: rerun this test with SANDBOX_SHAPES_WRITE=1"
    );
    assert!(
        derived["customer"]["omit"]
            .as_array()
            .unwrap()
            .contains(&Value::from("sources"))
    );
}

/// Drives every modelled flow once and collects each object it returns.
async fn modelled_objects(client: &Client) -> Seen {
    let mut seen = Seen::default();
    let customer = client
        .ok(
            "/v1/customers",
            &[
                ("email", "jenny.rosen@example.com"),
                ("name", "Jenny Rosen"),
            ],
        )
        .await;
    seen.add(&customer);
    let customer_id = id(&customer);
    let expanded = client
        .get(
            &format!("/v1/customers/{customer_id}"),
            &[("expand[]", "sources"), ("expand[]", "tax_ids")],
        )
        .await
        .body;
    seen.add_expanded(&expanded, &["sources", "tax_ids"]);

    let by_number = client
        .ok(
            "/v1/payment_methods",
            &[
                ("type", "card"),
                ("card[number]", "4242424242424242"),
                ("card[exp_month]", "12"),
                ("card[exp_year]", "2034"),
                ("card[cvc]", "314"),
            ],
        )
        .await;
    seen.add(&by_number);
    let by_token = client
        .ok(
            "/v1/payment_methods",
            &[("type", "card"), ("card[token]", "tok_mastercard")],
        )
        .await;
    seen.add(&by_token);
    let attached = client
        .ok(
            &format!("/v1/payment_methods/{}/attach", id(&by_token)),
            &[("customer", &customer_id)],
        )
        .await;
    seen.add(&attached);

    let created = client
        .ok(
            "/v1/payment_intents",
            &[("amount", "2000"), ("currency", "usd")],
        )
        .await;
    seen.add(&created);
    let paid = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("customer", &customer_id),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("return_url", "https://shop.example/return"),
            ],
        )
        .await;
    seen.add(&paid);
    let needs_action = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_threeDSecure2Required"),
                ("confirm", "true"),
                ("return_url", "https://shop.example/return"),
            ],
        )
        .await;
    seen.add(&needs_action);
    let declined = client
        .post(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_chargeDeclinedInsufficientFunds"),
                ("confirm", "true"),
                ("return_url", "https://shop.example/return"),
            ],
        )
        .await;
    assert_eq!(declined.status, 402, "{}", declined.body);
    seen.add(&declined.body["error"]["payment_intent"]);
    let failed_charge = client
        .get(
            &format!(
                "/v1/charges/{}",
                declined.body["error"]["charge"].as_str().unwrap()
            ),
            &[],
        )
        .await
        .body;
    seen.add(&failed_charge);

    let charge_id = paid["latest_charge"].as_str().unwrap();
    let charge = client
        .get(&format!("/v1/charges/{charge_id}"), &[])
        .await
        .body;
    seen.add(&charge);
    let transaction = client
        .get(
            &format!(
                "/v1/balance_transactions/{}",
                charge["balance_transaction"].as_str().unwrap()
            ),
            &[],
        )
        .await;
    assert_eq!(transaction.status, 200, "{}", transaction.body);
    seen.add(&transaction.body);
    let refund = client
        .ok("/v1/refunds", &[("charge", charge_id), ("amount", "500")])
        .await;
    seen.add(&refund);
    let legacy = client
        .ok(
            "/v1/charges",
            &[
                ("amount", "1500"),
                ("currency", "usd"),
                ("source", "tok_visa"),
            ],
        )
        .await;
    seen.add(&legacy);

    let setup = client
        .ok(
            "/v1/setup_intents",
            &[
                ("customer", &customer_id),
                ("payment_method", "pm_card_visa"),
            ],
        )
        .await;
    seen.add(&setup);
    let set_up = client
        .ok(
            &format!("/v1/setup_intents/{}/confirm", id(&setup)),
            &[("return_url", "https://shop.example/return")],
        )
        .await;
    seen.add(&set_up);

    let product = client.ok("/v1/products", &[("name", "Gold plan")]).await;
    seen.add(&product);
    let price = client
        .ok(
            "/v1/prices",
            &[
                ("product", &id(&product)),
                ("unit_amount", "1500"),
                ("currency", "usd"),
            ],
        )
        .await;
    seen.add(&price);

    let invoice = client
        .ok("/v1/invoices", &[("customer", &customer_id)])
        .await;
    seen.add(&invoice);
    let item = client
        .ok(
            "/v1/invoiceitems",
            &[
                ("customer", &customer_id),
                ("invoice", &id(&invoice)),
                ("price", &id(&price)),
                ("quantity", "2"),
            ],
        )
        .await;
    seen.add(&item);
    let open = client
        .ok(&format!("/v1/invoices/{}/finalize", id(&invoice)), &[])
        .await;
    seen.add(&open);
    for line in open["lines"]["data"].as_array().unwrap() {
        seen.add(line);
    }
    let collecting = client
        .get(
            &format!(
                "/v1/payment_intents/{}",
                open["payment_intent"].as_str().unwrap()
            ),
            &[],
        )
        .await
        .body;
    seen.add(&collecting);
    let paid_invoice = client
        .ok(
            &format!("/v1/invoices/{}/pay", id(&invoice)),
            &[("payment_method", "pm_card_visa")],
        )
        .await;
    seen.add(&paid_invoice);

    let quote = client
        .ok(
            "/v1/quotes",
            &[
                ("customer", &customer_id),
                ("line_items[0][price]", &id(&price)),
                ("line_items[0][quantity]", "3"),
            ],
        )
        .await;
    seen.add(&quote);
    let with_lines = client
        .get(
            &format!("/v1/quotes/{}", id(&quote)),
            &[("expand[]", "line_items")],
        )
        .await
        .body;
    seen.add_expanded(&with_lines, &["line_items"]);
    let lines = client
        .get(&format!("/v1/quotes/{}/line_items", id(&quote)), &[])
        .await
        .body;
    for line in lines["data"].as_array().unwrap() {
        seen.add(line);
    }

    // Later states of the same types.
    let held = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("payment_method", "pm_card_visa"),
                ("payment_method_types[]", "card"),
                ("capture_method", "manual"),
                ("confirm", "true"),
            ],
        )
        .await;
    seen.add(&held);
    let canceled = client
        .ok(&format!("/v1/payment_intents/{}/cancel", id(&held)), &[])
        .await;
    seen.add(&canceled);
    let detached = client
        .ok(
            &format!("/v1/payment_methods/{}/detach", id(&by_token)),
            &[],
        )
        .await;
    seen.add(&detached);
    let finalized_quote = client
        .ok(&format!("/v1/quotes/{}/finalize", id(&quote)), &[])
        .await;
    seen.add(&finalized_quote);
    let accepted = client
        .ok(&format!("/v1/quotes/{}/accept", id(&quote)), &[])
        .await;
    seen.add(&accepted);
    let quote_invoice = client
        .get(
            &format!("/v1/invoices/{}", accepted["invoice"].as_str().unwrap()),
            &[],
        )
        .await
        .body;
    seen.add(&quote_invoice);
    let voided = {
        let open = client
            .ok(
                &format!("/v1/invoices/{}/finalize", id(&quote_invoice)),
                &[],
            )
            .await;
        client
            .ok(&format!("/v1/invoices/{}/void", id(&open)), &[])
            .await
    };
    seen.add(&voided);

    // Events, and the objects they carry.
    let events = client.get("/v1/events", &[("limit", "100")]).await.body;
    for event in events["data"].as_array().unwrap() {
        seen.add(event);
        seen.add(&event["data"]["object"]);
    }
    seen
}

#[tokio::test]
async fn every_modelled_object_has_stripes_shape() {
    let stripe = Stripe::load();
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let seen = modelled_objects(&client).await;
    for object_type in [
        "balance_transaction",
        "charge",
        "customer",
        "event",
        "invoice",
        "invoiceitem",
        "item",
        "line_item",
        "payment_intent",
        "payment_method",
        "price",
        "product",
        "quote",
        "refund",
        "setup_intent",
    ] {
        assert!(
            seen.objects.contains_key(object_type),
            "the flows produced no {object_type}"
        );
    }
    let differences = seen.differences(&stripe);
    assert!(
        differences.is_empty(),
        "{} differences from Stripe's shapes:\n{}",
        differences.len(),
        differences.join("\n")
    );
}

fn dummy(name: &str, schema: &Value) -> Option<String> {
    if name == "currency" {
        return Some("usd".into());
    }
    let branch = schema.get("anyOf").and_then(|b| b.get(0)).unwrap_or(schema);
    match branch.get("type").and_then(Value::as_str) {
        Some("integer") | Some("number") => Some("100".into()),
        Some("boolean") => Some("true".into()),
        Some("string") => Some(
            branch
                .get("enum")
                .and_then(|e| e.get(0))
                .and_then(Value::as_str)
                .unwrap_or("x")
                .to_owned(),
        ),
        _ => None,
    }
}

/// Every other entity the sandbox stores generically, created with its required parameters only.
#[tokio::test]
async fn every_generically_created_object_has_stripes_shape() {
    let stripe = Stripe::load();
    let spec = connector_runtime::spec::stripe().unwrap();
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let mut seen = Seen::default();
    for entity in &spec.entities {
        let Some(create) = &entity.operations.create else {
            continue;
        };
        let mut path = create.path.clone();
        for parent in &entity.parents {
            let value = if parent.entity.as_deref() == Some("Customer") {
                customer.as_str()
            } else {
                "x_missing"
            };
            path = path.replace(&format!("{{{}}}", parent.param), value);
        }
        let form: Vec<(String, String)> = create
            .params
            .iter()
            .filter(|p| {
                p.required && p.location != connector_runtime::spec::model::ParamLocation::Path
            })
            .filter_map(|p| dummy(&p.source, &p.json_schema).map(|v| (p.source.clone(), v)))
            .collect();
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = client.post(&path, &pairs).await;
        if reply.status == 200 && stripe.samples.contains_key(&entity.object) {
            seen.add(&reply.body);
        }
    }
    assert!(
        seen.objects.len() > 25,
        "only {} object types were created",
        seen.objects.len()
    );
    let differences = seen.differences(&stripe);
    assert!(
        differences.is_empty(),
        "{} differences from Stripe's shapes:\n{}",
        differences.len(),
        differences.join("\n")
    );
}
