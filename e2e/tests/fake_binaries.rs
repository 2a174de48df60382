//! The fake-zai and zai-workers binaries as separate processes.
#![allow(clippy::unwrap_used, reason = "test helpers fail the test on purpose")]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn fake_zai_prints_its_port_first_and_workers_report_json() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-zai"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--api-key",
            "bin-key",
            "--error-rate",
            "1",
            "--error-status",
            "503",
        ])
        .args(["--routes", "/api/paas"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let fake = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    let port: u16 = first.trim().parse().expect("first stdout line is the port");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let faults: Value = client
        .get(format!("{base}/__fake/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["error_status"], 503);

    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_zai-workers"))
            .args([
                "--base-url",
                &format!("{base}/api/anthropic"),
                "--api-key",
                "bin-key",
            ])
            .args([
                "--requests",
                "20",
                "--concurrency",
                "4",
                "--openai-fraction",
                "0.5",
                "--seed",
                "9",
                "--json",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let report: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(report["sent"], 20);
    assert_eq!(report["seed"], 9, "the report names the workers' seed");
    assert!(stdout.contains("seed 9"), "{stdout}");
    let ok = report["ok"].as_u64().unwrap();
    let http_503 = report["outcomes"]["http_503"].as_u64().unwrap_or(0);
    assert_eq!(ok + http_503, 20, "{report}");
    assert!(
        http_503 > 0 && ok > 0,
        "OpenAI requests hit the faulted route, Anthropic ones do not: {report}"
    );
    assert_eq!(report["failed"], http_503);
    assert_eq!(report["lost"], 0);
    for key in ["p50", "p95", "p99"] {
        assert!(report["latency_ms"][key].as_f64().unwrap() > 0.0);
        assert!(report["ttfb_ms"][key].as_f64().unwrap() > 0.0);
    }
    let stats: Value = client
        .get(format!("http://127.0.0.1:{port}/__fake/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        stats["routes"]["openai_chat"]["status_503"].as_u64(),
        Some(http_503)
    );
    assert_eq!(
        stats["seed"], 42,
        "the fake's default seed is shown: {stats}"
    );
    drop(fake);
}

#[test]
fn bad_flags_are_refused_with_a_message() {
    let output = Command::new(env!("CARGO_BIN_EXE_fake-zai"))
        .args(["--listen", "127.0.0.1:0", "--error-rate", "3"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("error_rate"));
    let output = Command::new(env!("CARGO_BIN_EXE_fake-zai"))
        .args(["--listen", "10.1.2.3:0"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("loopback"));
    let output = Command::new(env!("CARGO_BIN_EXE_zai-workers"))
        .args(["--base-url", "https://example.invalid", "--requests", "1"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("http://"));
    for (binary, args) in [
        (env!("CARGO_BIN_EXE_fake-zai"), &["--listen", "127.0.0.1:0"]),
        (
            env!("CARGO_BIN_EXE_zai-workers"),
            &["--base-url", "http://127.0.0.1:9"],
        ),
    ] {
        for bad in ["-1", "x", "18446744073709551616"] {
            let output = Command::new(binary)
                .args(args)
                .arg(format!("--seed={bad}"))
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{binary} --seed {bad}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("seed must be a whole number"), "{stderr}");
        }
    }
}

/// What the kind rehearsal runs in its pods: fake-zai on a non-loopback address (only with
/// `--pod-network`), and zai-workers with the driver's configuration as JSON and a status
/// endpoint that reports live, stops on request and keeps the final report until SIGTERM.
#[tokio::test]
async fn in_pod_modes_fake_on_the_pod_network_and_workers_with_status_endpoint() {
    let port = zai_e2e::platform::ports::free_port().unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_fake-zai"))
        .args(["--listen", &format!("0.0.0.0:{port}")])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not a loopback address"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-zai"))
        .args(["--listen", &format!("0.0.0.0:{port}"), "--pod-network"])
        .args(["--api-key", "pod-key", "--faults", r#"{"latency_ms": 5}"#])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _fake = Killed(child);
    let mut first = String::new();
    BufReader::new(stdout).read_line(&mut first).unwrap();
    assert_eq!(first.trim(), port.to_string());
    let base = format!("http://127.0.0.1:{port}");

    let mut config =
        zai_e2e::workers::WorkersConfig::new(&format!("{base}/api/anthropic"), "pod-key", 2)
            .unwrap();
    config.targets[0].label = "split".to_owned();
    config.requests = Some(12);
    config.seed = 5;
    let status_port = zai_e2e::platform::ports::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_zai-workers"))
        .args(["--config-json", &serde_json::to_string(&config).unwrap()])
        .args(["--status-listen", &format!("127.0.0.1:{status_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut workers = Killed(child);
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://127.0.0.1:{status_port}/report");
    let mut finished = None;
    for _ in 0..200 {
        if let Ok(answer) = client.get(&url).send().await
            && let Ok(status) = answer.json::<Value>().await
            && status["finished"] == true
        {
            finished = Some(status);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let status = finished.expect("the workers finished and kept answering");
    assert_eq!(status["report"]["sent"], 12, "{status}");
    assert_eq!(status["report"]["ok"], 12, "{status}");
    assert_eq!(status["report"]["seed"], 5);
    assert_eq!(status["report"]["targets"]["split"]["ok"], 12);
    // Still up after the run, until SIGTERM.
    assert!(workers.0.try_wait().unwrap().is_none());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(workers.0.id()).unwrap()),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let exit = tokio::task::spawn_blocking(move || workers.0.wait().unwrap())
        .await
        .unwrap();
    assert!(exit.success(), "{exit}");

    // Open loop until stopped: POST /stop ends it.
    config.requests = None;
    config.mode = zai_e2e::workers::LoadMode::Open {
        rate: 20.0,
        max_in_flight: 4,
    };
    let status_port = zai_e2e::platform::ports::free_port().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_zai-workers"))
        .args(["--config-json", &serde_json::to_string(&config).unwrap()])
        .args(["--status-listen", &format!("127.0.0.1:{status_port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _workers = Killed(child);
    let base = format!("http://127.0.0.1:{status_port}");
    let mut running = false;
    for _ in 0..100 {
        if let Ok(answer) = client.get(format!("{base}/report")).send().await
            && let Ok(status) = answer.json::<Value>().await
            && status["finished"] == false
            && status["report"]["sent"].as_u64().unwrap_or(0) > 0
        {
            running = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(running, "the workers never reported a live count");
    client.post(format!("{base}/stop")).send().await.unwrap();
    let mut stopped = false;
    for _ in 0..100 {
        let status: Value = client
            .get(format!("{base}/report"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if status["finished"] == true {
            stopped = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(stopped, "POST /stop did not end the run");
}
