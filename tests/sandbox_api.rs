//! The sandbox's Stripe conventions over real HTTP: auth, CRUD, lists, search, expand, parameter
//! checks, idempotency.

#[path = "sandbox_support.rs"]
mod support;

use connector_runtime::sandbox::{FaultConfig, SandboxConfig};
use serde_json::{Value, json};
use support::{Client, id, race, start, unlimited};

#[tokio::test]
async fn only_test_mode_secret_keys_are_accepted() {
    let sandbox = start(unlimited()).await;
    let mut client = Client::new(&sandbox);
    let ok = client.get("/v1/customers", &[]).await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.headers["request-id"]
            .to_str()
            .unwrap()
            .starts_with("req_")
    );

    client.key = "sk_live_abcdefghijklmnop".into();
    let live = client.get("/v1/customers", &[]).await;
    assert_eq!(live.status, 401);
    assert_eq!(live.body["error"]["type"], "invalid_request_error");
    assert!(
        !live.body.to_string().contains("abcdefghijklmnop"),
        "the key must not be echoed"
    );
    assert!(live.headers.contains_key("request-id"));

    let missing = client
        .http
        .get(format!("{}/v1/customers", client.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 401);

    // Basic auth with the key as user works too.
    let basic = client
        .http
        .get(format!("{}/v1/customers", client.base))
        .basic_auth("sk_test_other", None::<&str>)
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 200);
}

#[tokio::test]
async fn customers_are_created_read_updated_and_deleted_with_full_shape() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let created = client
        .ok(
            "/v1/customers",
            &[
                ("email", "a@example.com"),
                ("name", "Ada"),
                ("metadata[tier]", "gold"),
                ("metadata[region]", "eu"),
            ],
        )
        .await;
    let customer = id(&created);
    assert!(customer.starts_with("cus_"));
    assert_eq!(created["object"], "customer");
    assert_eq!(created["livemode"], false);
    assert!(created["created"].as_i64().unwrap() > 1_600_000_000);
    assert_eq!(
        created["phone"],
        Value::Null,
        "nullable fields not given are null"
    );
    assert_eq!(created["balance"], 0);

    let fetched = client.get(&format!("/v1/customers/{customer}"), &[]).await;
    assert_eq!(fetched.body, created);

    let updated = client
        .ok(
            &format!("/v1/customers/{customer}"),
            &[("metadata[tier]", ""), ("name", "Ada L.")],
        )
        .await;
    assert_eq!(updated["metadata"], json!({"region": "eu"}));
    assert_eq!(updated["name"], "Ada L.");
    assert_eq!(updated["email"], "a@example.com");

    let deleted = client.delete(&format!("/v1/customers/{customer}")).await;
    assert_eq!(
        deleted.body,
        json!({"id": customer, "object": "customer", "deleted": true})
    );
    // As Stripe does, a deleted customer still answers, as a stub; it can no longer be changed.
    let stub = client.get(&format!("/v1/customers/{customer}"), &[]).await;
    assert_eq!(stub.status, 200);
    assert_eq!(
        stub.body,
        json!({"id": customer, "object": "customer", "deleted": true})
    );
    let gone = client
        .post(&format!("/v1/customers/{customer}"), &[("name", "x")])
        .await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.body["error"]["code"], "resource_missing");
}

