//! What the reconcile of one kind shares, and what it remembers of each resource between reconciles.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};

use crate::adapter::{Adapter, ManagedResource, Request};
use crate::connection::{self};
use crate::error::{Error, Result};
use crate::lanes::Lanes;
use crate::memory::Memory;
use crate::metrics::Metrics;
use crate::own_writes::OwnWrites;
use crate::reconciler::FIELD_MANAGER;
use crate::sources::Sources;

/// Timing of the loop.
#[derive(Clone, Debug)]
pub struct Config {
    /// How often a settled resource is compared with its remote object (jittered ±10 %).
    pub poll_interval: Duration,
    /// How soon a converging resource (creating, updating, deleting) is looked at again.
    pub converge_interval: Duration,
    /// Wait before the first retry after a failure; it doubles with each further failure.
    pub backoff: Duration,
    /// Longest per-object backoff after failures.
    pub max_backoff: Duration,
    /// Most reconciles of one kind at once in each lane, changes and drift checks (0: no limit); see
    /// [`crate::lanes`].
    pub concurrency: u16,
    /// Longest one reconcile may take; past it the reconcile is abandoned and reported as `Timeout`.
    pub reconcile_timeout: Duration,
    /// Where reconciles are counted and timed, if anywhere.
    pub metrics: Option<Arc<Metrics>>,
    /// With sharding, the shards this process holds: resources of other shards are left alone.
    pub shards: Option<Arc<crate::shards::Shards>>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            poll_interval: Duration::from_secs(600),
            converge_interval: Duration::from_secs(2),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            concurrency: 0,
            reconcile_timeout: Duration::from_secs(300),
            metrics: None,
            shards: None,
        }
    }
}

/// What the reconcile of one kind shares: the Kubernetes client, the timing, platform clients cached per
/// account (settings + Secret versions), and what the loop remembers of each resource.
pub struct Context<A: Adapter> {
    /// The Kubernetes client.
    pub client: kube::Client,
    /// Where Connections and Secrets are read from.
    pub(crate) sources: Arc<Sources>,
    /// Publishes Kubernetes Events about the resources.
    pub(crate) recorder: Recorder,
    /// The reporting instance of the Events Tether creates without the Recorder (as the Recorder's).
    reporting_instance: String,
    /// Timing.
    pub config: Config,
    /// One platform client per connection, with the fingerprint of the account it was built for.
    pub(crate) clients: Mutex<Clients<A::Client>>,
    /// What the loop remembers of each resource between reconciles (failures, retry, own writes, lanes).
    pub(crate) memory: Arc<Memory<A::Resource>>,
    pub(crate) dependencies: Dependencies<A::Resource>,
    /// What this process wrote to each resource, to tell a cache that lags behind it.
    pub(crate) own_writes: OwnWrites<A::Resource>,
    /// The worker pools for changes and for drift checks.
    pub(crate) lanes: Arc<Lanes<A::Resource>>,
    /// Settled resources whose drift checks run a probe instead of the reconcile.
    pub(crate) drift: Arc<crate::drift::Drift<A>>,
    /// The controller's name in metrics: the kind, lowercase.
    pub(crate) controller: String,
    /// When the controller started: no other replica reconciles its resources since (the leader election,
    /// or the shards' Leases, say which).
    started: tokio::time::Instant,
}

/// How long after this process takes a resource (it starts, or acquires the resource's shard) a create
/// the previous holder sent may still land on the platform. The previous holder stops acting before its
/// Lease expires (`tether run`'s fence), so only requests already on the wire remain; a search for an
/// earlier create's object takes a listing begun after this margin (see [`Request::held_since`]).
pub const TAKEOVER_MARGIN: Duration = Duration::from_secs(5);

/// Platform clients by connection ([`connection::Account::connection`]), each with the fingerprint of the
/// account it was built for.
pub(crate) type Clients<C> = HashMap<String, (u64, Arc<C>)>;

