//! Helpers of the tests that run the `tether` binary: processes that die with the test, kubectl against
//! the test control plane, free ports, Prometheus text.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use tether_testenv::control_plane;

/// The resource of every example in examples/, as `kind/name`.
pub const EXAMPLES: [&str; 5] = [
    "appservice/team-notebook",
    "civisservice/sales-dashboard",
    "apoloapp/feature-store-db",
    "ubiservice/scoring-api",
    "peakwebapp/forecast-explorer",
];

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing behind.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn tether(args: &[&str], log: &Path) -> Process {
    tether_logging(args, log, DEFAULT_LOG)
}

/// What the operator logs in tests unless a test asks for more.
pub const DEFAULT_LOG: &str = "info,tether_controller=debug";

/// `tether` with its own `RUST_LOG` filter.
pub fn tether_logging(args: &[&str], log: &Path, filter: &str) -> Process {
    let log = std::fs::File::create(log).expect("log file");
    // `TETHER_BIN` runs another build of the operator (one with frame pointers, to profile it).
    let binary = std::env::var_os("TETHER_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_tether").into());
    let child = Command::new(binary)
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .env("RUST_LOG", filter)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("tether starts");
    Process(child)
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `tether run` on `namespace` with its metrics and probes on free loopback ports.
pub struct Operator {
    pub process: Process,
    pub metrics: String,
    pub probes: String,
    pub log: PathBuf,
}

pub fn operator(namespace: &str, extra: &[&str], log: PathBuf) -> Operator {
    operator_logging(namespace, extra, log, DEFAULT_LOG)
}

/// `operator` with its own `RUST_LOG` filter.
pub fn operator_logging(namespace: &str, extra: &[&str], log: PathBuf, filter: &str) -> Operator {
    let (metrics, probes) = (format!("127.0.0.1:{}", free_port()), format!("127.0.0.1:{}", free_port()));
    let mut args = vec!["run", "--namespace", namespace, "--poll-interval-seconds", "5"];
    args.extend(["--metrics-addr", &metrics, "--probe-addr", &probes]);
    args.extend(extra);
    let process = tether_logging(&args, &log, filter);
    Operator { process, metrics: format!("http://{metrics}/metrics"), probes: format!("http://{probes}"), log }
}

/// The value of every sample of `name` (any labels) in a Prometheus text page, summed; `None` if absent.
pub fn sample_sum(page: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with(name) && (l[name.len()..].starts_with('{') || l[name.len()..].starts_with(' ')))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// kubectl against the test control plane; panics with its output when it fails.
pub fn kubectl(args: &[&str]) -> Output {
    let out = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .output()
        .expect("kubectl is on PATH");
    succeeded(args, out)
}

fn succeeded(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !path.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// kubectl with `input` on its standard input; panics with its output when it fails.
pub fn kubectl_with_input(args: &[&str], input: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl is on PATH");
    child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write to kubectl");
    succeeded(args, child.wait_with_output().expect("kubectl ran"))
}

/// The helm binary: $TETHER_HELM (make sets it), else built once by tools/helm/build.sh.
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("TETHER_HELM") {
        return PathBuf::from(path);
    }
    let script = tether_testenv::repo_root().join("tools/helm/build.sh");
    let out = Command::new(&script).stderr(Stdio::inherit()).output().expect("tools/helm/build.sh runs");
    assert!(out.status.success(), "tools/helm/build.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).expect("a path").trim())
}

/// Runs helm; returns its standard output, panicking with its error output when it fails.
pub fn run_helm(args: &[&str]) -> String {
    let out = Command::new(helm()).args(args).output().expect("helm runs");
    assert!(
        out.status.success(),
        "helm {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// `tether sim` running for one test, with its scratch directory: the endpoints file, the connections
/// manifest (Secrets and Connections named as examples/ names them) and the logs.
pub struct Sims {
    /// The scratch directory (removed when the test passes).
    pub dir: PathBuf,
    /// The endpoints file, parsed.
    pub endpoints: serde_json::Value,
    /// The connections manifest.
    pub connections: PathBuf,
    _process: Process,
}

impl Sims {
    /// Starts the simulators of `platforms` (`all` or a list) with asynchronous transitions of `delay_ms`.
    pub fn start(name: &str, platforms: &str, delay_ms: u32) -> Self {
        let dir = std::env::temp_dir().join(format!("tether-{name}"));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        let (endpoints, connections) = (dir.join("endpoints.json"), dir.join("connections.yaml"));
        let delay = delay_ms.to_string();
        let args = [
            "sim",
            "--platforms",
            platforms,
            "--delay-ms",
            &delay,
            "--endpoints-file",
            endpoints.to_str().expect("UTF-8 path"),
            "--connections-file",
            connections.to_str().expect("UTF-8 path"),
        ];
        let process = tether(&args, &dir.join("sim.log"));
        wait_for_file(&endpoints);
        let endpoints = serde_json::from_str(&std::fs::read_to_string(&endpoints).expect("endpoints")).expect("JSON");
        Self { dir, endpoints, connections, _process: process }
    }

    /// scheme://host:port of a platform's simulator.
    pub fn origin(&self, platform: &str) -> String {
        let url: reqwest::Url = self.endpoints[platform]["url"].as_str().expect("a url").parse().expect("a URL");
        url.origin().ascii_serialization()
    }

    /// Applies `manifests` (a file or directory of the repository) into `namespace`, then the connections.
    pub fn apply(&self, namespace: &str, manifests: &str) {
        let path = tether_testenv::repo_root().join(manifests);
        kubectl(&["apply", "-n", namespace, "-f", path.to_str().expect("UTF-8 path")]);
        kubectl(&["apply", "-n", namespace, "-f", self.connections.to_str().expect("UTF-8 path")]);
    }

    /// Removes the scratch directory.
    pub fn clean_up(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