#[tokio::test]
async fn lists_are_newest_first_with_cursors_and_filters() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let mut ids = Vec::new();
    for i in 0..5 {
        let email = if i % 2 == 0 {
            "even@example.com"
        } else {
            "odd@example.com"
        };
        ids.push(id(&client.ok("/v1/customers", &[("email", email)]).await));
    }
    ids.reverse(); // newest first

    let first = client.get("/v1/customers", &[("limit", "2")]).await.body;
    assert_eq!(first["object"], "list");
    assert_eq!(first["url"], "/v1/customers");
    assert_eq!(first["has_more"], true);
    let page: Vec<String> = first["data"].as_array().unwrap().iter().map(id).collect();
    assert_eq!(page, ids[..2]);

    let second = client
        .get(
            "/v1/customers",
            &[("limit", "2"), ("starting_after", &ids[1])],
        )
        .await
        .body;
    assert_eq!(
        second["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    let last = client
        .get(
            "/v1/customers",
            &[("limit", "2"), ("starting_after", &ids[3])],
        )
        .await
        .body;
    assert_eq!(last["has_more"], false);
    assert_eq!(last["data"].as_array().unwrap().len(), 1);

    let before = client
        .get(
            "/v1/customers",
            &[("limit", "2"), ("ending_before", &ids[4])],
        )
        .await
        .body;
    assert_eq!(
        before["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(id)
            .collect::<Vec<_>>(),
        ids[2..4]
    );
    assert_eq!(before["has_more"], true);

    let odd = client
        .get("/v1/customers", &[("email", "odd@example.com")])
        .await
        .body;
    assert_eq!(odd["data"].as_array().unwrap().len(), 2);

    let created = first["data"][0]["created"].as_i64().unwrap();
    let future = client
        .get("/v1/customers", &[("created[gt]", &created.to_string())])
        .await
        .body;
    assert_eq!(future["data"].as_array().unwrap().len(), 0);
    let all = client
        .get(
            "/v1/customers",
            &[("created[lte]", &created.to_string()), ("limit", "100")],
        )
        .await
        .body;
    assert_eq!(all["data"].as_array().unwrap().len(), 5);

    let bad = client.get("/v1/customers", &[("limit", "101")]).await;
    assert_eq!(
        (bad.status, bad.body["error"]["param"].as_str()),
        (400, Some("limit"))
    );
    let both = client
        .get(
            "/v1/customers",
            &[("starting_after", &ids[0]), ("ending_before", &ids[1])],
        )
        .await;
    assert_eq!(both.status, 400);
}

#[tokio::test]
async fn search_supports_stripe_query_grammar_and_paging() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    for (email, order) in [
        ("ann@example.com", "1"),
        ("bob@example.com", "2"),
        ("bo@example.org", "2"),
    ] {
        client
            .ok(
                "/v1/customers",
                &[
                    ("email", email),
                    ("name", email),
                    ("metadata[order]", order),
                ],
            )
            .await;
    }
    let search = |q: &'static str| {
        let client = &client;
        async move { client.get("/v1/customers/search", &[("query", q)]).await }
    };
    let found = search("email:'ANN@example.com'").await.body;
    assert_eq!(found["object"], "search_result");
    assert_eq!(found["url"], "/v1/customers/search");
    assert_eq!(found["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        search("metadata['order']:'2'").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        search("metadata['order']:'2' AND -email:'bob@example.com'")
            .await
            .body["data"][0]["email"],
        "bo@example.org"
    );
    assert_eq!(
        search("email:'ann@example.com' OR email:'bob@example.com'")
            .await
            .body["data"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        search("email~'example.org'").await.body["data"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let page = client
        .get(
            "/v1/customers/search",
            &[("query", "metadata['order']:'2'"), ("limit", "1")],
        )
        .await
        .body;
    assert_eq!(page["has_more"], true);
    let next = page["next_page"].as_str().unwrap();
    let rest = client
        .get(
            "/v1/customers/search",
            &[
                ("query", "metadata['order']:'2'"),
                ("limit", "1"),
                ("page", next),
            ],
        )
        .await
        .body;
    assert_eq!(rest["has_more"], false);
    assert_ne!(rest["data"][0]["id"], page["data"][0]["id"]);

    let malformed = search("email:'unterminated").await;
    assert_eq!(
        (malformed.status, malformed.body["error"]["param"].as_str()),
        (400, Some("query"))
    );
    let unsupported = search("balance>3").await;
    assert_eq!(
        unsupported.status, 400,
        "balance is not a searchable customer field"
    );

    let intents = client
        .get(
            "/v1/payment_intents/search",
            &[("query", "amount>1000 AND status:'requires_payment_method'")],
        )
        .await;
    assert_eq!(intents.status, 200);
}

#[tokio::test]
async fn unknown_and_missing_parameters_are_rejected_like_stripe() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let unknown = client.post("/v1/customers", &[("colour", "red")]).await;
    assert_eq!(unknown.status, 400);
    assert_eq!(unknown.body["error"]["code"], "parameter_unknown");
    assert_eq!(unknown.body["error"]["param"], "colour");

    let nested = client
        .post("/v1/customers", &[("address[planet]", "Mars")])
        .await;
    assert_eq!(nested.body["error"]["param"], "address[planet]");

    let missing = client
        .post("/v1/payment_intents", &[("currency", "usd")])
        .await;
    assert_eq!(missing.status, 400);
    assert_eq!(missing.body["error"]["code"], "parameter_missing");
    assert_eq!(missing.body["error"]["param"], "amount");

    let not_integer = client
        .post(
            "/v1/payment_intents",
            &[("amount", "lots"), ("currency", "usd")],
        )
        .await;
    assert_eq!(
        not_integer.body["error"]["code"],
        "parameter_invalid_integer"
    );

    let unknown_url = client.get("/v1/nothing_here", &[]).await;
    assert_eq!(unknown_url.status, 404);
    assert!(
        unknown_url.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Unrecognized request URL")
    );
}

#[tokio::test]
async fn expand_replaces_ids_with_objects() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let intent = client
        .ok(
            "/v1/payment_intents",
            &[
                ("amount", "2000"),
                ("currency", "usd"),
                ("customer", &customer),
                ("payment_method", "pm_card_visa"),
                ("confirm", "true"),
                ("return_url", "https://shop.example/return"),
                ("expand[]", "customer"),
                ("expand[]", "payment_method"),
                ("expand[]", "latest_charge"),
            ],
        )
        .await;
    assert_eq!(intent["customer"]["object"], "customer");
    assert_eq!(intent["payment_method"]["object"], "payment_method");
    assert_eq!(intent["latest_charge"]["object"], "charge");

    let listed = client
        .get("/v1/payment_intents", &[("expand[]", "data.customer")])
        .await
        .body;
    assert_eq!(listed["data"][0]["customer"]["id"], customer);

    let charge = intent["latest_charge"]["id"].as_str().unwrap();
    let with_intent = client
        .get(
            &format!("/v1/charges/{charge}"),
            &[("expand[]", "payment_intent.customer")],
        )
        .await
        .body;
    assert_eq!(with_intent["payment_intent"]["customer"]["id"], customer);

    let bad = client
        .get(
            &format!("/v1/customers/{customer}"),
            &[("expand[]", "nothing")],
        )
        .await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn nested_collections_are_scoped_to_their_parent() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let other = client.customer().await;
    let tax_id = client
        .ok(
            &format!("/v1/customers/{customer}/tax_ids"),
            &[("type", "eu_vat"), ("value", "DE123456789")],
        )
        .await;
    assert_eq!(tax_id["customer"], customer.as_str());
    let mine = client
        .get(&format!("/v1/customers/{customer}/tax_ids"), &[])
        .await
        .body;
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    let theirs = client
        .get(&format!("/v1/customers/{other}/tax_ids"), &[])
        .await
        .body;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 0);
    let wrong_parent = client
        .get(
            &format!("/v1/customers/{other}/tax_ids/{}", id(&tax_id)),
            &[],
        )
        .await;
    assert_eq!(wrong_parent.status, 404);
    let no_parent = client.get("/v1/customers/cus_missing/tax_ids", &[]).await;
    assert_eq!(no_parent.status, 404);
}

#[tokio::test]
async fn idempotency_keys_replay_reject_mismatches_and_block_concurrent_use() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let post = reqwest::Method::POST;
    let first = client
        .send(
            post.clone(),
            "/v1/customers",
            &[("email", "x@example.com")],
            Some("key-1"),
        )
        .await;
    let again = client
        .send(
            post.clone(),
            "/v1/customers",
            &[("email", "x@example.com")],
            Some("key-1"),
        )
        .await;
    assert_eq!(first.body, again.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert!(!first.headers.contains_key("idempotent-replayed"));
    let listed = client.get("/v1/customers", &[]).await.body;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "the replay created nothing"
    );

    let other = client
        .send(
            post.clone(),
            "/v1/customers",
            &[("email", "y@example.com")],
            Some("key-1"),
        )
        .await;
    assert_eq!(other.status, 400);
    assert_eq!(other.body["error"]["type"], "idempotency_error");

    // A slow request holds the key while a second one with the same key arrives.
    client
        .admin(
            post.clone(),
            "/_sandbox/config",
            Some(json!({"faults": {"latency": "600ms"}})),
        )
        .await;
    let (holder, second) = race(|attempt| {
        let key = format!("key-2-{attempt}");
        let post = post.clone();
        let client = &client;
        async move {
            client
                .send(
                    post,
                    "/v1/customers",
                    &[("email", "z@example.com")],
                    Some(&key),
                )
                .await
        }
    })
    .await;
    assert_eq!(holder.status, 200);
    assert_eq!(second.status, 409, "{:?}", second.body);
    assert_eq!(second.body["error"]["code"], "idempotency_key_in_use");
}

