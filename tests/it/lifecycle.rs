//! Starting, stopping and crashing the real binary.

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use crate::common::Process;

async fn instance_id(base: &str) -> String {
    let body: Value = reqwest::get(format!("{base}/healthz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "ok", "{body}");
    body["store"]["instance_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn after_kill_9_a_restart_opens_the_store_and_serves_the_same_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = Process::serve(dir.path(), "");
    let id = instance_id(&first.base).await;
    first.signal("-KILL");
    first
        .wait_exit(Duration::from_secs(30))
        .expect("killed process exits");

    let second = Process::serve(dir.path(), "");
    assert_eq!(instance_id(&second.base).await, id);
    let home = reqwest::get(format!("{}/", second.base)).await.unwrap();
    assert_eq!(home.status(), 200);
}

#[tokio::test]
async fn sigterm_and_sigint_stop_cleanly_and_close_the_store() {
    for signal in ["-TERM", "-INT"] {
        let dir = tempfile::tempdir().unwrap();
        let mut server = Process::serve(dir.path(), "");
        let id = instance_id(&server.base).await;
        server.signal(signal);
        let status = server
            .wait_exit(Duration::from_secs(30))
            .expect("stops after the signal");
        assert!(
            status.success(),
            "{signal}: {status:?}\n{}",
            server.log.join("\n")
        );
        assert!(
            server.log.iter().any(|l| l.contains("store closed")),
            "{}",
            server.log.join("\n")
        );
        let again = Process::serve(dir.path(), "");
        assert_eq!(instance_id(&again.base).await, id);
    }
}

/// A client that never finishes its request cannot hold the shutdown past the grace period.
#[tokio::test]
async fn a_stalled_client_does_not_hold_shutdown_beyond_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Process::serve(&data, "[server]\nshutdown_grace_secs = 1\n");
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut stalled = std::net::TcpStream::connect(&addr).unwrap();
    stalled
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Half: ")
        .unwrap();
    server.signal("-TERM");
    let status = server
        .wait_exit(Duration::from_secs(30))
        .expect("the server stops although a client stalls");
    assert!(status.success(), "{}", server.log.join("\n"));
    drop(stalled);
}
