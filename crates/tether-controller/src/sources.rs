//! Where resources read their Connections, ClusterConnections and Secrets from: watch-fed stores shared
//! by every controller of the process (one watch per type, not one per kind), so a reconcile makes no API
//! read for them. A Secret is watched by metadata only; its data is read once per resourceVersion and
//! kept, so a rotation costs one GET and a steady state none.
//!
//! Every change to one of these objects is published as a [`Dependency`]; each controller subscribes and
//! wakes the resources whose account was read from it (its reverse dependency index).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt};
use tether_api::connection::{ClusterConnection, Connection};
use tokio::sync::broadcast;

use crate::connection::Dependency;
use crate::error::Result;

/// How many changes a slow subscriber may fall behind before it is told it lagged (and wakes every
/// resource that depends on anything).
const CHANGES_BUFFER: usize = 4096;

/// Secrets as read, each with the resourceVersion it was read at.
type SecretData = HashMap<ObjectRef<Secret>, (String, Arc<Secret>)>;

/// The shared stores of one watch scope (a namespace, or the whole cluster).
pub struct Sources {
    client: Client,
    /// The namespace the Connection and Secret watches cover (`None`: all).
    namespace: Option<String>,
    connections: Store<Connection>,
    cluster_connections: Store<ClusterConnection>,
    secrets: Store<PartialObjectMeta<Secret>>,
    /// Secret data as read at a resourceVersion; an entry goes when its Secret does (the outputs Secret
    /// of every resource Tether wrote one for is here, and would otherwise outlive it).
    data: Arc<Mutex<SecretData>>,
    changes: broadcast::Sender<Dependency>,
}

impl Sources {
    /// Starts the three watches of `namespace` (or of all namespaces) and returns once their first lists
    /// are in. They run until the process ends.
    pub async fn start(client: Client, namespace: Option<&str>) -> Arc<Self> {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        let scoped = |client: &Client| match namespace {
            Some(ns) => (Api::namespaced(client.clone(), ns), Api::namespaced(client.clone(), ns)),
            None => (Api::all(client.clone()), Api::all(client.clone())),
        };
        let (connections_api, secrets_api): (Api<Connection>, Api<PartialObjectMeta<Secret>>) = scoped(&client);
        let data: Arc<Mutex<SecretData>> = Arc::default();
        let connections = watch(
            connections_api,
            changes.clone(),
            prune,
            |_| {},
            |c: &Connection| {
                let key = Dependency::Connection { namespace: c.namespace().unwrap_or_default(), name: c.name_any() };
                (key, signature(c.metadata.generation, c.status.as_ref()))
            },
        );
        let cluster_connections = watch(
            Api::<ClusterConnection>::all(client.clone()),
            changes.clone(),
            prune,
            |_| {},
            |c: &ClusterConnection| {
                (
                    Dependency::ClusterConnection { name: c.name_any() },
                    signature(c.metadata.generation, c.status.as_ref()),
                )
            },
        );
        // By metadata only: Secret data never travels on the watch.
        let gone = {
            let data = data.clone();
            move |s: &PartialObjectMeta<Secret>| forget_data(&data, s)
        };
        let secrets = watch(secrets_api, changes.clone(), prune_secret, gone, |s: &PartialObjectMeta<Secret>| {
            let key = Dependency::Secret { namespace: s.namespace().unwrap_or_default(), name: s.name_any() };
            (key, s.resource_version())
        });
        // Bounded: a watch that cannot list (RBAC, a missing CRD) must not stop the start silently. Its
        // store stays empty and each read misses, which the resources report.
        let ready = futures::future::join3(
            connections.wait_until_ready(),
            cluster_connections.wait_until_ready(),
            secrets.wait_until_ready(),
        );
        if tokio::time::timeout(std::time::Duration::from_secs(30), ready).await.is_err() {
            tracing::warn!(
                namespace = namespace.unwrap_or("(all)"),
                "the Connection, ClusterConnection or Secret watch has not listed in 30 s (RBAC?); starting anyway"
            );
        }
        Arc::new(Self {
            client,
            namespace: namespace.map(str::to_string),
            connections,
            cluster_connections,
            secrets,
            data,
            changes,
        })
    }

