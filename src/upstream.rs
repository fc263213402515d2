//! The way to the upstream: one pooled HTTP client per connection with deadlines and retries
//! (`client`), the retry decision kept apart from the mechanism (`retry`), what carries the bytes
//! (`transport`: direct, or through a proxy), and the loopback adapter that tunnels through
//! Digest-authenticating proxies (`proxy_tunnel`).
//!
//! Nothing here knows a vendor: what a particular API expects (auth headers, error bodies, retry
//! hints) comes from the connector's dialect.

pub mod client;
pub mod dialect;
pub mod error;
pub mod form;
pub mod proxy_tunnel;
pub mod retry;
pub mod transport;
