//! The watch cache can hand a reconcile an object older than Tether's own last write to it: the write's
//! watch event has not arrived yet. Acting on such an object would repeat a decision the write recorded
//! (the Synced generation that tells a Civis crash from a wanted start, for one), so the reconcile waits
//! for the fresh object instead. Resource versions are compared only for equality, as the API asks.

use std::collections::HashSet;
use std::sync::Arc;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

use crate::memory::Memory;

/// The resource versions each resource had before this process last wrote to it, kept in the loop's
/// [`Memory`].
pub struct OwnWrites<K: Resource<DynamicType = ()>> {
    memory: Arc<Memory<K>>,
}

/// What one resource's entry keeps of Tether's writes to it.
#[derive(Default)]
pub(crate) struct Versions {
    /// Versions our writes replaced: an object with one of these is older than our last write.
    superseded: HashSet<String>,
    /// The version our last write produced.
    latest: Option<String>,
}

impl<K: Resource<DynamicType = ()>> Default for OwnWrites<K> {
    fn default() -> Self {
        Self::new(Arc::default())
    }
}

impl<K: Resource<DynamicType = ()>> OwnWrites<K> {
    /// Own writes kept in `memory`.
    pub(crate) fn new(memory: Arc<Memory<K>>) -> Self {
        Self { memory }
    }
}

impl<K: Resource<DynamicType = ()>> OwnWrites<K> {
    /// Whether `cr` is older than a write this process made to it. Seeing a fresh one forgets the writes.
    pub fn is_stale(&self, cr: &K) -> bool {
        let Some(version) = cr.meta().resource_version.as_ref() else { return false };
        let stale = self.memory.update_existing(&ObjectRef::from_obj(cr), |entry| {
            let stale = entry.writes.superseded.contains(version);
            if !stale {
                entry.writes = Versions::default();
            }
            stale
        });
        stale.unwrap_or(false)
    }

    /// Records a write to `read` (the object as the reconcile read it) that the server answered with
    /// resource version `written`.
    pub fn record(&self, read: &K, written: Option<String>) {
        let (Some(before), Some(after)) = (read.meta().resource_version.clone(), written) else { return };
        self.memory.update(&ObjectRef::from_obj(read), |entry| {
            let entry = &mut entry.writes;
            entry.superseded.insert(before);
            entry.superseded.extend(entry.latest.take());
            // A write the server found to change nothing keeps the version; that version is current.
            entry.superseded.remove(&after);
            entry.latest = Some(after);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    fn at(version: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("n".into()),
                resource_version: Some(version.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn an_object_older_than_our_writes_is_stale_until_the_fresh_one_arrives() {
        let writes = OwnWrites::default();
        assert!(!writes.is_stale(&at("1")), "nothing written yet");
        // One reconcile read version 1, added the finalizer (2), then wrote status (3).
        writes.record(&at("1"), Some("2".into()));
        writes.record(&at("1"), Some("3".into()));
        assert!(writes.is_stale(&at("1")));
        assert!(writes.is_stale(&at("2")), "the finalizer's version is older than the status write");
        assert!(!writes.is_stale(&at("3")), "our own write, as the cache now shows it");
        assert!(!writes.is_stale(&at("2")), "forgotten once fresh");
    }

    #[test]
    fn a_version_someone_else_made_is_fresh() {
        let writes = OwnWrites::default();
        writes.record(&at("1"), Some("3".into()));
        assert!(!writes.is_stale(&at("7")));
    }

    #[test]
    fn a_write_that_changed_nothing_leaves_the_version_current() {
        let writes = OwnWrites::default();
        writes.record(&at("4"), Some("4".into()));
        assert!(!writes.is_stale(&at("4")));
    }
}