    /// Sources whose stores stay empty (no watch runs): for tests of what needs none.
    #[doc(hidden)]
    pub fn unwatched(client: Client) -> Arc<Self> {
        let (changes, _) = broadcast::channel(1);
        Arc::new(Self {
            client,
            namespace: None,
            connections: reflector::store().0,
            cluster_connections: reflector::store().0,
            secrets: reflector::store().0,
            data: Arc::default(),
            changes,
        })
    }

    /// The changes to Connections, ClusterConnections and Secrets from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Dependency> {
        self.changes.subscribe()
    }

    /// The Kubernetes client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The Connection `namespace/name`, as the watch last saw it.
    pub fn connection(&self, namespace: &str, name: &str) -> Option<Arc<Connection>> {
        self.connections.get(&ObjectRef::new(name).within(namespace))
    }

    /// The ClusterConnection `name`, as the watch last saw it.
    pub fn cluster_connection(&self, name: &str) -> Option<Arc<ClusterConnection>> {
        self.cluster_connections.get(&ObjectRef::new(name))
    }

    fn covers(&self, namespace: &str) -> bool {
        self.namespace.as_deref().is_none_or(|ns| ns == namespace)
    }

    /// The Secret `namespace/name` with its data: read from the API only when the watch shows a
    /// resourceVersion not read before (or for a namespace outside the watch, e.g. a ClusterConnection's
    /// Secret in another namespace: read each time).
    pub async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Arc<Secret>>> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        if !self.covers(namespace) {
            return Ok(api.get_opt(name).await?.map(Arc::new));
        }
        let key: ObjectRef<Secret> = ObjectRef::new(name).within(namespace);
        let Some(meta) = self.secrets.get(&ObjectRef::new(name).within(namespace)) else {
            // Not in the watch (yet): created a moment ago (Tether's own outputs Secret, say) or gone. Only
            // the API server can tell: a missing entry means unknown, not absent.
            let found = api.get_opt(name).await?.map(Arc::new);
            let mut data = self.data.lock().unwrap_or_else(PoisonError::into_inner);
            match &found {
                Some(secret) => {
                    data.insert(key, (secret.resource_version().unwrap_or_default(), secret.clone()));
                }
                None => {
                    data.remove(&key);
                }
            }
            return Ok(found);
        };
        let version = meta.resource_version().unwrap_or_default();
        if let Some((read_at, secret)) = self.data.lock().unwrap_or_else(PoisonError::into_inner).get(&key)
            && *read_at == version
        {
            return Ok(Some(secret.clone()));
        }
        let Some(secret) = api.get_opt(name).await?.map(Arc::new) else { return Ok(None) };
        let read_at = secret.resource_version().unwrap_or_default();
        self.data.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (read_at, secret.clone()));
        Ok(Some(secret))
    }

    /// What the watch shows of Secret `namespace/name`'s metadata (`None`: not in the watch, or gone).
    pub fn secret_meta(&self, namespace: &str, name: &str) -> Option<Arc<PartialObjectMeta<Secret>>> {
        if !self.covers(namespace) {
            return None;
        }
        self.secrets.get(&ObjectRef::new(name).within(namespace))
    }

    /// The resourceVersion of Secret `namespace/name` as its metadata watch last saw it (`Some(None)`:
    /// not in it), or `None` when the watch does not cover the namespace.
    pub(crate) fn watched_version(&self, namespace: &str, name: &str) -> Option<Option<String>> {
        self.covers(namespace).then(|| {
            self.secrets.get(&ObjectRef::new(name).within(namespace)).and_then(|m| m.metadata.resource_version.clone())
        })
    }

    /// Records Tether's own write of a Secret, so the next read needs no GET.
    pub fn wrote(&self, secret: &Secret) {
        let (Some(namespace), Some(version)) = (secret.namespace(), secret.resource_version()) else { return };
        let key = ObjectRef::new(&secret.name_any()).within(&namespace);
        // Kept for the resource's next read without the answer's managedFields: Tether's write names its
        // resource the Secret's owner, which is what that read checks first (managedFields only tell
        // whether a Secret without that owner was Tether's).
        let mut kept = secret.clone();
        prune(&mut kept);
        self.data.lock().unwrap_or_else(PoisonError::into_inner).insert(key, (version, Arc::new(kept)));
    }
}

