//! Writes to the tenant's one app-services manifest without lost updates.
//!
//! The platform keeps every app service of a tenant in one document that is read and written whole, and it
//! refuses a write while the previous write's job runs (shared/platforms/iguazio.md §9). So writes through
//! one [`ManifestWriter`] are serialised, each write waits for the running job, re-reads the manifest, and
//! changes only the entries it was asked to change. Changes that arrive while a write is waiting are folded
//! into the next write: twenty resources changed at once cost a handful of PUTs, not twenty, and none of
//! them overwrites another's change.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{AppService, Client, Manifest};
use crate::error::{Error, Result};

/// The `meta.annotations` key recording the restart request last acted on, so each request restarts once.
pub const RESTART_TOKEN: &str = "tether.dev/restart";

/// What to do to one app service.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Create the service, or set these spec fields on it (fields it leaves out keep their value).
    Upsert {
        /// The spec fields to write (platform field names). The service's sub-spec is under its `kind` key.
        spec: Map<String, Value>,
        /// `meta.labels`, replaced when given.
        labels: Option<Map<String, Value>>,
        /// A restart request: the service restarts once per new value (recorded in `meta.annotations`).
        restart_token: Option<String>,
    },
    /// Remove the service from the manifest (the platform tears it down).
    Remove,
}

struct Pending {
    change: Change,
    waiters: Vec<oneshot::Sender<Result<String>>>,
}

/// How long a write waits for the apply job already running before giving up with a transient error.
#[derive(Clone, Copy, Debug)]
pub struct WriterTiming {
    /// Between two looks at the running job.
    pub poll: Duration,
    /// Longest wait for it.
    pub timeout: Duration,
}

impl Default for WriterTiming {
    fn default() -> Self {
        Self { poll: Duration::from_millis(500), timeout: Duration::from_secs(120) }
    }
}

/// Serialised, folded writes to one tenant's manifest through one client.
pub struct ManifestWriter {
    client: Client,
    timing: WriterTiming,
    pending: Mutex<BTreeMap<String, Pending>>,
    writing: tokio::sync::Mutex<()>,
    /// The last read and when its GET began, shared by readers who asked before that.
    last_read: tokio::sync::Mutex<Option<(tokio::time::Instant, Manifest)>>,
}

/// How many times a write that meets a job someone else started re-reads and tries again.
const CONFLICT_ATTEMPTS: usize = 5;

impl ManifestWriter {
    /// A writer over `client`.
    pub fn new(client: Client, timing: WriterTiming) -> Self {
        Self {
            client,
            timing,
            pending: Mutex::default(),
            writing: tokio::sync::Mutex::new(()),
            last_read: tokio::sync::Mutex::new(None),
        }
    }

    /// The manifest, read no earlier than this call: callers who ask while a read is under way wait for the
    /// next one and share it, so N resources observed at once (as at start-up) make one GET per round, not
    /// N, and none sees a manifest older than its question.
    pub async fn read(&self) -> Result<Manifest> {
        self.read_within(Duration::ZERO).await
    }

    /// [`read`](Self::read), or the last read if its GET began at most `max_age` before this call and no
    /// write of this writer came after it: drift checks of the many services of one tenant share a read.
    /// The last read is the newest any caller saw, so a caller never sees state older than a read it acted on.
    pub async fn read_within(&self, max_age: Duration) -> Result<Manifest> {
        let asked = tokio::time::Instant::now();
        let mut last = self.last_read.lock().await;
        // A `max_age` too long to add counts as forever.
        if let Some((began, manifest)) = last.as_ref()
            && began.checked_add(max_age).is_none_or(|fresh_until| fresh_until >= asked)
        {
            return Ok(manifest.clone());
        }
        let began = tokio::time::Instant::now();
        let manifest = self.client.manifest().await?;
        *last = Some((began, manifest.clone()));
        Ok(manifest)
    }

