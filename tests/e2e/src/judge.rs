//! The GitOps judge: what the GitOps tools themselves conclude about an object, from tools/gitops-judge run
//! as a child process. `kstatus` is sigs.k8s.io/cli-utils' `status.Compute` (what Flux, kpt and
//! cli-utils-based waiting read); `argocd` is the Lua health check of deploy/argocd/argocd-cm.yaml run the way
//! Argo CD runs it (its Lua VM and libraries, its conversion of the object, its validation of the result).
//!
//! ```ignore
//! let verdict = tether_e2e::judge::verdict(&object);
//! assert_eq!((verdict.kstatus.as_str(), verdict.argocd.as_str()), ("Current", "Healthy"), "{verdict:?}");
//! ```
//!
//! Environment: `TETHER_GITOPS_JUDGE`, the path of a built `tether-gitops-judge` (make sets it); otherwise
//! tools/gitops-judge/build.sh builds or finds it (seconds once the control plane has filled the Go cache).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// A running `tether-gitops-judge`. It exits when its standard input closes, so it never outlives the
/// test process; dropping it kills it.
pub struct Judge {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// What the GitOps tools say about one object.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verdict {
    /// kstatus: InProgress, Failed, Current, Terminating, NotFound or Unknown.
    pub kstatus: String,
    pub kstatus_message: String,
    /// Argo CD health: Healthy, Progressing, Degraded, Suspended, Missing or Unknown; empty when Argo CD gives
    /// the object no health (no health check for its kind: argocd_message says so).
    pub argocd: String,
    pub argocd_message: String,
}

static SHARED: OnceLock<Mutex<Judge>> = OnceLock::new();

/// The verdict on `obj` from the judge shared by every test of this process (see [`Judge::shared`]).
pub fn verdict(obj: &serde_json::Value) -> Verdict {
    // A test that panicked while holding the lock (a failed verdict) leaves the judge usable.
    Judge::shared().lock().unwrap_or_else(|poisoned| poisoned.into_inner()).verdict(obj)
}

impl Judge {
    /// Starts the judge with the repository's deploy/argocd/argocd-cm.yaml.
    pub fn start() -> Judge {
        Judge::with_argocd_cm(&tether_testenv::repo_root().join("deploy/argocd/argocd-cm.yaml"))
    }

    /// Starts the judge with another argocd-cm (or patch of it), e.g. a candidate written by a test.
    pub fn with_argocd_cm(argocd_cm: &Path) -> Judge {
        let binary = binary();
        let mut child = Command::new(&binary)
            .arg("--argocd-cm")
            .arg(argocd_cm)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning the GitOps judge {}: {e}", binary.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Judge { child, stdin, stdout }
    }

    /// One judge for the whole test process, started on first use; lock it for each verdict (or call
    /// [`verdict`]). It is never dropped: it exits when the process does and its standard input closes.
    pub fn shared() -> &'static Mutex<Judge> {
        SHARED.get_or_init(|| Mutex::new(Judge::start()))
    }

    /// The verdict on one object (a whole object: apiVersion, kind, metadata, spec, status). Panics with the
    /// judge's error when it cannot judge it: not an object, kstatus cannot compute it, or the health script
    /// fails (which Argo CD would show as health Unknown with that message).
    pub fn verdict(&mut self, obj: &serde_json::Value) -> Verdict {
        let what =
            format!("{} {}", obj["kind"].as_str().unwrap_or("?"), obj["metadata"]["name"].as_str().unwrap_or("?"));
        // Compact JSON has no raw newline: one object, one line.
        let mut line = serde_json::to_string(obj).expect("a JSON value serializes");
        line.push('\n');
        if let Err(e) = self.stdin.write_all(line.as_bytes()).and_then(|()| self.stdin.flush()) {
            self.died(&format!("writing {what} to it: {e}"));
        }
        let mut answer = String::new();
        match self.stdout.read_line(&mut answer) {
            Ok(0) => self.died(&format!("no answer for {what}")),
            Ok(_) => {}
            Err(e) => self.died(&format!("reading its answer for {what}: {e}")),
        }
        let value: serde_json::Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("GitOps judge: unreadable answer for {what}: {e}: {answer}"));
        if let Some(error) = value.get("error") {
            panic!("GitOps judge: cannot judge {what}: {}", error.as_str().unwrap_or_default());
        }
        serde_json::from_value(value)
            .unwrap_or_else(|e| panic!("GitOps judge: unexpected answer for {what}: {e}: {answer}"))
    }

    fn died(&mut self, doing: &str) -> ! {
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let mut stderr = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut stderr);
        }
        panic!("GitOps judge exited ({status}), {doing}: {}", stderr.trim());
    }
}

impl Drop for Judge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// $TETHER_GITOPS_JUDGE, else the binary tools/gitops-judge/build.sh builds (or finds in its cache).
fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("TETHER_GITOPS_JUDGE") {
        return PathBuf::from(path);
    }
    let script = tether_testenv::repo_root().join("tools/gitops-judge/build.sh");
    let out = Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "{} failed ({}): the GitOps judge could not be built (needs Go and the Go module proxy); see its output above",
        script.display(),
        out.status
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}
