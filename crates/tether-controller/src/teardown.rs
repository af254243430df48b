//! Namespace deletion completes, and deletes every remote object per policy. When a namespace goes, the
//! API server deletes everything in it at once: without a guard its Connection and credential Secrets
//! vanish first and every resource is stuck on ConnectionNotFound, its remote object left live. So a
//! Connection and the Secrets it names carry the finalizer [`IN_USE`]; while their namespace terminates
//! they stay (readable, though deleting) until no managed resource in it names the Connection. Outside a
//! namespace teardown they go at once, as before: a Connection or Secret deleted by hand is a user's
//! decision, reported on the resources as ConnectionNotFound.

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ListParams, Patch, PatchParams};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use tether_api::connection::Connection;
use tether_api::{ApoloApp, AppService, CivisService, ConnectionKind, PeakWebapp, UbiService};

use crate::adapter::ManagedResource;
use crate::error::Result;
use crate::sources::Sources;

pub use crate::annotations::IN_USE;

/// How soon a held Connection is looked at again while its namespace's resources are deleted.
const RECHECK: Duration = Duration::from_secs(2);

/// Keeps [`IN_USE`] on the Connection and its Secrets while they live; during a namespace teardown holds
/// them until no resource names the Connection, then releases them. Returns when to look again.
pub(crate) async fn guard(conn: &Connection, client: &Client, sources: &Sources) -> Result<Option<Duration>> {
    let namespace = conn.namespace().unwrap_or_default();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let names = secret_names(conn);
    if conn.meta().deletion_timestamp.is_none() {
        add_finalizer(&Api::<Connection>::namespaced(client.clone(), &namespace), conn).await?;
        for name in &names {
            // Already held, as the watch shows: nothing to read or write (the steady state).
            if let Some(meta) = sources.secret_meta(&namespace, name)
                && meta.metadata.deletion_timestamp.is_none()
                && meta.finalizers().iter().any(|f| f == IN_USE)
            {
                continue;
            }
            if let Some(secret) = secrets.get_opt(name).await? {
                if secret.meta().deletion_timestamp.is_none() {
                    add_finalizer(&secrets, &secret).await?;
                } else if !terminating(client, &namespace).await? {
                    // Deleted by hand while the namespace lives: let it go. (In a teardown the Connection's
                    // own deletion may simply not have come yet: the Secret is held with it.)
                    remove_finalizer(&secrets, &secret).await?;
                }
            }
        }
        return Ok(None);
    }
    let terminating = terminating(client, &namespace).await?;
    if terminating && in_use(client, &namespace, &conn.name_any()).await? {
        tracing::debug!(connection = %conn.name_any(), "held: resources in the terminating namespace still use it");
        return Ok(Some(RECHECK));
    }
    // Released: its Secrets go too, unless another live Connection of the namespace names them.
    let connections: Api<Connection> = Api::namespaced(client.clone(), &namespace);
    let still_named: BTreeSet<String> = connections
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|c| c.name_any() != conn.name_any() && c.meta().deletion_timestamp.is_none())
        .flat_map(secret_names)
        .collect();
    for name in names.iter().filter(|n| !still_named.contains(*n)) {
        if let Some(secret) = secrets.get_opt(name).await? {
            remove_finalizer(&secrets, &secret).await?;
        }
    }
    remove_finalizer(&connections, conn).await?;
    Ok(None)
}

/// Whether the namespace is being deleted (or already gone).
async fn terminating(client: &Client, namespace: &str) -> Result<bool> {
    let found = Api::<Namespace>::all(client.clone()).get_opt(namespace).await?;
    Ok(found.is_none_or(|ns| ns.meta().deletion_timestamp.is_some()))
}

/// The credential Secrets a Connection names (always in its own namespace).
fn secret_names(conn: &Connection) -> Vec<String> {
    let c = &conn.spec.settings.credentials;
    let names: BTreeSet<String> =
        [&c.username, &c.access_key, &c.api_key, &c.token].into_iter().flatten().map(|s| s.name.clone()).collect();
    names.into_iter().collect()
}

/// Whether a managed resource of any kind in `namespace` names the Connection `name`.
async fn in_use(client: &Client, namespace: &str, name: &str) -> Result<bool> {
    Ok(names::<AppService>(client, namespace, name).await?
        || names::<CivisService>(client, namespace, name).await?
        || names::<ApoloApp>(client, namespace, name).await?
        || names::<UbiService>(client, namespace, name).await?
        || names::<PeakWebapp>(client, namespace, name).await?)
}

async fn names<K: ManagedResource>(client: &Client, namespace: &str, name: &str) -> Result<bool> {
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items.iter().any(|r| {
        let reference = r.connection_ref();
        reference.name == name && reference.kind.unwrap_or_default() == ConnectionKind::Connection
    }))
}

async fn add_finalizer<K: Object>(api: &Api<K>, obj: &K) -> Result<()> {
    edit_finalizers(api, obj, |finalizers| {
        if finalizers.iter().any(|f| f == IN_USE) {
            return false;
        }
        finalizers.push(IN_USE.into());
        true
    })
    .await
}

async fn remove_finalizer<K: Object>(api: &Api<K>, obj: &K) -> Result<()> {
    edit_finalizers(api, obj, |finalizers| {
        let before = finalizers.len();
        finalizers.retain(|f| f != IN_USE);
        finalizers.len() != before
    })
    .await
}

/// What the finalizer edits need of an object.
trait Object: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug {}
impl<K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug> Object for K {}

/// Applies `edit` to the finalizer list by a merge patch conditional on the version read; on a conflict
/// (someone wrote meanwhile, e.g. Tether's own status write) it reads the object again and retries, so a
/// teardown is not held up by a stale copy.
async fn edit_finalizers<K: Object>(api: &Api<K>, obj: &K, edit: impl Fn(&mut Vec<String>) -> bool) -> Result<()> {
    let mut current = obj.clone();
    for _ in 0..3 {
        let mut finalizers = current.finalizers().to_vec();
        if !edit(&mut finalizers) {
            return Ok(());
        }
        let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": current.resource_version()}});
        match api.patch(&current.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await {
            Err(kube::Error::Api(status)) if status.code == 409 => match api.get_opt(&current.name_any()).await? {
                Some(fresh) => current = fresh,
                None => return Ok(()),
            },
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            other => return other.map(drop).map_err(Into::into),
        }
    }
    Ok(())
}
