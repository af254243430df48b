//! `kubectl tether status`: every Tether resource with Ready, Synced, the reason and message (and since when
//! the condition shown has held), its age and the platform's state, grouped by kind, failures first.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use serde::Serialize;
use serde_json::Value;
use tether_api::connection::{ClusterConnection, Connection};

use crate::cluster::Cluster;
use crate::kinds::Kind;
use crate::output::{age, cut, structured, table};
use crate::{Global, OutputFormat};

/// One resource's line.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub ready: String,
    pub synced: String,
    pub reason: String,
    pub message: String,
    /// The platform's own state of the remote object (`status.atProvider.state`).
    pub state: String,
    pub external_id: String,
    pub age: String,
    /// How long the condition shown (Synced when failing, else Ready) has had its status.
    pub since: String,
    #[serde(skip)]
    rank: u8,
}

/// The condition `type_` of a resource as `(status, reason, message)`.
pub fn condition(object: &Value, type_: &str) -> Option<(String, String, String)> {
    condition_with_time(object, type_).map(|(status, reason, message, _)| (status, reason, message))
}

/// The condition `type_` with its lastTransitionTime.
fn condition_with_time(object: &Value, type_: &str) -> Option<(String, String, String, String)> {
    let conditions = object.pointer("/status/conditions")?.as_array()?;
    let c = conditions.iter().find(|c| c["type"] == type_)?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_string();
    Some((text("status"), text("reason"), text("message"), text("lastTransitionTime")))
}

impl Row {
    fn of(kind: Kind, object: &DynamicObject) -> Self {
        let json = serde_json::to_value(object).unwrap_or_default();
        let none =
            || ("Unknown".to_string(), "NotReconciled".to_string(), "Tether has not reconciled it yet".to_string());
        let ready = condition(&json, "Ready").unwrap_or_else(none);
        let synced = condition(&json, "Synced").unwrap_or_else(none);
        let stalled = condition(&json, "Stalled").is_some_and(|c| c.0 == "True");
        // What to show: the failing condition's reason and message, Synced first (the reconcile failed).
        let (reason, message, shown) = if synced.0 != "True" {
            (synced.1.clone(), synced.2.clone(), "Synced")
        } else {
            (ready.1.clone(), ready.2.clone(), "Ready")
        };
        let since = condition_with_time(&json, shown)
            .and_then(|c| crate::output::parse_time(&c.3))
            .map(age)
            .unwrap_or_default();
        let rank = match () {
            _ if stalled || synced.0 == "False" => 0,
            _ if ready.0 != "True" => 1,
            _ => 2,
        };
        let text = |pointer: &str| json.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
        Row {
            kind: kind.name(),
            namespace: object.metadata.namespace.clone().unwrap_or_default(),
            name: object.metadata.name.clone().unwrap_or_default(),
            ready: ready.0,
            synced: synced.0,
            reason,
            message,
            state: text("/status/atProvider/state"),
            external_id: text("/status/externalId"),
            age: object.metadata.creation_timestamp.as_ref().map(|t| age(t.0)).unwrap_or_default(),
            since,
            rank,
        }
    }
}

/// The groups `status` prints, in order: the five managed kinds, then the connections they use.
const GROUPS: [(&str, &str); 7] = [
    ("AppService", "Iguazio"),
    ("CivisService", "Civis"),
    ("ApoloApp", "Apolo"),
    ("UbiService", "UbiOps"),
    ("PeakWebapp", "Peak"),
    ("Connection", "any platform"),
    ("ClusterConnection", "any platform"),
];

impl Row {
    /// A Connection's or ClusterConnection's line: its Ready condition, its platform as the state.
    fn of_connection(kind: &'static str, object: &DynamicObject) -> Self {
        let json = serde_json::to_value(object).unwrap_or_default();
        let ready = condition_with_time(&json, "Ready");
        let text = |pointer: &str| json.pointer(pointer).and_then(Value::as_str).unwrap_or_default().to_string();
        let (status, reason, message, since) = ready.unwrap_or_else(|| {
            ("Unknown".into(), "NotChecked".into(), "Tether has not checked it yet".into(), String::new())
        });
        Row {
            kind,
            namespace: object.metadata.namespace.clone().unwrap_or_else(|| "-".into()),
            name: object.metadata.name.clone().unwrap_or_default(),
            rank: if status == "True" { 2 } else { 0 },
            ready: status,
            synced: "-".into(),
            reason,
            message,
            state: text("/spec/platform"),
            external_id: String::new(),
            age: object.metadata.creation_timestamp.as_ref().map(|t| age(t.0)).unwrap_or_default(),
            since: crate::output::parse_time(&since).map(age).unwrap_or_default(),
        }
    }
}

