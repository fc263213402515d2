//! The same clause gives the same result set whichever tier serves it: over a fixed data set in
//! the sandbox (customers and charges created over real HTTP), randomly generated clauses
//! (seeded, so a failure reproduces) run through the list tier and through Stripe's Search,
//! forced, page by page; the id sets must be equal. Clauses Search cannot narrow are refused
//! when Search is forced, and most generated clauses must be searchable.

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use connector_runtime::engine::tier::Tier;
use connector_runtime::engine::{ConnectionRuntime, Engine, EngineError, ListQuery};
use connector_runtime::sandbox::{self, SANDBOX_API_KEY, SandboxConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CLAUSES_PER_TYPE: usize = 60;

async fn post(http: &reqwest::Client, base: &str, path: &str, form: &[(&str, String)]) {
    let body = form
        .iter()
        .map(|(k, v)| {
            let mut s = form_urlencoded::Serializer::new(String::new());
            s.append_pair(k, v);
            s.finish()
        })
        .collect::<Vec<_>>()
        .join("&");
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(SANDBOX_API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.text().await.unwrap()
    );
}

const FIRST: [&str; 6] = ["jenny", "jen", "ada", "bob", "carla", "dee"];
const DOMAINS: [&str; 3] = ["rosen.io", "example.com", "mail.org"];
const PLANS: [Option<&str>; 3] = [Some("pro"), Some("basic"), None];

/// 48 customers and 48 charges, the same every run.
async fn seed(base: &str) {
    let http = reqwest::Client::new();
    for n in 0..48usize {
        let first = FIRST[n % FIRST.len()];
        let mut form = vec![(
            "email",
            format!("{first}{}@{}", n / 6, DOMAINS[n % DOMAINS.len()]),
        )];
        if n % 4 != 0 {
            form.push(("name", format!("{} Rosen{}", first.to_uppercase(), n % 5)));
        }
        if n % 3 == 1 {
            form.push(("phone", format!("+1555010{}", n % 7)));
        }
        if let Some(plan) = PLANS[n % PLANS.len()] {
            form.push(("metadata[plan]", plan.to_owned()));
        }
        post(&http, base, "/v1/customers", &form).await;
        let mut charge = vec![
            ("amount", (100 + (n * 137) % 2000).to_string()),
            ("currency", ["usd", "eur"][n % 2].to_owned()),
            ("source", "tok_visa".to_owned()),
        ];
        if let Some(plan) = PLANS[(n + 1) % PLANS.len()] {
            charge.push(("metadata[plan]", plan.to_owned()));
        }
        post(&http, base, "/v1/charges", &charge).await;
    }
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// One comparison the clause language and (mostly) Search both understand.
fn atom(rng: &mut StdRng, entity: &str) -> String {
    match entity {
        "Customer" => match rng.random_range(0..9) {
            0 => format!("Email = '{}0@rosen.io'", pick(rng, &FIRST)),
            1 => format!(
                "Email LIKE '%{}%'",
                pick(rng, &["rosen", "example", "mail", "jen"])
            ),
            2 => format!("Email LIKE '{}%'", pick(rng, &["jen", "ada", "carla"])),
            3 => format!(
                "Email IN ('{}1@example.com', '{}2@mail.org')",
                pick(rng, &FIRST),
                pick(rng, &FIRST)
            ),
            4 => format!(
                "Name LIKE '%{}%'",
                pick(rng, &["ROSEN1", "JEN", "Rosen3", "ADA"])
            ),
            5 => format!("Metadata.plan = '{}'", pick(rng, &["pro", "basic"])),
            6 => format!("Phone != '+1555010{}'", rng.random_range(0..7)),
            7 => "Name IS NULL".to_owned(),
            _ => format!("Created > {}", rng.random_range(0..2) * 1_000_000_000),
        },
        _ => match rng.random_range(0..7) {
            0 => format!("Amount > {}", rng.random_range(100..2100)),
            1 => format!("Amount <= {}", rng.random_range(100..2100)),
            2 => format!("Currency = '{}'", pick(rng, &["usd", "eur"])),
            3 => format!("Metadata.plan = '{}'", pick(rng, &["pro", "basic"])),
            4 => format!(
                "Amount IN ({}, {})",
                100 + rng.random_range(0..48) * 137 % 2000,
                237
            ),
            5 => format!("NOT (Amount >= {})", rng.random_range(100..2100)),
            _ => "Refunded = false".to_owned(),
        },
    }
}

/// A clause of one to three atoms joined by AND or OR, sometimes negated or nested.
fn clause(rng: &mut StdRng, entity: &str) -> String {
    let atoms: Vec<String> = (0..rng.random_range(1..=3))
        .map(|_| atom(rng, entity))
        .collect();
    let joiner = if rng.random_bool(0.5) {
        " AND "
    } else {
        " OR "
    };
    let mut text = atoms.join(joiner);
    if rng.random_bool(0.2) {
        text = format!("({text}) AND {}", atom(rng, entity));
    }
    text
}

async fn ids(
    engine: &Engine,
    conn: &ConnectionRuntime,
    entity: &str,
    conditions: &str,
    tier: Tier,
) -> Result<BTreeSet<String>, EngineError> {
    let mut query = ListQuery {
        page_size: 7,
        conditions: conditions.to_owned(),
        tier: Some(tier),
        ..ListQuery::default()
    };
    let mut ids = BTreeSet::new();
    loop {
        let page = engine.list(conn, entity, &query, None).await?;
        for record in page.entities {
            assert!(
                ids.insert(record.id.to_string()),
                "{conditions}: an id twice"
            );
        }
        match page.next_page_token {
            Some(token) => query.page_token = token,
            None => return Ok(ids),
        }
    }
}

#[tokio::test]
async fn every_tier_returns_the_same_ids_for_random_clauses() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let spec = Arc::new(connector_runtime::spec::stripe().unwrap().clone());
    let handle = sandbox::start(
        spec.clone(),
        "127.0.0.1:0".parse().unwrap(),
        SandboxConfig {
            rate_limit: None,
            ..SandboxConfig::default()
        },
    )
    .await
    .unwrap();
    let base = handle.base_url();
    seed(&base).await;

    let conn = common::sandbox_connection(&spec, &base, "tiers", 4);
    let engine = Engine::new(spec.clone());

    let mut rng = StdRng::seed_from_u64(13);
    for entity in ["Customer", "Charge"] {
        let all = ids(&engine, &conn, entity, "", Tier::List).await.unwrap();
        assert_eq!(all.len(), 48, "{entity}");
        let (mut searched, mut nonempty, mut narrower) = (0, 0, 0);
        for _ in 0..CLAUSES_PER_TYPE {
            let text = clause(&mut rng, entity);
            let listed = ids(&engine, &conn, entity, &text, Tier::List)
                .await
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            match ids(&engine, &conn, entity, &text, Tier::Search).await {
                Ok(found) => {
                    searched += 1;
                    assert_eq!(found, listed, "{entity} where {text}");
                }
                Err(EngineError::InvalidInput(v)) => {
                    assert!(v[0].description.contains("Search"), "{text}: {v:?}");
                }
                Err(other) => panic!("{text}: {other}"),
            }
            nonempty += usize::from(!listed.is_empty());
            narrower += usize::from(listed.len() < all.len());
        }
        assert!(
            searched * 10 >= CLAUSES_PER_TYPE * 7,
            "{entity}: only {searched} of {CLAUSES_PER_TYPE} clauses went to Search"
        );
        assert!(
            nonempty * 2 >= CLAUSES_PER_TYPE && narrower * 2 >= CLAUSES_PER_TYPE,
            "{entity}: the generated clauses must select something and narrow ({nonempty}, {narrower})"
        );
    }
    drop(handle);
}
