//! `kubectl tether trace KIND/NAME`: the chain a resource depends on, each link with its health, as a
//! tree: resource → Connection/ClusterConnection → credential Secret(s) → remote object → outputs Secret.

use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use tether_controller::adapter::{Adapter, ManagedResource, Observation};

use crate::Global;
use crate::cluster::{self, Cluster};
use crate::kinds::Kind;
use crate::output::structured;
use crate::status::condition;

/// One link of the chain.
#[derive(Debug, Serialize)]
pub struct Node {
    /// What it is: `CivisService team-a/reports`, `Secret team-a/civis-credentials`.
    pub object: String,
    /// `Healthy`, `Unhealthy`, `Missing`, `Forbidden` or `Unknown`.
    pub health: &'static str,
    /// Why, in a line.
    pub detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<Node>,
}

impl Node {
    fn new(object: impl Into<String>, health: &'static str, detail: impl Into<String>) -> Self {
        Node { object: object.into(), health, detail: detail.into(), children: Vec::new() }
    }

    /// The tree as text, like `crossplane beta trace`.
    pub fn render(&self) -> String {
        let mut out = format!("{}  [{}] {}\n", self.object, self.health, self.detail);
        self.render_children("", &mut out);
        out
    }

    fn render_children(&self, prefix: &str, out: &mut String) {
        for (i, child) in self.children.iter().enumerate() {
            let last = i + 1 == self.children.len();
            let (branch, next) = if last { ("└── ", "    ") } else { ("├── ", "│   ") };
            out.push_str(&format!("{prefix}{branch}{}  [{}] {}\n", child.object, child.health, child.detail));
            child.render_children(&format!("{prefix}{next}"), out);
        }
    }
}

fn forbidden_or(error: &anyhow::Error) -> &'static str {
    let text = error.to_string();
    if text.starts_with("Forbidden") {
        "Forbidden"
    } else if text.contains("not found") {
        "Missing"
    } else {
        "Unhealthy"
    }
}

pub async fn run<A: Adapter>(cluster: &Cluster, global: &Global, kind: Kind, name: &str) -> anyhow::Result<()> {
    let cr: A::Resource = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let tree = trace::<A>(&cluster.client, kind, &cr).await;
    match structured(global.output, &tree)? {
        Some(text) => print!("{text}"),
        None => print!("{}", tree.render()),
    }
    Ok(())
}

async fn trace<A: Adapter>(client: &kube::Client, kind: Kind, cr: &A::Resource) -> Node {
    let namespace = cr.namespace().unwrap_or_default();
    let json = serde_json::to_value(cr).unwrap_or_default();
    let ready = condition(&json, "Ready");
    let synced = condition(&json, "Synced");
    let healthy = ready.as_ref().is_some_and(|r| r.0 == "True") && synced.as_ref().is_some_and(|s| s.0 == "True");
    let describe = |c: &Option<(String, String, String)>, t: &str| match c {
        Some((status, reason, _)) => format!("{t}={status} ({reason})"),
        None => format!("{t}=Unknown"),
    };
    let mut detail = format!("{} {}", describe(&ready, "Ready"), describe(&synced, "Synced"));
    let failing = [&synced, &ready].into_iter().flatten().find(|c| c.0 != "True");
    if let Some((_, _, message)) = failing.filter(|c| !c.2.is_empty()) {
        detail.push_str(&format!(": {message}"));
    }
    let mut root = Node::new(
        format!("{} {namespace}/{}", A::Resource::kind(&()), cr.name_any()),
        if healthy { "Healthy" } else { "Unhealthy" },
        detail,
    );

    // The connection and its credential Secrets; the remote object is read live only when they allow.
    let mut can_read_remote = true;
    match cluster::connection_of(client, cr).await {
        Ok(of) => {
            let (health, detail) = match &of.ready {
                Some((status, reason, message)) if status == "True" => {
                    ("Healthy", format!("Ready=True ({reason}) {message}"))
                }
                Some((status, reason, message)) => ("Unhealthy", format!("Ready={status} ({reason}) {message}")),
                None => ("Unknown", "no Ready condition yet".to_string()),
            };
            let mut node = Node::new(
                of.display.clone(),
                health,
                format!("{} at {}; {detail}", kind.platform_name(), of.settings.endpoint),
            );
            for (credential, secret_ns, selector) in cluster::credential_secrets(&of) {
                let object = format!("Secret {secret_ns}/{}", selector.name);
                let purpose = format!("which holds the {credential} credential of {}", of.display);
                let child = match cluster::secret_keys(client, &secret_ns, &selector.name, &purpose).await {
                    Ok(Some(keys)) if keys.contains(&selector.key) => {
                        Node::new(object, "Healthy", format!("{credential}: key {:?} present", selector.key))
                    }
                    Ok(Some(_)) => {
                        can_read_remote = false;
                        Node::new(object, "Unhealthy", format!("{credential}: no key {:?}", selector.key))
                    }
                    Ok(None) => {
                        can_read_remote = false;
                        Node::new(object, "Missing", format!("{credential}: the Secret does not exist"))
                    }
                    Err(e) => {
                        can_read_remote = false;
                        Node::new(object, forbidden_or(&e), e.to_string())
                    }
                };
                node.children.push(child);
            }
            root.children.push(node);
        }
        Err(e) => {
            can_read_remote = false;
            let reference = cr.connection_ref();
            let object = match reference.kind.unwrap_or_default() {
                tether_api::ConnectionKind::Connection => format!("Connection {namespace}/{}", reference.name),
                tether_api::ConnectionKind::ClusterConnection => format!("ClusterConnection {}", reference.name),
            };
            root.children.push(Node::new(object, forbidden_or(&e), e.to_string()));
        }
    }
    for (name, selector) in cr.secret_inputs() {
        let object = format!("Secret {namespace}/{}", selector.name);
        let purpose = format!("which spec input {name} refers to");
        root.children.push(match cluster::secret_keys(client, &namespace, &selector.name, &purpose).await {
            Ok(Some(keys)) if keys.contains(&selector.key) => {
                Node::new(object, "Healthy", format!("input {name}: key {:?} present", selector.key))
            }
            Ok(Some(_)) => Node::new(object, "Unhealthy", format!("input {name}: no key {:?}", selector.key)),
            Ok(None) => Node::new(object, "Missing", format!("input {name}: the Secret does not exist")),
            Err(e) => Node::new(object, forbidden_or(&e), e.to_string()),
        });
    }
    root.children.push(remote::<A>(client, kind, cr, &json, can_read_remote).await);
    if let Some(outputs) = cr.outputs_secret() {
        root.children.push(outputs_secret(client, &namespace, outputs, cr.uid().as_deref()).await);
    }
    root
}

