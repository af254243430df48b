//! `kubectl tether` (the `kubectl-tether` binary) against the real control plane, `tether sim` and
//! `tether run`: one test per subcommand, each in its own namespace with the examples it needs Ready.

mod common;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Operator, Sims, kubectl, kubectl_with_input, operator};
use serde_json::Value;
use tether_testenv::{TestNamespace, control_plane};

/// `kubectl-tether ARGS` as the admin of the test control plane.
fn plugin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kubectl-tether"))
        .args(args)
        .env("KUBECONFIG", control_plane().kubeconfig())
        .stdin(Stdio::null())
        .output()
        .expect("kubectl-tether runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `kubectl-tether ARGS`, which must succeed; its standard output.
fn ok(args: &[&str]) -> String {
    let out = plugin(args);
    assert!(out.status.success(), "kubectl-tether {args:?} failed:\n{}{}", stdout(&out), stderr(&out));
    stdout(&out)
}

/// A namespace with the simulators of `platforms`, the `examples` files applied with their connections,
/// and the operator, every resource in `ready` Ready.
struct Day2 {
    ns: TestNamespace,
    sims: Sims,
    _operator: Operator,
}

async fn day2(name: &str, platforms: &str, examples: &[&str], ready: &[&str]) -> Day2 {
    let ns = TestNamespace::new(name).await;
    let sims = Sims::start(&ns.name, platforms, 100);
    for example in examples {
        sims.apply(&ns.name, example);
    }
    let operator = operator(&ns.name, &[], sims.dir.join("operator.log"));
    let mut wait = vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=120s"];
    wait.extend(ready);
    kubectl(&wait);
    Day2 { ns, sims, _operator: operator }
}

#[tokio::test]
async fn status_groups_by_kind_with_failures_first() {
    let env = day2(
        "d2-status",
        "ubiops,peak",
        &["examples/ubiservice.yaml", "examples/peakwebapp.yaml"],
        &["ubiservice/scoring-api", "peakwebapp/forecast-explorer"],
    )
    .await;
    let ns = env.ns.name.as_str();
    // A second UbiService whose Connection does not exist: not synced, so listed before the healthy one.
    let broken = format!(
        "apiVersion: tether.dev/v1alpha1\nkind: UbiService\nmetadata: {{name: z-broken, namespace: {ns}}}\n\
         spec: {{connectionRef: {{name: nowhere}}, project: proj, name: broken, deployment: dep-1, port: 8080}}\n"
    );
    kubectl_with_input(&["apply", "-f", "-"], &broken);
    kubectl(&["wait", "-n", ns, "--for=condition=Synced=False", "--timeout=60s", "ubiservice/z-broken"]);

    let text = ok(&["status", "-n", ns]);
    let peak = text.find("PeakWebapp (Peak)").expect(&text);
    let ubi = text.find("UbiService (UbiOps)").expect(&text);
    assert!(ubi < peak, "kinds in a fixed order:\n{text}");
    let broken_at = text.find("z-broken").expect(&text);
    let healthy_at = text[ubi..].find("scoring-api").map(|i| i + ubi).expect(&text);
    assert!(broken_at < healthy_at, "the failing resource first:\n{text}");
    assert!(text.contains("ConnectionNotFound"), "{text}");
    assert!(text.contains("1 not ready or not synced"), "{text}");
    // Its trace says which link is missing.
    let trace = ok(&["trace", "ubiservice/z-broken", "-n", ns]);
    assert!(
        trace.contains(&format!("├── Connection {ns}/nowhere  [Missing] Connection {ns}/nowhere not found")),
        "{trace}"
    );
    assert!(text.contains("PeakWebapp (Peak): 1 resource, 0 not ready"), "{text}");

    let rows: Value = serde_json::from_str(&ok(&["status", "-n", ns, "-o", "json"])).unwrap();
    let rows = rows.as_array().unwrap();
    let managed: Vec<&Value> = rows.iter().filter(|r| !r["kind"].as_str().unwrap().contains("Connection")).collect();
    assert_eq!(managed.len(), 3, "{rows:?}");
    // The Connections they use, with their platform as the state.
    let ubiops =
        rows.iter().find(|r| r["kind"] == "Connection" && r["name"] == "ubiops").expect("the ubiops Connection");
    assert_eq!((ubiops["ready"].as_str(), ubiops["state"].as_str()), (Some("True"), Some("ubiops")), "{ubiops}");
    assert!(text.contains("Connection (any platform): 2 resources, 0 not ready"), "{text}");
    let scoring = rows.iter().find(|r| r["name"] == "scoring-api").unwrap();
    assert_eq!((scoring["ready"].as_str(), scoring["synced"].as_str()), (Some("True"), Some("True")));
    assert_eq!(scoring["state"], "ready", "the platform's state: {scoring}");
    // -A sees this namespace too.
    assert!(ok(&["status", "-A"]).contains(ns));
    env.sims.clean_up();
}

#[tokio::test]
async fn trace_shows_the_chain_from_resource_to_outputs_secret() {
    let env = day2("d2-trace", "civis", &["examples/civisservice.yaml"], &["civisservice/sales-dashboard"]).await;
    let ns = env.ns.name.as_str();
    let text = ok(&["trace", "civisservice/sales-dashboard", "-n", ns]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with(&format!("CivisService {ns}/sales-dashboard  [Healthy] Ready=True")), "{text}");
    assert!(text.contains(&format!("├── Connection {ns}/civis  [Healthy]")), "{text}");
    assert!(
        text.contains(&format!("│   └── Secret {ns}/civis-credentials  [Healthy] apiKey: key \"api_key\" present")),
        "{text}"
    );
    let remote = lines.iter().find(|l| l.contains("Civis service ")).expect(&text);
    assert!(remote.contains("[Healthy] state=running url=http"), "{text}");
    assert!(remote.contains("matches the spec"), "{text}");
    assert!(lines.last().unwrap().starts_with("└── Secret "), "outputs Secret last: {text}");
    assert!(text.contains("outputs (written by Tether)"), "{text}");
    // No credential value is printed.
    assert!(!text.contains("sim-key"), "{text}");
    let tree: Value = serde_json::from_str(&ok(&["trace", "civis/sales-dashboard", "-n", ns, "-o", "json"])).unwrap();
    assert_eq!(tree["health"], "Healthy");
    assert!(tree["children"].as_array().unwrap().len() >= 3, "{tree}");
    env.sims.clean_up();
}

/// The example UbiService as a manifest in `ns`, with `edit` applied to its text.
fn ubiservice_manifest(ns: &str, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    let path = tether_testenv::repo_root().join("examples/ubiservice.yaml");
    let text = std::fs::read_to_string(path).unwrap();
    let file = std::env::temp_dir().join(format!("tether-{ns}-manifest.yaml"));
    std::fs::write(&file, edit(text)).unwrap();
    file
}

/// How many writes (POST, PATCH, PUT, DELETE) the simulator at `origin` has served.
async fn writes(origin: &str) -> u64 {
    let counters: std::collections::BTreeMap<String, u64> =
        reqwest::get(format!("{origin}/_sim/counters")).await.unwrap().json().await.unwrap();
    let write = |key: &str| ["POST ", "PATCH ", "PUT ", "DELETE "].iter().any(|m| key.starts_with(m));
    counters.iter().filter(|(k, _)| write(k)).map(|(_, n)| n).sum()
}

#[tokio::test]
async fn diff_shows_nothing_live_a_create_unapplied_and_exactly_the_edited_fields() {
    let env = day2("d2-diff", "ubiops", &["examples/ubiservice.yaml"], &["ubiservice/scoring-api"]).await;
    let ns = env.ns.name.as_str();
    let ubiops = env.sims.origin("ubiops");
    let before = writes(&ubiops).await;

    let live = ok(&["diff", "ubiservice/scoring-api", "-n", ns]);
    assert!(live.starts_with(&format!("UbiService {ns}/scoring-api: no changes")), "{live}");

    // A manifest not applied yet: a create, with the fields Tether would send.
    let new = ubiservice_manifest(ns, |t| t.replace("name: scoring-api", "name: scoring-v2"));
    let created = ok(&["diff", "-n", ns, "-f", new.to_str().unwrap()]);
    assert!(created.contains(&format!("UbiService {ns}/scoring-v2: create a UbiOps service")), "{created}");
    assert!(created.contains("  + port: 8080"), "{created}");
    assert!(created.contains("  + name: \"scoring-v2\""), "{created}");
    assert!(kubectl(&["get", "ubiservice", "-n", ns, "-o", "name"]).stdout.len() < 40, "nothing was created");

    // The applied manifest, edited: exactly the changed fields, old and new.
    let edited =
        ubiservice_manifest(ns, |t| t.replace("port: 8080", "port: 9090").replace("rateLimit: 1000", "rateLimit: 500"));
    let out = ok(&["diff", "-n", ns, "-f", edited.to_str().unwrap()]);
    let changes: Vec<&str> = out.lines().filter(|l| l.starts_with("  ~ ")).collect();
    assert_eq!(changes, ["  ~ port: 8080 -> 9090", "  ~ rate_limit: 1000 -> 500"], "{out}");
    assert!(out.contains(&format!("UbiService {ns}/scoring-api: update UbiOps service")), "{out}");
    let json: Value =
        serde_json::from_str(&ok(&["diff", "-n", ns, "-f", edited.to_str().unwrap(), "-o", "json"])).unwrap();
    assert_eq!(json[0]["plan"]["action"], "update", "{json}");

    // Nothing was written: the platform saw no write, the resource kept its spec.
    assert_eq!(writes(&ubiops).await, before, "diff wrote to the platform");
    let port = kubectl(&["get", "ubiservice/scoring-api", "-n", ns, "-o", "jsonpath={.spec.port}"]);
    assert_eq!(String::from_utf8_lossy(&port.stdout), "8080");
    for file in [new, edited] {
        let _ = std::fs::remove_file(file);
    }
    env.sims.clean_up();
}

#[tokio::test]
async fn revisions_then_a_rollback_through_the_resource_waits_until_ready() {
    let env = day2("d2-rollback", "apolo", &["examples/apoloapp.yaml"], &["apoloapp/feature-store-db"]).await;
    let ns = env.ns.name.as_str();
    // A second revision: the input changes.
    kubectl(&[
        "patch",
        "apoloapp/feature-store-db",
        "-n",
        ns,
        "--type=merge",
        "-p",
        r#"{"spec":{"input":{"preset":"cpu-small","storage_gb":40}}}"#,
    ]);
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let list: Value =
            serde_json::from_str(&ok(&["revisions", "apoloapp/feature-store-db", "-n", ns, "-o", "json"])).unwrap();
        if list.as_array().unwrap().len() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no second revision: {list}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    kubectl(&["wait", "-n", ns, "--for=condition=Ready", "--timeout=60s", "apoloapp/feature-store-db"]);
    let text = ok(&["revisions", "apolo/feature-store-db", "-n", ns]);
    let current: Vec<&str> = text.lines().filter(|l| l.contains("current")).collect();
    assert_eq!(current.len(), 1, "{text}");
    assert!(current[0].starts_with("2 "), "{text}");

    let started = Instant::now();
    let out = plugin(&["rollback", "apoloapp/feature-store-db", "--to", "1", "-n", ns, "--timeout", "120"]);
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("is Ready at generation 3: rolled back to revision 1"), "{}", stdout(&out));
    assert!(stderr(&out).contains("spec.rollbackToRevision set to 1"), "progress: {}", stderr(&out));
    eprintln!("rollback took {:?}", started.elapsed());
    let spec = kubectl(&["get", "apoloapp/feature-store-db", "-n", ns, "-o", "jsonpath={.spec.rollbackToRevision}"]);
    assert_eq!(String::from_utf8_lossy(&spec.stdout), "1");
    let text = ok(&["revisions", "apoloapp/feature-store-db", "-n", ns]);
    assert!(text.contains("pinned"), "{text}");

    // A revision the app does not have is refused before the resource is touched.
    let out = plugin(&["rollback", "apoloapp/feature-store-db", "--to", "99", "-n", ns]);
    assert!(!out.status.success() && stderr(&out).contains("has no revision 99"), "{}", stderr(&out));
    let out = plugin(&["revisions", "ubiservice/x", "-n", ns]);
    assert!(stderr(&out).contains("keeps no configuration revisions"), "{}", stderr(&out));
    env.sims.clean_up();
}

