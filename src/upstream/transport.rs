//! How a request reaches the upstream. A connection without a proxy sends through hyper-util's
//! pooled client directly (HTTP/1.1, or HTTP/2 where TLS negotiates it), trusting the platform's
//! roots and the connection's extra CA; one with a proxy sends through reqwest, which speaks to
//! HTTP and HTTPS proxies with their credentials. Skipping reqwest's layers on the direct path
//! (its URL re-parsing, redirect and retry wrappers, per-request timer) costs about a fifth less
//! of the service's CPU per call (BENCHMARKS.md).
//!
//! Both paths follow no redirect (an API answers where it is asked) and answer every response as
//! it came: status, headers and the whole body, read before the attempt's timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as PooledClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use super::client::{ClientBuildError, ClientOptions};
use crate::engine::error::EngineError;

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("connector-runtime/", env!("CARGO_PKG_VERSION"));

type DirectClient = PooledClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The way to the upstream of one connection.
#[derive(Debug, Clone)]
pub enum Transport {
    Direct(Box<DirectClient>),
    Proxied(reqwest::Client),
}

/// An answer as it came: status, headers and body.
pub struct Answer {
    pub status: http::StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Transport {
    /// The transport the options ask for: through their proxy, or direct.
    pub fn new(options: &ClientOptions) -> Result<Self, ClientBuildError> {
        match &options.proxy {
            Some(_) => proxied(options).map(Self::Proxied),
            None => direct(options).map(|client| Self::Direct(Box::new(client))),
        }
    }

    /// Sends `request` and reads the whole answer, all within `timeout`.
    pub async fn send(
        &self,
        request: http::Request<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, EngineError> {
        let exchange = async {
            match self {
                Self::Direct(client) => {
                    let response = client
                        .request(request.map(Full::new))
                        .await
                        .map_err(|e| direct_error(&e))?;
                    let (parts, body) = response.into_parts();
                    let body = body
                        .collect()
                        .await
                        .map_err(|e| direct_error(&e))?
                        .to_bytes();
                    Ok(Answer {
                        status: parts.status,
                        headers: parts.headers,
                        body,
                    })
                }
                Self::Proxied(client) => {
                    let request =
                        reqwest::Request::try_from(request).map_err(|e| proxied_error(&e))?;
                    let response = client
                        .execute(request)
                        .await
                        .map_err(|e| proxied_error(&e))?;
                    let (status, headers) = (response.status(), response.headers().clone());
                    let body = response.bytes().await.map_err(|e| proxied_error(&e))?;
                    Ok(Answer {
                        status,
                        headers,
                        body,
                    })
                }
            }
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .map_err(|_| EngineError::Unavailable {
                message: format!("timed out: no complete answer within {timeout:?}"),
                retry_after: None,
            })?
    }
}

/// hyper-util's pooled client over TCP (no delay, the connect timeout) and rustls: the platform's
/// roots plus the extra CA, HTTP/2 or HTTP/1.1 as the server's TLS negotiates, plain HTTP for
/// `http://` upstreams.
fn direct(options: &ClientOptions) -> Result<DirectClient, ClientBuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra_roots = match &options.extra_ca_pem {
        Some(pem) => CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ClientBuildError::Certificate(e.to_string()))?,
        None => Vec::new(),
    };
    if options.extra_ca_pem.is_some() && extra_roots.is_empty() {
        return Err(ClientBuildError::Certificate(
            "no certificate in the PEM".to_owned(),
        ));
    }
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|e| ClientBuildError::Certificate(e.to_string()))?;
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientBuildError::Build(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(options.connect_timeout));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp);
    Ok(PooledClient::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// reqwest through the proxy, with its credentials; no redirects followed.
fn proxied(options: &ClientOptions) -> Result<reqwest::Client, ClientBuildError> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        // An API answers where it is asked; a redirect is an error, not a hop to follow with
        // the key.
        .redirect(reqwest::redirect::Policy::none())
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true)
        .user_agent(USER_AGENT);
    if let Some(proxy) = &options.proxy {
        let mut p =
            reqwest::Proxy::all(&proxy.url).map_err(|e| ClientBuildError::Proxy(e.to_string()))?;
        if let Some((user, password)) = &proxy.basic_auth {
            p = p.basic_auth(user, password.expose());
        }
        builder = builder.proxy(p);
    }
    if let Some(pem) = &options.extra_ca_pem {
        let cert = reqwest::Certificate::from_pem(pem)
            .map_err(|e| ClientBuildError::Certificate(e.to_string()))?;
        builder = builder.add_root_certificate(cert);
    }
    builder
        .build()
        .map_err(|e| ClientBuildError::Build(e.to_string()))
}

fn direct_error(error: &(dyn std::error::Error + 'static)) -> EngineError {
    let connect = error
        .downcast_ref::<hyper_util::client::legacy::Error>()
        .is_some_and(hyper_util::client::legacy::Error::is_connect);
    unavailable(
        if connect {
            "connection failed"
        } else {
            "transport error"
        },
        error,
    )
}

fn proxied_error(error: &reqwest::Error) -> EngineError {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    let failed = unavailable(kind, error);
    // The proxy answered the tunnel's CONNECT with 407.
    if let EngineError::Unavailable { message, .. } = &failed
        && message.contains("proxy authorization required")
    {
        return EngineError::ProxyAuthentication(
            "the CONNECT tunnel was refused with HTTP 407".to_owned(),
        );
    }
    failed
}

/// A transport failure, with the chain of its causes in the message. hyper's and reqwest's error
/// texts can include the URL but never headers, so the message carries no key.
fn unavailable(kind: &str, error: &(dyn std::error::Error + 'static)) -> EngineError {
    let mut message = format!("{kind}: {error}");
    let mut source = error.source();
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    EngineError::Unavailable {
        message,
        retry_after: None,
    }
}