/// Which Connections, ClusterConnections and Secrets each resource's last reconcile read, both ways.
pub(crate) type Dependencies<K> = Arc<crate::dependencies::Index<ObjectRef<K>>>;

impl<A: Adapter> Context<A> {
    /// A context for one kind.
    pub fn new(sources: Arc<Sources>, config: Config) -> Arc<Self> {
        let client = sources.client().clone();
        let instance = std::env::var("POD_NAME").ok();
        let reporting_instance = instance.clone().unwrap_or_else(|| FIELD_MANAGER.into());
        let recorder = Recorder::new(client.clone(), Reporter { controller: FIELD_MANAGER.into(), instance });
        let memory = Arc::new(Memory::default());
        Arc::new(Self {
            client,
            sources,
            recorder,
            reporting_instance,
            clients: Mutex::default(),
            dependencies: Arc::default(),
            own_writes: OwnWrites::new(memory.clone()),
            lanes: Arc::new(Lanes::in_memory(config.concurrency, memory.clone())),
            drift: Arc::default(),
            memory,
            controller: A::Resource::kind(&()).to_lowercase(),
            config,
            started: tokio::time::Instant::now(),
        })
    }

    /// Publishes an Event about `cr`; a failure to publish is logged, never fatal.
    pub(crate) async fn event(&self, cr: &A::Resource, warning: bool, reason: &str, action: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            // events.k8s.io refuses a note over 1 kB: cut on a character boundary below it.
            note: Some(match (0..=1000).rev().find(|i| note.is_char_boundary(*i)) {
                Some(end) if note.len() > 1000 => format!("{}…", &note[..end]),
                _ => note,
            }),
            action: action.into(),
            secondary: None,
        };
        let regarding = cr.object_ref(&());
        let published = if warning {
            self.recorder.publish(&event, &regarding).await
        } else {
            self.publish_once(&event, regarding).await
        };
        if let Err(error) = published {
            tracing::debug!(%error, "could not publish an Event");
        }
    }

    /// Creates a Normal Event as [`Recorder::publish`] would the first time, without its series cache.
    /// The Recorder keeps every Event it sent for six minutes to count repeats into a series, and scans
    /// all it keeps on each publish: with one Created Event per resource, a mass create of N resources
    /// costs O(N²) and a few KiB per resource. Warnings repeat (a failing reconcile's retries) and are
    /// counted by the Recorder; the Normal Events (Created, Updated, Deleted) mark one change each.
    async fn publish_once(
        &self,
        event: &Event,
        regarding: k8s_openapi::api::core::v1::ObjectReference,
    ) -> kube::Result<()> {
        use k8s_openapi::api::events::v1::Event as K8sEvent;
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
        let now = k8s_openapi::jiff::Timestamp::now();
        let namespace = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(FIELD_MANAGER), now.as_nanosecond());
        let k8s_event = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding),
            note: event.note.clone(),
            metadata: kube::api::ObjectMeta {
                namespace: Some(namespace.clone()),
                name: Some(name),
                ..Default::default()
            },
            reporting_controller: Some(FIELD_MANAGER.into()),
            reporting_instance: Some(self.reporting_instance.clone()),
            type_: Some("Normal".into()),
            ..Default::default()
        };
        let api: kube::Api<K8sEvent> = kube::Api::namespaced(self.client.clone(), &namespace);
        api.create(&kube::api::PostParams::default(), &k8s_event).await.map(drop)
    }

    /// The resource with the Secret values its spec uses and its outputs Secret's data.
    pub(crate) async fn request<'a>(&self, cr: &'a A::Resource) -> Result<Request<'a, A::Resource>> {
        let namespace = cr.namespace().unwrap_or_default();
        let selectors = cr.secret_inputs();
        let mut inputs = Default::default();
        if !selectors.is_empty() {
            let mut dependencies = Vec::new();
            let read = connection::read_values(&self.sources, &namespace, &selectors, &mut dependencies).await;
            let reference = crate::memory::key(cr);
            self.dependencies.add(&reference, dependencies);
            inputs = read?;
        }
        let mut outputs = std::collections::BTreeMap::new();
        let mut outputs_secret = None;
        let stored = match cr.outputs_secret() {
            Some(name) => self.sources.secret(&namespace, name).await?,
            None => None,
        };
        if let Some(secret) = stored {
            for (key, value) in secret.data.iter().flatten() {
                outputs.insert(key.clone(), String::from_utf8_lossy(&value.0).into_owned());
            }
            outputs_secret = Some(Secret::clone(&secret));
        }
        let mut request = Request::new(cr, inputs, outputs);
        request.outputs_secret = std::sync::Mutex::new(outputs_secret);
        request.fresh_read_age = self.config.converge_interval;
        let taken = match &self.config.shards {
            Some(shards) => shards.held_since(&namespace, &cr.name_any()).map(|at| at.max(self.started)),
            None => Some(self.started),
        };
        // Not held (a reconcile racing a lost shard): the search takes a listing begun after now.
        request.held_since = taken.map_or(request.held_since, |at| at + TAKEOVER_MARGIN);
        Ok(request)
    }

    /// Forgets what was remembered of a resource that is gone: its entry in the loop's memory (failures,
    /// pending retry, own writes, lane), its dependencies and its due time. Called when Tether releases its
    /// finalizer and when the runtime finds a scheduled resource gone (one deleted without Tether's
    /// finalizer: paused, ObserveOnly, or never connected), so a long-running process does not keep every
    /// resource it ever saw.
    pub(crate) fn forget(&self, reference: &ObjectRef<A::Resource>) {
        self.memory.forget(reference);
        self.dependencies.forget(reference);
        self.drift.disarm(reference);
        if let Some(metrics) = &self.config.metrics {
            metrics.forget(&self.controller, &reference.to_string());
        }
    }

    pub(crate) async fn platform_client(&self, cr: &A::Resource) -> Result<Arc<A::Client>> {
        let namespace = cr.namespace().unwrap_or_default();
        let mut dependencies = Vec::new();
        let account =
            connection::resolve(&self.sources, &namespace, cr.connection_ref(), A::PLATFORM, &mut dependencies).await;
        self.dependencies.set(&crate::memory::key(cr), dependencies);
        let mut cache = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        let account = match account {
            Ok(account) => account,
            Err(e) => {
                // A connection that is gone, or no longer usable, keeps no client.
                cache.remove(&connection::identity(&namespace, cr.connection_ref()));
                return Err(e);
            }
        };
        cached(&mut cache, &account, A::connect)
    }
}

