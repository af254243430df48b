//! The `tether` binary as an operator: `tether sim` and `tether run` as processes against the real
//! control plane, every example of examples/ applied with kubectl, `kubectl wait` and `kubectl get tether`
//! as an admin uses them, and a `kill -9` of the operator while it creates, with the answers of the first
//! Civis and Apolo creates lost on the way: after a restart, each example has exactly one remote object.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testenv::{TestNamespace, control_plane, repo_root};

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tether(args: &[&str], log: &Path) -> Process {
    let log = std::fs::File::create(log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_tether"))
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .env("RUST_LOG", "info,tether_controller=debug")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tether starts");
    Process(child)
}

fn kubectl(args: &[&str]) -> Output {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .output()
        .expect("kubectl is on PATH");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn sim_json(origin: &str, path: &str) -> Value {
    reqwest::get(format!("{origin}{path}")).await.unwrap().json().await.unwrap()
}

/// scheme://host:port of a simulator URL.
fn origin(url: &str) -> String {
    let parsed: reqwest::Url = url.parse().unwrap();
    parsed.origin().ascii_serialization()
}

const EXAMPLES: [&str; 5] = [
    "appservice/team-notebook",
    "civisservice/sales-dashboard",
    "apoloapp/feature-store-db",
    "ubiservice/scoring-api",
    "peakwebapp/forecast-explorer",
];

#[tokio::test]
async fn every_example_becomes_ready_once_even_across_a_kill_9() {
    let ns = TestNamespace::new("operator").await;
    let dir: PathBuf = std::env::temp_dir().join(format!("tether-{}", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let (endpoints, connections) = (dir.join("endpoints.json"), dir.join("connections.yaml"));

    let _sim = tether(
        &[
            "sim",
            "--delay-ms",
            "300",
            "--endpoints-file",
            endpoints.to_str().unwrap(),
            "--connections-file",
            connections.to_str().unwrap(),
        ],
        &dir.join("sim.log"),
    );
    wait_for_file(&endpoints);
    let sims: Value = serde_json::from_str(&std::fs::read_to_string(&endpoints).unwrap()).unwrap();
    let civis = origin(sims["civis"]["url"].as_str().unwrap());
    let apolo = origin(sims["apolo"]["url"].as_str().unwrap());

    // The first create of each marker-found kind is carried out, but its answer is lost.
    let http = reqwest::Client::new();
    for (origin, route) in
        [(&civis, "/services"), (&apolo, "/apis/apps/v1/cluster/{cluster}/org/{org}/project/{project}/instances")]
    {
        let fault = json!({"method": "POST", "route": route, "malformedBody": true, "times": 1});
        let answer = http.post(format!("{origin}/_sim/faults")).json(&fault).send().await.unwrap();
        assert!(answer.status().is_success(), "{route}: {}", answer.text().await.unwrap());
    }

    let examples = repo_root().join("examples");
    kubectl(&["apply", "-n", &ns.name, "-f", examples.to_str().unwrap()]);
    kubectl(&["apply", "-n", &ns.name, "-f", connections.to_str().unwrap()]);

    let run = ["run", "--namespace", ns.name.as_str(), "--poll-interval-seconds", "5"];
    let first = tether(&run, &dir.join("operator-1.log"));
    // Let it get into its creates, then kill it without a chance to clean up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(first);
    let _second = tether(&run, &dir.join("operator-2.log"));

    let mut wait = vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=120s"];
    wait.extend(EXAMPLES);
    kubectl(&wait);

    // Exactly one remote object per example, whatever the kill and the lost answers did.
    let services = sim_json(&civis, "/_sim/state").await["services"].as_array().cloned().unwrap();
    assert_eq!(services.len(), 1, "Civis services: {services:?}");
    let apps = sim_json(&apolo, "/_sim/state").await["apps"].as_array().cloned().unwrap();
    assert_eq!(apps.len(), 1, "Apolo apps: {apps:?}");

    // `kubectl get tether` shows every kind with its columns filled.
    let out = kubectl(&["get", "tether", "-n", &ns.name, "--no-headers"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|row| !row[0].contains("connection.tether.dev/"))
        .collect();
    assert_eq!(rows.len(), 5, "{table}");
    for row in &rows {
        // NAME READY SYNCED STATE EXTERNAL-ID AGE
        assert_eq!(row.len(), 6, "a column is empty: {table}");
        assert_eq!((row[1], row[2]), ("True", "True"), "{table}");
    }
    // The lost answers did happen: the first operator, or the second, saw them.
    let logs = ["operator-1.log", "operator-2.log"].map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default());
    let lost = logs.iter().map(|l| l.matches("undecodable response").count()).sum::<usize>();
    assert!(lost >= 2, "expected the two lost create answers in the logs, saw {lost}");
    let _ = std::fs::remove_dir_all(&dir);
}