#[tokio::test]
async fn events_merge_kubernetes_and_platform_events_in_time_order() {
    let env = day2(
        "d2-events",
        "apolo,civis,iguazio",
        &["examples/apoloapp.yaml", "examples/civisservice.yaml", "examples/appservice.yaml"],
        &["apoloapp/feature-store-db", "civisservice/sales-dashboard", "appservice/team-notebook"],
    )
    .await;
    let ns = env.ns.name.as_str();
    let entries: Value =
        serde_json::from_str(&ok(&["events", "apoloapp/feature-store-db", "-n", ns, "-o", "json"])).unwrap();
    let entries = entries.as_array().unwrap();
    let sources: Vec<&str> = entries.iter().map(|e| e["source"].as_str().unwrap()).collect();
    assert!(sources.contains(&"kubernetes") && sources.contains(&"apolo"), "{entries:?}");
    assert!(entries.iter().any(|e| e["reason"] == "Created"), "Tether's Created Event: {entries:?}");
    let times: Vec<&str> = entries.iter().filter_map(|e| e["time"].as_str()).collect();
    let mut sorted = times.clone();
    sorted.sort();
    assert_eq!(times, sorted, "in time order");
    let text = ok(&["events", "civisservice/sales-dashboard", "-n", ns]);
    assert!(text.starts_with("TIME"), "{text}");
    assert!(text.contains("DeploymentCreated") && text.contains("kubernetes"), "{text}");
    let igz: Value =
        serde_json::from_str(&ok(&["events", "appservice/team-notebook", "-n", ns, "-o", "json"])).unwrap();
    let job = igz.as_array().unwrap().iter().find(|e| e["reason"] == "ManifestJob").expect("the manifest job");
    assert!(job["time"].is_string() && job["type"] == "completed", "{igz}");
    let out = plugin(&["events", "ubiservice/nothing-here", "-n", ns]);
    assert!(!out.status.success() && stderr(&out).contains("UbiService"), "{}", stderr(&out));
    env.sims.clean_up();
}