/// The remote object: read live through the adapter's `observe` (reads only) when the credentials can be
/// read, else as the status last recorded it.
async fn remote<A: Adapter>(client: &kube::Client, kind: Kind, cr: &A::Resource, json: &Value, live: bool) -> Node {
    let recorded_id = json.pointer("/status/externalId").and_then(Value::as_str).map(str::to_string);
    let recorded_state =
        json.pointer("/status/atProvider/state").and_then(Value::as_str).unwrap_or("unknown").to_string();
    let recorded = || {
        let object = format!("{} {}", kind.remote_noun(), recorded_id.as_deref().unwrap_or("(none recorded)"));
        (object, format!("state={recorded_state} (as last recorded in status)"))
    };
    if !live {
        let (object, detail) = recorded();
        return Node::new(
            object,
            "Unknown",
            format!("{detail}; not read live: the connection or its credentials cannot be read"),
        );
    }
    let observed = async {
        let platform = cluster::platform_client::<A>(client, cr).await?;
        let request = cluster::request(client, cr).await?;
        A::observe(&platform, &request).await.map_err(|e| anyhow::anyhow!("{e}"))
    };
    match observed.await {
        Ok(Observation::Absent) => {
            Node::new(kind.remote_noun().to_string(), "Missing", "the platform has no object for this resource")
        }
        Ok(Observation::Present { external_id, up_to_date, ready, at_provider, outputs }) => {
            let state = serde_json::to_value(&at_provider)
                .ok()
                .and_then(|v| v.get("state").and_then(Value::as_str).map(str::to_string))
                .unwrap_or_else(|| "unknown".into());
            let mut detail = format!("state={state}");
            let url = outputs
                .iter()
                .find(|(k, v)| {
                    k.to_ascii_lowercase().contains("url") || k.contains("endpoint") || v.starts_with("http")
                })
                .map(|(_, v)| v.clone());
            if let Some(url) = url {
                detail.push_str(&format!(" url={url}"));
            }
            detail.push_str(if up_to_date {
                "; matches the spec"
            } else {
                "; differs from the spec (kubectl tether diff shows how)"
            });
            let health = match ready.not_ready() {
                None => "Healthy",
                Some((reason, message)) => {
                    detail.push_str(&format!("; {reason}: {message}"));
                    "Unhealthy"
                }
            };
            Node::new(format!("{} {external_id}", kind.remote_noun()), health, detail)
        }
        Err(e) => {
            let (object, detail) = recorded();
            Node::new(object, forbidden_or(&e), format!("{detail}; live read failed: {e}"))
        }
    }
}

async fn outputs_secret(client: &kube::Client, namespace: &str, name: &str, owner_uid: Option<&str>) -> Node {
    let object = format!("Secret {namespace}/{name}");
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(secret)) => {
            let keys: Vec<String> = secret.data.clone().unwrap_or_default().into_keys().collect();
            let owned = secret
                .owner_references()
                .iter()
                .any(|o| Some(o.uid.as_str()) == owner_uid && o.controller == Some(true));
            let health = if owned { "Healthy" } else { "Unhealthy" };
            let whose =
                if owned { "written by Tether" } else { "not owned by this resource: Tether refuses to write it" };
            Node::new(object, health, format!("outputs ({whose}); keys: {}", keys.join(", ")))
        }
        Ok(None) => Node::new(object, "Missing", "outputs: not written yet"),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Node::new(object, "Forbidden", format!("outputs: you may not read it ({})", s.message))
        }
        Err(e) => Node::new(object, "Unknown", format!("outputs: {e}")),
    }
}
