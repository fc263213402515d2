//! Helper processes for tests and benches (the release binary, a proxy, Redis, an emulator):
//! a free loopback port to give one, a guard that kills it when dropped, and a bounded wait for
//! it to accept connections. Benches include this file by path.

use std::process::Child;
use std::time::Duration;

/// A helper process that is killed (and reaped) when the guard is dropped.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port free at the time of the call, for a process that binds it itself.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("binding a loopback port")
        .local_addr()
        .expect("the bound port")
        .port()
}

/// Waits (about 10 s at most) until a process accepts connections on a loopback port.
pub async fn wait_for_port(port: u16) -> bool {
    wait_for_port_within(port, Duration::from_secs(10)).await
}

/// Waits at most `bound` until a process accepts connections on a loopback port (a debug build
/// starting on a busy machine may want longer than a helper).
pub async fn wait_for_port_within(port: u16, bound: Duration) -> bool {
    let until = std::time::Instant::now() + bound;
    while std::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