#[tokio::test]
async fn logs_of_civis_and_apolo_and_follow_ends_cleanly() {
    let env = day2(
        "d2-logs",
        "apolo,civis,peak",
        &["examples/apoloapp.yaml", "examples/civisservice.yaml", "examples/peakwebapp.yaml"],
        &["apoloapp/feature-store-db", "civisservice/sales-dashboard", "peakwebapp/forecast-explorer"],
    )
    .await;
    let ns = env.ns.name.as_str();
    let text = ok(&["logs", "civisservice/sales-dashboard", "-n", ns, "--timestamps"]);
    assert!(text.contains("Deployment is running"), "{text}");
    assert_eq!(ok(&["logs", "civisservice/sales-dashboard", "-n", ns, "--tail", "1"]).lines().count(), 1);
    assert_eq!(ok(&["logs", "civis/sales-dashboard", "-n", ns, "--since", "2030-01-01T00:00:00Z"]), "");

    // Apolo: the WebSocket stream; with -f it ends when the platform closes the stream.
    let started = Instant::now();
    let text = ok(&["logs", "apoloapp/feature-store-db", "-n", ns, "-f"]);
    assert!(text.contains("app state queued"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(10), "ended when the platform closed the stream");
    let stamped = ok(&["logs", "apoloapp/feature-store-db", "-n", ns, "--timestamps", "--tail", "1"]);
    assert_eq!(stamped.lines().count(), 1, "{stamped}");
    assert!(stamped.starts_with("20"), "a timestamp first: {stamped}");
    let tail = ok(&["logs", "apoloapp/feature-store-db", "-n", ns, "-f", "--tail", "2"]);
    assert_eq!(tail.lines().count(), 2, "--tail with -f: the last lines there, then what follows: {tail}");

    // Civis with -f follows the running deployment until Ctrl-C (SIGINT), then exits 0.
    let child = Command::new(env!("CARGO_BIN_EXE_kubectl-tether"))
        .args(["logs", "civisservice/sales-dashboard", "-n", ns, "-f"])
        .env("KUBECONFIG", control_plane().kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "Ctrl-C ends -f cleanly: {:?} {}", out.status, stderr(&out));
    assert!(stdout(&out).contains("Deployment is running"), "{}", stdout(&out));

    // And -f ends by itself, exit 0, when the platform ends the deployment (the sim crashes it).
    let child = Command::new(env!("CARGO_BIN_EXE_kubectl-tether"))
        .args(["logs", "civisservice/sales-dashboard", "-n", ns, "-f"])
        .env("KUBECONFIG", control_plane().kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let id = kubectl(&["get", "civisservice/sales-dashboard", "-n", ns, "-o", "jsonpath={.status.externalId}"]);
    let id: i64 = String::from_utf8_lossy(&id.stdout).parse().unwrap();
    let civis = env.sims.origin("civis");
    let failed = reqwest::Client::new().post(format!("{civis}/_sim/fail")).json(&serde_json::json!({"id": id})).send();
    assert!(failed.await.unwrap().status().is_success());
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(15), "-f ended when the deployment terminated");
    assert!(out.status.success(), "{:?} {}", out.status, stderr(&out));
    assert!(stdout(&out).contains("Container crashed"), "{}", stdout(&out));
    assert!(stderr(&out).contains("terminated"), "{}", stderr(&out));

    // Peak has no log API, and says so.
    let out = plugin(&["logs", "peakwebapp/forecast-explorer", "-n", ns]);
    assert!(!out.status.success() && stderr(&out).contains("Peak has no log API"), "{}", stderr(&out));
    env.sims.clean_up();
}

#[tokio::test]
async fn a_user_who_may_not_read_the_connection_secret_is_told_which_one() {
    let env = day2("d2-rbac", "civis", &["examples/civisservice.yaml"], &["civisservice/sales-dashboard"]).await;
    let ns = env.ns.name.as_str();
    let rbac = format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: viewer, namespace: {ns}}}\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: tether-viewer, namespace: {ns}}}\n\
         rules:\n- apiGroups: [tether.dev]\n  resources: ['*']\n  verbs: [get, list, watch]\n\
         - apiGroups: ['']\n  resources: [events]\n  verbs: [get, list]\n---\n\
         apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: tether-viewer, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: tether-viewer}}\n\
         subjects:\n- {{kind: ServiceAccount, name: viewer, namespace: {ns}}}\n"
    );
    kubectl_with_input(&["apply", "-f", "-"], &rbac);
    let viewer = format!("system:serviceaccount:{ns}:viewer");
    // The viewer sees the Kubernetes side...
    assert!(ok(&["status", "-n", ns, "--as", &viewer]).contains("sales-dashboard"));
    // ...and is told, by name, which Secret keeps the platform side from them.
    let secret = format!("Secret {ns}/civis-credentials");
    for command in [&["diff", "civisservice/sales-dashboard"][..], &["logs", "civisservice/sales-dashboard"]] {
        let mut args = command.to_vec();
        args.extend(["-n", ns, "--as", &viewer]);
        let out = plugin(&args);
        assert!(!out.status.success(), "{args:?} succeeded without the Secret");
        let err = stderr(&out);
        assert!(err.contains("Forbidden: you may not read") && err.contains(&secret), "{args:?}: {err}");
    }
    let text = ok(&["trace", "civisservice/sales-dashboard", "-n", ns, "--as", &viewer]);
    assert!(text.contains(&format!("{secret}  [Forbidden]")), "{text}");
    env.sims.clean_up();
}

