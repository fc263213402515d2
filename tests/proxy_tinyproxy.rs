//! Upstream calls through a real proxy (Debian's tinyproxy on loopback, with Basic auth): the right
//! password passes, a wrong one gives a clear, non-retried error, and the password never shows.
//! CI installs tinyproxy; elsewhere the test is skipped with a note unless `CI` is set.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use tonic::Code;

const PROXY_PASSWORD: &str = "proxy-pass-SECRET-0123";

struct Proxy(Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn proxied(id: &str, password_secret: &str, port: u16, sandbox: &str) -> pb::Connection {
    pb::Connection {
        name: format!("connections/{id}"),
        api_key: Some(pb::SecretRef {
            secret: "stripe-key".to_owned(),
            version: "1".to_owned(),
        }),
        api_base_url: sandbox.to_owned(),
        verbosity: 5,
        proxy: Some(pb::ProxyConfig {
            enabled: true,
            auth_scheme: pb::proxy_config::AuthScheme::Basic as i32,
            user: "alice".to_owned(),
            password: Some(pb::SecretRef {
                secret: password_secret.to_owned(),
                version: "1".to_owned(),
            }),
            ssl_type: pb::proxy_config::SslType::Auto as i32,
            server_host: "127.0.0.1".to_owned(),
            server_port: i32::from(port),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn calls_pass_through_tinyproxy_and_a_wrong_password_is_a_clear_error() {
    let Ok(path) = which_tinyproxy() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install tinyproxy (see .ci/run)"
        );
        println!("skipped: tinyproxy is not installed (apt-get install tinyproxy)");
        return;
    };
    let home = Box::leak(Box::new(Home::new()));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = home.dir.path().join("tinyproxy.log");
    let conf = home.dir.path().join("tinyproxy.conf");
    std::fs::write(
        &conf,
        format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 30\nMaxClients 20\nAllow 127.0.0.1\nBasicAuth alice {PROXY_PASSWORD}\nLogFile \"{}\"\nLogLevel Info\nDisableViaHeader Yes\n",
            log.display()
        ),
    )
    .unwrap();
    let _proxy = Proxy(
        Command::new(path)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut up = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            up = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "tinyproxy did not start");

    home.put_secret("stripe-key", "1", "sk_test_proxied_0123456789");
    home.put_secret("proxy-pass", "1", PROXY_PASSWORD);
    home.put_secret("wrong-pass", "1", "not-the-password");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    let service = start(settings).await;
    let sandbox = service
        .running
        .as_ref()
        .and_then(|r| r.sandbox_url.clone())
        .unwrap();
    let mut connections = service.connections();
    for connection in [
        proxied("proxied", "proxy-pass", port, &sandbox),
        proxied("bad-proxy", "wrong-pass", port, &sandbox),
    ] {
        let request = pb::CreateConnectionRequest {
            connection_id: String::new(),
            connection: Some(connection),
        };
        connections.create_connection(request).await.unwrap();
    }

    let (name, _) = service
        .create(
            "proxied",
            "Customer",
            serde_json::json!({"Email": "via@proxy.example"}),
        )
        .await
        .unwrap();
    let id = name.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        service.get("proxied", "Customer", &id).await.unwrap()["Email"],
        serde_json::json!("via@proxy.example")
    );
    let proxy_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        proxy_log.contains(&format!("/v1/customers/{id}")),
        "the call did not go through the proxy:\n{proxy_log}"
    );

    // SSL type TUNNEL: even the plain-HTTP sandbox is reached through a CONNECT tunnel.
    let mut tunneled = proxied("tunneled", "proxy-pass", port, &sandbox);
    if let Some(proxy) = tunneled.proxy.as_mut() {
        proxy.ssl_type = pb::proxy_config::SslType::Tunnel as i32;
    }
    let request = pb::CreateConnectionRequest {
        connection_id: String::new(),
        connection: Some(tunneled),
    };
    connections.create_connection(request).await.unwrap();
    assert_eq!(
        service.get("tunneled", "Customer", &id).await.unwrap()["Email"],
        serde_json::json!("via@proxy.example")
    );
    let authority = sandbox.trim_start_matches("http://");
    let proxy_log = std::fs::read_to_string(&log).unwrap();
    assert!(
        proxy_log.contains(&format!("CONNECT {authority}")),
        "no tunnel in the proxy's log:\n{proxy_log}"
    );

    let refused = service.get("bad-proxy", "Customer", &id).await.unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "PROXY_AUTHENTICATION_FAILED");
    let status = connections
        .check_status(pb::CheckStatusRequest {
            name: "connections/bad-proxy".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.state,
        pb::check_status_response::State::AuthError as i32,
        "{status:?}"
    );
    assert!(
        status.description.contains("proxy"),
        "{}",
        status.description
    );

    for text in [format!("{refused:?}"), format!("{status:?}"), logs_text()] {
        assert!(
            !text.contains(PROXY_PASSWORD),
            "the proxy password leaked: {text}"
        );
    }
    service.shutdown().await;
}

fn which_tinyproxy() -> Result<std::path::PathBuf, ()> {
    [
        "/usr/bin/tinyproxy",
        "/usr/sbin/tinyproxy",
        "/usr/local/bin/tinyproxy",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.exists())
    .ok_or(())
}
