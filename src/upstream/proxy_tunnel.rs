//! A loopback tunnelling adapter in front of a proxy: every upstream connection becomes a CONNECT
//! tunnel through the real proxy, authenticated with Basic or Digest (RFC 7616, MD5, `qop=auth`).
//!
//! It serves two settings the HTTP client cannot: Digest authentication (the client can send proxy
//! credentials only up front; Digest needs the proxy's challenge first) and SSL type TUNNEL for a
//! plain-HTTP upstream (the client forwards plain HTTP instead of tunnelling it). The client talks
//! to the adapter on 127.0.0.1 as an unauthenticated proxy; the adapter sends CONNECT, answers a
//! 407 Digest challenge on a fresh connection when needed, then splices bytes both ways. A plain-HTTP request the
//! client forwards (absolute-form) goes through a tunnel to its origin as it is; HTTPS requests
//! arrive as CONNECT and are tunnelled the same way, so TLS stays end to end.

use std::net::SocketAddr;

use md5::{Digest as _, Md5};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::client::Redacted;

/// Longest request or response head the adapter reads.
const MAX_HEAD: usize = 64 * 1024;

/// How the adapter authenticates its CONNECT requests.
#[derive(Debug, Clone)]
pub enum TunnelAuth {
    None,
    Basic { user: String, password: Redacted },
    Digest { user: String, password: Redacted },
}

/// The proxy and the credentials to answer its challenges with.
#[derive(Debug, Clone)]
pub struct TunnelProxy {
    /// `host:port` of the real proxy.
    pub proxy: String,
    pub auth: TunnelAuth,
}

/// A running adapter; dropping it stops accepting new connections.
#[derive(Debug)]
pub struct TunnelAdapter {
    local_addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for TunnelAdapter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TunnelAdapter {
    /// Binds 127.0.0.1 on a free port and serves in the background. Needs a tokio runtime.
    pub fn start(target: TunnelProxy) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let local_addr = listener.local_addr()?;
        let listener = TcpListener::from_std(listener)?;
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let target = target.clone();
                tokio::spawn(async move {
                    if let Err(error) = serve(client, &target).await {
                        tracing::debug!(%error, "proxy tunnel adapter: connection ended");
                    }
                });
            }
        });
        Ok(Self { local_addr, task })
    }

    /// `http://127.0.0.1:PORT`, the proxy URL the HTTP client uses.
    pub fn url(&self) -> String {
        format!("http://{}", self.local_addr)
    }
}

/// Reads bytes up to the end of an HTTP head (`\r\n\r\n`); returns the head and any bytes after it.
async fn read_head<R: AsyncRead + Unpin>(stream: &mut R) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut buffer = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = buffer.split_off(end + 4);
            return Ok((buffer, rest));
        }
        if buffer.len() > MAX_HEAD {
            return Err(std::io::Error::other("HTTP head too large"));
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the head ended",
            ));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

/// The `host:port` a request is for: a CONNECT target, or the authority of an absolute-form URI.
pub fn request_target(head: &str) -> Option<(bool, String)> {
    let mut first = head.lines().next()?.split_whitespace();
    let method = first.next()?;
    let target = first.next()?;
    if method.eq_ignore_ascii_case("CONNECT") {
        return Some((true, target.to_owned()));
    }
    let (default_port, rest) = if let Some(rest) = target.strip_prefix("http://") {
        (80, rest)
    } else if let Some(rest) = target.strip_prefix("https://") {
        (443, rest)
    } else {
        return None;
    };
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty() {
        return None;
    }
    let has_port = authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !authority.ends_with(']'));
    Some((
        false,
        if has_port {
            authority.to_owned()
        } else {
            format!("{authority}:{default_port}")
        },
    ))
}

/// The status code of a response head.
fn status_of(head: &str) -> Option<u16> {
    head.lines().next()?.split_whitespace().nth(1)?.parse().ok()
}

/// The value of a header (case-insensitive name) in a head.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

