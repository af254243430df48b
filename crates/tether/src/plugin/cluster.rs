//! The cluster as the user sees it: a client from their kubeconfig (context, namespace, impersonation, as
//! kubectl takes them), and a resource's platform client built from its Connection and Secrets read with
//! the user's own RBAC, so a user who may not read a credential Secret is told which one.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::Secret;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, ResourceExt};
use tether_api::connection::{ClusterConnection, Connection, ConnectionSettings};
use tether_api::{ConnectionKind, SecretKeySelector};
use tether_controller::adapter::{Adapter, ManagedResource, Request};
use tether_controller::connection;
use tether_controller::sources::Sources;

use crate::Global;

/// The user's cluster: a client and the namespace the commands default to.
pub struct Cluster {
    pub client: Client,
    /// `-n`, else the kubeconfig context's namespace, else `default`.
    pub namespace: String,
}

impl Cluster {
    /// Connects as kubectl would with the same flags.
    pub async fn connect(global: &Global) -> anyhow::Result<Self> {
        let options = KubeConfigOptions { context: global.context.clone(), cluster: None, user: None };
        let mut config = match (&global.kubeconfig, &global.context) {
            (Some(path), _) => {
                let file =
                    Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
                kube::Config::from_custom_kubeconfig(file, &options).await?
            }
            (None, Some(_)) => kube::Config::from_kubeconfig(&options).await?,
            (None, None) => kube::Config::infer()
                .await
                .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not in a cluster")?,
        };
        if let Some(user) = &global.as_user {
            config.auth_info.impersonate = Some(user.clone());
        }
        if !global.as_group.is_empty() {
            config.auth_info.impersonate_groups = Some(global.as_group.clone());
        }
        let namespace = global.namespace.clone().unwrap_or_else(|| config.default_namespace.clone());
        let client = Client::try_from(config)?;
        Ok(Self { client, namespace })
    }
}

/// What went wrong reading `what` (e.g. "CivisService team-a/reports"), in words to act on.
pub fn explain(error: kube::Error, what: &str) -> anyhow::Error {
    match &error {
        kube::Error::Api(status) if status.code == 404 => anyhow::anyhow!("{what} not found"),
        kube::Error::Api(status) if status.code == 403 => {
            anyhow::anyhow!("Forbidden: you may not read {what} ({})", status.message)
        }
        _ => anyhow::Error::new(error).context(format!("reading {what}")),
    }
}

/// A typed read of `namespace/name`, with errors that name the object.
pub async fn get<K>(client: &Client, namespace: &str, name: &str) -> anyhow::Result<K>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    api.get(name).await.map_err(|e| explain(e, &format!("{} {namespace}/{name}", K::kind(&()))))
}

/// The Connection or ClusterConnection `cr` uses: its settings, where its Secrets are, and how to name it.
pub struct ConnectionOf {
    pub settings: ConnectionSettings,
    /// The namespace of a Connection's Secrets (a ClusterConnection's selectors name theirs).
    pub secret_namespace: Option<String>,
    /// `Connection team-a/civis` or `ClusterConnection shared-civis`.
    pub display: String,
    /// Its Ready condition as `(status, reason, message)`, when it has one.
    pub ready: Option<(String, String, String)>,
}

/// Reads the connection `cr` refers to and checks it may serve it (platform, allowed namespaces).
pub async fn connection_of<K: ManagedResource>(client: &Client, cr: &K) -> anyhow::Result<ConnectionOf> {
    let namespace = cr.namespace().unwrap_or_default();
    let reference = cr.connection_ref();
    let ready_of = |status: Option<&tether_api::connection::ConnectionStatus>| {
        let ready = status?.conditions.iter().find(|c| c.type_ == "Ready")?;
        Some((format!("{:?}", ready.status), ready.reason.clone(), ready.message.clone()))
    };
    let of = match reference.kind.unwrap_or_default() {
        ConnectionKind::Connection => {
            let display = format!("Connection {namespace}/{}", reference.name);
            let api: Api<Connection> = Api::namespaced(client.clone(), &namespace);
            let conn = api.get(&reference.name).await.map_err(|e| explain(e, &display))?;
            let ready = ready_of(conn.status.as_ref());
            ConnectionOf { settings: conn.spec.settings, secret_namespace: Some(namespace.clone()), display, ready }
        }
        ConnectionKind::ClusterConnection => {
            let display = format!("ClusterConnection {}", reference.name);
            let api: Api<ClusterConnection> = Api::all(client.clone());
            let conn = api.get(&reference.name).await.map_err(|e| explain(e, &display))?;
            if !conn.spec.allowed_namespaces.iter().any(|n| n == "*" || *n == namespace) {
                bail!("{display} does not allow namespace {namespace} (spec.allowedNamespaces)");
            }
            let ready = ready_of(conn.status.as_ref());
            ConnectionOf { settings: conn.spec.settings, secret_namespace: None, display, ready }
        }
    };
    let wanted = K::kind(&()).to_string();
    if let Some(needed) = kind_platform(&wanted).filter(|p| *p != of.settings.platform) {
        bail!("{} is for platform {:?}; a {wanted} needs a {needed:?} connection", of.display, of.settings.platform);
    }
    Ok(of)
}

