//! The `/status` page in a real headless browser (Debian's `chromium`): it loads without errors,
//! shows every connection with its figures, and the figures change after traffic. A screenshot is
//! written to `<target>/tmp/status-page.png`.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use tokio::process::Command;

const BROWSER: &str = "chromium";

/// Runs headless chromium on `url` with `extra` arguments; returns (stdout, stderr).
async fn chromium(url: &str, profile: &Path, extra: &[String]) -> (String, String) {
    let mut command = Command::new(BROWSER);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            // Lets the page's fetch and first refreshes run before the DOM is dumped.
            "--virtual-time-budget=5000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(90), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(error)) => panic!(
            "cannot run `{BROWSER}` ({error}); install it (Debian: apt-get install chromium; .ci/run does)"
        ),
        Err(_) => panic!("{BROWSER} did not finish within 90 s"),
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{BROWSER} failed: {stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

/// The text of `data-figure="<figure>"` inside the card of `connection`.
fn figure(dom: &str, connection: &str, figure: &str) -> String {
    let card = dom
        .split("<section ")
        .find(|s| s.contains(&format!("data-connection=\"{connection}\"")))
        .unwrap_or_else(|| panic!("no card for {connection} in:\n{dom}"));
    let marker = format!("data-figure=\"{figure}\">");
    let start = card
        .find(&marker)
        .unwrap_or_else(|| panic!("no {figure} for {connection}"))
        + marker.len();
    card[start..].split('<').next().unwrap().to_owned()
}

/// Checks what any load must show: the page ran, reached the service, raised no error.
fn assert_loaded_cleanly(dom: &str, stderr: &str) {
    assert!(
        !dom.contains("data-updates=\"0\""),
        "the page never refreshed:\n{dom}"
    );
    assert!(
        dom.contains("updated "),
        "the page did not reach /status.json:\n{dom}"
    );
    assert!(
        dom.contains("<div id=\"error\" role=\"alert\"></div>"),
        "the page shows an error:\n{dom}"
    );
    for sign in [
        "Uncaught",
        "SyntaxError",
        "TypeError",
        "ReferenceError",
        "Refused to",
    ] {
        assert!(
            !stderr.contains(sign),
            "the browser console reports {sign}:\n{stderr}"
        );
    }
}

fn screenshot_path() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("status-page.png")
}

#[tokio::test]
async fn status_page_shows_every_connection_and_its_figures_move_with_traffic() {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("page-key", "1", "sk_test_status_page_0123456789");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.metrics.enabled = true;
    settings.metrics.listen = "127.0.0.1:0".parse().unwrap();
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    for (id, nodes) in [("browser-a", 2), ("browser-b", 4)] {
        service
            .add_connection(pb::Connection {
                node_config: Some(pb::NodeConfig {
                    min_node_count: nodes,
                    max_node_count: 10,
                }),
                ..Service::connection_to(id, "page-key", &sandbox)
            })
            .await;
    }
    let url = format!(
        "http://{}/status",
        service.running.as_ref().unwrap().metrics_addr.unwrap()
    );
    let profile = tempfile::tempdir().unwrap();

    let (before, stderr) = chromium(&url, profile.path(), &["--dump-dom".to_owned()]).await;
    assert_loaded_cleanly(&before, &stderr);
    for id in ["browser-a", "browser-b", "stripe-sandbox"] {
        assert!(
            before.contains(&format!("data-connection=\"{id}\"")),
            "{id} missing"
        );
    }
    assert_eq!(figure(&before, "browser-a", "nodes-current"), "2");
    assert_eq!(figure(&before, "browser-b", "nodes-min"), "4");
    assert_eq!(figure(&before, "browser-b", "nodes-max"), "10");
    assert_eq!(figure(&before, "browser-a", "calls-total"), "0");
    assert_eq!(figure(&before, "browser-a", "upstream-requests"), "0");

    for _ in 0..5 {
        service
            .entities()
            .list_entities(pb::ListEntitiesRequest {
                parent: "connections/browser-a/entityTypes/Customer".to_owned(),
                page_size: 1,
                ..Default::default()
            })
            .await
            .unwrap();
    }

    let shot = screenshot_path();
    let _ = std::fs::remove_file(&shot);
    let (after, stderr) = chromium(&url, profile.path(), &["--dump-dom".to_owned()]).await;
    assert_loaded_cleanly(&after, &stderr);
    assert_eq!(figure(&after, "browser-a", "calls-total"), "5");
    assert_eq!(figure(&after, "browser-a", "upstream-requests"), "5");
    assert_eq!(figure(&after, "browser-b", "calls-total"), "0");
    assert!(after.contains("<polyline"), "no chart drawn");

    let (_, stderr) = chromium(
        &url,
        profile.path(),
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_owned(),
            "--hide-scrollbars".to_owned(),
        ],
    )
    .await;
    let png = std::fs::read(&shot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stderr}", shot.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "not a real screenshot"
    );
    service.shutdown().await;
}
