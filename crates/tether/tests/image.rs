//! The container image that `make image` writes (an OCI archive, `$TETHER_IMAGE_ARCHIVE`, by default
//! target/image/tether.oci.tar): its configuration runs `/usr/local/bin/tether` as 65532 with the OCI
//! labels, as the Dockerfile says too; and unpacked by umoci, with its root filesystem mounted read-only
//! and entered by chroot as uid 65532 (what the chart asks of a container runtime: non-root,
//! readOnlyRootFilesystem), the binary in it (`make image`: the release build; `make test` packs its own
//! debug build by the same recipe) prints its version and the CRDs, and `tether run`
//! drives an example to Ready on the test control plane, configured as in a pod: a ServiceAccount token
//! mounted read-only where the kubelet mounts it, `KUBERNETES_SERVICE_HOST`/`_PORT`, leader election in
//! `POD_NAMESPACE`, JSON logs, and no other environment. Nothing of the host's filesystem is visible to it,
//! so the image is self-contained. No container runtime takes part: the mounts and the chroot are the
//! runtime's work done by hand (these machines cannot start a container).
//!
//! A missing archive fails the tests (`make image` builds it; `make unit` builds the tests' own first).
//! They need root (mount namespaces, chroot) and umoci (tools/image/install.sh installs it).

mod common;

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use common::{Process, Sims, free_port, kubectl};
use serde_json::Value;
use tether_testenv::{TestNamespace, repo_root};

