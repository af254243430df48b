//! What the loop remembers of each resource between reconciles, in one map: one entry per resource (its
//! failures, the retry its last failure chose, Tether's own writes to it, what its lanes saw and whether a
//! dependency woke it), so a reconcile looks its resource up once per question in one place and a resource
//! that is gone is forgotten with one removal ([`Memory::forget`]).
//!
//! Two things are kept apart, on purpose: the dependency index (`dependencies`), whose other direction is
//! keyed by the Secret or Connection read, and the metrics' due times, which belong to the process-wide
//! registry. [`crate::context::Context::forget`] forgets a resource in all three.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use kube::Resource;
use kube::runtime::reflector::ObjectRef;

/// The key of `object` in the per-resource maps (this memory, the drift queue, the dependency index): its
/// namespace and name alone. [`ObjectRef::from_obj`] also carries its uid and resourceVersion, which keys
/// neither compare nor hash by (kube-runtime's `extra`), and a resource has a key in each of those maps,
/// one in the index per dependency, so they were a few hundred bytes per resource kept for nothing.
pub(crate) fn key<K: Resource<DynamicType = ()>>(object: &K) -> ObjectRef<K> {
    let meta = object.meta();
    let reference = ObjectRef::new(meta.name.as_deref().unwrap_or_default());
    match meta.namespace.as_deref() {
        Some(namespace) => reference.within(namespace),
        None => reference,
    }
}

/// One entry per resource this process reconciled (or was told about) and has not forgotten.
pub(crate) struct Memory<K: Resource<DynamicType = ()>>(Mutex<HashMap<ObjectRef<K>, Remembered>>);

/// What is remembered of one resource.
#[derive(Default)]
pub(crate) struct Remembered {
    /// Consecutive failures: the exponent of the backoff; 0 after a success.
    pub failures: u32,
    /// The retry delay `reconcile` chose for its last failure, for `error_policy` to apply.
    pub retry: Option<Duration>,
    /// The resource versions Tether's own writes replaced (see [`crate::own_writes`]).
    pub writes: crate::own_writes::Versions,
    /// What the resource asked for when it was last reconciled, and since when (see [`crate::lanes`]).
    pub seen: Option<crate::lanes::Seen>,
    /// A Secret or Connection it reads changed since its last reconcile: the next takes the change lane.
    pub woken: bool,
}

impl<K: Resource<DynamicType = ()>> Default for Memory<K> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Resource<DynamicType = ()>> Memory<K> {
    fn lock(&self) -> MutexGuard<'_, HashMap<ObjectRef<K>, Remembered>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `change` applied to the entry of `reference`, made if there is none.
    pub fn update<T>(&self, reference: &ObjectRef<K>, change: impl FnOnce(&mut Remembered) -> T) -> T {
        change(self.lock().entry(reference.clone()).or_default())
    }

    /// `read` of the entry of `reference`, if there is one (none is made).
    pub fn read<T>(&self, reference: &ObjectRef<K>, read: impl FnOnce(Option<&Remembered>) -> T) -> T {
        read(self.lock().get(reference))
    }

    /// `change` applied to the entry of `reference` if there is one (none is made).
    pub fn update_existing<T>(&self, reference: &ObjectRef<K>, change: impl FnOnce(&mut Remembered) -> T) -> Option<T> {
        self.lock().get_mut(reference).map(change)
    }

    /// Forgets `reference` entirely.
    pub fn forget(&self, reference: &ObjectRef<K>) {
        self.lock().remove(reference);
    }

    /// How many resources are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn one_entry_per_resource_made_by_an_update_and_gone_with_one_forget() {
        let memory = Memory::<ConfigMap>::default();
        let a = ObjectRef::new("a").within("n");
        assert_eq!(memory.read(&a, |e| e.map(|e| e.failures)), None, "a read makes no entry");
        memory.update_existing(&a, |e| e.failures = 9);
        assert_eq!(memory.len(), 0, "nor does an update of an existing one");
        memory.update(&a, |e| e.failures += 1);
        memory.update(&a, |e| e.retry = Some(Duration::from_secs(2)));
        assert_eq!(memory.read(&a, |e| e.map(|e| (e.failures, e.retry))), Some((1, Some(Duration::from_secs(2)))));
        memory.forget(&a);
        assert_eq!(memory.len(), 0);
    }

    #[test]
    fn a_key_is_the_objects_reference_without_its_uid_and_version() {
        let mut map = ConfigMap::default();
        map.metadata.name = Some("a".into());
        map.metadata.namespace = Some("n".into());
        map.metadata.uid = Some("u-1".into());
        map.metadata.resource_version = Some("7".into());
        let full = ObjectRef::from_obj(&map);
        let bare = key(&map);
        assert_eq!(bare, full, "the same key");
        assert_eq!((bare.extra.uid, bare.extra.resource_version), (None, None));
        map.metadata.namespace = None;
        assert_eq!(key(&map), ObjectRef::new("a"), "cluster-scoped");
    }
}
