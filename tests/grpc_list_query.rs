//! ListEntities as a SELECT, through gRPC on the built-in sandbox: IN, LIKE, IS [NOT] NULL and
//! metadata keys; typed errors for unknown fields, mismatched literals and syntax errors; sorting
//! by any scalar field both ways across pages; page tokens on Stripe's cursor, so a late page
//! costs as many upstream calls as the first (counted by the sandbox); and the sort limit.

mod common;

use std::collections::BTreeSet;

use common::*;
use connector_runtime::api::convert::from_proto_struct;
use connector_runtime::api::pb;
use serde_json::{Map, Value, json};
use tonic::Code;

const C: &str = "stripe-sandbox";

struct Page {
    rows: Vec<Map<String, Value>>,
    next: String,
}

async fn list(
    service: &Service,
    conditions: &str,
    sort: Option<(&str, &str)>,
    page_size: i32,
    page_token: &str,
) -> Result<Page, tonic::Status> {
    list_with(
        service,
        conditions,
        sort,
        page_size,
        page_token,
        pb::Consistency::Unspecified,
    )
    .await
}

async fn list_with(
    service: &Service,
    conditions: &str,
    sort: Option<(&str, &str)>,
    page_size: i32,
    page_token: &str,
    consistency: pb::Consistency,
) -> Result<Page, tonic::Status> {
    let (sort_by, sort_order) = match sort {
        Some((by, order)) => (vec![by.to_owned()], vec![order.to_owned()]),
        None => (Vec::new(), Vec::new()),
    };
    let response = service
        .entities()
        .list_entities(service.request(pb::ListEntitiesRequest {
            parent: format!("connections/{C}/entityTypes/Customer"),
            page_size,
            page_token: page_token.to_owned(),
            conditions: conditions.to_owned(),
            sort_by,
            sort_order,
            consistency: consistency as i32,
        }))
        .await?
        .into_inner();
    Ok(Page {
        rows: response
            .entities
            .iter()
            .map(|e| from_proto_struct(e.fields.as_ref().unwrap()))
            .collect(),
        next: response.next_page_token,
    })
}

/// Every row of a list, page by page.
async fn list_all(
    service: &Service,
    conditions: &str,
    sort: Option<(&str, &str)>,
    page_size: i32,
) -> Vec<Map<String, Value>> {
    let mut rows = Vec::new();
    let mut token = String::new();
    loop {
        let page = list(service, conditions, sort, page_size, &token)
            .await
            .unwrap_or_else(|e| panic!("{conditions}: {e:?}"));
        rows.extend(page.rows);
        if page.next.is_empty() {
            return rows;
        }
        token = page.next;
    }
}

fn ids(rows: &[Map<String, Value>]) -> BTreeSet<String> {
    rows.iter()
        .map(|r| r["Id"].as_str().unwrap().to_owned())
        .collect()
}

/// The customers of the clause tests: (email, name, balance, plan).
const PEOPLE: [(&str, Option<&str>, i64, Option<&str>); 6] = [
    ("jen@rosen.io", Some("Jen Rosen"), 300, Some("pro")),
    ("jenny@example.com", None, -50, Some("basic")),
    ("ada@rosen.io", Some("Ada"), 0, None),
    ("bob@example.com", Some("Bob"), 1200, Some("pro")),
    ("carl@example.org", None, 75, None),
    ("dee@example.com", Some("Dee"), 300, Some("basic")),
];

async fn create_people(service: &Service) -> Vec<String> {
    let mut created = Vec::new();
    for (email, name, balance, plan) in PEOPLE {
        let mut fields = json!({"Email": email, "Balance": balance});
        if let Some(name) = name {
            fields["Name"] = json!(name);
        }
        if let Some(plan) = plan {
            fields["Metadata"] = json!({"plan": plan});
        }
        let (name, _) = service.create(C, "Customer", fields).await.unwrap();
        created.push(name.rsplit('/').next().unwrap().to_owned());
    }
    created
}

