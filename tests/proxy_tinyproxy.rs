//! Upstream calls through a real proxy (Debian's tinyproxy on loopback, with Basic auth): the right
//! password passes, a wrong one gives a clear, non-retried error, and the password never shows.
//! CI installs tinyproxy; elsewhere the test is skipped with a note unless `CI` is set.

mod common;

use std::process::{Command, Stdio};

use common::*;
use connector_runtime::api::pb;
use tonic::Code;

const PROXY_PASSWORD: &str = "proxy-pass-SECRET-0123";

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
    let _proxy = ChildGuard(
        Command::new(path)
            .args(["-d", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port).await, "tinyproxy did not start");

    home.put_secret("stripe-key", "1", "sk_test_proxied_0123456789");
    home.put_secret("proxy-pass", "1", PROXY_PASSWORD);
    home.put_secret("wrong-pass", "1", "not-the-password");
    // SSL type ALWAYS: TLS to the proxy. A TLS terminator for `localhost` in front of tinyproxy.
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let ca_file = home.dir.path().join("proxy-ca.pem");
    std::fs::write(&ca_file, generated.cert.pem()).unwrap();
    let tls_port = tls_terminator(
        &generated.cert.pem(),
        &generated.signing_key.serialize_pem(),
        port,
    )
    .await;

    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.upstream.extra_ca_file = Some(ca_file);
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    let mut connections = service.connections();
    for connection in [
        proxied("proxied", "proxy-pass", port, &sandbox),
        proxied("bad-proxy", "wrong-pass", port, &sandbox),
    ] {
        service.add_connection(connection).await;
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
    service.add_connection(tunneled).await;
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

    let mut over_tls = proxied("over-tls", "proxy-pass", tls_port, &sandbox);
    if let Some(proxy) = over_tls.proxy.as_mut() {
        proxy.ssl_type = pb::proxy_config::SslType::Always as i32;
        proxy.server_host = "localhost".to_owned();
    }
    service.add_connection(over_tls).await;
    assert_eq!(
        service.get("over-tls", "Customer", &id).await.unwrap()["Email"],
        serde_json::json!("via@proxy.example")
    );
    assert!(
        TLS_SESSIONS.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "no TLS session reached the proxy"
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

static TLS_SESSIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Terminates TLS for `localhost` and relays the plain bytes to the proxy on `proxy_port`.
async fn tls_terminator(cert_pem: &str, key_pem: &str, proxy_port: u16) -> u16 {
    use rustls::pki_types::pem::PemObject;
    connector_runtime::upstream::client::ensure_crypto_provider();
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                TLS_SESSIONS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", proxy_port)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}
