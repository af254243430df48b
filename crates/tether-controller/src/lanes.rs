//! Two lanes of workers, so that new and changed resources never wait behind periodic drift checks.
//!
//! kube-runtime runs due reconciles in the order they fell due, through one pool: when many drift checks
//! are due (or a platform is slow to answer them), a resource created a moment ago queues behind all of
//! them. Tether runs the runtime without a limit and takes the limit here instead, in two pools of
//! `--concurrency` each: the change lane for a resource that is new, deleting, still converging on its
//! spec, edited since this process last reconciled it, or woken by a Secret or Connection it reads; the
//! drift lane for the rest.
//!
//! The pools are per Connection (or ClusterConnection): a platform that accepts connections and never answers
//! holds the workers of its own resources only, and the resources of other connections of the same kind keep
//! their pace.
//!
//! An edit is a new generation, new annotations (they ask for restarts, redeploys, pauses, adoptions) or
//! the deletion. Tether's own writes (status, finalizer) change the resource version but are not edits: a
//! resource that just became Ready is looked at once more after its status write, and that look is a drift
//! check. Converging counts as a change for [`CONVERGING_IS_A_CHANGE_FOR`] after the last edit only, so
//! resources the platform never finishes with cannot crowd the change lane.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::memory::Memory;

/// Which pool a reconcile runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lane {
    /// New, changed, converging, deleting or woken by a dependency.
    Change,
    /// A periodic drift check or a retry of the same object.
    Drift,
}

impl Lane {
    /// The label value in metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Change => "change",
            Lane::Drift => "drift",
        }
    }
}

/// How long after its last edit a resource still converging (creating, updating, deleting) takes the
/// change lane; after that its looks are drift checks.
pub const CONVERGING_IS_A_CHANGE_FOR: Duration = Duration::from_secs(600);

/// The two pools of each connection, and what tells a change from a drift check.
pub struct Lanes<K: Resource<DynamicType = ()>> {
    /// Workers per lane and connection; 0: no limit.
    concurrency: u16,
    /// The pools, by lane and connection key (made when first used; connections are few).
    pools: Mutex<HashMap<(Lane, String), Arc<Semaphore>>>,
    /// What each resource asked for when this process last reconciled it and since when, and whether a
    /// Secret or Connection it reads woke it: in the loop's memory of each resource.
    memory: Arc<Memory<K>>,
    converging_window: Duration,
}

/// What a resource asked for when this process last reconciled it, and since when.
#[derive(Clone, Copy)]
pub(crate) struct Seen {
    intent: u64,
    since: Instant,
}

impl<K: Resource<DynamicType = ()>> Lanes<K> {
    /// Pools of `concurrency` workers each; 0 means no limit.
    pub fn new(concurrency: u16) -> Self {
        Self::in_memory(concurrency, Arc::default())
    }

    /// [`Lanes::new`], keeping what it knows of each resource in `memory`.
    pub(crate) fn in_memory(concurrency: u16, memory: Arc<Memory<K>>) -> Self {
        Self::with_window(concurrency, CONVERGING_IS_A_CHANGE_FOR, memory)
    }

    fn with_window(concurrency: u16, converging_window: Duration, memory: Arc<Memory<K>>) -> Self {
        Self { concurrency, pools: Mutex::default(), memory, converging_window }
    }

    /// Marks resources woken by a dependency, so their next reconcile takes the change lane.
    pub fn wake(&self, resources: &[ObjectRef<K>]) {
        for reference in resources {
            self.memory.update(reference, |entry| entry.woken = true);
        }
    }

    /// The lane of a reconcile of `cr`, consuming its wake mark. `settled`: its status says this generation
    /// was reconciled and nothing is converging.
    pub fn lane(&self, cr: &K, settled: bool) -> Lane {
        let reference = crate::memory::key(cr);
        let (woken, seen) = self
            .memory
            .update_existing(&reference, |entry| (std::mem::take(&mut entry.woken), entry.seen))
            .unwrap_or((false, None));
        let edited = seen.is_none_or(|s| s.intent != intent(cr));
        let recently_edited = seen.is_none_or(|s| s.since.elapsed() < self.converging_window);
        if woken || edited || (!settled && recently_edited) { Lane::Change } else { Lane::Drift }
    }

    /// Waits for a worker of `lane` in the pools of `connection` (a key naming the resource's Connection or
    /// ClusterConnection).
    pub async fn enter(&self, lane: Lane, connection: &str) -> Option<OwnedSemaphorePermit> {
        self.pool(lane, connection)?.acquire_owned().await.ok()
    }

