//! The control plane the other tests stand on: real CRDs installed, examples admitted, kubectl usable.

use std::process::Command;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams};
use tether_e2e::{create, manifests};
use tether_testenv::{TestNamespace, control_plane, repo_root};

#[tokio::test]
async fn the_seven_crds_are_installed_and_established() {
    let client = control_plane().client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client);
    let mut established: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .expect("list CRDs")
        .items
        .into_iter()
        .filter(|crd| crd.spec.group == "tether.dev")
        .filter(|crd| {
            crd.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Established" && c.status == "True"))
        })
        .map(|crd| crd.spec.names.kind)
        .collect();
    established.sort();
    assert_eq!(
        established,
        ["ApoloApp", "AppService", "CivisService", "ClusterConnection", "Connection", "PeakWebapp", "UbiService"]
    );
}

#[tokio::test]
async fn every_example_manifest_passes_server_side_dry_run() {
    let ns = TestNamespace::new("examples").await;
    let dir = repo_root().join("examples");
    let mut kinds = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).expect("examples/") {
        let path = entry.expect("entry").path();
        for doc in manifests(&path) {
            create(&ns.client, &ns.name, &doc, true)
                .await
                .unwrap_or_else(|e| panic!("{} {} rejected: {e}", path.display(), doc["kind"]));
            kinds.insert(doc["kind"].as_str().unwrap_or_default().to_string());
        }
    }
    let tether_kinds = kinds.iter().filter(|k| *k != "Secret").count();
    assert_eq!(tether_kinds, 7, "examples cover all seven kinds; found {kinds:?}");
}

#[test]
fn kubectl_works_against_the_kubeconfig() {
    let plane = control_plane();
    let out = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(plane.kubeconfig())
        .args(["get", "crd", "appservices.tether.dev", "-o", "jsonpath={.spec.names.categories}"])
        .output()
        .expect("kubectl is on PATH (it ships with the machine image)");
    assert!(out.status.success(), "kubectl failed: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), r#"["tether"]"#);

    // The API server publishes a new CRD's OpenAPI a few seconds after it is Established.
    let mut said = String::new();
    for _ in 0..60 {
        let explain = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(plane.kubeconfig())
            .args(["explain", "ubiservice.spec.port"])
            .output()
            .expect("kubectl explain");
        said = format!("{}{}", String::from_utf8_lossy(&explain.stdout), String::from_utf8_lossy(&explain.stderr));
        if said.contains("Port on the instances traffic is routed to") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    panic!("kubectl explain never showed the field's description; it said: {said}");
}

/// kube-controller-manager's garbage collector runs: Tether's output Secrets rely on owner references.
#[tokio::test]
async fn dependents_are_garbage_collected_with_their_owner() {
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    use kube::api::{DeleteParams, ObjectMeta, PostParams};

    let ns = TestNamespace::new("gc").await;
    let maps: Api<ConfigMap> = Api::namespaced(ns.client.clone(), &ns.name);
    let meta = |name: &str| ObjectMeta { name: Some(name.into()), ..Default::default() };
    let owner = ConfigMap { metadata: meta("owner"), ..Default::default() };
    let owner = maps.create(&PostParams::default(), &owner).await.expect("owner created");
    let mut dependent = ConfigMap { metadata: meta("dependent"), ..Default::default() };
    dependent.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().expect("uid"),
        ..Default::default()
    }]);
    maps.create(&PostParams::default(), &dependent).await.expect("dependent created");
    maps.delete("owner", &DeleteParams::default()).await.expect("owner deleted");
    for _ in 0..300 {
        if maps.get_opt("dependent").await.expect("get").is_none() {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the dependent outlived its owner by 30 s: is the garbage collector running?");
}
