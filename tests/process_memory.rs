//! The released binary's memory set-up, read from the kernel: the `serve` process runs with
//! transparent huge pages off from its first allocation (mimalloc's large aligned regions would
//! otherwise be backed by 2 MiB pages wherever the kernel's THP mode is `always`), so after
//! serving calls it holds no huge page at all, whatever this machine's THP mode.
#![cfg(target_os = "linux")]

mod common;

use std::process::{Command, Stdio};

use common::{ChildGuard, free_port, wait_for_port};
use connector_runtime::api::pb;
use connector_runtime::api::pb::entity_service_client::EntityServiceClient;

/// The value of `key` in a `/proc` file of `key: value` lines.
fn proc_field(pid: u32, file: &str, key: &str) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/{file}"))
        .trim()
        .to_owned()
}

#[tokio::test]
async fn the_service_holds_no_transparent_huge_page() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_connector-runtime"))
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir.path())
        .env_remove("CONNECTOR_RUNTIME_CONFIG")
        .env_remove("MIMALLOC_ALLOW_THP")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting connector-runtime");
    let pid = child.id();
    let _child = ChildGuard(child);
    assert!(wait_for_port(port).await, "the service did not start");

    // Some calls, so the heap has grown past its first pages.
    let mut entities = EntityServiceClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    for _ in 0..20 {
        let page = entities
            .list_entities(pb::ListEntitiesRequest {
                parent: "connections/stripe-sandbox/entityTypes/Customer".to_owned(),
                page_size: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(page.entities.len() <= 100);
    }

    assert_eq!(proc_field(pid, "status", "THP_enabled"), "0");
    assert_eq!(
        proc_field(pid, "smaps_rollup", "AnonHugePages"),
        "0 kB",
        "huge pages back part of the service's memory"
    );
}
