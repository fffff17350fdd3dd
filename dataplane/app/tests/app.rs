//! `weir-app` against a real `nats-server` (started by the test on a free loopback port),
//! spoken to with the message contract (`weir_model::appmsg`) by a NATS client here:
//!
//! - two instances in one queue group share the requests (each answers some, none twice);
//!   replies decode, with status 200, the instance's `X-Weir-App` and the body;
//! - `--mode echo` returns a POST body; `/bytes/N` returns N bytes;
//! - a request in another message version is not answered (the terminator's timeout
//!   answers for it);
//! - `--http` answers the same over plain HTTP (curl);
//! - `scripts/app-server.py` (Python, nats-py), written from the contract alone, decodes
//!   the same requests and its replies decode here: the format is language-neutral.

mod support;

use std::process::Command;
use std::time::Duration;

use support::*;
use weir_model::appmsg::{encode_request, AppReply};

fn request(method: &str, target: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let headers = [("Host", &b"x"[..])];
    encode_request(
        &mut out,
        method,
        target,
        1,
        std::net::Ipv6Addr::LOCALHOST.octets(),
        4000,
        headers.iter().copied(),
        body,
    );
    out
}

fn header<'a>(r: &AppReply<'a>, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| *v)
}

#[test]
fn instances_share_a_queue_group_and_answer_the_contract() {
    if skip_unless(have("nats-server"), "needs nats-server") {
        return;
    }
    let nats = NatsServer::start();
    let url = nats.url();
    let mut a1 = App::start(&url, "a1", &["--subject", "t.http"]);
    let mut a2 = App::start(&url, "a2", &["--subject", "t.http"]);
    let mut echo = App::start(
        &url,
        "e1",
        &["--subject", "t.echo", "--mode", "echo", "--queue", "echoes"],
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (by_name, echoed, bytes, refused) = rt.block_on(async {
        let c = async_nats::connect(url.as_str()).await.unwrap();
        let mut by_name = std::collections::BTreeMap::<String, u32>::new();
        for i in 0..200 {
            let m = c
                .request("t.http", request("GET", &format!("/{i}"), b"").into())
                .await
                .unwrap();
            let r = AppReply::decode(&m.payload).unwrap();
            assert_eq!(r.status, 200);
            assert_eq!(r.body.0, b"hello from weir-app\n");
            *by_name
                .entry(header(&r, "X-Weir-App").unwrap().to_string())
                .or_default() += 1;
        }
        let m = c
            .request("t.echo", request("POST", "/e", b"ping\x00\xff").into())
            .await
            .unwrap();
        let echoed = AppReply::decode(&m.payload).unwrap().body.0.to_vec();
        let m = c
            .request("t.echo", request("GET", "/bytes/3000", b"").into())
            .await
            .unwrap();
        let bytes = AppReply::decode(&m.payload).unwrap().body.0.len();
        // Version 2 is not guessed at: no reply within a second.
        let mut v2 = request("GET", "/", b"");
        v2[0] = 2;
        let refused = tokio::time::timeout(Duration::from_secs(1), c.request("t.echo", v2.into()))
            .await
            .map_or(true, |r| r.is_err());
        (by_name, echoed, bytes, refused)
    });
    println!("answers per instance: {by_name:?}");
    assert_eq!(by_name.values().sum::<u32>(), 200);
    assert!(
        by_name.get("a1").is_some_and(|&n| n > 0) && by_name.get("a2").is_some_and(|&n| n > 0),
        "both instances answered: {by_name:?}"
    );
    assert_eq!(echoed, b"ping\x00\xff");
    assert_eq!(bytes, 3000);
    assert!(refused, "a version-2 request is not answered");
    let (n1, n2) = (a1.stop(), a2.stop());
    assert_eq!(
        (n1, n2),
        (u64::from(by_name["a1"]), u64::from(by_name["a2"])),
        "each instance counts what it answered"
    );
    assert_eq!(echo.stop(), 2);
}

#[test]
fn http_mode_answers_the_same() {
    if skip_unless(have("curl"), "needs curl") {
        return;
    }
    // A port free a moment ago can be taken by a parallel test's server before weir-app
    // binds it: another port is tried then (weir-app's stderr says why it stopped).
    let mut tries = Vec::new();
    let (port, mut app) = loop {
        let port = free_port();
        match App::try_start(
            "nats://127.0.0.1:1",
            "h1",
            &["--http", &format!("127.0.0.1:{port}")],
        ) {
            Ok(app) => break (port, app),
            Err(e) if tries.len() < 2 => tries.push(e),
            Err(e) => panic!("{e} (earlier tries: {tries:?})"),
        }
    };
    let out = Command::new("curl")
        .args(["-sS", "-i", &format!("http://127.0.0.1:{port}/x")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("X-Weir-App: h1"), "{text}");
    assert!(text.ends_with("hello from weir-app\n"), "{text}");
    let out = Command::new("curl")
        .args(["-sS", &format!("http://127.0.0.1:{port}/bytes/70000")])
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 70_000);
    assert_eq!(app.stop(), 2);
}

#[test]
fn the_python_app_server_speaks_the_contract() {
    let py = Command::new("python3")
        .args(["-c", "import nats"])
        .output()
        .is_ok_and(|o| o.status.success());
    if skip_unless(
        have("nats-server") && py,
        "needs nats-server and python3 with nats-py (pip install nats-py)",
    ) {
        return;
    }
    let nats = NatsServer::start();
    let url = nats.url();
    let script = format!("{}/../../scripts/app-server.py", env!("CARGO_MANIFEST_DIR"));
    let mut child = std::process::Command::new("python3")
        .args([script.as_str(), &url, "t.py", "py", "p1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 runs");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut out, &mut line).unwrap();
    let guard = KillOnDrop(child);
    assert_eq!(line.trim(), "ready");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let c = async_nats::connect(url.as_str()).await.unwrap();
        let m = c
            .request("t.py", request("GET", "/from/rust?x=1", b"").into())
            .await
            .unwrap();
        let r = AppReply::decode(&m.payload).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.0, b"hello from python: GET /from/rust?x=1\n");
        assert_eq!(header(&r, "X-Weir-App"), Some("p1"));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let m = c
            .request("t.py", request("POST", "/", &big).into())
            .await
            .unwrap();
        assert_eq!(AppReply::decode(&m.payload).unwrap().body.0, &big[..]);
    });
    terminate(guard.0.id());
}

/// Kills the child by PID when dropped (also when an assertion fails).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