/// A reflector of `api` that publishes each change as its dependency; its store.
/// What of a Connection wakes its resources: its spec (generation) and whether it is Ready — it coming
/// back after an outage wakes them at once, past their backoff — but not its messages, which change at
/// each check during an outage and would wake every resource each time.
fn signature(generation: Option<i64>, status: Option<&tether_api::connection::ConnectionStatus>) -> Option<String> {
    let ready = status.and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready")).map(|c| c.status);
    Some(format!("{generation:?} {ready:?}"))
}

/// A reflector of `api` that publishes an object's dependency when its `key_and_signature` signature
/// changes, and when it goes; its store.
fn watch<K>(
    api: Api<K>,
    changes: broadcast::Sender<Dependency>,
    shed: fn(&mut K),
    gone: impl Fn(&K) + Send + 'static,
    key_and_signature: impl Fn(&K) -> (Dependency, Option<String>) + Send + 'static,
) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = watcher(api, watcher::Config::default()).default_backoff().modify(shed);
    let stream = reflector::reflector(writer, events);
    tokio::spawn(async move {
        futures::pin_mut!(stream);
        // The signature each object was last published with.
        let mut published: std::collections::HashMap<Dependency, Option<String>> = Default::default();
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) => {
                    let (key, signature) = key_and_signature(&object);
                    let seen = published.insert(key.clone(), signature.clone());
                    if signature.is_none() || seen != Some(signature) {
                        let _ = changes.send(key);
                    }
                }
                Ok(watcher::Event::Delete(object)) => {
                    gone(&object);
                    let (key, _) = key_and_signature(&object);
                    published.remove(&key);
                    let _ = changes.send(key);
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(error) => tracing::debug!(%error, kind = %K::kind(&()), "shared watch"),
            }
        }
    });
    reader
}

