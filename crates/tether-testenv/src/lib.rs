//! Test harness for Tether's integration tests: a real control plane (etcd + kube-apiserver +
//! kube-controller-manager, built by tools/control-plane), Tether's CRDs installed from crds/, and a fresh
//! namespace per test. Like controller-runtime's envtest, but with self-built binaries and nothing
//! downloaded.
//!
//! One control plane serves every test of a test binary; it is started on first use and stops when the
//! test process exits, even by panic or SIGKILL (it watches the pipe on its standard input). To share one
//! across test binaries, start it once and export `TETHER_TEST_KUBECONFIG` (as `make test` does).
//!
//! Environment:
//! - `TETHER_TEST_KUBECONFIG`: use this cluster instead of starting one (CRDs are still applied).
//! - `TETHER_CONTROL_PLANE`: path of a built `tether-control-plane`; otherwise tools/control-plane/build.sh
//!   builds or finds it (about 10 minutes the first time on a cold Go cache).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

/// The field manager the harness applies CRDs with.
const FIELD_MANAGER: &str = "tether-testenv";

/// A running control plane (or an external one) with Tether's CRDs installed.
pub struct ControlPlane {
    kubeconfig: PathBuf,
    // Held for the life of the process: closing our end of the pipe (at exit) stops the control plane.
    lifeline: Option<Mutex<(Child, ChildStdin)>>,
}

static PLANE: OnceLock<ControlPlane> = OnceLock::new();

/// The repository root (two levels above this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repository root exists")
}

/// The shared control plane of this test process, started (and its CRDs installed) on first call.
/// Panics with the reason when it cannot start: a test without its cluster cannot say anything.
pub fn control_plane() -> &'static ControlPlane {
    PLANE.get_or_init(|| {
        let plane = match std::env::var_os("TETHER_TEST_KUBECONFIG") {
            Some(path) => ControlPlane { kubeconfig: PathBuf::from(path), lifeline: None },
            None => start().unwrap_or_else(|e| panic!("control plane did not start: {e}")),
        };
        // Install on a runtime of our own: each #[tokio::test] has its own, and a client must not outlive
        // the runtime it was made on.
        let kubeconfig = plane.kubeconfig.clone();
        std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime")
                .block_on(install_crds(&kubeconfig))
        })
        .join()
        .expect("CRD installer thread")
        .unwrap_or_else(|e| panic!("installing crds/ failed: {e}"));
        plane
    })
}

impl ControlPlane {
    /// Path of an admin kubeconfig for this cluster (for kubectl and other tools).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The process id of the control plane this harness started (`None` for an external one), e.g. to
    /// measure its CPU time.
    pub fn pid(&self) -> Option<u32> {
        let lifeline = self.lifeline.as_ref()?.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Some(lifeline.0.id())
    }

    /// A new client on the current tokio runtime.
    pub async fn client(&self) -> Client {
        client_for(&self.kubeconfig).await.expect("client from the test kubeconfig")
    }
}

fn control_plane_binary() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("TETHER_CONTROL_PLANE") {
        return Ok(PathBuf::from(path));
    }
    let script = repo_root().join("tools/control-plane/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!("{} failed ({})", script.display(), out.status));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn start() -> Result<ControlPlane, String> {
    let binary = control_plane_binary()?;
    let data_dir = std::env::temp_dir().join(format!("tether-testenv-{}-{}", std::process::id(), unique()));
    std::fs::create_dir_all(&data_dir).map_err(|e| format!("{}: {e}", data_dir.display()))?;
    // Its stderr goes to a file, not ours: the plane outlives the test process by the moment it takes to
    // stop, and must not hold the test's output open meanwhile (nextest reports that as a leak).
    let log_path = data_dir.join("supervisor.log");
    let log = std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let mut child = Command::new(&binary)
        .arg("--data-dir")
        .arg(&data_dir)
        .arg("--exit-on-stdin-close")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
    let stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| format!("reading the control plane's output: {e}"))?;
    let Some(path) = line.trim().strip_prefix("ready ") else {
        let _ = child.kill();
        return Err(format!("control plane exited before it was ready (logs in {})", data_dir.join("logs").display()));
    };
    Ok(ControlPlane { kubeconfig: PathBuf::from(path), lifeline: Some(Mutex::new((child, stdin))) })
}

async fn client_for(kubeconfig: &Path) -> Result<Client, String> {
    let kc = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default()).await.map_err(|e| e.to_string())?;
    Client::try_from(config).map_err(|e| e.to_string())
}

/// Server-side applies every file in crds/ and waits until each CRD is Established.
async fn install_crds(kubeconfig: &Path) -> Result<(), String> {
    let client = client_for(kubeconfig).await?;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let dir = repo_root().join("crds");
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let path = entry.map_err(|e| e.to_string())?.path();
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let crd: CustomResourceDefinition =
            serde_yaml_ng::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let name = crd.metadata.name.clone().ok_or("CRD without a name")?;
        api.patch(&name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&crd))
            .await
            .map_err(|e| format!("applying {}: {e}", path.display()))?;
        names.push(name);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for name in names {
        loop {
            let crd = api.get(&name).await.map_err(|e| e.to_string())?;
            let established = crd
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("CRD {name} not Established after 60s"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn unique() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{:x}{:x}", nanos, COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A namespace of one test, deleted (in the background) when dropped.
pub struct TestNamespace {
    /// The namespace's name.
    pub name: String,
    /// A client on the test's runtime.
    pub client: Client,
}

impl TestNamespace {
    /// Creates `<prefix>-<unique suffix>` on the shared control plane.
    pub async fn new(prefix: &str) -> Self {
        let client = control_plane().client().await;
        let name = format!("{prefix}-{}", unique());
        let ns = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.clone()), ..Default::default() },
            ..Default::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &ns)
            .await
            .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
        Self { name, client }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let api = Api::<Namespace>::all(self.client.clone());
        let name = self.name.clone();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = api.delete(&name, &DeleteParams::background()).await;
            });
        }
    }
}
