//! DIGEST proxy authentication through a real Squid on loopback (Debian's squid with its
//! `digest_file_auth` helper): the right password passes, every call goes through a CONNECT tunnel
//! the proxy authenticated, and a wrong password is a clear PROXY_AUTHENTICATION_FAILED.
//! CI installs squid; elsewhere the test is skipped with a note unless `CI` is set.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use connector_runtime::api::pb;
use tonic::Code;

const PROXY_PASSWORD: &str = "digest-pass-SECRET-0123";

fn digest_connection(id: &str, password_secret: &str, port: u16, sandbox: &str) -> pb::Connection {
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
            auth_scheme: pb::proxy_config::AuthScheme::Digest as i32,
            user: "alice".to_owned(),
            password: Some(pb::SecretRef {
                secret: password_secret.to_owned(),
                version: "1".to_owned(),
            }),
            ssl_type: pb::proxy_config::SslType::Tunnel as i32,
            server_host: "127.0.0.1".to_owned(),
            server_port: i32::from(port),
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn calls_pass_through_a_digest_authenticating_squid() {
    let squid = ["/usr/sbin/squid", "/usr/bin/squid"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let helper = "/usr/lib/squid/digest_file_auth";
    let (Some(squid), true) = (squid, std::path::Path::new(helper).exists()) else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install squid (see .ci/run)"
        );
        println!("skipped: squid is not installed (apt-get install squid)");
        return;
    };
    let home = Box::leak(Box::new(Home::new()));
    // Squid drops to its own user: its files must be reachable by it.
    let dir = home.dir.path().join("squid");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(home.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let passwd = dir.join("passwd");
    std::fs::write(&passwd, format!("alice:{PROXY_PASSWORD}\n")).unwrap();
    std::fs::set_permissions(&passwd, std::fs::Permissions::from_mode(0o644)).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let access_log = dir.join("access.log");
    let conf = dir.join("squid.conf");
    std::fs::write(
        &conf,
        format!(
            "http_port 127.0.0.1:{port}\npid_filename {d}/squid.pid\naccess_log stdio:{log}\ncache_log {d}/cache.log\n\
             cache deny all\ncoredump_dir {d}\nshutdown_lifetime 0 seconds\n\
             auth_param digest program {helper} {passwd}\nauth_param digest realm connector-test\nauth_param digest children 2\n\
             acl authed proxy_auth REQUIRED\nhttp_access allow authed\nhttp_access deny all\n",
            d = dir.display(),
            log = access_log.display(),
            passwd = passwd.display(),
        ),
    )
    .unwrap();
    let _squid = ChildGuard(
        Command::new(squid)
            .args(["-N", "-f"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(wait_for_port(port).await, "squid did not start");

    home.put_secret("stripe-key", "1", "sk_test_digest_0123456789");
    home.put_secret("proxy-pass", "1", PROXY_PASSWORD);
    home.put_secret("wrong-pass", "1", "not-the-password");
    let mut settings = home.settings(false);
    settings.sandbox.enabled = connector_runtime::config::SandboxMode::Always;
    let service = start(settings).await;
    let sandbox = service.sandbox_url();
    for connection in [
        digest_connection("digest", "proxy-pass", port, &sandbox),
        digest_connection("digest-bad", "wrong-pass", port, &sandbox),
    ] {
        service.add_connection(connection).await;
    }

    let (name, _) = service
        .create(
            "digest",
            "Customer",
            serde_json::json!({"Email": "digest@proxy.example"}),
        )
        .await
        .unwrap();
    let id = name.rsplit('/').next().unwrap().to_owned();
    assert_eq!(
        service.get("digest", "Customer", &id).await.unwrap()["Email"],
        serde_json::json!("digest@proxy.example")
    );
    // Squid writes its access log as tunnels close; wait (bounded) for the authenticated CONNECT.
    let sandbox_authority = sandbox.trim_start_matches("http://").to_owned();
    let mut logged = String::new();
    for _ in 0..100 {
        logged = std::fs::read_to_string(&access_log).unwrap_or_default();
        if logged.contains(&format!("CONNECT {sandbox_authority} alice")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Close the service's tunnels so Squid logs them, then look again if needed.
    let refused = service
        .get("digest-bad", "Customer", &id)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
    assert_eq!(reason(&refused), "PROXY_AUTHENTICATION_FAILED");
    service.shutdown().await;
    for _ in 0..100 {
        if logged.contains(&format!("CONNECT {sandbox_authority} alice")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        logged = std::fs::read_to_string(&access_log).unwrap_or_default();
    }
    assert!(
        logged.contains(&format!("CONNECT {sandbox_authority} alice")),
        "no authenticated tunnel in squid's log:\n{logged}"
    );
    assert!(
        !logs_text().contains(PROXY_PASSWORD),
        "the proxy password leaked into the logs"
    );
}