/// The resources to reconcile again as changes arrive on `changes`: those `dependents` names for each
/// (a controller's reverse dependency index), or, when this subscriber fell behind and lost changes,
/// `everyone` it knows of.
pub fn woken<K, D, E>(
    changes: broadcast::Receiver<Dependency>,
    dependents: D,
    everyone: E,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: kube::Resource<DynamicType = ()> + 'static,
    D: Fn(&Dependency) -> Vec<ObjectRef<K>> + Send + 'static,
    E: Fn() -> Vec<ObjectRef<K>> + Send + 'static,
{
    futures::stream::unfold((changes, dependents, everyone), |(mut changes, dependents, everyone)| async move {
        loop {
            let woken = match changes.recv().await {
                Ok(dependency) => dependents(&dependency),
                Err(broadcast::error::RecvError::Lagged(lost)) => {
                    tracing::debug!(lost, "fell behind the connection and Secret changes: waking everyone");
                    everyone()
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            if !woken.is_empty() {
                return Some((futures::stream::iter(woken), (changes, dependents, everyone)));
            }
        }
    })
    .flatten()
}

/// What a watched object sheds before it is stored: its managedFields and kubectl's last-applied
/// annotation, which Tether never reads from a store and which can be most of an object's size (the
/// annotation of a Secret applied with kubectl holds its data). A Secret's data, read on its own, keeps them.
pub(crate) fn prune<K: kube::Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Forgets the data read of a Secret the watch saw go. (A Secret gone while the watch was down, seen
/// missing from its relist, is not reported as a delete: its entry stays until a read finds it gone.)
fn forget_data(data: &Mutex<SecretData>, secret: &PartialObjectMeta<Secret>) {
    let key = ObjectRef::new(&secret.name_any()).within(&secret.namespace().unwrap_or_default());
    data.lock().unwrap_or_else(PoisonError::into_inner).remove(&key);
}

/// What a Secret's metadata keeps in the store: what its readers read ([`Sources::secret_meta`],
/// [`Sources::watched_version`]: its resourceVersion, deletion and finalizers) and its name. Every Secret
/// in scope is in the store (the outputs Secrets of every resource among them), and its labels,
/// annotations, owner references, uid and creation time were most of its size; its data and whose it is
/// are read from the Secret itself ([`Sources::secret`]).
fn prune_secret(secret: &mut PartialObjectMeta<Secret>) {
    let meta = &mut secret.metadata;
    *meta = kube::core::ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        resource_version: meta.resource_version.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        finalizers: meta.finalizers.take(),
        ..Default::default()
    };
}

/// kubectl's client-side apply record.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    #[test]
    fn a_stored_object_sheds_managed_fields_and_the_last_applied_annotation_only() {
        let mut secret = Secret::default();
        secret.metadata.managed_fields =
            Some(vec![ManagedFieldsEntry { manager: Some("kubectl".into()), ..Default::default() }]);
        secret.metadata.annotations =
            Some([(LAST_APPLIED.to_string(), "{\"data\":{}}".to_string()), ("team".into(), "a".into())].into());
        secret.metadata.finalizers = Some(vec![crate::annotations::IN_USE.into()]);
        prune(&mut secret);
        assert_eq!(secret.metadata.managed_fields, None);
        assert_eq!(secret.metadata.annotations, Some([("team".to_string(), "a".to_string())].into()));
        assert_eq!(secret.metadata.finalizers, Some(vec![crate::annotations::IN_USE.to_string()]), "kept");
    }

    #[test]
    fn the_data_read_of_a_secret_goes_with_it() {
        let data: Mutex<SecretData> = Mutex::default();
        let kept = |name: &str| (ObjectRef::new(name).within("team-a"), ("1".to_string(), Arc::new(Secret::default())));
        data.lock().unwrap().extend([kept("out-a"), kept("out-b")]);
        let mut gone: PartialObjectMeta<Secret> = PartialObjectMeta::default();
        gone.metadata.name = Some("out-a".into());
        gone.metadata.namespace = Some("team-a".into());
        forget_data(&data, &gone);
        let left: Vec<String> = data.lock().unwrap().keys().map(|k| k.name.clone()).collect();
        assert_eq!(left, ["out-b"]);
    }

    #[test]
    fn a_stored_secret_keeps_only_what_its_readers_read() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
        let deleted = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let mut meta: PartialObjectMeta<Secret> = PartialObjectMeta {
            metadata: kube::core::ObjectMeta {
                name: Some("out".into()),
                namespace: Some("team-a".into()),
                resource_version: Some("42".into()),
                uid: Some("u-1".into()),
                deletion_timestamp: Some(deleted.clone()),
                finalizers: Some(vec![crate::annotations::IN_USE.into()]),
                labels: Some([("app".to_string(), "x".to_string())].into()),
                annotations: Some([("team".to_string(), "a".to_string())].into()),
                owner_references: Some(vec![OwnerReference { name: "svc".into(), ..Default::default() }]),
                ..Default::default()
            },
            ..Default::default()
        };
        prune_secret(&mut meta);
        let kept = &meta.metadata;
        assert_eq!((kept.name.as_deref(), kept.namespace.as_deref()), (Some("out"), Some("team-a")));
        assert_eq!(kept.resource_version.as_deref(), Some("42"));
        assert_eq!(kept.deletion_timestamp, Some(deleted));
        assert_eq!(kept.finalizers, Some(vec![crate::annotations::IN_USE.to_string()]));
        assert_eq!((&kept.labels, &kept.annotations, &kept.owner_references, &kept.uid), (&None, &None, &None, &None));
    }
}