#[tokio::test]
async fn a_retry_after_a_post_execution_fault_replays_the_created_object() {
    let config = SandboxConfig {
        rate_limit: None,
        faults: FaultConfig {
            server_error_rate: 1.0,
            phase: connector_runtime::sandbox::FaultPhase::After,
            ..FaultConfig::default()
        },
        seed: 1,
        ..SandboxConfig::default()
    };
    let sandbox = start(config).await;
    let client = Client::new(&sandbox);
    let post = reqwest::Method::POST;
    let failed = client
        .send(
            post.clone(),
            "/v1/customers",
            &[("email", "r@example.com")],
            Some("retry-me"),
        )
        .await;
    assert_eq!(failed.status, 500);
    assert_eq!(failed.body["error"]["type"], "api_error");
    client
        .admin(
            post.clone(),
            "/_sandbox/config",
            Some(json!({"faults": {"server_error_rate": 0.0}})),
        )
        .await;
    let retried = client
        .send(
            post,
            "/v1/customers",
            &[("email", "r@example.com")],
            Some("retry-me"),
        )
        .await;
    assert_eq!(retried.status, 200);
    assert_eq!(retried.headers["idempotent-replayed"], "true");
    let listed = client.get("/v1/customers", &[]).await.body;
    assert_eq!(listed["data"].as_array().unwrap().len(), 1);
    assert_eq!(listed["data"][0]["id"], retried.body["id"]);
}

