//! `kubectl tether diff`: what Tether would change on the platform for a live resource, or for a manifest
//! not applied yet, computed by the adapters' own comparison ([`tether_controller::preview`]) with only
//! platform reads: nothing is written, neither to the cluster nor to the platform.

use std::path::Path;

use anyhow::Context as _;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use tether_controller::adapter::ManagedResource;
use tether_controller::preview::{Plan, Preview};

use crate::Global;
use crate::cluster::{self, Cluster};
use crate::kinds::{Kind, with_adapter};
use crate::output::structured;

/// What the uid of a resource not created yet reads as in a plan (owner marks carry the uid).
const NEW_UID: &str = "<uid of the new resource>";

/// One resource's plan, as `-o json|yaml` prints it.
#[derive(Debug, Serialize)]
pub struct Diff {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    /// Why Tether would not send it now (paused, ObserveOnly), if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub plan: Plan,
}

/// `diff KIND/NAME`: the live resource.
pub async fn live<A: Preview>(cluster: &Cluster, global: &Global, kind: Kind, name: &str) -> anyhow::Result<()> {
    let cr: A::Resource = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let diff = plan::<A>(&cluster.client, kind, &cr).await?;
    print(global, &[diff])
}

/// `diff -f FILE`: each Tether resource of a manifest (other documents are skipped), as the API server
/// would store it once applied (a server-side dry run), against the platform.
pub async fn file(cluster: &Cluster, global: &Global, path: &Path) -> anyhow::Result<()> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let mut diffs = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(&text) {
        let value: Value =
            serde::Deserialize::deserialize(document).with_context(|| format!("parsing {}", path.display()))?;
        if value.is_null() {
            continue;
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind_name = value["kind"].as_str().unwrap_or_default();
        let name = value.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
        let kind = Kind::parse(kind_name).filter(|_| api_version.starts_with("tether.dev/"));
        let Some(kind) = kind else {
            eprintln!("skipping {kind_name} {name}: not a kind Tether manages on a platform");
            continue;
        };
        let namespace =
            value.pointer("/metadata/namespace").and_then(Value::as_str).unwrap_or(&cluster.namespace).to_string();
        let applied = as_applied(&cluster.client, kind, &namespace, &name, value).await?;
        let diff = with_adapter!(kind, A => {
            let cr: <A as tether_controller::adapter::Adapter>::Resource =
                serde_json::from_value(applied).with_context(|| format!("{} {namespace}/{name} is not a valid {}", kind.name(), kind.name()))?;
            plan::<A>(&cluster.client, kind, &cr).await?
        });
        diffs.push(diff);
    }
    anyhow::ensure!(
        !diffs.is_empty(),
        "{} holds no Tether resource (AppService, CivisService, ApoloApp, UbiService, PeakWebapp)",
        path.display()
    );
    print(global, &diffs)
}

/// The object as the API server would hold it after `kubectl apply --server-side` (defaults, the live
/// uid and status kept), by a dry run that writes nothing. A user who may not patch gets the manifest laid
/// over the live object instead (or the manifest alone, for an object not created yet).
async fn as_applied(
    client: &kube::Client,
    kind: Kind,
    namespace: &str,
    name: &str,
    mut manifest: Value,
) -> anyhow::Result<Value> {
    manifest["metadata"]["namespace"] = Value::String(namespace.to_string());
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &kind.api_resource());
    let params = PatchParams::apply("kubectl-tether-diff").dry_run().force();
    let exists = api
        .get_opt(name)
        .await
        .map_err(|e| cluster::explain(e, &format!("{} {namespace}/{name}", kind.name())))?
        .is_some();
    match api.patch(name, &params, &Patch::Apply(&manifest)).await {
        // A dry-run create makes up a uid the real create will not use: shown as what it stands for.
        Ok(object) if !exists => {
            let mut object = serde_json::to_value(object)?;
            object["metadata"]["uid"] = Value::String(NEW_UID.into());
            Ok(object)
        }
        Ok(object) => Ok(serde_json::to_value(object)?),
        Err(kube::Error::Api(status)) if status.code == 403 || status.code == 405 => {
            let live = if exists { api.get_opt(name).await.ok().flatten() } else { None };
            Ok(match live {
                Some(live) => {
                    let mut merged = serde_json::to_value(live)?;
                    merged["spec"] = manifest["spec"].take();
                    for field in ["labels", "annotations"] {
                        if let Some(Value::Object(values)) = manifest.pointer(&format!("/metadata/{field}")) {
                            let target = &mut merged["metadata"][field];
                            if !target.is_object() {
                                *target = Value::Object(Default::default());
                            }
                            for (k, v) in values {
                                target[k] = v.clone();
                            }
                        }
                    }
                    merged
                }
                None => {
                    manifest["metadata"]["uid"] = Value::String(NEW_UID.into());
                    manifest
                }
            })
        }
        Err(kube::Error::Api(status)) if status.code == 422 || status.code == 400 => {
            anyhow::bail!("{} {namespace}/{name} would be refused by the API server: {}", kind.name(), status.message)
        }
        Err(e) => Err(cluster::explain(e, &format!("{} {namespace}/{name} (dry run)", kind.name()))),
    }
}