/// Parses `Digest realm="r", nonce="n", qop="auth", ...` into key/value pairs.
pub fn parse_challenge(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value
        .trim()
        .strip_prefix("Digest")
        .or_else(|| value.trim().strip_prefix("digest"))?;
    let mut pairs = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String =
            std::iter::from_fn(|| chars.next_if(|c| *c != '=' && *c != ',')).collect();
        if key.trim().is_empty() {
            break;
        }
        if chars.next() != Some('=') {
            return None;
        }
        let value = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            value
        } else {
            std::iter::from_fn(|| chars.next_if(|c| *c != ','))
                .collect::<String>()
                .trim()
                .to_owned()
        };
        pairs.push((key.trim().to_ascii_lowercase(), value));
    }
    Some(pairs)
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `Proxy-Authorization` value answering a Digest challenge for `CONNECT uri`.
pub fn authorization(
    challenge: &[(String, String)],
    user: &str,
    password: &str,
    uri: &str,
    cnonce: &str,
) -> Result<String, String> {
    let get = |key: &str| {
        challenge
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    };
    let realm = get("realm").unwrap_or_default();
    let nonce = get("nonce").ok_or("the Digest challenge has no nonce")?;
    let algorithm = get("algorithm").unwrap_or("MD5");
    if !algorithm.eq_ignore_ascii_case("MD5") {
        return Err(format!(
            "the proxy asks for Digest algorithm {algorithm}; only MD5 is supported"
        ));
    }
    let ha1 = md5_hex(&format!("{user}:{realm}:{password}"));
    let ha2 = md5_hex(&format!("CONNECT:{uri}"));
    let qop_auth = get("qop").is_some_and(|q| q.split(',').any(|v| v.trim() == "auth"));
    let nc = "00000001";
    let mut value = format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", algorithm=MD5"
    );
    if qop_auth {
        let response = md5_hex(&format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"));
        value.push_str(&format!(
            ", response=\"{response}\", qop=auth, nc={nc}, cnonce=\"{cnonce}\""
        ));
    } else {
        let response = md5_hex(&format!("{ha1}:{nonce}:{ha2}"));
        value.push_str(&format!(", response=\"{response}\""));
    }
    if let Some(opaque) = get("opaque") {
        value.push_str(&format!(", opaque=\"{opaque}\""));
    }
    Ok(value)
}

/// Why a tunnel could not be opened.
enum TunnelError {
    /// The proxy refused the credentials (or gave no usable challenge): answer the client 407.
    Refused(String),
    Io(std::io::Error),
}

impl From<std::io::Error> for TunnelError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

