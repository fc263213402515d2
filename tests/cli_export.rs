//! `connector-runtime export` (the real binary) against a running service whose sandbox holds
//! customers spread over weeks: NDJSON of every customer, plain progress lines when stderr is
//! not a terminal, CSV with the entity type's columns for a clause, and an export killed midway
//! then `--resume`d that ends with every customer exactly once.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

const CUSTOMERS: usize = 800;

async fn seed(sandbox: &str) {
    common::simulated_clock(sandbox).await;
    common::seed_customers(sandbox, CUSTOMERS, 8, |n| {
        format!("email=cli{n:04}%40example.com&metadata[n]={n}")
    })
    .await;
}

fn export_command(addr: &str, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_connector-runtime"));
    command
        .arg("export")
        .args(args)
        .env("CONNECTOR_RUNTIME_ADDR", format!("http://{addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn ids_of_ndjson(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|line| {
            let row: Value = serde_json::from_str(line).unwrap();
            row["Id"].as_str().unwrap().to_owned()
        })
        .collect()
}

// The binary's blocking calls must not stall the in-process service: several runtime threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn exports_ndjson_and_csv_and_resumes_an_interrupted_export() {
    let home = Box::leak(Box::new(Home::new()));
    let service = start(home.settings(false)).await;
    let sandbox = service.sandbox_url();
    seed(&sandbox).await;
    let addr = service.running.as_ref().unwrap().addr.to_string();
    let dir = tempfile::tempdir().unwrap();

    // NDJSON of everything, with plain progress lines on a non-terminal stderr.
    let all = dir.path().join("all.ndjson");
    let output = export_command(&addr, &["Customer", "--output", all.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("exported {CUSTOMERS} entities, ")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("exported {CUSTOMERS} Customer entities to ")),
        "{stderr}"
    );
    let ids = ids_of_ndjson(&all);
    assert_eq!(ids.len(), CUSTOMERS);
    assert_eq!(ids.iter().collect::<BTreeSet<_>>().len(), CUSTOMERS);
    assert!(!Path::new(&format!("{}.checkpoint", all.display())).exists());

    // CSV: the header is the entity type's fields; one row per match.
    let csv = dir.path().join("some.csv");
    let output = export_command(
        &addr,
        &[
            "Customer",
            "--format",
            "csv",
            "--conditions",
            "Email LIKE 'cli07%'",
            "--output",
            csv.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header[0], "Id");
    assert!(
        header.contains(&"Email") && header.contains(&"Metadata"),
        "{header:?}"
    );
    let email_column = header.iter().position(|c| *c == "Email").unwrap();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 100, "cli0700 to cli0799");
    assert!(rows.iter().all(|r| r.contains("@example.com")));
    assert!(
        rows.iter()
            .all(|r| !r.split(',').nth(email_column).unwrap_or("").is_empty())
    );

    // Killed once its first checkpoint is saved, then resumed: every customer exactly once.
    let patched = reqwest::Client::new()
        .post(format!("{sandbox}/_sandbox/config"))
        .body(r#"{"faults": {"latency": "100ms"}}"#)
        .send()
        .await
        .unwrap();
    assert!(patched.status().is_success());
    let resumed = dir.path().join("resumed.ndjson");
    let checkpoint = dir.path().join("resumed.ndjson.checkpoint");
    let mut child = export_command(
        &addr,
        &[
            "Customer",
            "--parallelism",
            "1",
            "--output",
            resumed.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    while !checkpoint.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the export ended before its first checkpoint"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = ids_of_ndjson_lenient(&resumed);
    assert!(
        before < CUSTOMERS,
        "the export was interrupted ({before} lines)"
    );

    let output = export_command(
        &addr,
        &[
            "Customer",
            "--resume",
            "--output",
            resumed.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let ids = ids_of_ndjson(&resumed);
    assert_eq!(
        ids.iter().collect::<BTreeSet<_>>().len(),
        ids.len(),
        "no duplicates"
    );
    assert_eq!(ids.len(), CUSTOMERS);
    assert!(!checkpoint.exists());

    // Resuming what is not there is a clear error.
    let output = export_command(
        &addr,
        &[
            "Customer",
            "--resume",
            "--output",
            resumed.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("checkpoint"));
    service.shutdown().await;
}

/// Complete lines in a file a killed export may have left mid-line.
fn ids_of_ndjson_lenient(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|line| serde_json::from_str::<Value>(line).is_ok())
        .count()
}
