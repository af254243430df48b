//! `kubectl tether events KIND/NAME`: the resource's Kubernetes Events and the platform's own record of
//! the remote object (Apolo app events, Civis deployments, Iguazio manifest jobs), merged in time order.

use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use tether_controller::adapter::ManagedResource;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio};

use crate::Global;
use crate::cluster::{self, Cluster};
use crate::kinds::Kind;
use crate::output::{parse_time, structured, table};

/// One event, from either side.
#[derive(Debug, Serialize)]
pub struct Entry {
    /// When it happened (RFC 3339).
    pub time: Option<Timestamp>,
    /// `kubernetes` or the platform's name.
    pub source: String,
    /// Normal or Warning (Kubernetes), or the platform's state.
    #[serde(rename = "type")]
    pub type_: String,
    pub reason: String,
    pub message: String,
}

pub async fn run(cluster: &Cluster, global: &Global, kind: Kind, name: &str) -> anyhow::Result<()> {
    let object = crate::kinds::with_adapter!(kind, A => {
        let cr: <A as tether_controller::adapter::Adapter>::Resource = cluster::get(&cluster.client, &cluster.namespace, name).await?;
        serde_json::to_value(&cr)?
    });
    let uid = object.pointer("/metadata/uid").and_then(Value::as_str).unwrap_or_default().to_string();
    let mut entries = kubernetes_events(&cluster.client, &cluster.namespace, &uid).await?;
    match platform_events(cluster, kind, name).await {
        Ok(Some(platform)) => entries.extend(platform),
        Ok(None) => eprintln!("{} has no event API: only the Kubernetes Events are shown", kind.platform_name()),
        Err(e) => eprintln!("the {} side is not shown: {e:#}", kind.platform_name()),
    }
    entries.sort_by_key(|e| e.time);
    if let Some(text) = structured(global.output, &entries)? {
        print!("{text}");
        return Ok(());
    }
    if entries.is_empty() {
        println!("No events for {} {}/{name}.", kind.name(), cluster.namespace);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|e| {
            let time = e.time.map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| "-".into());
            vec![time, e.source.clone(), e.type_.clone(), e.reason.clone(), e.message.clone()]
        })
        .collect();
    print!("{}", table(&["TIME", "SOURCE", "TYPE", "REASON", "MESSAGE"], &rows));
    Ok(())
}

async fn kubernetes_events(client: &kube::Client, namespace: &str, uid: &str) -> anyhow::Result<Vec<Entry>> {
    let api: Api<Event> = Api::namespaced(client.clone(), namespace);
    let list = api
        .list(&ListParams::default().fields(&format!("involvedObject.uid={uid}")))
        .await
        .map_err(|e| cluster::explain(e, &format!("Events in namespace {namespace}")))?;
    Ok(list
        .items
        .into_iter()
        .map(|e| {
            let time = e
                .last_timestamp
                .as_ref()
                .map(|t| t.0)
                .or(e.event_time.as_ref().map(|t| t.0))
                .or(e.first_timestamp.as_ref().map(|t| t.0))
                .or(e.metadata.creation_timestamp.as_ref().map(|t| t.0));
            let count = e.count.filter(|c| *c > 1).map(|c| format!(" (x{c})")).unwrap_or_default();
            Entry {
                time,
                source: "kubernetes".into(),
                type_: e.type_.unwrap_or_default(),
                reason: e.reason.unwrap_or_default(),
                message: format!("{}{count}", e.message.unwrap_or_default()),
            }
        })
        .collect())
}