#[test]
fn help_explains_every_subcommand_and_kubectl_finds_the_plugin() {
    let help = ok(&["--help"]);
    for command in ["status", "trace", "logs", "events", "revisions", "rollback", "diff"] {
        assert!(help.lines().any(|l| l.trim_start().starts_with(command)), "{command} missing:\n{help}");
    }
    assert!(help.contains("Usage: kubectl tether"), "{help}");
    // kubectl runs it as `kubectl tether` once it is on the PATH.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_kubectl-tether")).parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("kubectl").args(["tether", "diff", "--help"]).env("PATH", path).output().expect("kubectl");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("-f, --filename <FILE>"), "{}", stdout(&out));
}

#[tokio::test]
async fn diff_of_an_edited_civis_service_names_the_redeploy_and_hides_secret_values() {
    let env = day2("d2-diff-civis", "civis", &["examples/civisservice.yaml"], &["civisservice/sales-dashboard"]).await;
    let ns = env.ns.name.as_str();
    let source = std::fs::read_to_string(tether_testenv::repo_root().join("examples/civisservice.yaml")).unwrap();
    let edited = source
        .replace("dockerImageTag: \"1.4.2\"", "dockerImageTag: \"1.5.0\"")
        .replace("LOG_LEVEL: info", "LOG_LEVEL: debug");
    let file = std::env::temp_dir().join(format!("tether-{ns}-civis.yaml"));
    std::fs::write(&file, edited).unwrap();
    let out = plugin(&["diff", "-n", ns, "-f", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    let text = stdout(&out);
    eprintln!("{text}");
    assert!(out.status.success(), "{text}{}", stderr(&out));
    assert!(stderr(&out).contains("skipping Secret civis-credentials"), "{}", stderr(&out));
    let changes: Vec<&str> = text.lines().filter(|l| l.starts_with("  ~ ")).collect();
    assert_eq!(changes.len(), 2, "{text}");
    assert_eq!(changes[0], "  ~ dockerImageTag: \"1.4.2\" -> \"1.5.0\"", "{text}");
    assert!(changes[1].starts_with("  ~ environmentVariables: "), "{text}");
    assert!(changes[1].contains(r#""LOG_LEVEL":"info""#) && changes[1].contains(r#""LOG_LEVEL":"debug""#), "{text}");
    assert!(changes[1].contains(r#""DB_PASSWORD":"(secret value, not shown)""#), "{text}");
    assert!(!text.contains("replace-with-the-database-password"), "a Secret value is printed: {text}");
    assert!(text.contains("  then: redeploy: a new deployment replaces deployment"), "{text}");
    env.sims.clean_up();
}

/// `examples/FILE` with `edits` (from, to) applied, written to a scratch file of `ns`.
fn edited_example(ns: &str, file: &str, edits: &[(&str, &str)]) -> std::path::PathBuf {
    let mut text = std::fs::read_to_string(tether_testenv::repo_root().join("examples").join(file)).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{file} has no {from:?}");
        text = text.replace(from, to);
    }
    let path = std::env::temp_dir().join(format!("tether-{ns}-{file}"));
    std::fs::write(&path, text).unwrap();
    path
}

/// An example file, its edits (from, to) and the change lines `diff -f` must print for it.
type Edit<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [&'a str]);

#[tokio::test]
async fn diff_agrees_with_the_operator_for_every_kind_and_sees_edits_of_each() {
    let examples = common::EXAMPLES;
    let env = day2("d2-diff-all", "all", &["examples"], &examples).await;
    let ns = env.ns.name.as_str();
    // What the operator settled is what the preview finds: nothing to change, for each adapter.
    for example in examples {
        let text = ok(&["diff", example, "-n", ns]);
        assert!(text.contains(": no changes ("), "{example}: {text}");
    }
    let cases: [Edit<'_>; 3] = [
        (
            "peakwebapp.yaml",
            &[
                ("title: Forecast explorer", "title: Demand explorer"),
                ("sessionStickiness: true", "sessionStickiness: false"),
            ],
            &["  ~ sessionStickiness: true -> false", "  ~ title: \"Forecast explorer\" -> \"Demand explorer\""],
        ),
        (
            "appservice.yaml",
            &[("maxReplicas: 1", "maxReplicas: 2"), ("labels: {team: data}", "labels: {team: ml}")],
            &["  ~ max_replicas: 1 -> 2", "  ~ labels: {\"team\":\"data\"} -> {\"team\":\"ml\"}"],
        ),
        (
            "apoloapp.yaml",
            &[("storage_gb: 20", "storage_gb: 30")],
            &[
                "  ~ input: {\"preset\":\"cpu-small\",\"storage_gb\":20} -> {\"preset\":\"cpu-small\",\"storage_gb\":30}",
            ],
        ),
    ];
    for (file, edits, expected) in cases {
        let path = edited_example(ns, file, edits);
        let text = ok(&["diff", "-n", ns, "-f", path.to_str().unwrap()]);
        let _ = std::fs::remove_file(&path);
        eprintln!("{text}");
        let changes: Vec<&str> = text.lines().filter(|l| l.starts_with("  ~ ")).collect();
        assert_eq!(changes, expected, "{file}: {text}");
    }
    env.sims.clean_up();
}