const VERSION: &str = env!("CARGO_PKG_VERSION");
const USER: &str = "65532:65532";
const ENTRYPOINT: &str = "/usr/local/bin/tether";
/// Where the kubelet mounts a pod's ServiceAccount token, CA and namespace (kube-rs reads them there).
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn archive() -> PathBuf {
    let path = std::env::var_os("TETHER_IMAGE_ARCHIVE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/image/tether.oci.tar"));
    assert!(path.is_file(), "{}: no image archive; `make image` builds it", path.display());
    path
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| {
        panic!("{cmd:?}: {e} (umoci and buildah: tools/image/install.sh; unshare, chroot: util-linux, coreutils)")
    });
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A JSON document of the OCI layout in the archive, read without unpacking it.
fn member(archive: &Path, name: &str) -> Value {
    let out = run(Command::new("tar").arg("-xOf").arg(archive).arg(name));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn blob(archive: &Path, descriptor: &Value) -> Value {
    let digest = descriptor["digest"].as_str().expect("a digest");
    member(archive, &format!("blobs/{}", digest.replacen(':', "/", 1)))
}

#[test]
fn the_image_runs_tether_as_65532_with_its_labels_as_the_dockerfile_says() {
    let archive = archive();
    let index = member(&archive, "index.json");
    let manifests = index["manifests"].as_array().expect("manifests");
    assert_eq!(manifests.len(), 1, "one image in the archive: {index}");
    assert_eq!(manifests[0]["annotations"]["org.opencontainers.image.ref.name"], VERSION, "tagged with the version");
    let manifest = blob(&archive, &manifests[0]);
    let layers = manifest["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
    let image = blob(&archive, &manifest["config"]);
    let config = &image["config"];
    assert_eq!((&image["os"], &image["architecture"]), (&Value::from("linux"), &Value::from("amd64")));
    assert_eq!(config["User"], USER);
    assert_eq!(config["Entrypoint"], serde_json::json!([ENTRYPOINT]));
    assert!(config["Cmd"].as_array().is_none_or(Vec::is_empty), "no default arguments: {config}");
    let labels = &config["Labels"];
    assert_eq!(labels["org.opencontainers.image.version"], VERSION);
    assert_eq!(labels["org.opencontainers.image.source"], "https://github.com/tether-dev/tether");
    let revision = labels["org.opencontainers.image.revision"].as_str().expect("a revision label");
    let commit = revision.trim_end_matches("-dirty");
    assert!(commit.len() == 40 && commit.chars().all(|c| c.is_ascii_hexdigit()), "revision {revision}");

    // The Dockerfile, for users with Docker, lays out the same filesystem and configures the same.
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).unwrap();
    for line in [
        "RUN tools/image/rootfs.sh target/release/tether /rootfs".to_string(),
        "COPY --from=build /rootfs /".to_string(),
        format!("USER {USER}"),
        format!(r#"ENTRYPOINT ["{ENTRYPOINT}"]"#),
        format!("org.opencontainers.image.version={VERSION}"),
        "org.opencontainers.image.source=https://github.com/tether-dev/tether".to_string(),
    ] {
        assert!(dockerfile.contains(&line), "the Dockerfile lacks {line:?}");
    }
}

/// The image's root filesystem, unpacked into a scratch directory (removed by `clean_up`).
struct Unpacked {
    dir: PathBuf,
    rootfs: PathBuf,
    /// Mounted read-only at SERVICE_ACCOUNT_DIR: token, ca.crt, namespace, readable by 65532 alone.
    secret: PathBuf,
}

impl Unpacked {
    fn new(archive: &Path) -> Self {
        let dir = std::env::temp_dir().join(format!("tether-image-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (layout, bundle, secret) = (dir.join("layout"), dir.join("bundle"), dir.join("secret"));
        std::fs::create_dir_all(&layout).unwrap();
        run(Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(&layout));
        // umoci checks every blob against its digest on the way.
        let image = format!("{}:{VERSION}", layout.display());
        let umoci = run(Command::new("umoci").args(["unpack", "--image", &image]).arg(&bundle).stderr(Stdio::piped()));
        let rootfs = bundle.join("rootfs");
        assert!(rootfs.join("usr/local/bin/tether").is_file(), "umoci: {}", String::from_utf8_lossy(&umoci.stderr));
        check_files(&rootfs);
        // The mount points a container runtime would make before it mounts the root read-only.
        for point in ["proc", SERVICE_ACCOUNT_DIR.trim_start_matches('/')] {
            std::fs::create_dir_all(rootfs.join(point)).unwrap();
        }
        std::fs::create_dir_all(&secret).unwrap();
        Self { dir, rootfs, secret }
    }

    /// Writes what the kubelet would mount for ServiceAccount `tether` of `namespace` (bound to
    /// cluster-admin by `binding`): a token, the cluster's CA, the namespace; returns the API server's
    /// host and port, the values of KUBERNETES_SERVICE_HOST and _PORT.
    fn service_account(&self, namespace: &str, binding: &str) -> (String, String) {
        kubectl(&["create", "serviceaccount", "tether", "-n", namespace]);
        let account = format!("--serviceaccount={namespace}:tether");
        kubectl(&["create", "clusterrolebinding", binding, "--clusterrole=cluster-admin", &account]);
        let token = kubectl(&["create", "token", "tether", "-n", namespace, "--duration=1h"]).stdout;
        let jsonpath = |field: &str| {
            let path = format!("-o=jsonpath={{.clusters[0].cluster.{field}}}");
            kubectl(&["config", "view", "--raw", &path]).stdout
        };
        let ca = jsonpath("certificate-authority-data");
        let ca = run(Command::new("sh")
            .args(["-c", r#"printf %s "$1" | base64 -d"#, "sh"])
            .arg(String::from_utf8(ca).unwrap()));
        for (name, content) in [("token", &token[..]), ("ca.crt", &ca.stdout[..]), ("namespace", namespace.as_bytes())]
        {
            let path = self.secret.join(name);
            std::fs::write(&path, content).unwrap();
            std::os::unix::fs::chown(&path, Some(65532), Some(65532)).unwrap();
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        }
        let server: reqwest::Url = String::from_utf8(jsonpath("server")).unwrap().parse().unwrap();
        (server.host_str().unwrap().to_string(), server.port().unwrap().to_string())
    }

    /// `tether ARGS` in the image with the environment `env` and nothing else: in a mount namespace of
    /// its own, the root filesystem bound read-only, /proc and the ServiceAccount directory (read-only)
    /// mounted, then chroot as 65532:65532. The process keeps its id through every exec, so killing it
    /// kills tether.
    fn tether(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        const SCRIPT: &str = r#"set -eu
root=$1 secret=$2 target=$1$3; shift 3
mount --bind "$root" "$root"
mount -o remount,bind,ro "$root"
mount -t proc -o nosuid,nodev,noexec proc "$root/proc"
mount --bind "$secret" "$target"
mount -o remount,bind,ro "$target"
chroot=$(command -v chroot)
unset PATH PWD
exec "$chroot" --userspec=65532:65532 "$root" /usr/local/bin/tether "$@"
"#;
        let mut cmd = Command::new("unshare");
        cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default()).envs(env.iter().copied());
        cmd.args(["--mount", "--propagation", "private", "--", "sh", "-c", SCRIPT, "sh"]);
        cmd.arg(&self.rootfs).arg(&self.secret).arg(SERVICE_ACCOUNT_DIR).args(args);
        cmd
    }

    fn clean_up(self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Everything in the image is root's, nothing is setuid or setgid or writable by others but /tmp (sticky),
/// there is no shell, and /etc/passwd has the user the image runs as.
fn check_files(rootfs: &Path) {
    let mut pending = vec![rootfs.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let name = path.strip_prefix(rootfs).unwrap().display().to_string();
        assert_eq!((meta.uid(), meta.gid()), (0, 0), "/{name} is not root's");
        assert_eq!(meta.mode() & 0o6000, 0, "/{name} is setuid or setgid");
        let world_writable = meta.mode() & 0o002 != 0 && !meta.file_type().is_symlink();
        assert!(!world_writable || (name == "tmp" && meta.mode() & 0o1000 != 0), "/{name} is writable by others");
        if meta.is_dir() {
            pending.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        }
    }
    assert!(!rootfs.join("bin/sh").exists(), "the image has a shell");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("nonroot:x:65532:65532:")), "/etc/passwd: {passwd}");
}

/// The `Key:` line of /proc/PID/status.
fn status_line(pid: u32, key: &str) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the process is alive");
    let line = status.lines().find(|l| l.starts_with(&format!("{key}:"))).expect("the key");
    line[key.len() + 1..].split_whitespace().collect::<Vec<_>>().join(" ")
}

#[tokio::test]
async fn the_image_runs_as_65532_on_a_read_only_root_and_an_example_becomes_ready() {
    let archive = archive();
    let euid = std::fs::metadata("/proc/self").expect("/proc").uid();
    assert_eq!(euid, 0, "the image test needs root: mount namespaces and chroot stand in for a container runtime");
    let start = Instant::now();
    let image = Unpacked::new(&archive);
    let unpacked = start.elapsed();

    let version = run(&mut image.tether(&["--version"], &[]));
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("tether {VERSION}"));
    let crds = run(&mut image.tether(&["crds"], &[]));
    let here = run(Command::new(env!("CARGO_BIN_EXE_tether")).arg("crds"));
    assert!(crds.stdout == here.stdout, "the image's `tether crds` differs from this build's");

    let ns = TestNamespace::new("image").await;
    let sims = Sims::start(&ns.name, "ubiops", 100);
    sims.apply(&ns.name, "examples/ubiservice.yaml");
    let log_path = sims.dir.join("operator.log");
    let probes = format!("127.0.0.1:{}", free_port());
    let metrics = format!("127.0.0.1:{}", free_port());
    let binding = format!("tether-{}", ns.name);
    let (host, port) = image.service_account(&ns.name, &binding);
    let args =
        ["run", "--log-format=json", "--namespace", &ns.name, "--poll-interval-seconds", "5", "--leader-election"];
    let env = [
        ("KUBERNETES_SERVICE_HOST", host.as_str()),
        ("KUBERNETES_SERVICE_PORT", port.as_str()),
        ("POD_NAME", "tether-image-0"),
        ("POD_NAMESPACE", ns.name.as_str()),
        ("RUST_LOG", "info,tether_controller=debug"),
    ];
    let mut cmd = image.tether(&args, &env);
    cmd.args(["--metrics-addr", &metrics, "--probe-addr", &probes]).stdin(Stdio::null()).stdout(Stdio::null());
    let operator = Process(cmd.stderr(std::fs::File::create(&log_path).unwrap()).spawn().expect("unshare starts"));
    let running = Instant::now();
    kubectl(&["wait", "-n", &ns.name, "--for=condition=Ready", "ubiservice/scoring-api", "--timeout=90s"]);
    let ready = running.elapsed();

    // It is tether, as 65532 with no capability, in the image's root mounted read-only, and it is ready.
    let pid = operator.0.id();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert!(exe.starts_with(&image.rootfs), "{} is not the image's binary", exe.display());
    assert_eq!(status_line(pid, "Uid"), "65532 65532 65532 65532");
    assert_eq!(status_line(pid, "Gid"), "65532 65532 65532 65532");
    let groups = status_line(pid, "Groups");
    assert!(groups.split(' ').all(|g| g.is_empty() || g == "65532"), "supplementary groups {groups}");
    assert_eq!(status_line(pid, "CapEff"), "0000000000000000");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let mut names: Vec<String> = environ
        .split(|b| *b == 0)
        .filter(|v| !v.is_empty())
        .map(|v| String::from_utf8_lossy(v).split('=').next().unwrap().to_string())
        .collect();
    names.sort();
    let mut expected: Vec<String> = env.iter().map(|(name, _)| name.to_string()).collect();
    expected.sort();
    assert_eq!(names, expected, "its environment is what the test gave it");
    let mountinfo = std::fs::read_to_string(format!("/proc/{pid}/mountinfo")).unwrap();
    let root = mountinfo.lines().find(|l| l.split(' ').nth(4) == Some("/")).expect("a mount at /");
    assert!(root.split(' ').nth(5).unwrap().split(',').any(|o| o == "ro"), "the root is writable: {root}");
    assert_eq!(reqwest::get(format!("http://{probes}/readyz")).await.unwrap().status(), 200);
    drop(operator);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(!log.contains("Read-only file system"), "the operator tried to write:\n{log}");
    assert!(log.contains("leading: starting"), "it did not lead:\n{log}");
    let lease = kubectl(&["get", "lease", "-n", &ns.name, "-o=jsonpath={.items[*].spec.holderIdentity}"]).stdout;
    assert_eq!(String::from_utf8_lossy(&lease), "tether-image-0", "the Lease is held as POD_NAME");
    kubectl(&["delete", "clusterrolebinding", &binding]);
    eprintln!(
        "image test: unpacked in {:.1} s, Ready {:.1} s after the start, {:.1} s in all",
        unpacked.as_secs_f64(),
        ready.as_secs_f64(),
        start.elapsed().as_secs_f64()
    );
    image.clean_up();
    sims.clean_up();
}
