//! The server's accepted connections, set up for many small gRPC replies.
//!
//! h2 writes a DATA frame of 256 bytes or more as its own I/O vector when the socket says it
//! writes vectors, and accepts no further frame until that one is on the wire. A unary reply
//! (HEADERS, one DATA frame of a few hundred bytes, trailing HEADERS) then takes two `writev`
//! calls, and replies to concurrent calls cannot share one. A socket that declares no vectored
//! writes moves that threshold to 1 KiB: smaller payloads are copied into h2's 16 KiB write
//! buffer, so one reply, or many, leave in one write. Larger payloads are still sent without a
//! copy.
//!
//! With `server.tls`, h2 writes to tonic's TLS stream, which offers vectored writes itself, so
//! there h2 still flushes a reply in two parts.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// An accepted TCP connection with Nagle's algorithm off (small frames must not wait for delayed
/// ACKs, about 40 ms) that offers h2 plain writes only (see the module documentation).
#[derive(Debug)]
pub struct ServerSocket(TcpStream);

impl ServerSocket {
    pub fn new(stream: TcpStream) -> Self {
        let _ = stream.set_nodelay(true);
        Self(stream)
    }
}

impl AsyncRead for ServerSocket {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for ServerSocket {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        false
    }
}

impl Connected for ServerSocket {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.0.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn passes_bytes_both_ways_and_keeps_the_peer_address() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let mut socket = ServerSocket::new(accepted);

        assert!(!socket.is_write_vectored());
        assert!(socket.0.nodelay().unwrap());
        assert_eq!(
            socket.connect_info().remote_addr(),
            Some(client.local_addr().unwrap())
        );

        client.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        socket.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        socket.write_all(b"pong").await.unwrap();
        socket.flush().await.unwrap();
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }
}
