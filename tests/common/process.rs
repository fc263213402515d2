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

/// Waits (bounded, about 10 s) until a process accepts connections on a loopback port.
pub async fn wait_for_port(port: u16) -> bool {
    for _ in 0..200 {
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