pub async fn run(cluster: &Cluster, global: &Global) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    let mut unreadable = Vec::new();
    let connections = [
        ("Connection", ApiResource::erase::<Connection>(&()), true),
        ("ClusterConnection", ApiResource::erase::<ClusterConnection>(&()), false),
    ];
    for (kind, resource, namespaced) in connections {
        let api: Api<DynamicObject> = if namespaced && !global.all_namespaces {
            Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource)
        } else {
            Api::all_with(cluster.client.clone(), &resource)
        };
        match api.list(&ListParams::default()).await {
            Ok(list) => rows.extend(
                list.items
                    .iter()
                    // In one namespace, only the ClusterConnections its resources may use.
                    .filter(|o| namespaced || global.all_namespaces || allows(o, &cluster.namespace))
                    .map(|o| Row::of_connection(kind, o)),
            ),
            // A user may read resources without reading connections: nothing to say about them then.
            Err(kube::Error::Api(status)) if status.code == 403 => {}
            Err(e) => unreadable.push(format!("{kind}: {e}")),
        }
    }
    for kind in Kind::ALL {
        let resource = kind.api_resource();
        let api: Api<DynamicObject> = if global.all_namespaces {
            Api::all_with(cluster.client.clone(), &resource)
        } else {
            Api::namespaced_with(cluster.client.clone(), &cluster.namespace, &resource)
        };
        match api.list(&ListParams::default()).await {
            Ok(list) => rows.extend(list.items.iter().map(|o| Row::of(kind, o))),
            Err(kube::Error::Api(status)) if status.code == 403 => {
                unreadable.push(format!("{}: Forbidden ({})", kind.name(), status.message))
            }
            Err(e) => unreadable.push(format!("{}: {e}", kind.name())),
        }
    }
    rows.sort_by(|a, b| {
        (a.kind_order(), a.rank, &a.namespace, &a.name).cmp(&(b.kind_order(), b.rank, &b.namespace, &b.name))
    });
    for line in &unreadable {
        eprintln!("cannot list {line}");
    }
    if let Some(text) = structured(global.output, &rows)? {
        print!("{text}");
        return Ok(());
    }
    if rows.is_empty() {
        let scope = if global.all_namespaces {
            "any namespace".to_string()
        } else {
            format!("namespace {}", cluster.namespace)
        };
        println!("No Tether resources in {scope}.");
        return Ok(());
    }
    let wide = global.output == Some(OutputFormat::Wide);
    let mut first = true;
    for (group, platform) in GROUPS {
        let of_kind: Vec<&Row> = rows.iter().filter(|r| r.kind == group).collect();
        if of_kind.is_empty() {
            continue;
        }
        if !first {
            println!();
        }
        first = false;
        let failing = of_kind.iter().filter(|r| r.rank < 2).count();
        let count = match of_kind.len() {
            1 => "1 resource".to_string(),
            n => format!("{n} resources"),
        };
        println!("{group} ({platform}): {count}, {failing} not ready or not synced");
        let mut header = vec!["NAMESPACE", "NAME", "READY", "SYNCED", "REASON", "SINCE", "STATE", "AGE"];
        if wide {
            header.push("EXTERNAL-ID");
        }
        header.push("MESSAGE");
        let lines: Vec<Vec<String>> = of_kind
            .iter()
            .map(|r| {
                let mut line = vec![r.namespace.clone(), r.name.clone(), r.ready.clone(), r.synced.clone()];
                line.extend([r.reason.clone(), r.since.clone(), r.state.clone(), r.age.clone()]);
                if wide {
                    line.push(r.external_id.clone());
                    line.push(r.message.clone());
                } else {
                    line.push(cut(&r.message, 80));
                }
                line
            })
            .collect();
        print!("{}", table(&header, &lines));
    }
    Ok(())
}

/// Whether a ClusterConnection lets resources of `namespace` use it.
fn allows(object: &DynamicObject, namespace: &str) -> bool {
    let allowed = object.data.pointer("/spec/allowedNamespaces").and_then(Value::as_array);
    allowed.is_some_and(|list| list.iter().any(|n| n == "*" || n == namespace))
}

impl Row {
    fn kind_order(&self) -> usize {
        GROUPS.iter().position(|(group, _)| *group == self.kind).unwrap_or(usize::MAX)
    }
}