    /// The client, for reads.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Queues `change` for the service `name` and returns once a PUT carrying it was accepted, with that
    /// PUT's job id. A later change to the same name before the write replaces this one (both callers get
    /// the same answer: the newest wins, as it would have one write later).
    pub async fn submit(&self, name: &str, change: Change) -> Result<String> {
        let (tx, mut rx) = oneshot::channel();
        {
            let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            let entry =
                pending.entry(name.to_string()).or_insert_with(|| Pending { change: change.clone(), waiters: vec![] });
            entry.change = change;
            entry.waiters.push(tx);
        }
        let _writing = self.writing.lock().await;
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        self.flush().await;
        rx.await.unwrap_or_else(|_| Err(Error::Transient("the manifest write was abandoned".into())))
    }

    /// One write of everything pending. Called with `writing` held.
    async fn flush(&self) {
        let mut result = self.wait_for_running_job().await;
        let batch = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return;
        }
        let mut attempts = 0;
        let answer = loop {
            let manifest = match result {
                Ok(manifest) => manifest,
                Err(e) => break Err(e),
            };
            let next = apply(manifest, &batch);
            match self.client.put_manifest(&next).await {
                Ok(job) => break Ok(job.id),
                Err(Error::Conflict(why)) if attempts + 1 < CONFLICT_ATTEMPTS => {
                    attempts += 1;
                    tracing::debug!(%why, attempts, "the manifest changed under us: re-reading");
                    result = self.wait_for_running_job().await;
                }
                Err(e) => break Err(e),
            }
        };
        // Whatever the answer, the manifest may have changed: no reader may share a read from before.
        *self.last_read.lock().await = None;
        for pending in batch.into_values() {
            for waiter in pending.waiters {
                let _ = waiter.send(answer.clone());
            }
        }
    }

    /// Reads the manifest, first waiting for the apply job in flight (whoever started it) to end.
    async fn wait_for_running_job(&self) -> Result<Manifest> {
        let manifest = self.client.manifest().await?;
        let Some(job) = manifest.running_job().map(str::to_string) else { return Ok(manifest) };
        match self.client.wait_job(&job, self.timing.poll, self.timing.timeout).await {
            // A failed job is reported on its services' status; it does not stop other writes.
            Ok(_) | Err(Error::Platform(_)) => {}
            Err(e) => return Err(e),
        }
        self.client.manifest().await
    }
}

/// The manifest with the batch applied: only the named entries change; every other entry goes back as
/// read, with both mark flags false so it is not redeployed.
fn apply(mut manifest: Manifest, batch: &BTreeMap<String, Pending>) -> Manifest {
    let mut scales_from_zero = false;
    for service in &mut manifest.app_services {
        service.spec.insert("mark_as_changed".into(), Value::Bool(false));
        service.spec.insert("mark_for_restart".into(), Value::Bool(false));
    }
    manifest.app_services.retain(|s| !matches!(batch.get(s.name()).map(|p| &p.change), Some(Change::Remove)));
    for (name, pending) in batch {
        let Change::Upsert { spec, labels, restart_token } = &pending.change else { continue };
        let index = manifest.app_services.iter().position(|s| s.name() == name);
        let existed = index.is_some();
        let index = index.unwrap_or_else(|| {
            manifest.app_services.push(AppService::default());
            manifest.app_services.len() - 1
        });
        let service = &mut manifest.app_services[index];
        let mut next = service.spec.clone();
        next.extend(spec.iter().map(clone_entry));
        let changed = without_flags(&next) != without_flags(&service.spec);
        if service.state() == Some("scaledToZero") && next.get("desired_state") == Some(&Value::from("ready")) {
            scales_from_zero = true;
        }
        let restart = existed && restart_token.is_some() && restart_token.as_deref() != service.restart_token();
        next.insert("mark_as_changed".into(), Value::Bool(changed || !existed));
        next.insert("mark_for_restart".into(), Value::Bool(restart));
        service.spec = next;
        let meta = service.meta.get_or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(meta) = meta {
            if let Some(labels) = labels {
                meta.insert("labels".into(), Value::Object(labels.clone()));
            }
            if let Some(token) = restart_token {
                let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(annotations) = annotations {
                    annotations.insert(RESTART_TOKEN.into(), Value::from(token.as_str()));
                }
            }
        }
    }
    // Scaling from zero needs the owner-edit mode on platform 3.5.3 and later (§5).
    if scales_from_zero {
        manifest.attributes.insert("apply_services_mode".into(), Value::from("serviceOwnerEdit"));
    }
    manifest.attributes.insert("force_apply_all_mode".into(), Value::from("disabled"));
    // The platform answers nulls the vendor SDK never sends back (it serialises without None).
    manifest.attributes.retain(|_, v| !v.is_null());
    manifest
}