    fn pool(&self, lane: Lane, connection: &str) -> Option<Arc<Semaphore>> {
        (self.concurrency > 0).then(|| {
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            let concurrency = self.concurrency.into();
            pools.entry((lane, connection.to_string())).or_insert_with(|| Arc::new(Semaphore::new(concurrency))).clone()
        })
    }

    /// Records that `cr`, as it stands, has been reconciled.
    pub fn reconciled(&self, cr: &K) {
        let intent = intent(cr);
        self.memory.update(&crate::memory::key(cr), |entry| {
            if entry.seen.is_none_or(|seen| seen.intent != intent) {
                entry.seen = Some(Seen { intent, since: Instant::now() });
            }
        });
    }
}

/// What a user can ask of a resource: its generation (the spec), its annotations, its deletion.
pub(crate) fn intent<K: Resource>(cr: &K) -> u64 {
    let meta = cr.meta();
    let mut hasher = DefaultHasher::new();
    (meta.generation, &meta.annotations, meta.deletion_timestamp.is_some()).hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::api::ObjectMeta;

    fn object(version: &str, generation: i64, annotations: &[(&str, &str)]) -> ConfigMap {
        let annotations = annotations.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("n".into()),
                resource_version: Some(version.into()),
                generation: Some(generation),
                annotations: Some(annotations),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn only_an_unchanged_settled_object_is_a_drift_check() {
        let lanes = Lanes::new(1);
        let first = object("1", 1, &[]);
        assert_eq!(lanes.lane(&first, false), Lane::Change, "never reconciled, no status");
        lanes.reconciled(&first);
        assert_eq!(lanes.lane(&first, true), Lane::Drift);
        assert_eq!(lanes.lane(&object("2", 1, &[]), true), Lane::Drift, "Tether's own status write");
        assert_eq!(lanes.lane(&first, false), Lane::Change, "still converging");
        assert_eq!(lanes.lane(&object("3", 2, &[]), true), Lane::Change, "a spec edit");
        let restart = object("3", 1, &[("tether.dev/restart", "now")]);
        assert_eq!(lanes.lane(&restart, true), Lane::Change, "an annotation edit");
        lanes.wake(&[ObjectRef::from_obj(&first)]);
        assert_eq!(lanes.lane(&first, true), Lane::Change, "its Secret changed");
        assert_eq!(lanes.lane(&first, true), Lane::Drift, "the wake is used once");
        let mut deleting = first.clone();
        deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
        assert_eq!(lanes.lane(&deleting, false), Lane::Change, "deleted");
    }

    #[test]
    fn converging_long_after_the_last_edit_is_a_drift_check() {
        let lanes = Lanes::with_window(1, Duration::ZERO, Arc::default());
        let stuck = object("1", 1, &[]);
        lanes.reconciled(&stuck);
        assert_eq!(lanes.lane(&stuck, false), Lane::Drift, "converging, but not since a recent edit");
        let edited = object("2", 2, &[]);
        assert_eq!(lanes.lane(&edited, false), Lane::Change, "an edit is always a change");
    }

    #[tokio::test]
    async fn a_busy_drift_lane_leaves_the_change_lane_free() {
        let lanes = Lanes::<ConfigMap>::new(1);
        let _drift = lanes.enter(Lane::Drift, "ns/a").await.unwrap();
        let change = tokio::time::timeout(Duration::from_secs(5), lanes.enter(Lane::Change, "ns/a")).await;
        assert!(change.is_ok_and(|p| p.is_some()));
        assert!(lanes.pool(Lane::Drift, "ns/a").unwrap().try_acquire().is_err(), "the drift lane is full");
    }

    #[tokio::test]
    async fn a_hanging_connection_holds_only_its_own_workers() {
        let lanes = Lanes::<ConfigMap>::new(2);
        let _held = [lanes.enter(Lane::Change, "ns/hangs").await, lanes.enter(Lane::Change, "ns/hangs").await];
        let blocked = tokio::time::timeout(Duration::from_millis(50), lanes.enter(Lane::Change, "ns/hangs")).await;
        assert!(blocked.is_err(), "the hanging connection's pool is full");
        let other = tokio::time::timeout(Duration::from_secs(5), lanes.enter(Lane::Change, "ns/healthy")).await;
        assert!(other.is_ok_and(|p| p.is_some()), "another connection keeps its pace");
        assert!(Lanes::<ConfigMap>::new(0).enter(Lane::Change, "any").await.is_none(), "0: no limit");
    }
}