/// The client cached for `account`'s connection if it was built for the same settings and credentials;
/// else a new one from `connect`, which replaces it: one client per connection, whatever the number of
/// rotations and writes to the Connection. The stale client is dropped here (calls in flight finish with
/// it); the rate budget is the account's, not the client's (tether_platforms::http), so it carries over.
fn cached<C>(
    cache: &mut Clients<C>,
    account: &connection::Account,
    connect: impl FnOnce(&connection::Account) -> std::result::Result<C, tether_platforms::Error>,
) -> Result<Arc<C>> {
    if let Some((fingerprint, client)) = cache.get(&account.connection)
        && *fingerprint == account.fingerprint
    {
        return Ok(client.clone());
    }
    let client = Arc::new(connect(account).map_err(Error::platform("connect"))?);
    cache.insert(account.connection.clone(), (account.fingerprint, client.clone()));
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::ubiops::UbiOps;
    use crate::lanes::Lane;
    use tether_api::UbiService;

    fn service() -> UbiService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
            "metadata": {"name": "scoring-api", "namespace": "team", "resourceVersion": "1", "generation": 1},
            "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": "scoring-api",
                     "deployment": "dep-1", "version": "v1", "port": 8080},
        }))
        .expect("a UbiService")
    }

    #[test]
    fn one_client_per_connection_rebuilt_only_for_new_settings_or_credentials() {
        let account = |connection: &str, fingerprint| connection::Account {
            http: tether_platforms::HttpConfig::new("http://127.0.0.1:9".parse().expect("a url")),
            credentials: Default::default(),
            connection: connection.into(),
            fingerprint,
        };
        let mut built = 0;
        let mut connect = |_: &connection::Account| {
            built += 1;
            Ok(built)
        };
        let mut cache = HashMap::new();
        let first = cached(&mut cache, &account("Connection/a/x", 1), &mut connect).unwrap();
        let again = cached(&mut cache, &account("Connection/a/x", 1), &mut connect).unwrap();
        assert!(Arc::ptr_eq(&first, &again), "same settings and credentials: the same client");
        let rotated = cached(&mut cache, &account("Connection/a/x", 2), &mut connect).unwrap();
        assert_eq!(*rotated, 2, "a rotated key builds a new client");
        assert_eq!(cache.len(), 1, "and the stale one is evicted");
        cached(&mut cache, &account("Connection/b/x", 2), &mut connect).unwrap();
        assert_eq!(cache.len(), 2, "another connection has its own");
    }

    /// A search for an earlier create's object may share a listing begun after this process took the
    /// resource (plus the margin for the previous holder's last requests), and no earlier.
    #[tokio::test(start_paused = true)]
    async fn a_request_knows_since_when_this_process_alone_holds_the_resource() {
        let nowhere = kube::Config::new("http://127.0.0.1:9".parse().expect("a url"));
        let client = kube::Client::try_from(nowhere).expect("a client");
        let cr = service();
        let started = tokio::time::Instant::now();
        let ctx = Context::<UbiOps>::new(Sources::unwatched(client.clone()), Config::default());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(ctx.request(&cr).await.unwrap().held_since, started + TAKEOVER_MARGIN, "since it started");

        let shards = Arc::new(crate::shards::Shards::new(2));
        let config = Config { shards: Some(shards.clone()), ..Config::default() };
        let ctx = Context::<UbiOps>::new(Sources::unwatched(client), config);
        tokio::time::advance(Duration::from_secs(60)).await;
        let asked = tokio::time::Instant::now();
        assert_eq!(ctx.request(&cr).await.unwrap().held_since, asked, "not held: no listing before now");
        tokio::time::advance(Duration::from_secs(1)).await;
        let taken = tokio::time::Instant::now();
        shards.hold(shards.shard_of("team", "scoring-api"));
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(ctx.request(&cr).await.unwrap().held_since, taken + TAKEOVER_MARGIN, "since its shard was taken");
    }

    #[tokio::test]
    async fn a_resource_the_runtime_finds_gone_is_forgotten_everywhere() {
        let nowhere = kube::Config::new("http://127.0.0.1:9".parse().expect("a url"));
        let client = kube::Client::try_from(nowhere).expect("a client");
        let ctx = Context::<UbiOps>::new(Sources::unwatched(client), Config::default());
        let cr = service();
        let reference = ObjectRef::from_obj(&cr);
        ctx.memory.update(&reference, |entry| (entry.failures, entry.retry) = (3, Some(Duration::from_secs(8))));
        ctx.dependencies.set(
            &reference,
            vec![crate::connection::Dependency::Secret { namespace: "team".into(), name: "key".into() }],
        );
        ctx.own_writes.record(&cr, Some("2".into()));
        ctx.lanes.reconciled(&cr);
        assert!(ctx.own_writes.is_stale(&cr));
        assert_eq!(ctx.lanes.lane(&cr, true), Lane::Drift);

        // As the runtime reports it: the reference with the kind erased.
        ctx.forget(&crate::reconciler::typed(&reference.erase()));

        assert_eq!(ctx.memory.len(), 0, "failures, retry, own writes and lanes: one entry, gone");
        assert!(ctx.dependencies.is_empty());
        assert!(!ctx.own_writes.is_stale(&cr), "no write remembered");
        assert_eq!(ctx.lanes.lane(&cr, true), Lane::Change, "never seen, as if new");
    }
}
