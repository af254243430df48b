//! Every annotation and finalizer key Tether reads or writes on Kubernetes objects, in one place. The
//! modules that act on a key re-export it where it belongs to their vocabulary (e.g. `reconciler::PAUSED`).
//! Marks Tether records on remote objects (owner uids, restart tokens) are the platform clients' own.

/// Annotation: adopt the remote object with this id instead of finding or creating one.
pub const EXTERNAL_ID: &str = "tether.dev/external-id";
/// Annotation: `"true"` stops all remote calls for the resource (a deletion waits).
pub const PAUSED: &str = "tether.dev/paused";
/// Annotation: the resource's own drift-check period (`90s`, `5m`, `1h`; 1 s to 7 days).
pub const POLL_INTERVAL: &str = "tether.dev/poll-interval";
/// Annotation (AppService): a new value restarts the service once.
pub const RESTART: &str = tether_platforms::iguazio::RESTART_TOKEN;
/// Annotation (CivisService): an RFC 3339 time, not in the future; a running service whose deployment is
/// older is redeployed once.
pub const REDEPLOY: &str = "tether.dev/redeploy";

/// Finalizer: holds a resource until its remote object is dealt with per its deletionPolicy.
pub const FINALIZER: &str = "tether.dev/finalizer";
/// Finalizer: holds a Connection and its credential Secrets during their namespace's teardown, while
/// resources still need them to delete their remote objects.
pub const IN_USE: &str = "tether.dev/in-use";

/// Every key above, for documentation checks.
pub const ALL: &[&str] = &[EXTERNAL_ID, PAUSED, POLL_INTERVAL, RESTART, REDEPLOY, FINALIZER, IN_USE];

#[cfg(test)]
mod tests {
    /// An admin meets these keys on their objects: each is explained in docs/.
    #[test]
    fn every_key_is_documented() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        let text: String = std::fs::read_dir(&docs)
            .expect("docs/")
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "md"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
            .collect();
        let missing: Vec<&&str> = super::ALL.iter().filter(|key| !text.contains(**key)).collect();
        assert!(missing.is_empty(), "not in docs/: {missing:?}");
    }
}