fn clone_entry((k, v): (&String, &Value)) -> (String, Value) {
    (k.clone(), v.clone())
}

fn without_flags(spec: &Map<String, Value>) -> Map<String, Value> {
    spec.iter().filter(|(k, _)| !k.starts_with("mark_")).map(clone_entry).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn manifest(services: Value) -> Manifest {
        serde_json::from_value(json!({"app_services": services, "state": "ready", "last_error": null})).unwrap()
    }

    fn upsert(spec: Value, restart_token: Option<&str>) -> Pending {
        let spec = spec.as_object().cloned().unwrap();
        let restart_token = restart_token.map(str::to_string);
        Pending { change: Change::Upsert { spec, labels: None, restart_token }, waiters: vec![] }
    }

    #[test]
    fn only_the_named_entries_change_and_fields_left_out_keep_their_value() {
        let current = manifest(json!([
            {"spec": {"name": "a", "kind": "jupyter", "jupyter": {"image_name": "x"}, "platform_default": 1,
                      "description": "old", "mark_as_changed": true}, "status": {"state": "ready"}},
            {"spec": {"name": "b", "kind": "shell", "mark_for_restart": true}, "status": {"state": "ready"}},
            {"spec": {"name": "c", "kind": "shell"}, "status": {"state": "ready"}},
        ]));
        let mut batch = BTreeMap::new();
        batch.insert("a".into(), upsert(json!({"name": "a", "kind": "jupyter", "jupyter": {"image_name": "y"}}), None));
        batch.insert("c".into(), Pending { change: Change::Remove, waiters: vec![] });
        batch.insert("d".into(), upsert(json!({"name": "d", "kind": "shell"}), Some("t0")));
        let next = apply(current, &batch);
        let specs: Vec<Value> = next.app_services.iter().map(|s| Value::Object(s.spec.clone())).collect();
        assert_eq!(
            specs,
            [
                json!({"name": "a", "kind": "jupyter", "jupyter": {"image_name": "y"}, "platform_default": 1,
                       "description": "old", "mark_as_changed": true, "mark_for_restart": false}),
                json!({"name": "b", "kind": "shell", "mark_as_changed": false, "mark_for_restart": false}),
                json!({"name": "d", "kind": "shell", "mark_as_changed": true, "mark_for_restart": false}),
            ]
        );
        assert!(!next.attributes.contains_key("last_error"), "nulls are not sent back");
        assert_eq!(next.attributes["force_apply_all_mode"], "disabled");
    }

    #[test]
    fn a_restart_token_restarts_once_per_value() {
        let current = manifest(json!([{"spec": {"name": "a", "kind": "shell"}, "status": {"state": "ready"}}]));
        let mut batch = BTreeMap::new();
        batch.insert("a".into(), upsert(json!({"name": "a", "kind": "shell"}), Some("t1")));
        let next = apply(current, &batch);
        assert_eq!(next.app_services[0].spec["mark_as_changed"], false);
        assert_eq!(next.app_services[0].spec["mark_for_restart"], true);
        assert_eq!(next.app_services[0].restart_token(), Some("t1"));
        let again = apply(next, &batch);
        assert_eq!(again.app_services[0].spec["mark_for_restart"], false, "the same token restarts once");
    }

    #[test]
    fn scaling_from_zero_asks_for_the_owner_edit_mode() {
        let current = manifest(json!([{"spec": {"name": "a", "kind": "shell", "desired_state": "scaledToZero"},
                                        "status": {"state": "scaledToZero"}}]));
        let mut batch = BTreeMap::new();
        batch.insert("a".into(), upsert(json!({"name": "a", "kind": "shell", "desired_state": "ready"}), None));
        let next = apply(current, &batch);
        assert_eq!(next.attributes["apply_services_mode"], "serviceOwnerEdit");
        assert_eq!(next.app_services[0].spec["mark_as_changed"], true);
    }
}