#[tokio::test]
async fn unmodelled_verbs_answer_sandbox_unsupported() {
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let reply = client.post("/v1/payouts/po_123/cancel", &[]).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.body["error"]["code"], "sandbox_unsupported");
    assert!(
        reply.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CancelPayout")
    );
}

fn dummy(name: &str, schema: &Value) -> Option<String> {
    if name == "currency" {
        // Stripe refuses anything but a currency it supports.
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

#[tokio::test]
async fn every_entity_in_the_spec_is_served_without_server_errors() {
    let spec = connector_runtime::spec::stripe().unwrap();
    let sandbox = start(unlimited()).await;
    let client = Client::new(&sandbox);
    let customer = client.customer().await;
    let mut created = 0;
    for entity in &spec.entities {
        let fill = |path: &str, own_id: Option<&str>| {
            let mut out = path.to_owned();
            for parent in &entity.parents {
                let value = if parent.entity.as_deref() == Some("Customer") {
                    customer.as_str()
                } else {
                    "x_missing"
                };
                out = out.replace(&format!("{{{}}}", parent.param), value);
            }
            if let (Some(param), Some(id)) = (&entity.item_id_param, own_id) {
                out = out.replace(&format!("{{{param}}}"), id);
            }
            out
        };
        let customer_scoped = entity
            .parents
            .iter()
            .all(|p| p.entity.as_deref() == Some("Customer"));
        if let Some(list) = &entity.operations.list {
            let reply = client.get(&fill(&list.path, None), &[]).await;
            let needs_params = list.params.iter().any(|p| {
                p.required && p.location != connector_runtime::spec::model::ParamLocation::Path
            });
            // Parameters are checked before the parent is looked up.
            let expected = match (customer_scoped, needs_params) {
                (_, true) => 400,
                (false, false) => 404,
                (true, false) => 200,
            };
            assert_eq!(
                reply.status, expected,
                "list {}: {}",
                entity.name, reply.body
            );
            assert!(reply.headers.contains_key("request-id"));
        }
        let Some(create) = &entity.operations.create else {
            continue;
        };
        let form: Vec<(String, String)> = create
            .params
            .iter()
            .filter(|p| {
                p.required && p.location != connector_runtime::spec::model::ParamLocation::Path
            })
            .filter_map(|p| dummy(&p.source, &p.json_schema).map(|v| (p.source.clone(), v)))
            .collect();
        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let reply = client.post(&fill(&create.path, None), &pairs).await;
        assert!(reply.status < 500, "create {}: {}", entity.name, reply.body);
        assert!(
            reply.body.get("error").is_some() || reply.status == 200,
            "{}",
            entity.name
        );
        if reply.status != 200 {
            continue;
        }
        created += 1;
        let new_id = id(&reply.body);
        if let Some(get) = &entity.operations.get {
            let path = fill(&get.path, Some(&new_id));
            let fetched = client.get(&path, &[]).await;
            assert_eq!(
                fetched.status, 200,
                "get {} at {path}: {}",
                entity.name, fetched.body
            );
            assert_eq!(fetched.body, reply.body, "{}", entity.name);
        }
    }
    assert!(created > 40, "only {created} entity types could be created");
}