/// The platform's side, `None` for a platform without one.
async fn platform_events(cluster: &Cluster, kind: Kind, name: &str) -> anyhow::Result<Option<Vec<Entry>>> {
    let client = &cluster.client;
    let ns = &cluster.namespace;
    let source = kind.platform_name().to_ascii_lowercase();
    let entry = |time: Option<&str>, type_: &str, reason: &str, message: String| Entry {
        time: time.and_then(parse_time),
        source: source.clone(),
        type_: type_.to_string(),
        reason: reason.to_string(),
        message,
    };
    match kind {
        Kind::ApoloApp => {
            let cr: tether_api::ApoloApp = cluster::get(client, ns, name).await?;
            let id = external_id(&cr)?;
            let platform = cluster::platform_client::<Apolo>(client, &cr).await?;
            let scoped = platform.with_scope(&cr.spec.cluster, &cr.spec.org, &cr.spec.project);
            let events = scoped.events(&id).await.map_err(|e| anyhow::anyhow!("Apolo app {id} events: {e}"))?;
            let text = |e: &serde_json::Map<String, Value>, k: &str| {
                e.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
            };
            Ok(Some(
                events
                    .iter()
                    .map(|e| {
                        let message = match text(e, "message") {
                            m if m.is_empty() => text(e, "reason"),
                            m => format!("{}: {m}", text(e, "reason")),
                        };
                        entry(e.get("created_at").and_then(Value::as_str), &text(e, "state"), "AppEvent", message)
                    })
                    .collect(),
            ))
        }
        Kind::CivisService => {
            let cr: tether_api::CivisService = cluster::get(client, ns, name).await?;
            let id: i64 = external_id(&cr)?
                .parse()
                .map_err(|_| anyhow::anyhow!("status.externalId is not a Civis service id"))?;
            let platform = cluster::platform_client::<Civis>(client, &cr).await?;
            let deployments =
                platform.deployments(id).await.map_err(|e| anyhow::anyhow!("Civis service {id} deployments: {e}"))?;
            let mut out = Vec::new();
            for d in deployments {
                let at = |k: &str| d.fields.get(k).and_then(Value::as_str).map(str::to_string);
                out.push(entry(
                    at("createdAt").as_deref(),
                    "pending",
                    "DeploymentCreated",
                    format!("deployment {} created", d.deployment_id),
                ));
                if d.state != "pending" {
                    let why = d.state_message.clone().map(|m| format!(": {m}")).unwrap_or_default();
                    let message = format!("deployment {} is {}{why}", d.deployment_id, d.state);
                    out.push(entry(at("updatedAt").as_deref(), &d.state, "DeploymentState", message));
                }
            }
            Ok(Some(out))
        }
        Kind::AppService => {
            let cr: tether_api::AppService = cluster::get(client, ns, name).await?;
            let writer = cluster::platform_client::<Iguazio>(client, &cr).await?;
            let manifest = writer.client().manifest().await.map_err(|e| anyhow::anyhow!("Iguazio manifest: {e}"))?;
            let attribute = |k: &str| {
                manifest.attributes.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_string)
            };
            let mut out = Vec::new();
            let jobs = [manifest.running_job().map(str::to_string), attribute("last_modification_job")];
            let mut seen = Vec::new();
            for id in jobs.into_iter().flatten() {
                if seen.contains(&id) {
                    continue;
                }
                seen.push(id.clone());
                match writer.client().job_attributes(&id).await {
                    Ok(job) => {
                        let field = |k: &str| job.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
                        let (state, result) = (field("state"), field("result"));
                        let result = if result.is_empty() { String::new() } else { format!(": {result}") };
                        let message = format!(
                            "manifest job {id} (the tenant's app services, not only this one) is {state}{result}"
                        );
                        let time = Some(field("updated_at")).filter(|t| !t.is_empty()).or(Some(field("created_at")));
                        out.push(entry(time.as_deref(), &state, "ManifestJob", message));
                    }
                    Err(e) => eprintln!("Iguazio job {id}: {e}"),
                }
            }
            if let Some(service) = manifest.service(&cr.spec.name) {
                let state = service.state().unwrap_or("unknown");
                let mut now =
                    entry(None, state, "ServiceState", format!("app service {} is {state} now", cr.spec.name));
                now.time = Some(Timestamp::now());
                out.push(now);
            }
            Ok(Some(out))
        }
        Kind::UbiService | Kind::PeakWebapp => Ok(None),
    }
}

/// The platform id the status recorded.
pub fn external_id<K: ManagedResource>(cr: &K) -> anyhow::Result<String> {
    cr.managed_status().and_then(|s| s.external_id.clone()).ok_or_else(|| {
        anyhow::anyhow!(
            "{} {}/{} has no remote object recorded yet (status.externalId): see kubectl tether trace",
            K::kind(&()),
            cr.namespace().unwrap_or_default(),
            cr.name_any()
        )
    })
}
