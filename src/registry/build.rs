//! Building one connection's runtime from its settings, step by step along the data flow:
//! resolve the key, route through the proxy (directly or through the tunnelling adapter), build
//! the upstream client, pick the account's Stripe budget, and size the node pool.
//!
//! Every failure is a [`BuildError`] that names the setting at fault; secret values never appear
//! in one.

use std::sync::Arc;

use crate::connections::model::{ConnectionSpec, ProxyAuthScheme, ProxySettings, ProxySslType};
use crate::engine::ConnectionRuntime;
use crate::secrets::SecretResolver;
use crate::throttle::{AccountBudgets, NodePool};
use crate::upstream::client::{
    ClientBuildError, ClientOptions, ProxyOptions, Redacted, UpstreamClient,
};
use crate::upstream::dialect::Credentials;
use crate::upstream::proxy_tunnel::{TunnelAdapter, TunnelAuth, TunnelProxy};

use super::{EMBEDDED_CONNECTION_ID, RuntimeOptions, SandboxTarget};

/// Why a connection's runtime could not be built: its settings, not the upstream, are at fault.
/// The text starts with the setting (`api_key`, `proxy.server_host`, `upstream.extra_ca_file`, …).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// A secret reference does not resolve; the text names the reference, never a value.
    #[error("{setting}: {reason}")]
    Secret {
        setting: &'static str,
        reason: String,
    },
    /// No key is configured and no built-in sandbox provides one.
    #[error("api_key: no Stripe key configured")]
    NoApiKey,
    /// The key holds characters an HTTP header cannot carry.
    #[error("api_key: holds characters an HTTP header cannot carry")]
    ApiKeyNotAHeader,
    /// The proxy is enabled without this setting.
    #[error("{0}: required when the proxy is enabled")]
    ProxyMissing(&'static str),
    /// Digest authentication needs the tunnelling adapter, which does not speak TLS to the proxy.
    #[error("proxy: DIGEST with SSL type ALWAYS is not supported")]
    DigestOverTls,
    /// The loopback adapter in front of the proxy did not start.
    #[error("proxy: cannot start the tunnelling adapter: {0}")]
    TunnelAdapter(String),
    /// The proxy settings do not make a proxy URL the client accepts.
    #[error("proxy: {0}")]
    Proxy(String),
    /// The runtime-wide extra CA file holds no certificate the client can trust.
    #[error("upstream.extra_ca_file: {0}")]
    ExtraCa(String),
    /// The HTTP client could not be built for another reason.
    #[error("upstream: {0}")]
    Client(String),
    /// The node counts do not make a pool.
    #[error("node_config: {0}")]
    Nodes(String),
    /// The base URL is not an absolute URL requests can be sent under.
    #[error("api_base_url: not an absolute URL: {0}")]
    BaseUrl(String),
}

/// What every connection's runtime is built from, borrowed from the registry.
pub(super) struct RuntimeBuilder<'a> {
    pub options: &'a RuntimeOptions,
    pub secrets: &'a SecretResolver,
    pub budgets: &'a AccountBudgets,
    pub sandbox: Option<&'a SandboxTarget>,
}

/// How upstream calls reach the proxy, and the adapter that must live as long as the client.
struct ProxyRoute {
    options: Option<ProxyOptions>,
    adapter: Option<Arc<TunnelAdapter>>,
}

