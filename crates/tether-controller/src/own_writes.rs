//! The watch cache can hand a reconcile an object older than Tether's own last write to it: the write's
//! watch event has not arrived yet. Acting on such an object would repeat a decision the write recorded
//! (the Synced generation that tells a Civis crash from a wanted start, for one), so the reconcile waits
//! for the fresh object instead. Resource versions are compared only for equality, as the API asks.

use std::collections::HashSet;
use std::sync::Arc;

use kube::Resource;

use crate::memory::Memory;

/// The resource versions each resource had before this process last wrote to it, kept in the loop's
/// [`Memory`].
pub struct OwnWrites<K: Resource<DynamicType = ()>> {
    memory: Arc<Memory<K>>,
}

/// How an object stands to Tether's writes to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Older than Tether's last write: the write's watch event has not arrived yet.
    Stale,
    /// Exactly what Tether's last write made: nobody else wrote to it since.
    Ours,
    /// Newer than anything Tether wrote, or nothing remembered.
    Fresh,
}

/// What one resource's entry keeps of Tether's writes to it.
#[derive(Default)]
pub(crate) struct Versions {
    /// Versions our writes replaced: an object with one of these is older than our last write.
    superseded: HashSet<String>,
    /// The version our last write produced.
    latest: Option<String>,
    /// What the object that write was made from asked for ([`crate::lanes::intent`]: generation,
    /// annotations, deletion). A write lands on whatever the object is by then: an edit or a deletion made
    /// between the read and a status write is in the version the write answers, so that version is
    /// Tether's alone only if the intent did not change.
    basis: Option<u64>,
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
    #[cfg(test)]
    pub fn is_stale(&self, cr: &K) -> bool {
        self.freshness(cr) == Freshness::Stale
    }

    /// How `cr` stands to this process's writes to it. Seeing one that is not stale forgets the writes.
    pub fn freshness(&self, cr: &K) -> Freshness {
        let Some(version) = cr.meta().resource_version.as_ref() else { return Freshness::Fresh };
        let freshness = self.memory.update_existing(&crate::memory::key(cr), |entry| {
            if entry.writes.superseded.contains(version) {
                return Freshness::Stale;
            }
            let ours =
                entry.writes.latest.as_ref() == Some(version) && entry.writes.basis == Some(crate::lanes::intent(cr));
            entry.writes = Versions::default();
            if ours { Freshness::Ours } else { Freshness::Fresh }
        });
        freshness.unwrap_or(Freshness::Fresh)
    }

    /// Records a write to `read` (the object as the reconcile read it) that the server answered with
    /// resource version `written`.
    pub fn record(&self, read: &K, written: Option<String>) {
        let (Some(before), Some(after)) = (read.meta().resource_version.clone(), written) else { return };
        self.memory.update(&crate::memory::key(read), |entry| {
            let entry = &mut entry.writes;
            entry.superseded.insert(before);
            entry.superseded.extend(entry.latest.take());
            // A write the server found to change nothing keeps the version; that version is current.
            entry.superseded.remove(&after);
            entry.latest = Some(after);
            entry.basis = Some(crate::lanes::intent(read));
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
    fn our_last_write_as_the_cache_shows_it_is_ours_once() {
        let writes = OwnWrites::default();
        writes.record(&at("1"), Some("2".into()));
        writes.record(&at("1"), Some("3".into()));
        assert_eq!(writes.freshness(&at("2")), Freshness::Stale);
        assert_eq!(writes.freshness(&at("3")), Freshness::Ours, "nobody wrote after our status write");
        assert_eq!(writes.freshness(&at("3")), Freshness::Fresh, "forgotten once seen");
        writes.record(&at("3"), Some("4".into()));
        assert_eq!(writes.freshness(&at("5")), Freshness::Fresh, "someone wrote after us");
    }

    /// A deletion (or an edit, or a new annotation) lands between the reconcile's read and its status write: the version the
    /// write answers carries it, and must not pass for Tether's own (found by the chaos test, seed
    /// 1796306264930982549: a deleted UbiService kept its finalizer).
    #[test]
    fn a_write_on_top_of_a_deletion_or_an_edit_made_since_the_read_is_not_ours() {
        let writes = OwnWrites::default();
        writes.record(&at("1"), Some("3".into()));
        let mut deleted = at("3");
        deleted.metadata.deletion_timestamp =
            Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(writes.freshness(&deleted), Freshness::Fresh);
        writes.record(&at("3"), Some("5".into()));
        let mut edited = at("5");
        edited.metadata.generation = Some(2);
        assert_eq!(writes.freshness(&edited), Freshness::Fresh);
        writes.record(&at("5"), Some("7".into()));
        let mut restart = at("7");
        restart.metadata.annotations = Some([("tether.dev/restart".to_string(), "1".to_string())].into());
        assert_eq!(writes.freshness(&restart), Freshness::Fresh, "an annotation asked for since the read");
    }

    #[test]
    fn a_write_that_changed_nothing_leaves_the_version_current() {
        let writes = OwnWrites::default();
        writes.record(&at("4"), Some("4".into()));
        assert!(!writes.is_stale(&at("4")));
    }
}