async fn plan<A: Preview>(client: &kube::Client, kind: Kind, cr: &A::Resource) -> anyhow::Result<Diff> {
    let platform = cluster::platform_client::<A>(client, cr).await?;
    let request = cluster::request(client, cr).await?;
    let what = format!("{} {}/{}", kind.name(), cr.namespace().unwrap_or_default(), cr.name_any());
    let plan = A::preview(&platform, &request)
        .await
        .map_err(|e| anyhow::anyhow!("{what}: reading the {}: {e}", kind.remote_noun()))?;
    let paused = cr.annotations().get(tether_controller::reconciler::PAUSED).is_some_and(|v| v == "true");
    let note = match () {
        _ if cr.observe_only() => {
            Some("managementPolicy is ObserveOnly: Tether will not send these changes".to_string())
        }
        _ if paused => Some(format!(
            "annotation {} is \"true\": nothing is sent until it is removed",
            tether_controller::reconciler::PAUSED
        )),
        _ => serde_json::to_value(cr).ok().and_then(|v| v.pointer("/spec/rollbackToRevision")?.as_i64()).map(|n| {
            format!("spec.rollbackToRevision pins the configuration to revision {n}: spec.input is not applied until the field is removed")
        }),
    };
    Ok(Diff { kind: kind.name(), namespace: cr.namespace().unwrap_or_default(), name: cr.name_any(), note, plan })
}

fn show(value: &Value) -> String {
    match value {
        Value::Null => "(unset)".to_string(),
        other => other.to_string(),
    }
}

/// The diffs as text (or JSON/YAML).
pub fn render(diffs: &[Diff]) -> String {
    let mut out = String::new();
    for diff in diffs {
        let kind = Kind::parse(diff.kind).expect("a kind");
        let head = format!("{} {}/{}", diff.kind, diff.namespace, diff.name);
        match &diff.plan {
            Plan::Create { fields, actions } => {
                out.push_str(&format!("{head}: create a {}\n", kind.remote_noun()));
                for (field, value) in fields {
                    out.push_str(&format!("  + {field}: {}\n", show(value)));
                }
                for action in actions {
                    out.push_str(&format!("  then: {action}\n"));
                }
            }
            Plan::Update { external_id, changes, actions } => {
                out.push_str(&format!("{head}: update {} {external_id}\n", kind.remote_noun()));
                for change in changes {
                    out.push_str(&format!("  ~ {}: {} -> {}\n", change.field, show(&change.old), show(&change.new)));
                }
                for action in actions {
                    out.push_str(&format!("  then: {action}\n"));
                }
            }
            Plan::UpToDate { external_id } => {
                out.push_str(&format!("{head}: no changes ({} {external_id} matches the spec)\n", kind.remote_noun()));
            }
        }
        if let Some(note) = &diff.note {
            out.push_str(&format!("  note: {note}\n"));
        }
    }
    out
}

fn print(global: &Global, diffs: &[Diff]) -> anyhow::Result<()> {
    match structured(global.output, &diffs)? {
        Some(text) => print!("{text}"),
        None => print!("{}", render(diffs)),
    }
    Ok(())
}