#[tokio::test]
async fn clauses_select_like_sql_and_bad_clauses_name_the_problem() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    let created = create_people(&service).await;
    let expect = |indexes: &[usize]| -> BTreeSet<String> {
        indexes.iter().map(|i| created[*i].clone()).collect()
    };
    let cases: [(&str, &[usize]); 10] = [
        (
            "Email IN ('ada@rosen.io', 'bob@example.com', 'nobody@x.io')",
            &[2, 3],
        ),
        ("Email LIKE 'jen%'", &[0, 1]),
        ("Email LIKE '%rosen%'", &[0, 2]),
        ("Name IS NULL", &[1, 4]),
        ("Name IS NOT NULL AND Balance IN (300, 0)", &[0, 2, 5]),
        ("Metadata.plan = 'pro'", &[0, 3]),
        ("Metadata.plan IS NULL", &[2, 4]),
        ("Email NOT LIKE '%example%' AND Balance NOT IN (0)", &[0]),
        ("Metadata.plan IN ('basic') OR Balance > 1000", &[1, 3, 5]),
        ("Email LIKE '___@example.com'", &[3, 5]),
    ];
    for (clause, expected) in cases {
        let rows = list_all(&service, clause, None, 2).await;
        assert_eq!(ids(&rows), expect(expected), "{clause}");
    }

    let refusals = [
        ("Emial = 'x'", "Customer has no field \"Emial\""),
        ("Created > 'yesterday'", "Created is a number"),
        ("Email = 5", "Email is text"),
        ("Address.Town = 'x'", "Address has no member \"Town\""),
        ("Balance LIKE '3%'", "LIKE applies to text fields"),
    ];
    for (clause, text) in refusals {
        let status = list(&service, clause, None, 10, "").await.err().unwrap();
        assert_eq!(status.code(), Code::InvalidArgument, "{clause}");
        assert_eq!(violation_fields(&status), vec!["conditions"], "{clause}");
        assert!(
            status.message().contains(text),
            "{clause}: {}",
            status.message()
        );
    }
    let syntax = list(&service, "Email IN ('a', 'b'", None, 10, "")
        .await
        .err()
        .unwrap();
    assert_eq!(syntax.code(), Code::InvalidArgument);
    assert!(
        syntax.message().contains("syntax error at offset 18"),
        "{}",
        syntax.message()
    );
    service.shutdown().await;
}

#[tokio::test]
async fn any_scalar_field_sorts_both_ways_across_pages() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    create_people(&service).await;

    let emails: Vec<String> = list_all(&service, "", Some(("Email", "ASC")), 4)
        .await
        .iter()
        .map(|r| r["Email"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = emails.clone();
    sorted.sort();
    assert_eq!(emails, sorted);
    assert_eq!(emails.len(), PEOPLE.len());

    let balances: Vec<i64> = list_all(&service, "Balance >= 0", Some(("balance", "desc")), 2)
        .await
        .iter()
        .map(|r| r["Balance"].as_i64().unwrap())
        .collect();
    assert_eq!(balances, vec![1200, 300, 300, 75, 0]);

    // Nulls last ascending.
    let names: Vec<Value> = list_all(&service, "", Some(("Name", "ASC")), 3)
        .await
        .iter()
        .map(|r| r["Name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![
            json!("Ada"),
            json!("Bob"),
            json!("Dee"),
            json!("Jen Rosen"),
            Value::Null,
            Value::Null
        ]
    );

    // Oldest first is a sort here too, and the reverse of Stripe's own order.
    let newest_first = ids(&list_all(&service, "", None, 100).await);
    let oldest_first = list_all(&service, "", Some(("Created", "ASC")), 5).await;
    assert_eq!(ids(&oldest_first), newest_first);

    for (by, order, field) in [
        ("Nope", "ASC", "sort_by"),
        ("Metadata", "ASC", "sort_by"),
        ("Email", "SIDEWAYS", "sort_order"),
    ] {
        let status = list(&service, "", Some((by, order)), 5, "")
            .await
            .err()
            .unwrap();
        assert_eq!(status.code(), Code::InvalidArgument, "{by} {order}");
        assert_eq!(violation_fields(&status), vec![field]);
    }

    let first = list(&service, "", Some(("Email", "ASC")), 2, "")
        .await
        .unwrap();
    let other = list(&service, "", Some(("Email", "DESC")), 2, &first.next)
        .await
        .err()
        .unwrap();
    assert_eq!(other.code(), Code::InvalidArgument);
    assert_eq!(violation_fields(&other), vec!["page_token"]);
    service.shutdown().await;
}

async fn customer_list_calls(sandbox: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{sandbox}/_sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_route"]["GET /v1/customers"]
        .as_object()
        .map_or(0, |codes| codes.values().filter_map(Value::as_u64).sum())
}

/// Creates `count` customers straight in the sandbox, a few requests at a time.
async fn seed_customers(sandbox: &str, count: usize) {
    common::seed_customers(sandbox, count, 16, |n| {
        format!("email=seed{n:05}%40example.com")
    })
    .await;
}

#[tokio::test]
async fn page_tokens_carry_stripes_cursor_so_late_pages_cost_what_the_first_does() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    let sandbox = service.sandbox_url();
    seed_customers(&sandbox, 60).await;

    let mut token = String::new();
    let mut costs = Vec::new();
    let mut seen = BTreeSet::new();
    for _ in 0..15 {
        let before = customer_list_calls(&sandbox).await;
        let page = list(&service, "", None, 4, &token).await.unwrap();
        costs.push(customer_list_calls(&sandbox).await - before);
        seen.extend(ids(&page.rows));
        token = page.next;
    }
    assert!(token.is_empty(), "60 customers are 15 pages of 4");
    assert_eq!(seen.len(), 60, "no customer twice, none left out");
    assert_eq!(
        costs,
        vec![1; 15],
        "page N costs one upstream call, as page 1"
    );

    // With part of the clause evaluated here, late pages still start at Stripe's cursor.
    let clause = "Email LIKE '%0@example.com'";
    let mut token = String::new();
    let mut costs = Vec::new();
    let mut matched = 0;
    loop {
        let before = customer_list_calls(&sandbox).await;
        let page = list(&service, clause, None, 2, &token).await.unwrap();
        costs.push(customer_list_calls(&sandbox).await - before);
        matched += page.rows.len();
        if page.next.is_empty() {
            break;
        }
        token = page.next;
    }
    assert_eq!(matched, 6);
    assert!(
        costs.iter().all(|c| *c == 1),
        "each page reads one upstream page of 100 after the cursor: {costs:?}"
    );
    service.shutdown().await;
}