async fn send_connect(
    proxy: &str,
    target: &str,
    authorization: Option<&str>,
) -> Result<(TcpStream, String, Vec<u8>), TunnelError> {
    let mut stream = TcpStream::connect(proxy).await?;
    stream.set_nodelay(true)?;
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(value) = authorization {
        request.push_str(&format!("Proxy-Authorization: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    let (head, rest) = read_head(&mut stream).await?;
    Ok((stream, String::from_utf8_lossy(&head).into_owned(), rest))
}

/// Opens a tunnel to `target` through the proxy, answering a Digest challenge when configured.
async fn tunnel(proxy: &TunnelProxy, target: &str) -> Result<(TcpStream, Vec<u8>), TunnelError> {
    use base64::Engine as _;
    let basic = match &proxy.auth {
        TunnelAuth::Basic { user, password } => Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{user}:{}", password.expose()))
        )),
        _ => None,
    };
    let (stream, head, rest) = send_connect(&proxy.proxy, target, basic.as_deref()).await?;
    let (stream, head, rest) = match (status_of(&head), &proxy.auth) {
        (Some(200), _) => return Ok((stream, rest)),
        (Some(407), TunnelAuth::Digest { user, password }) => {
            let challenge = header(&head, "Proxy-Authenticate")
                .and_then(parse_challenge)
                .ok_or_else(|| {
                    TunnelError::Refused(
                        "the proxy answered 407 without a Digest challenge".to_owned(),
                    )
                })?;
            let cnonce = uuid::Uuid::new_v4().simple().to_string();
            let value = authorization(&challenge, user, password.expose(), target, &cnonce)
                .map_err(TunnelError::Refused)?;
            drop(stream);
            send_connect(&proxy.proxy, target, Some(&value)).await?
        }
        (Some(407) | Some(401), _) => {
            return Err(TunnelError::Refused(
                "the proxy rejected the credentials".to_owned(),
            ));
        }
        (other, _) => {
            return Err(TunnelError::Refused(format!(
                "the proxy answered CONNECT with {other:?}"
            )));
        }
    };
    match status_of(&head) {
        Some(200) => Ok((stream, rest)),
        Some(407) => Err(TunnelError::Refused(
            "the proxy rejected the Digest credentials".to_owned(),
        )),
        other => Err(TunnelError::Refused(format!(
            "the proxy answered CONNECT with {other:?}"
        ))),
    }
}

async fn serve(mut client: TcpStream, proxy: &TunnelProxy) -> std::io::Result<()> {
    client.set_nodelay(true)?;
    let (head, early) = read_head(&mut client).await?;
    let text = String::from_utf8_lossy(&head).into_owned();
    let Some((is_connect, target)) = request_target(&text) else {
        client
            .write_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await?;
        return Ok(());
    };
    let (mut upstream, upstream_early) = match tunnel(proxy, &target).await {
        Ok(opened) => opened,
        Err(TunnelError::Refused(reason)) => {
            tracing::warn!(proxy = %proxy.proxy, %reason, "the proxy refused the tunnel");
            client
                .write_all(b"HTTP/1.1 407 Proxy Authentication Required\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await?;
            return Ok(());
        }
        Err(TunnelError::Io(error)) => {
            client
                .write_all(
                    b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                )
                .await?;
            return Err(error);
        }
    };
    if is_connect {
        client
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await?;
    } else {
        // Origin servers accept absolute-form request targets (RFC 9112 §3.2.2), so the head goes as it is.
        upstream.write_all(&head).await?;
    }
    if !early.is_empty() {
        upstream.write_all(&early).await?;
    }
    if !upstream_early.is_empty() {
        client.write_all(&upstream_early).await?;
    }
    tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_target_of_connect_and_absolute_form_requests() {
        assert_eq!(
            request_target("CONNECT api.stripe.com:443 HTTP/1.1\r\n"),
            Some((true, "api.stripe.com:443".to_owned()))
        );
        assert_eq!(
            request_target("GET http://127.0.0.1:8080/v1/customers?limit=1 HTTP/1.1\r\n"),
            Some((false, "127.0.0.1:8080".to_owned()))
        );
        assert_eq!(
            request_target("GET http://example.com/x HTTP/1.1\r\n"),
            Some((false, "example.com:80".to_owned()))
        );
        assert_eq!(request_target("GET /relative HTTP/1.1\r\n"), None);
    }

    #[test]
    fn parses_a_digest_challenge_with_quoted_commas() {
        let pairs = parse_challenge(
            r#"Digest realm="a, b", nonce="xyz", qop="auth,auth-int", stale=false"#,
        )
        .unwrap();
        assert_eq!(pairs[0], ("realm".to_owned(), "a, b".to_owned()));
        assert_eq!(pairs[1], ("nonce".to_owned(), "xyz".to_owned()));
        assert_eq!(pairs[3], ("stale".to_owned(), "false".to_owned()));
    }

    #[test]
    fn computes_the_rfc_2617_example_response() {
        // RFC 2617 §3.5, with the method and URI of its example.
        let ha1 = md5_hex("Mufasa:testrealm@host.com:Circle Of Life");
        let ha2 = md5_hex("GET:/dir/index.html");
        let response = md5_hex(&format!(
            "{ha1}:dcd98b7102dd2f0e8b11d0f600bfb0c093:00000001:0a4f113b:auth:{ha2}"
        ));
        assert_eq!(response, "6629fae49393a05397450978507c4ef1");
    }

    #[test]
    fn answers_a_challenge_and_refuses_unknown_algorithms() {
        let challenge =
            parse_challenge(r#"Digest realm="r", nonce="n", qop="auth", opaque="o""#).unwrap();
        let value = authorization(&challenge, "alice", "pw", "h:443", "c").unwrap();
        let expected = md5_hex(&format!(
            "{}:n:00000001:c:auth:{}",
            md5_hex("alice:r:pw"),
            md5_hex("CONNECT:h:443")
        ));
        assert!(
            value.contains(&format!("response=\"{expected}\"")),
            "{value}"
        );
        assert!(value.contains("opaque=\"o\"") && value.contains("qop=auth"));
        let sha = parse_challenge(r#"Digest realm="r", nonce="n", algorithm=SHA-256"#).unwrap();
        assert!(authorization(&sha, "alice", "pw", "h:443", "c").is_err());
    }
}