impl RuntimeBuilder<'_> {
    /// Builds the runtime for `spec`, reusing (and reconfiguring) `pool` when there is one.
    pub fn runtime(
        &self,
        spec: &ConnectionSpec,
        pool: Option<Arc<NodePool>>,
    ) -> Result<ConnectionRuntime, BuildError> {
        let api_key = self.api_key(spec)?;
        let proxy = self.proxy_route(&spec.proxy)?;
        let account = self.options.dialect.rate_account(&Credentials {
            api_key: api_key.expose(),
            account_id: spec.account_id.as_deref(),
            api_version: &self.options.api_version,
        });
        let budget = self.budgets.budget_for(&account.key, account.live);
        let client = self.client(spec, api_key, proxy.options)?;
        let pool = self.pool(spec, pool)?;
        Ok(ConnectionRuntime {
            id: spec.id.clone(),
            client,
            pool,
            budget,
            proxy_adapter: proxy.adapter,
        })
    }

    /// The connection's own key, or the built-in sandbox's for the embedded connection.
    fn api_key(&self, spec: &ConnectionSpec) -> Result<Redacted, BuildError> {
        match (&spec.api_key, self.sandbox) {
            (Some(reference), _) => self.secret("api_key", reference),
            (None, Some(sandbox)) if spec.id == EMBEDDED_CONNECTION_ID => {
                Ok(Redacted::new(sandbox.api_key.clone()))
            }
            (None, _) => Err(BuildError::NoApiKey),
        }
    }

    fn secret(
        &self,
        setting: &'static str,
        reference: &crate::secrets::SecretRef,
    ) -> Result<Redacted, BuildError> {
        let secret = self
            .secrets
            .resolve(reference)
            .map_err(|e| BuildError::Secret {
                setting,
                reason: e.to_string(),
            })?;
        Ok(Redacted::from(&secret))
    }

    /// No proxy, a proxy the client talks to itself, or the loopback tunnelling adapter in front
    /// of it (for DIGEST, which the client cannot answer, and TUNNEL, which it does not do).
    fn proxy_route(&self, proxy: &ProxySettings) -> Result<ProxyRoute, BuildError> {
        if !proxy.enabled {
            return Ok(ProxyRoute {
                options: None,
                adapter: None,
            });
        }
        let host = proxy
            .host
            .clone()
            .ok_or(BuildError::ProxyMissing("proxy.server_host"))?;
        let port = proxy
            .port
            .ok_or(BuildError::ProxyMissing("proxy.server_port"))?;
        let password = match &proxy.password {
            Some(reference) => self.secret("proxy.password", reference)?,
            None => Redacted::new(String::new()),
        };
        let user = proxy.user.clone().unwrap_or_default();
        let tunnel_all =
            proxy.ssl_type == ProxySslType::Tunnel || proxy.auth_scheme == ProxyAuthScheme::Digest;
        if tunnel_all {
            tunnelled(proxy, format!("{host}:{port}"), user, password)
        } else {
            Ok(forwarded(proxy, &host, port, user, password))
        }
    }

    fn client(
        &self,
        spec: &ConnectionSpec,
        api_key: Redacted,
        proxy: Option<ProxyOptions>,
    ) -> Result<UpstreamClient, BuildError> {
        let extra_ca_pem = self.options.extra_ca_pem.clone();
        if let Some(pem) = &extra_ca_pem {
            check_extra_ca(pem)?;
        }
        UpstreamClient::new(
            ClientOptions {
                base_url: spec.api_base_url.clone(),
                api_key,
                account_id: spec.account_id.clone(),
                api_version: self.options.api_version.clone(),
                connect_timeout: self.options.connect_timeout,
                request_timeout: self.options.request_timeout,
                max_retries: self.options.max_retries,
                backoff_base: self.options.backoff_base,
                backoff_cap: self.options.backoff_cap,
                proxy,
                extra_ca_pem,
                verbosity: spec.verbosity,
                log_level: spec.log_level,
                connection: spec.id.clone(),
            },
            self.options.dialect.clone(),
        )
        .map_err(|error| match error {
            ClientBuildError::Proxy(why) => BuildError::Proxy(why),
            ClientBuildError::Certificate(why) => BuildError::ExtraCa(why),
            ClientBuildError::Build(why) => BuildError::Client(why),
            ClientBuildError::ApiKey => BuildError::ApiKeyNotAHeader,
            ClientBuildError::BaseUrl(url) => BuildError::BaseUrl(url),
        })
    }

    /// The existing pool with the new node counts, or a new pool from the runtime-wide settings.
    fn pool(
        &self,
        spec: &ConnectionSpec,
        existing: Option<Arc<NodePool>>,
    ) -> Result<Arc<NodePool>, BuildError> {
        let (min, max) = (spec.nodes.min_node_count, spec.nodes.max_node_count);
        match existing {
            Some(pool) => {
                pool.reconfigure(min, max)
                    .map_err(|e| BuildError::Nodes(e.to_string()))?;
                Ok(pool)
            }
            None => {
                let mut settings = self.options.pool.clone();
                settings.min_nodes = min;
                settings.max_nodes = max;
                Ok(NodePool::new(settings))
            }
        }
    }
}

