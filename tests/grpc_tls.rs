//! Optional TLS: with `server.tls` set, the service speaks gRPC over TLS (rustls) and a client
//! that trusts the certificate gets through; a plain-text client does not.

mod common;

use common::*;
use connector_runtime::api::pb;
use connector_runtime::api::pb::connection_service_client::ConnectionServiceClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[tokio::test]
async fn the_service_serves_grpc_over_tls_when_configured() {
    connector_runtime::upstream::client::ensure_crypto_provider();
    let home = Home::new();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let cert_pem = generated.cert.pem();
    let cert_file = home.dir.path().join("server.pem");
    let key_file = home.dir.path().join("server.key");
    std::fs::write(&cert_file, &cert_pem).unwrap();
    std::fs::write(&key_file, generated.signing_key.serialize_pem()).unwrap();
    let mut settings = home.settings(false);
    settings.server.tls.cert_file = Some(cert_file);
    settings.server.tls.key_file = Some(key_file);

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let running = connector_runtime::app::start(settings, false, listener, std::future::pending())
        .await
        .unwrap();

    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&cert_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let listed = ConnectionServiceClient::new(channel)
        .list_connections(pb::ListConnectionsRequest::default())
        .await
        .unwrap();
    assert!(
        listed
            .into_inner()
            .connections
            .iter()
            .any(|c| c.name == "connections/stripe-sandbox")
    );

    let plain = Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .connect()
        .await;
    let refused = match plain {
        Err(_) => true,
        Ok(channel) => ConnectionServiceClient::new(channel)
            .list_connections(pb::ListConnectionsRequest::default())
            .await
            .is_err(),
    };
    assert!(
        refused,
        "a plain-text client must not get an answer from a TLS server"
    );
    running.shutdown().await.unwrap();
}
