//! An HTTPS upstream with a private CA: trusted through `upstream.extra_ca_file`, refused without
//! it; CheckStatus tells a key the upstream rejects (AUTH_ERROR) from a healthy one (ACTIVE)
//! and from settings that cannot be used (ERROR, naming the setting); and a redirect from the
//! upstream is an error, never followed with the key.

mod common;

use std::sync::Arc;

use common::*;
use connector_runtime::api::pb;
use connector_runtime::connections::model::ConnectionSpec;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;

/// A TLS endpoint for `localhost` that answers every request with one customer.
async fn private_https_upstream(cert_pem: &str, key_pem: &str) -> u16 {
    connector_runtime::upstream::client::ensure_crypto_provider();
    let certs =
        vec![rustls::pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap()];
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let mut buffer = vec![0u8; 8192];
                let _ = tls.read(&mut buffer).await;
                let body = r#"{"id":"cus_tls","object":"customer","created":1700000000,"livemode":false,"email":"tls@example.com"}"#;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(response.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn a_private_https_upstream_is_trusted_only_through_the_extra_ca() {
    let home = Home::new();
    home.put_secret("stripe-key", "1", "sk_test_tls_0123456789");
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = generated.cert.pem();
    let port = private_https_upstream(&cert_pem, &generated.signing_key.serialize_pem()).await;
    let ca_file = home.dir.path().join("private-ca.pem");
    std::fs::write(&ca_file, &cert_pem).unwrap();

    let connection = |id: &str| {
        let mut spec = ConnectionSpec::with_id(id);
        spec.api_key = Some(secret("stripe-key"));
        spec.api_base_url = format!("https://localhost:{port}");
        spec
    };
    let mut settings = home.settings(false);
    settings.upstream.extra_ca_file = Some(ca_file);
    settings.upstream.max_retries = 0;
    settings.connections = vec![connection("private")];
    let service = start(settings).await;
    assert_eq!(
        service.get("private", "Customer", "cus_tls").await.unwrap()["Email"],
        serde_json::json!("tls@example.com")
    );
    service.shutdown().await;

    let home = Home::new();
    home.put_secret("stripe-key", "1", "sk_test_tls_0123456789");
    let mut settings = home.settings(false);
    settings.upstream.max_retries = 0;
    settings.connections = vec![connection("untrusted")];
    let service = start(settings).await;
    let refused = service
        .get("untrusted", "Customer", "cus_tls")
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(
        refused.message().to_lowercase().contains("certificate"),
        "{}",
        refused.message()
    );
    service.shutdown().await;
}

#[tokio::test]
async fn check_status_tells_a_rejected_key_from_a_working_one() {
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("live-key", "1", "sk_live_not_accepted_by_the_sandbox_0123");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    let connection = Service::connection_to("rejected", "live-key", &sandbox);
    let mut connections = service.connections();
    service.add_connection(connection).await;
    let rejected = connections
        .check_status(pb::CheckStatusRequest {
            name: "connections/rejected".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        rejected.state,
        pb::check_status_response::State::AuthError as i32,
        "{rejected:?}"
    );
    let working = connections
        .check_status(pb::CheckStatusRequest {
            name: "connections/stripe-sandbox".to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        working.state,
        pb::check_status_response::State::Active as i32,
        "{working:?}"
    );
    service.shutdown().await;
}

/// CheckStatus of `connections/{id}`.
async fn check_status(service: &Service, id: &str) -> pb::CheckStatusResponse {
    service
        .connections()
        .check_status(service.request(pb::CheckStatusRequest {
            name: format!("connections/{id}"),
        }))
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test]
async fn check_status_blames_an_unusable_ca_file_on_the_settings_and_a_rejected_key_on_the_key() {
    let home = Home::new();
    home.put_secret("live-key", "1", "sk_live_not_accepted_by_the_sandbox_0123");
    // It passes the start-up check (a PEM certificate block) but holds no certificate.
    let broken_ca = home.dir.path().join("broken-ca.pem");
    std::fs::write(
        &broken_ca,
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    settings.upstream.extra_ca_file = Some(broken_ca);
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    service
        .add_connection(Service::connection_to("rejected", "live-key", &sandbox))
        .await;
    let unusable = check_status(&service, "rejected").await;
    assert_eq!(
        unusable.state,
        pb::check_status_response::State::Error as i32,
        "{unusable:?}"
    );
    assert!(
        unusable.description.contains("upstream.extra_ca_file"),
        "{}",
        unusable.description
    );
    service.shutdown().await;

    // The same connection without the broken CA file reaches the upstream, which rejects the key.
    let home = Home::new();
    home.put_secret("live-key", "1", "sk_live_not_accepted_by_the_sandbox_0123");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    service
        .add_connection(Service::connection_to("rejected", "live-key", &sandbox))
        .await;
    let rejected = check_status(&service, "rejected").await;
    assert_eq!(
        rejected.state,
        pb::check_status_response::State::AuthError as i32,
        "{rejected:?}"
    );
    assert!(
        rejected.description.contains("rejected the key"),
        "{}",
        rejected.description
    );
    service.shutdown().await;
}

/// A plain HTTP endpoint that answers every request with `response` and counts the requests.
async fn canned_upstream(response: String) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let response = response.clone();
            let counted = counted.clone();
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 8192];
                if matches!(socket.read(&mut buffer).await, Ok(n) if n > 0) {
                    counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                }
            });
        }
    });
    (port, requests)
}

#[tokio::test]
async fn a_redirect_from_the_upstream_is_an_error_and_is_not_followed() {
    let body = r#"{"id":"cus_1","object":"customer","created":1700000000,"livemode":false}"#;
    let (target, target_requests) = canned_upstream(format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    ))
    .await;
    let (redirecting, requests) = canned_upstream(format!(
        "HTTP/1.1 302 Found\r\nlocation: http://127.0.0.1:{target}/v1/customers/cus_1\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
    ))
    .await;
    let home = Box::leak(Box::new(Home::new()));
    home.put_secret("redirected-key", "1", "sk_test_redirected_0123456789");
    let service = start(home.settings(false)).await;
    service
        .add_connection(Service::connection_to(
            "redirected",
            "redirected-key",
            &format!("http://127.0.0.1:{redirecting}"),
        ))
        .await;
    let error = service
        .get("redirected", "Customer", "cus_1")
        .await
        .expect_err("a redirect is not an answer");
    assert_ne!(error.code(), Code::Ok);
    assert!(
        error.message().contains("302"),
        "the error names the upstream's status: {error:?}"
    );
    assert!(requests.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_eq!(
        target_requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the redirect's target was never called"
    );
    service.shutdown().await;
}
