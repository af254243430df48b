//! deploy/: the Helm chart lints and its renderings pass a server-side dry run on the real control plane;
//! the kustomize base is the chart's rendering and applies too; and the chart's RBAC is enough for
//! everything the operator does: an operator impersonating the chart's ServiceAccount drives every
//! example to Ready, with leader election, Events and outputs Secrets, and deletes them all. The default
//! image tag is the crate version, the tag `make image` gives the image.

mod common;

use std::path::PathBuf;

use common::{Process, Sims, kubectl, kubectl_with_input, run_helm, tether};
use serde_json::Value;
use tether_testenv::{TestNamespace, control_plane, repo_root};

fn chart() -> String {
    repo_root().join("deploy/helm/tether").to_string_lossy().into_owned()
}

const PRODUCTION: &[&str] =
    &["--set", "replicas=2,podDisruptionBudget.enabled=true,namespaces={team-a,team-b}", "--set", "logLevel=debug"];

#[test]
fn the_chart_lints_with_defaults_and_with_everything_on() {
    run_helm(&["lint", "--strict", &chart()]);
    let all_on = "replicas=2,podDisruptionBudget.enabled=true,metrics.serviceMonitor.enabled=true";
    run_helm(&["lint", "--strict", &chart(), "--set", all_on]);
    let rendered = run_helm(&["template", "tether", &chart(), "--set", all_on]);
    for kind in ["kind: ServiceMonitor", "kind: PodDisruptionBudget", "--leader-election"] {
        assert!(rendered.contains(kind), "{kind} missing from the rendering");
    }
}

#[test]
fn the_default_image_tag_is_the_crate_version() {
    let version = env!("CARGO_PKG_VERSION");
    let read = |path: &str| std::fs::read_to_string(repo_root().join(path)).unwrap();
    let meta: Value = serde_yaml_ng::from_str(&read("deploy/helm/tether/Chart.yaml")).unwrap();
    assert_eq!(meta["appVersion"], version, "Chart.yaml appVersion (the default image tag)");
    let values: Value = serde_yaml_ng::from_str(&read("deploy/helm/tether/values.yaml")).unwrap();
    assert_eq!(values["image"]["tag"], "", "values.yaml image.tag overrides appVersion");
    let image = format!(r#"image: "ghcr.io/tether-dev/tether:{version}""#);
    assert!(read("deploy/kustomize/tether.yaml").contains(&image), "deploy/kustomize/tether.yaml lacks {image}");
}

#[tokio::test]
async fn renderings_pass_a_server_side_dry_run() {
    let ns = TestNamespace::new("chart").await;
    let (chart, release) = (chart(), format!("tether-{}", ns.name));
    for values in [&[][..], PRODUCTION] {
        let mut args = vec!["template", release.as_str(), chart.as_str(), "--namespace", &ns.name];
        args.extend(values);
        let rendered = run_helm(&args);
        kubectl_with_input(&["apply", "--dry-run=server", "-n", &ns.name, "-f", "-"], &rendered);
    }
}

#[tokio::test]
async fn the_kustomize_base_is_the_charts_rendering_and_applies() {
    let rendered = run_helm(&["template", "tether", &chart(), "--namespace", "tether-system", "--include-crds"]);
    let path = repo_root().join("deploy/kustomize/tether.yaml");
    let header = "# Generated: helm template tether deploy/helm/tether --namespace tether-system --include-crds\n";
    let expected = format!("{header}{rendered}");
    if std::env::var_os("TETHER_BLESS").is_some() {
        std::fs::write(&path, &expected).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == expected,
        "deploy/kustomize/tether.yaml is stale: TETHER_BLESS=1 cargo test -p tether --test chart rewrites it"
    );
    let built = kubectl(&["kustomize", &repo_root().join("deploy/kustomize").to_string_lossy()]);
    let built = String::from_utf8(built.stdout).unwrap();
    // The namespace must exist for a dry run of what goes into it.
    let _ = std::process::Command::new("kubectl")
        .args(["create", "namespace", "tether-system"])
        .env("KUBECONFIG", control_plane().kubeconfig())
        .output();
    kubectl_with_input(&["apply", "--server-side", "--dry-run=server", "-f", "-"], &built);
}

#[tokio::test]
async fn the_charts_rbac_is_enough_for_everything_the_operator_does() {
    let ns = TestNamespace::new("rbac").await;
    let release = format!("tether-{}", ns.name);
    let chart = chart();
    let rbac = run_helm(&[
        "template",
        &release,
        &chart,
        "--namespace",
        &ns.name,
        "--show-only",
        "templates/serviceaccount.yaml",
        "--show-only",
        "templates/rbac.yaml",
    ]);
    kubectl_with_input(&["apply", "-n", &ns.name, "-f", "-"], &rbac);
    let role: Vec<Value> = serde_yaml_ng::Deserializer::from_str(&rbac)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|d: &Value| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        .collect();
    for rule in role.iter().flat_map(|r| r["rules"].as_array().cloned().unwrap_or_default()) {
        let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        assert!(!verbs.contains(&"*") && !verbs.contains(&"delete"), "more than the code needs: {rule}");
    }

    // A kubeconfig that acts as the chart's ServiceAccount.
    let dir: PathBuf = std::env::temp_dir().join(format!("tether-{}-operator", ns.name));
    std::fs::create_dir_all(&dir).unwrap();
    let mut kubeconfig: Value =
        serde_yaml_ng::from_str(&std::fs::read_to_string(control_plane().kubeconfig()).unwrap()).unwrap();
    for user in kubeconfig["users"].as_array_mut().unwrap() {
        user["user"]["as"] = Value::from(format!("system:serviceaccount:{}:{release}", ns.name));
    }
    let impersonating = dir.join("kubeconfig");
    std::fs::write(&impersonating, serde_yaml_ng::to_string(&kubeconfig).unwrap()).unwrap();

    let sims = Sims::start(&ns.name, "all", 100);
    sims.apply(&ns.name, "examples");
    let _operator: Process = tether(
        &[
            "run",
            "--kubeconfig",
            impersonating.to_str().unwrap(),
            "--namespace",
            &ns.name,
            "--metrics-addr",
            "off",
            "--probe-addr",
            "off",
            "--leader-election",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-lease",
            &release,
            "--poll-interval-seconds",
            "5",
        ],
        &dir.join("operator.log"),
    );
    let examples = common::EXAMPLES;
    let mut wait = vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=120s"];
    wait.extend(examples);
    kubectl(&wait);
    // Outputs Secrets were created, Events published, the Lease taken: all as the ServiceAccount.
    kubectl(&["get", "-n", &ns.name, "secret/scoring-api-endpoint", "secret/sales-dashboard-outputs"]);
    kubectl(&["get", "-n", &ns.name, &format!("lease/{release}")]);
    let events = kubectl(&["get", "events.events.k8s.io", "-n", &ns.name, "-o", "name"]);
    assert!(!events.stdout.is_empty(), "no Event was published");

    let mut delete = vec!["delete", "-n", ns.name.as_str(), "--timeout=120s"];
    delete.extend(examples);
    kubectl(&delete);
    let log = std::fs::read_to_string(dir.join("operator.log")).unwrap_or_default();
    assert!(!log.contains("forbidden"), "the operator was refused something:\n{log}");
    sims.clean_up();
    let _ = std::fs::remove_dir_all(&dir);
}
