//! Which resources read which Connections, ClusterConnections and Secrets, both ways: what each resource's
//! last reconcile read, and for each of those objects the resources that read it, so a change to one is
//! O(its readers), not a scan of every resource.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

use crate::connection::Dependency;

/// The index, shared by a controller's reconciles and its wake-ups.
pub struct Index<R> {
    inner: Mutex<Inner<R>>,
}

struct Inner<R> {
    reads: HashMap<R, HashSet<Dependency>>,
    readers: HashMap<Dependency, HashSet<R>>,
}

impl<R> Default for Index<R> {
    fn default() -> Self {
        Self { inner: Mutex::new(Inner { reads: HashMap::new(), readers: HashMap::new() }) }
    }
}

impl<R: Clone + Eq + Hash> Index<R> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<R>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `resource` now reads exactly `dependencies`.
    pub fn set(&self, resource: &R, dependencies: Vec<Dependency>) {
        let mut inner = self.lock();
        inner.unlink(resource);
        inner.link(resource, dependencies);
    }

    /// `resource` also reads `dependencies`.
    pub fn add(&self, resource: &R, dependencies: Vec<Dependency>) {
        self.lock().link(resource, dependencies);
    }

    /// `resource` is gone.
    pub fn forget(&self, resource: &R) {
        self.lock().unlink(resource);
    }

    /// The resources that read `dependency`.
    pub fn readers(&self, dependency: &Dependency) -> Vec<R> {
        self.lock().readers.get(dependency).map(|r| r.iter().cloned().collect()).unwrap_or_default()
    }

    /// Every resource with a dependency.
    pub fn all(&self) -> Vec<R> {
        self.lock().reads.keys().cloned().collect()
    }

    /// Whether no resource is indexed.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.lock().reads.is_empty()
    }
}

impl<R: Clone + Eq + Hash> Inner<R> {
    fn unlink(&mut self, resource: &R) {
        for dependency in self.reads.remove(resource).into_iter().flatten() {
            if let Some(readers) = self.readers.get_mut(&dependency) {
                readers.remove(resource);
                if readers.is_empty() {
                    self.readers.remove(&dependency);
                }
            }
        }
    }

    fn link(&mut self, resource: &R, dependencies: Vec<Dependency>) {
        let reads = self.reads.entry(resource.clone()).or_default();
        for dependency in dependencies {
            self.readers.entry(dependency.clone()).or_default().insert(resource.clone());
            reads.insert(dependency);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(name: &str) -> Dependency {
        Dependency::Secret { namespace: "ns".into(), name: name.into() }
    }

    #[test]
    fn readers_follow_each_resources_latest_reads() {
        let index = Index::<&str>::default();
        index.set(&"a", vec![secret("key"), secret("outputs-a")]);
        index.set(&"b", vec![secret("key")]);
        let mut readers = index.readers(&secret("key"));
        readers.sort();
        assert_eq!(readers, ["a", "b"]);
        index.set(&"a", vec![secret("other")]);
        assert_eq!(index.readers(&secret("key")), ["b"], "a no longer reads it");
        assert!(index.readers(&secret("outputs-a")).is_empty());
        index.add(&"b", vec![secret("input")]);
        assert_eq!(index.readers(&secret("input")), ["b"]);
        index.forget(&"b");
        assert!(index.readers(&secret("key")).is_empty() && index.readers(&secret("input")).is_empty());
        assert_eq!(index.all(), ["a"]);
    }
}
