//! Admission: every validation rule the types declare rejects a manifest that breaks it, with the message
//! a user should see, on a real API server (OpenAPI schema and CEL; Tether runs no webhook).

use serde_json::{Value, json};
use tether_e2e::{api_for, create, example, merged};
use tether_testenv::TestNamespace;

/// A manifest that must be refused at creation: the example of `kind` with `patch` merged in.
struct Invalid {
    case: &'static str,
    file: &'static str,
    kind: &'static str,
    patch: Value,
    expect: &'static str,
}

fn invalid_on_create() -> Vec<Invalid> {
    let case = |case, file, kind, patch, expect| Invalid { case, file, kind, patch, expect };
    vec![
        case(
            "an Apolo project that is a path",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"project": "other/../project"}}),
            "spec.project: Invalid value",
        ),
        case(
            "an Apolo org of ..",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"org": ".."}}),
            "spec.org: Invalid value",
        ),
        case(
            "an Apolo cluster with a slash",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"cluster": "a/b"}}),
            "spec.cluster: Invalid value",
        ),
        case(
            "an Apolo template version with a slash",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"templateVersion": "../v1"}}),
            "spec.templateVersion: Invalid value",
        ),
        case(
            "an AppService kind that is one of the entry's own fields",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"kind": "name"}}),
            "not one of the app service's own fields",
        ),
        case(
            "a description past the string bound",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"description": "x".repeat(17 * 1024)}}),
            "spec.description: Too long",
        ),
        case(
            "more labels than the map bound",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"labels": (0..300).map(|i| (format!("k{i}"), json!("v"))).collect::<serde_json::Map<_, _>>()}}),
            "spec.labels: Too many",
        ),
        case(
            "an Apolo input with more keys than the bound",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"input": (0..600).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()}}),
            "spec.input: Too many",
        ),
        case(
            "missing required name",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"name": null}}),
            "spec.name: Required value",
        ),
        case(
            "missing connectionRef",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"connectionRef": null}}),
            "spec.connectionRef: Required value",
        ),
        case(
            "unknown desiredState",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"desiredState": "running"}}),
            "spec.desiredState: Unsupported value: \"running\"",
        ),
        case(
            "targetCpu above 100",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"targetCpu": 150}}),
            "spec.targetCpu: Invalid value: 150: spec.targetCpu in body should be less than or equal to 100",
        ),
        case(
            "maxReplicas below minReplicas",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"minReplicas": 3, "maxReplicas": 2}}),
            "maxReplicas must be greater than or equal to minReplicas",
        ),
        case(
            "name not DNS-like",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"name": "Team_Notebook"}}),
            "spec.name in body should match",
        ),
        case(
            "Archive is Civis-only",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"deletionPolicy": "Archive"}}),
            "spec.deletionPolicy: Unsupported value: \"Archive\"",
        ),
        case(
            "unknown managementPolicy",
            "peakwebapp.yaml",
            "PeakWebapp",
            json!({"spec": {"managementPolicy": "ReadOnly"}}),
            "spec.managementPolicy: Unsupported value: \"ReadOnly\"",
        ),
        case(
            "tokens without an output Secret",
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"writeOutputsTo": null}}),
            "tokens need writeOutputsTo",
        ),
        case(
            "maxReplicas below replicas",
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"replicas": 4, "maxReplicas": 2}}),
            "maxReplicas must be greater than or equal to replicas",
        ),
        case(
            "nothing to run",
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"dockerImageName": null, "dockerImageTag": null}}),
            "set dockerImageName or gitRepoUrl",
        ),
        case(
            "day of week out of range",
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"schedule": {"runtimePlan": "specific_times", "recurrences": [{"scheduledDays": [7], "scheduledHours": [9]}]}}}),
            "should be less than or equal to 6",
        ),
        case(
            "unknown runtime plan",
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"schedule": {"runtimePlan": "sometimes"}}}),
            "spec.schedule.runtimePlan: Unsupported value: \"sometimes\"",
        ),
        case(
            "missing cluster",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"cluster": null}}),
            "spec.cluster: Required value",
        ),
        case(
            "rollback to revision 0",
            "apoloapp.yaml",
            "ApoloApp",
            json!({"spec": {"rollbackToRevision": 0}}),
            "spec.rollbackToRevision in body should be greater than or equal to 1",
        ),
        case(
            "port out of range",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"port": 70000}}),
            "spec.port in body should be less than or equal to 65535",
        ),
        case(
            "per-user concurrency above the overall concurrency",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"concurrencyLimit": 2, "concurrencyLimitUserDefault": 3}}),
            "concurrencyLimitUserDefault cannot exceed concurrencyLimit",
        ),
        case(
            "ubiops without a token",
            "ubiservice.yaml",
            "Connection",
            json!({"spec": {"credentials": {"token": null, "apiKey": {"name": "s", "key": "k"}}}}),
            "platforms apolo and ubiops need credentials.token",
        ),
        case(
            "unknown scale-to-zero window",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"scaleToZero": {"mode": "enabled", "scaleResources": [{"metricName": "m", "windowSize": "3m"}]}}}),
            "Unsupported value: \"3m\"",
        ),
        case(
            "memory that is not a quantity",
            "appservice.yaml",
            "AppService",
            json!({"spec": {"resources": {"limits": {"memory": "lots"}}}}),
            "spec.resources.limits.memory in body should match",
        ),
        case(
            "per-user rate above the overall rate",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"rateLimit": 10, "rateLimitUserDefault": 20}}),
            "rateLimitUserDefault cannot exceed rateLimit",
        ),
        case(
            "description over 400 characters",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"description": "x".repeat(401)}}),
            "spec.description: Too long: may not be more than 400",
        ),
        case(
            "health check path without slash",
            "ubiservice.yaml",
            "UbiService",
            json!({"spec": {"healthCheck": {"path": "status"}}}),
            "spec.healthCheck.path in body should match '^/'",
        ),
        case(
            "image id 0",
            "peakwebapp.yaml",
            "PeakWebapp",
            json!({"spec": {"imageDetails": {"imageId": 0}}}),
            "spec.imageDetails.imageId in body should be greater than or equal to 1",
        ),
        case(
            "missing imageDetails",
            "peakwebapp.yaml",
            "PeakWebapp",
            json!({"spec": {"imageDetails": null}}),
            "spec.imageDetails: Required value",
        ),
        case(
            "iguazio without an access key",
            "appservice.yaml",
            "Connection",
            json!({"spec": {"credentials": {"accessKey": null}}}),
            "platform iguazio needs credentials.username and credentials.accessKey",
        ),
        case(
            "civis without an API key",
            "civisservice.yaml",
            "Connection",
            json!({"spec": {"credentials": {"apiKey": null, "token": {"name": "s", "key": "k"}}}}),
            "platforms civis and peak need credentials.apiKey",
        ),
        case(
            "Connection naming a Secret namespace",
            "ubiservice.yaml",
            "Connection",
            json!({"spec": {"credentials": {"token": {"namespace": "elsewhere"}}}}),
            "a Connection reads Secrets from its own namespace",
        ),
        case(
            "burst without a rate",
            "peakwebapp.yaml",
            "Connection",
            json!({"spec": {"burst": 5}}),
            "burst needs requestsPerSecond",
        ),
        case(
            "endpoint that is not http(s)",
            "peakwebapp.yaml",
            "Connection",
            json!({"spec": {"endpoint": "ftp://service.peak.ai"}}),
            "spec.endpoint in body should match",
        ),
        case(
            "unknown platform",
            "peakwebapp.yaml",
            "Connection",
            json!({"spec": {"platform": "sagemaker"}}),
            "spec.platform: Unsupported value: \"sagemaker\"",
        ),
        case(
            "ClusterConnection credential without namespace",
            "clusterconnection.yaml",
            "ClusterConnection",
            json!({"spec": {"credentials": {"apiKey": {"namespace": null}}}}),
            "every credential of a ClusterConnection must name the Secret's namespace",
        ),
        case(
            "ClusterConnection allowing no namespace",
            "clusterconnection.yaml",
            "ClusterConnection",
            json!({"spec": {"allowedNamespaces": []}}),
            "spec.allowedNamespaces: Invalid value: 0: spec.allowedNamespaces in body should have at least 1 items",
        ),
    ]
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_the_rule_message() {
    let ns = TestNamespace::new("admission").await;
    let mut failures = Vec::new();
    let cases = invalid_on_create();
    assert!(cases.len() >= 15);
    for c in &cases {
        let manifest = merged(&example(c.file, c.kind), c.patch.clone());
        match create(&ns.client, &ns.name, &manifest, true).await {
            Ok(_) => failures.push(format!("{}: accepted", c.case)),
            Err(kube::Error::Api(status)) if status.code == 422 && status.message.contains(c.expect) => {}
            Err(e) => failures.push(format!("{}: expected 422 with {:?}, got {e}", c.case, c.expect)),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

/// Identity fields are immutable: an update that changes one is refused; the same update of a mutable
/// field goes through, so the refusal is the rule's and not the update's.
#[tokio::test]
async fn identity_fields_cannot_change_after_creation() {
    let ns = TestNamespace::new("immutable").await;
    let cases = [
        ("appservice.yaml", "AppService", json!({"spec": {"name": "other-notebook"}}), "name is immutable"),
        ("appservice.yaml", "AppService", json!({"spec": {"kind": "shell"}}), "kind is immutable"),
        (
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"type": "Streamlit"}}),
            "type is set at creation and cannot change",
        ),
        (
            "civisservice.yaml",
            "CivisService",
            json!({"spec": {"hidden": true}}),
            "hidden is set at creation and cannot change",
        ),
        ("apoloapp.yaml", "ApoloApp", json!({"spec": {"templateName": "mlflow"}}), "templateName is immutable"),
        ("apoloapp.yaml", "ApoloApp", json!({"spec": {"project": "other"}}), "project is immutable"),
        ("apoloapp.yaml", "ApoloApp", json!({"spec": {"cluster": "other"}}), "cluster is immutable"),
        ("apoloapp.yaml", "ApoloApp", json!({"spec": {"org": "other"}}), "org is immutable"),
        ("ubiservice.yaml", "UbiService", json!({"spec": {"name": "renamed"}}), "name is immutable"),
        (
            "clusterconnection.yaml",
            "ClusterConnection",
            json!({"spec": {"platform": "civis"}}),
            "platform is immutable",
        ),
        ("ubiservice.yaml", "UbiService", json!({"spec": {"project": "other"}}), "project is immutable"),
        ("peakwebapp.yaml", "PeakWebapp", json!({"spec": {"name": "renamed"}}), "name is immutable"),
        (
            "peakwebapp.yaml",
            "Connection",
            json!({"spec": {"platform": "civis", "credentials": {"apiKey": {"name": "s", "key": "k"}}}}),
            "platform is immutable",
        ),
    ];
    let mut failures = Vec::new();
    for (i, (file, kind, patch, expect)) in cases.into_iter().enumerate() {
        let mut manifest = example(file, kind);
        manifest["metadata"]["name"] = json!(format!("case-{i}"));
        let created = create(&ns.client, &ns.name, &manifest, false).await.expect("valid example is created");
        let api = api_for(&ns.client, &ns.name, &manifest).await;
        let name = created.metadata.name.clone().expect("name");
        let params = kube::api::PatchParams::default();
        match api.patch(&name, &params, &kube::api::Patch::Merge(&patch)).await {
            Ok(_) => failures.push(format!("{kind} {patch}: accepted")),
            Err(kube::Error::Api(s)) if s.code == 422 && s.message.contains(expect) => {}
            Err(e) => failures.push(format!("{kind} {patch}: expected {expect:?}, got {e}")),
        }
        let harmless = json!({"metadata": {"labels": {"touched": "yes"}}});
        api.patch(&name, &params, &kube::api::Patch::Merge(&harmless))
            .await
            .unwrap_or_else(|e| panic!("{kind}: a mutable change was refused too: {e}"));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