fn kind_platform(kind: &str) -> Option<tether_api::Platform> {
    crate::kinds::Kind::parse(kind).map(crate::kinds::Kind::platform)
}

/// The credential Secrets of a connection: `(credential, namespace, selector)`.
pub fn credential_secrets(of: &ConnectionOf) -> Vec<(&'static str, String, SecretKeySelector)> {
    let c = &of.settings.credentials;
    [("username", &c.username), ("accessKey", &c.access_key), ("apiKey", &c.api_key), ("token", &c.token)]
        .into_iter()
        .filter_map(|(name, selector)| {
            let selector = selector.clone()?;
            let namespace = of.secret_namespace.clone().or(selector.namespace.clone()).unwrap_or_default();
            Some((name, namespace, selector))
        })
        .collect()
}

/// Whether the user may read the Secret `namespace/name`, and what it holds: `Ok(Some(keys))`, `Ok(None)`
/// when it does not exist, or the error (Forbidden named) when it cannot be read.
pub async fn secret_keys(
    client: &Client,
    namespace: &str,
    name: &str,
    purpose: &str,
) -> anyhow::Result<Option<Vec<String>>> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(found) => Ok(found.map(|s| s.data.unwrap_or_default().into_keys().collect())),
        Err(kube::Error::Api(status)) if status.code == 403 => bail!(
            "Forbidden: you may not read Secret {namespace}/{name}, {purpose}. This command reads it with your \
             own credentials; ask for `get` on that Secret (kubectl auth can-i get secret/{name} -n {namespace}) \
             ({})",
            status.message
        ),
        Err(e) => Err(explain(e, &format!("Secret {namespace}/{name}"))),
    }
}

/// The platform client for `cr`, from its connection's settings and Secrets, read as the user.
pub async fn platform_client<A: Adapter>(client: &Client, cr: &A::Resource) -> anyhow::Result<A::Client> {
    let (account, display) = account(client, cr).await?;
    A::connect(&account).map_err(|e| anyhow::anyhow!("{display}: {e}"))
}

/// The account of `cr`'s connection (credentials read as the user), and how to name the connection.
pub async fn account<K: ManagedResource>(client: &Client, cr: &K) -> anyhow::Result<(connection::Account, String)> {
    let of = connection_of(client, cr).await?;
    for (credential, namespace, selector) in credential_secrets(&of) {
        let purpose = format!("which holds the {credential} credential of {}", of.display);
        match secret_keys(client, &namespace, &selector.name, &purpose).await? {
            Some(keys) if keys.contains(&selector.key) => {}
            Some(_) => bail!("Secret {namespace}/{} has no key {:?} ({purpose})", selector.name, selector.key),
            None => bail!("Secret {namespace}/{} not found ({purpose})", selector.name),
        }
    }
    let sources = Sources::unwatched(client.clone());
    let identity = of.display.replace(' ', "/");
    let account =
        connection::account(&sources, &of.settings, of.secret_namespace.as_deref(), &identity, &mut Vec::new())
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", of.display))?;
    Ok((account, of.display))
}

/// The request the verbs see for `cr`: the values of the Secrets its spec refers to and its outputs
/// Secret, read as the user (a Secret they may not read is named).
pub async fn request<'a, K: ManagedResource>(client: &Client, cr: &'a K) -> anyhow::Result<Request<'a, K>> {
    let namespace = cr.namespace().unwrap_or_default();
    let selectors = cr.secret_inputs();
    for (name, selector) in &selectors {
        let purpose = format!("which spec.environmentVariablesFrom {name} refers to");
        secret_keys(client, &namespace, &selector.name, &purpose).await?;
    }
    let sources = Sources::unwatched(client.clone());
    let inputs = connection::read_values(&sources, &namespace, &selectors, &mut Vec::new())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut outputs = BTreeMap::new();
    if let Some(name) = cr.outputs_secret() {
        let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
        // Best effort: the outputs Secret only tells which tokens exist; without it they read as missing.
        if let Ok(Some(secret)) = api.get_opt(name).await {
            for (key, value) in secret.data.unwrap_or_default() {
                outputs.insert(key, String::from_utf8_lossy(&value.0).into_owned());
            }
        }
    }
    Ok(Request::new(cr, inputs, outputs))
}