/// Every upstream connection through a CONNECT tunnel opened by the loopback adapter, which also
/// answers a Digest challenge.
fn tunnelled(
    proxy: &ProxySettings,
    address: String,
    user: String,
    password: Redacted,
) -> Result<ProxyRoute, BuildError> {
    // TUNNEL excludes ALWAYS, so only DIGEST can arrive here with it.
    if proxy.ssl_type == ProxySslType::Always {
        return Err(BuildError::DigestOverTls);
    }
    let auth = match proxy.auth_scheme {
        ProxyAuthScheme::None => TunnelAuth::None,
        ProxyAuthScheme::Basic => TunnelAuth::Basic { user, password },
        ProxyAuthScheme::Digest => TunnelAuth::Digest { user, password },
    };
    let adapter = TunnelAdapter::start(TunnelProxy {
        proxy: address,
        auth,
    })
    .map_err(|e| BuildError::TunnelAdapter(e.to_string()))?;
    Ok(ProxyRoute {
        options: Some(ProxyOptions {
            url: adapter.url(),
            basic_auth: None,
        }),
        adapter: Some(Arc::new(adapter)),
    })
}

/// The client talks to the proxy itself: plain or over TLS, with Basic credentials up front.
fn forwarded(
    proxy: &ProxySettings,
    host: &str,
    port: u16,
    user: String,
    password: Redacted,
) -> ProxyRoute {
    let scheme = if proxy.ssl_type == ProxySslType::Always {
        "https"
    } else {
        "http"
    };
    let basic_auth = (proxy.auth_scheme == ProxyAuthScheme::Basic).then_some((user, password));
    ProxyRoute {
        options: Some(ProxyOptions {
            url: format!("{scheme}://{host}:{port}"),
            basic_auth,
        }),
        adapter: None,
    }
}

/// The HTTP client only parses the extra CA when it is built and then says no more than "builder
/// error"; parsing it here says what is wrong with the file.
fn check_extra_ca(pem: &[u8]) -> Result<(), BuildError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::ExtraCa(format!("not a PEM certificate file: {e}")))?;
    if certificates.is_empty() {
        return Err(BuildError::ExtraCa("holds no PEM certificate".to_owned()));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (trusted, unusable) = roots.add_parsable_certificates(certificates);
    if unusable > 0 {
        return Err(BuildError::ExtraCa(format!(
            "{unusable} of {} certificates cannot be parsed",
            trusted + unusable
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_extra_ca_without_a_usable_certificate_is_named_by_its_setting() {
        let empty = check_extra_ca(b"# no certificate here\n").unwrap_err();
        assert_eq!(
            empty.to_string(),
            "upstream.extra_ca_file: holds no PEM certificate"
        );
        let garbage =
            b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        let unusable = check_extra_ca(garbage).unwrap_err();
        assert!(
            unusable
                .to_string()
                .starts_with("upstream.extra_ca_file: 1 of 1 certificates"),
            "{unusable}"
        );
        let real = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        assert_eq!(check_extra_ca(real.cert.pem().as_bytes()), Ok(()));
    }

    #[test]
    fn digest_over_tls_to_the_proxy_is_refused_before_anything_starts() {
        let proxy = ProxySettings {
            enabled: true,
            auth_scheme: ProxyAuthScheme::Digest,
            ssl_type: ProxySslType::Always,
            ..ProxySettings::default()
        };
        let refused = tunnelled(
            &proxy,
            "proxy:3128".to_owned(),
            "user".to_owned(),
            Redacted::new("pw"),
        )
        .err();
        assert_eq!(refused, Some(BuildError::DigestOverTls));
    }
}