#[tokio::test]
async fn sorting_more_than_the_limit_asks_to_narrow_the_clause() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    let sandbox = service.sandbox_url();
    let limit = connector_runtime::engine::sorting::MAX_SORTED_ENTITIES;
    seed_customers(&sandbox, limit + 1).await;

    let refused = list(&service, "", Some(("Email", "ASC")), 10, "")
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert_eq!(reason(&refused), "TOO_MANY_TO_SORT");
    assert!(
        refused.message().contains("narrow"),
        "{}",
        refused.message()
    );

    // Stripe's own order streams whatever the size; a narrower clause sorts.
    assert_eq!(
        list(&service, "", None, 10, "").await.unwrap().rows.len(),
        10
    );
    let narrowed = list_all(
        &service,
        "Email LIKE 'seed0999%'",
        Some(("Email", "DESC")),
        5,
    )
    .await;
    let emails: Vec<&str> = narrowed
        .iter()
        .map(|r| r["Email"].as_str().unwrap())
        .collect();
    assert_eq!(emails.len(), 10);
    assert_eq!(emails[0], "seed09999@example.com");
    assert_eq!(emails[9], "seed09990@example.com");
    service.shutdown().await;
}

async fn route_calls(sandbox: &str, route: &str) -> u64 {
    let stats: Value = reqwest::get(format!("{sandbox}/_sandbox/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    stats["by_route"][route]
        .as_object()
        .map_or(0, |codes| codes.values().filter_map(Value::as_u64).sum())
}

async fn all_ids(
    service: &Service,
    clause: &str,
    consistency: pb::Consistency,
) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = list_with(service, clause, None, 2, &token, consistency)
            .await
            .unwrap();
        found.extend(ids(&page.rows));
        if page.next.is_empty() {
            return found;
        }
        token = page.next;
    }
}

#[tokio::test]
async fn eventual_consistency_lets_search_narrow_and_strong_never_searches() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    let sandbox = service.sandbox_url();
    let created = create_people(&service).await;
    let clause = "Email LIKE '%rosen%' AND Metadata.plan IS NOT NULL";
    let searches = || route_calls(&sandbox, "GET /v1/customers/search");

    let strong = all_ids(&service, clause, pb::Consistency::Strong).await;
    assert_eq!(strong, BTreeSet::from([created[0].clone()]));
    assert_eq!(
        all_ids(&service, clause, pb::Consistency::Unspecified).await,
        strong
    );
    assert_eq!(
        searches().await,
        0,
        "STRONG (the default) never uses Search"
    );

    let eventual = all_ids(&service, clause, pb::Consistency::Eventual).await;
    assert_eq!(eventual, strong);
    assert!(searches().await > 0, "EVENTUAL sends the clause to Search");

    // A clause the list parameters evaluate in full stays on the list endpoint.
    let before = searches().await;
    all_ids(
        &service,
        "Email = 'ada@rosen.io'",
        pb::Consistency::Eventual,
    )
    .await;
    assert_eq!(searches().await, before);

    // The trade-off: Search has not indexed what was just created.
    let patched = reqwest::Client::new()
        .post(format!("{sandbox}/_sandbox/config"))
        .body(r#"{"search_delay": "60s"}"#)
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
    let (name, _) = service
        .create(
            C,
            "Customer",
            json!({"Email": "new@rosen.io", "Metadata": {"plan": "pro"}}),
        )
        .await
        .unwrap();
    let new_id = name.rsplit('/').next().unwrap().to_owned();
    assert!(
        all_ids(&service, clause, pb::Consistency::Strong)
            .await
            .contains(&new_id)
    );
    assert!(
        !all_ids(&service, clause, pb::Consistency::Eventual)
            .await
            .contains(&new_id)
    );

    // Page tokens are bound to the consistency too.
    let first = list_with(
        &service,
        "Email LIKE '%o%'",
        None,
        1,
        "",
        pb::Consistency::Eventual,
    )
    .await
    .unwrap();
    let crossed = list_with(
        &service,
        "Email LIKE '%o%'",
        None,
        1,
        &first.next,
        pb::Consistency::Strong,
    )
    .await
    .err()
    .unwrap();
    assert_eq!(violation_fields(&crossed), vec!["page_token"]);
    service.shutdown().await;
}
