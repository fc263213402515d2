//! ExportEntities through gRPC on the built-in sandbox, whose simulated clock spreads the seeded
//! customers over weeks as a real account's are: every matching entity arrives exactly once
//! across the partitions, the same set ListEntities gives; progress is interleaved; an export
//! resumed from the partitions' last ids completes it without duplicates; a type without List is
//! UNIMPLEMENTED and a bad clause INVALID_ARGUMENT.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use connector_runtime::api::pb;
use connector_runtime::api::pb::export_entities_response::Item;
use futures::StreamExt;
use tonic::Code;

const C: &str = "stripe-sandbox";
const CUSTOMERS: usize = 600;

/// Gives the sandbox a clock a minute per object from 2020, then creates `count` customers.
pub async fn seed_history(sandbox: &str, count: usize) {
    common::simulated_clock(sandbox).await;
    common::seed_customers(sandbox, count, 8, |n| {
        format!("email=export{n:05}%40example.com")
    })
    .await;
}

#[derive(Default)]
struct Exported {
    plan: Vec<pb::ExportPartition>,
    /// id → partition.
    ids: BTreeMap<String, i32>,
    /// (id, partition) in the order received.
    received: Vec<(String, i32)>,
    duplicates: usize,
    progress: Vec<pb::ExportProgress>,
    /// Entities received before the first progress message that followed an entity.
    interleaved: bool,
}

fn request(conditions: &str, resume: Vec<pb::ExportPartition>) -> pb::ExportEntitiesRequest {
    pb::ExportEntitiesRequest {
        parent: format!("connections/{C}/entityTypes/Customer"),
        conditions: conditions.to_owned(),
        max_parallelism: 4,
        resume,
    }
}

/// Reads an export; stops after `stop_after` entities when given (dropping the stream).
async fn export(
    service: &Service,
    request: pb::ExportEntitiesRequest,
    stop_after: Option<usize>,
) -> Result<Exported, tonic::Status> {
    let mut stream = service
        .entities()
        .export_entities(service.request(request))
        .await?
        .into_inner();
    let mut out = Exported::default();
    let mut entities_seen = 0;
    while let Some(message) = stream.next().await {
        match message?.item.unwrap() {
            Item::Plan(plan) => out.plan = plan.partitions,
            Item::Entity(entity) => {
                let name = entity.entity.unwrap().name;
                let id = name.rsplit('/').next().unwrap().to_owned();
                out.received.push((id.clone(), entity.partition));
                if out.ids.insert(id, entity.partition).is_some() {
                    out.duplicates += 1;
                }
                entities_seen += 1;
                if stop_after == Some(entities_seen) {
                    return Ok(out);
                }
            }
            Item::Progress(progress) => {
                out.interleaved |=
                    entities_seen > 0 && progress.partitions_done < progress.partitions_total;
                out.progress.push(progress);
            }
        }
    }
    Ok(out)
}

async fn listed(service: &Service, conditions: &str) -> BTreeSet<String> {
    let mut ids = BTreeSet::new();
    let mut token = String::new();
    loop {
        let page = service
            .entities()
            .list_entities(service.request(pb::ListEntitiesRequest {
                parent: format!("connections/{C}/entityTypes/Customer"),
                page_size: 200,
                page_token: token,
                conditions: conditions.to_owned(),
                ..Default::default()
            }))
            .await
            .unwrap()
            .into_inner();
        ids.extend(
            page.entities
                .iter()
                .map(|e| e.name.rsplit('/').next().unwrap().to_owned()),
        );
        if page.next_page_token.is_empty() {
            return ids;
        }
        token = page.next_page_token;
    }
}

#[tokio::test]
async fn exports_every_matching_entity_once_across_parallel_partitions() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    seed_history(&service.sandbox_url(), CUSTOMERS).await;

    let all = export(&service, request("", Vec::new()), None)
        .await
        .unwrap();
    assert_eq!(all.duplicates, 0);
    assert_eq!(all.ids.len(), CUSTOMERS);
    assert_eq!(
        all.ids.keys().cloned().collect::<BTreeSet<_>>(),
        listed(&service, "").await
    );
    assert!(
        all.plan.len() >= 8,
        "the range is split: {} partitions",
        all.plan.len()
    );
    let used: BTreeSet<i32> = all.ids.values().copied().collect();
    assert!(
        used.len() >= 8,
        "entities came from {} partitions",
        used.len()
    );
    let last = all.progress.last().unwrap();
    assert_eq!(last.entities, CUSTOMERS as i64);
    assert_eq!(last.partitions_done, last.partitions_total);
    assert_eq!(last.partitions_total as usize, all.plan.len());
    let finished: Vec<i32> = all
        .progress
        .iter()
        .flat_map(|p| p.finished.clone())
        .collect();
    assert_eq!(
        finished.len(),
        all.plan.len(),
        "every partition reported finished once"
    );
    assert!(all.interleaved, "progress arrives between entities");

    for clause in [
        "Email LIKE '%7@%'",
        "Email LIKE 'export001%' OR Email = 'export00599@example.com'",
    ] {
        let some = export(&service, request(clause, Vec::new()), None)
            .await
            .unwrap();
        assert_eq!(some.duplicates, 0);
        assert_eq!(
            some.ids.keys().cloned().collect::<BTreeSet<_>>(),
            listed(&service, clause).await,
            "{clause}"
        );
        assert!(!some.ids.is_empty());
    }

    let mut unlistable = request("", Vec::new());
    unlistable.parent = format!("connections/{C}/entityTypes/BillingPortalSession");
    let refused = export(&service, unlistable, None).await.err().unwrap();
    assert_eq!(refused.code(), Code::Unimplemented);
    let bad = export(&service, request("Emial = 'x'", Vec::new()), None)
        .await
        .err()
        .unwrap();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert_eq!(violation_fields(&bad), vec!["conditions"]);
    service.shutdown().await;
}

#[tokio::test]
async fn a_resumed_export_completes_without_duplicates() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    seed_history(&service.sandbox_url(), CUSTOMERS).await;

    let first = export(&service, request("", Vec::new()), Some(250))
        .await
        .unwrap();
    assert_eq!(first.ids.len(), 250);
    let finished: BTreeSet<i32> = first
        .progress
        .iter()
        .flat_map(|p| p.finished.clone())
        .collect();
    // Resume every unfinished partition after the last id received from it; partitions read in
    // Stripe's order deliver ids newest first, so the last received is the cursor.
    let mut last_by_partition: BTreeMap<i32, String> = BTreeMap::new();
    for (id, partition) in &first.received {
        last_by_partition.insert(*partition, id.clone());
    }
    let resume: Vec<pb::ExportPartition> = first
        .plan
        .iter()
        .filter(|p| !finished.contains(&p.index))
        .map(|p| pb::ExportPartition {
            starting_after: last_by_partition.get(&p.index).cloned().unwrap_or_default(),
            ..p.clone()
        })
        .collect();
    let rest = export(&service, request("", resume), None).await.unwrap();
    let overlap: Vec<&String> = rest
        .ids
        .keys()
        .filter(|id| first.ids.contains_key(*id))
        .collect();
    assert!(overlap.is_empty(), "read twice: {overlap:?}");
    assert_eq!(first.ids.len() + rest.ids.len(), CUSTOMERS);
    service.shutdown().await;
}
