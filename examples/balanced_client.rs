//! A tonic client that balances every call across all the runtime's replicas, as a fleet needs:
//! each replica is one node (6 calls/s), so a client pinned to one pod never gets more than that.
//!
//! The targets are `host:port` names; each is resolved again every 10 s, and every address found
//! becomes an endpoint of one balanced channel. In Kubernetes the one target is the headless
//! Service, whose name resolves to every ready pod:
//!
//! ```text
//! cargo run --example balanced_client -- connector-runtime.connectors.svc.cluster.local:50051
//! ```
//!
//! It sends `CALLS` (default 24) `ListEntities` calls through the balanced channel, 8 at a time
//! (the balancer prefers the replica with fewer calls pending), then asks each
//! replica directly how many calls its node admitted. Environment: `CONNECTOR_RUNTIME_TOKEN` (a
//! bearer token), `CONNECTION` (default `stripe-sandbox`), `CALLS`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;
use futures::StreamExt;
use tokio::sync::mpsc::Sender;
use tonic::metadata::MetadataValue;
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// Calls in flight at once.
const IN_FLIGHT: usize = 8;

/// How often the targets are resolved again (pods come and go with the autoscaler).
const RESOLVE_EVERY: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let targets: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!targets.is_empty(), "usage: balanced_client HOST:PORT…");
    let connection = std::env::var("CONNECTION").unwrap_or_else(|_| "stripe-sandbox".to_owned());
    let calls: usize = std::env::var("CALLS").map_or(Ok(24), |c| c.parse())?;
    let token = std::env::var("CONNECTOR_RUNTIME_TOKEN").ok();

    // One channel over every replica: tonic picks an endpoint per call (power of two choices).
    let (channel, changes) = Channel::balance_channel::<SocketAddr>(64);
    let first = resolve(&targets).await?;
    anyhow::ensure!(!first.is_empty(), "{targets:?} resolved to no address");
    apply(&changes, &BTreeSet::new(), &first).await?;
    tokio::spawn(follow(targets, changes, first.clone()));

    // Several calls in flight at once, as a busy caller has: the balancer sends each to the
    // replica with fewer calls pending.
    let entities = EntityServiceClient::new(channel);
    let parent = format!("connections/{connection}/entityTypes/Customer");
    let results: Vec<anyhow::Result<()>> = futures::stream::iter(0..calls)
        .map(|_| {
            let mut entities = entities.clone();
            let request = with_token(
                pb::ListEntitiesRequest {
                    parent: parent.clone(),
                    page_size: 1,
                    ..Default::default()
                },
                token.as_deref(),
            );
            async move {
                entities.list_entities(request?).await?;
                Ok(())
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;

    // Ask each replica on its own how many calls its node admitted.
    for addr in &first {
        let channel = endpoint(*addr)?.connect().await?;
        let status = ConnectionServiceClient::new(channel)
            .check_status(with_token(
                pb::CheckStatusRequest {
                    name: format!("connections/{connection}"),
                },
                token.as_deref(),
            )?)
            .await?
            .into_inner();
        let admitted = status.node_status.map_or(0, |n| n.admitted);
        println!("{addr}: admitted {admitted}");
    }
    Ok(())
}

fn endpoint(addr: SocketAddr) -> anyhow::Result<Endpoint> {
    Ok(Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(Duration::from_secs(5)))
}

fn with_token<T>(message: T, token: Option<&str>) -> anyhow::Result<tonic::Request<T>> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse()?;
        request.metadata_mut().insert("authorization", value);
    }
    Ok(request)
}

/// Every address the targets resolve to now.
async fn resolve(targets: &[String]) -> anyhow::Result<BTreeSet<SocketAddr>> {
    let mut addrs = BTreeSet::new();
    for target in targets {
        addrs.extend(tokio::net::lookup_host(target).await?);
    }
    Ok(addrs)
}

/// Adds the endpoints that appeared and removes those that went.
async fn apply(
    changes: &Sender<Change<SocketAddr, Endpoint>>,
    before: &BTreeSet<SocketAddr>,
    now: &BTreeSet<SocketAddr>,
) -> anyhow::Result<()> {
    for addr in now.difference(before) {
        changes
            .send(Change::Insert(*addr, endpoint(*addr)?))
            .await?;
    }
    for addr in before.difference(now) {
        changes.send(Change::Remove(*addr)).await?;
    }
    Ok(())
}

/// Re-resolves the targets for as long as the channel lives.
async fn follow(
    targets: Vec<String>,
    changes: Sender<Change<SocketAddr, Endpoint>>,
    mut known: BTreeSet<SocketAddr>,
) {
    loop {
        tokio::time::sleep(RESOLVE_EVERY).await;
        // A failed lookup keeps the endpoints we have.
        let Ok(now) = resolve(&targets).await else {
            continue;
        };
        if apply(&changes, &known, &now).await.is_err() {
            return; // the channel is gone
        }
        known = now;
    }
}
