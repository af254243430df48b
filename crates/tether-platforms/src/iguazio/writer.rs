//! Writes to the tenant's one app-services manifest without lost updates.
//!
//! The platform keeps every app service of a tenant in one document that is read and written whole, and it
//! refuses a write while the previous write's job runs (shared/platforms/iguazio.md §9). So writes through
//! one [`ManifestWriter`] are serialised, each write waits for the running job, re-reads the manifest, and
//! changes only the entries it was asked to change. Changes that arrive while a write is waiting are folded
//! into the next write: twenty resources changed at once cost a handful of PUTs, not twenty, and none of
//! them overwrites another's change.
//!
//! The platform has no precondition on the PUT, so that serialisation must cover every writer of the
//! tenant in the process, whatever its credentials: every [`ManifestWriter`] of one tenant (endpoint and
//! the tenant id the manifest names) shares one [`Tenant`] (the write lock, the queue and the last read),
//! found in a process-wide registry on the writer's first use. A writer is cheap: one per Connection and
//! credential version, rebuilt on a key rotation, all of them writing through the same queue.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::oneshot;

use super::{AppService, Client, ManifestRead};
use crate::error::{Error, Result};

/// The `meta.annotations` key recording the restart request last acted on, so each request restarts once.
pub const RESTART_TOKEN: &str = "tether.dev/restart";
/// The `meta.annotations` key recording the uid of the owner an entry belongs to ([`Change::Owned`]).
pub const OWNER_UID: &str = "tether.dev/owner-uid";
/// The `meta.annotations` key recording a name for that owner, to tell a human who it is.
pub const OWNER: &str = "tether.dev/owner";

/// Who an entry belongs to: two owners naming the same service must not take turns overwriting it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// A unique id of the owner (Tether: the resource's uid), recorded under [`OWNER_UID`].
    pub uid: String,
    /// A name for it (Tether: `namespace/name`), recorded under [`OWNER`].
    pub name: String,
    /// Take the entry over whatever owner it records (an adoption a human asked for).
    pub take_over: bool,
}

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
    /// `change` (an upsert or a remove) on behalf of `owner`, checked against the owner the entry records
    /// in the manifest read just before the write. An entry that records no owner, or this one, is
    /// changed, and an upsert records `owner` on it. An entry that records another owner is left as it is
    /// (unless `owner.take_over`): the upsert is refused with `Conflict`, the remove answers `NotFound`
    /// (there is nothing of this owner's to remove), as does the remove of an entry that is not there.
    Owned {
        /// Whose change it is.
        owner: Owner,
        /// The change itself.
        change: Box<Change>,
    },
}

impl Change {
    /// The change itself and, for an owned change, its owner.
    fn parts(&self) -> (Option<&Owner>, &Change) {
        match self {
            Change::Owned { owner, change } => {
                let (_, inner) = change.parts();
                (Some(owner), inner)
            }
            other => (None, other),
        }
    }
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

/// What every writer of one tenant shares: the queue of changes, the write lock and the last read.
struct Tenant {
    pending: Mutex<BTreeMap<String, Pending>>,
    writing: tokio::sync::Mutex<()>,
    /// The last read and when its GET began, shared by readers who asked before that.
    last_read: tokio::sync::Mutex<Option<(tokio::time::Instant, Arc<ManifestRead>)>>,
}

/// A tenant, as the process knows it: the endpoint and the tenant id the manifest names.
type TenantKey = (String, String);

/// Every tenant some writer uses, while one does.
static TENANTS: LazyLock<Mutex<HashMap<TenantKey, Weak<Tenant>>>> = LazyLock::new(Mutex::default);

/// The tenant `key` names, shared with every live writer of it.
fn tenant(key: TenantKey) -> Arc<Tenant> {
    let mut tenants = TENANTS.lock().unwrap_or_else(PoisonError::into_inner);
    tenants.retain(|_, tenant| tenant.strong_count() > 0);
    if let Some(tenant) = tenants.get(&key).and_then(Weak::upgrade) {
        return tenant;
    }
    let tenant = Arc::new(Tenant {
        pending: Mutex::default(),
        writing: tokio::sync::Mutex::new(()),
        last_read: tokio::sync::Mutex::new(None),
    });
    tenants.insert(key, Arc::downgrade(&tenant));
    tenant
}

/// Serialised, folded writes to one tenant's manifest through one client; see the module's page.
pub struct ManifestWriter {
    client: Client,
    timing: WriterTiming,
    /// Found on first use, from the tenant id of the manifest this writer's credentials read.
    tenant: tokio::sync::OnceCell<Arc<Tenant>>,
}

/// How many times a write that meets a job someone else started re-reads and tries again.
const CONFLICT_ATTEMPTS: usize = 5;

impl ManifestWriter {
    /// A writer over `client`.
    pub fn new(client: Client, timing: WriterTiming) -> Self {
        Self { client, timing, tenant: tokio::sync::OnceCell::new() }
    }

    /// The tenant this writer's credentials write to, shared with every other writer of it in the process.
    async fn tenant(&self) -> Result<&Arc<Tenant>> {
        self.tenant
            .get_or_try_init(|| async {
                let manifest = self.client.manifest_read().await?;
                let id = manifest.attributes.get("tenant_id").and_then(Value::as_str).unwrap_or_default();
                // A manifest that names no tenant shares the endpoint's queue: over-serialised, never racing.
                Ok(tenant((self.client.http.endpoint().to_string(), id.to_string())))
            })
            .await
    }

    /// Whether `self` and `other` write through the same queue (one tenant).
    pub async fn same_tenant(&self, other: &ManifestWriter) -> Result<bool> {
        Ok(Arc::ptr_eq(self.tenant().await?, other.tenant().await?))
    }

    /// The manifest, read no earlier than this call: callers who ask while a read is under way wait for the
    /// next one and share it, so N resources observed at once (as at start-up) make one GET per round, not
    /// N, and none sees a manifest older than its question.
    pub async fn read(&self) -> Result<Arc<ManifestRead>> {
        self.read_within(Duration::ZERO).await
    }

    /// [`read`](Self::read), or the last read if its GET began at most `max_age` before this call and no
    /// write to the tenant came after it: drift checks of the many services of one tenant share a read.
    /// The last read is the newest any caller saw, so a caller never sees state older than a read it acted on.
    /// Shared, not copied: a tenant's manifest holds every app service of the tenant, and each of them is
    /// observed from it; each service is kept as its text ([`ManifestRead`]), decoded for the one asking.
    pub async fn read_within(&self, max_age: Duration) -> Result<Arc<ManifestRead>> {
        let asked = tokio::time::Instant::now();
        let mut last = self.tenant().await?.last_read.lock().await;
        // A `max_age` too long to add counts as forever.
        if let Some((began, manifest)) = last.as_ref()
            && began.checked_add(max_age).is_none_or(|fresh_until| fresh_until >= asked)
        {
            return Ok(manifest.clone());
        }
        let began = tokio::time::Instant::now();
        let manifest = Arc::new(self.client.manifest_read().await?);
        *last = Some((began, manifest.clone()));
        Ok(manifest)
    }

    /// The client, for reads.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Queues `change` for the service `name` and returns once a PUT carrying it was accepted, with that
    /// PUT's job id. A later change to the same name before the write replaces this one (both callers get
    /// the same answer: the newest wins, as it would have one write later), unless both are
    /// [`Change::Owned`] by different owners: then the later one is refused with `Conflict`. An owned
    /// change the manifest refuses gets its own answer (see [`Change::Owned`]), and a write in which every
    /// change is refused sends nothing. The queue is the tenant's: a write carries the changes of every
    /// writer of the tenant that were waiting, through this writer's client.
    pub async fn submit(&self, name: &str, change: Change) -> Result<String> {
        let tenant = self.tenant().await?;
        let (tx, mut rx) = oneshot::channel();
        {
            let mut pending = tenant.pending.lock().unwrap_or_else(|p| p.into_inner());
            // Two owners creating the same service at once: the first one queued wins.
            if let Some(why) = pending.get(name).and_then(|queued| contested(name, &queued.change, &change)) {
                return Err(Error::Conflict(why));
            }
            let entry =
                pending.entry(name.to_string()).or_insert_with(|| Pending { change: change.clone(), waiters: vec![] });
            entry.change = change;
            entry.waiters.push(tx);
        }
        let _writing = tenant.writing.lock().await;
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        self.flush(tenant).await;
        rx.await.unwrap_or_else(|_| Err(Error::Transient("the manifest write was abandoned".into())))
    }

    /// One write of everything pending for the tenant. Called with its `writing` held.
    async fn flush(&self, tenant: &Tenant) {
        let mut result = self.wait_for_running_job().await;
        let batch = std::mem::take(&mut *tenant.pending.lock().unwrap_or_else(|p| p.into_inner()));
        if batch.is_empty() {
            return;
        }
        let mut attempts = 0;
        let mut refused = BTreeMap::new();
        let answer = loop {
            let manifest = match result {
                Ok(manifest) => manifest,
                Err(e) => break Err(e),
            };
            let next;
            (next, refused) = apply(&manifest, &batch);
            if refused.len() == batch.len() {
                // Every change was refused: nothing to write.
                break Ok(String::new());
            }
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
        *tenant.last_read.lock().await = None;
        for (name, pending) in batch {
            let answer = refused.remove(&name).map_or_else(|| answer.clone(), Err);
            for waiter in pending.waiters {
                let _ = waiter.send(answer.clone());
            }
        }
    }

    /// Reads the manifest, first waiting for the apply job in flight (whoever started it) to end. Read as
    /// text ([`ManifestRead`]): a write changes a few entries and sends the others back, each decoded only
    /// while it is serialised, so no whole decoded manifest is held during the write.
    async fn wait_for_running_job(&self) -> Result<ManifestRead> {
        let manifest = self.client.manifest_read().await?;
        let Some(job) = manifest.running_job().map(str::to_string) else { return Ok(manifest) };
        match self.client.wait_job(&job, self.timing.poll, self.timing.timeout).await {
            // A failed job is reported on its services' status; it does not stop other writes.
            Ok(_) | Err(Error::Platform(_)) => {}
            Err(e) => return Err(e),
        }
        self.client.manifest_read().await
    }
}

/// Why `next` may not replace `queued`, the change of another owner waiting for the same write.
fn contested(name: &str, queued: &Change, next: &Change) -> Option<String> {
    let (Some(queued), Some(next)) = (queued.parts().0, next.parts().0) else { return None };
    (queued.uid != next.uid && !next.take_over)
        .then(|| format!("app service {name} is being written for {} (uid {})", queued.name, queued.uid))
}

/// Why an owned change of the entry `name` is refused, if it is: the entry records another owner, or (for
/// a remove) is not there.
fn refusal(manifest: &ManifestRead, name: &str, change: &Change) -> Option<Error> {
    let (Some(owner), change) = change.parts() else { return None };
    let Some(entry) = manifest.service(name) else {
        let absent = Error::NotFound(format!("app service {name} is not in the manifest"));
        return matches!(change, Change::Remove).then_some(absent);
    };
    // An entry marked by an earlier owner of the same name (deleted with its entry orphaned, then created
    // again, as GitOps tools do) is this owner's: names are unique, so that one is gone.
    let same_name = !owner.name.is_empty() && entry.owner() == Some(owner.name.as_str());
    let recorded = entry.owner_uid().filter(|uid| *uid != owner.uid && !owner.take_over && !same_name)?;
    let who = entry.owner().map_or_else(|| format!("uid {recorded}"), |name| format!("{name} (uid {recorded})"));
    Some(match change {
        Change::Remove => Error::NotFound(format!("app service {name} belongs to {who}: not removed")),
        _ => Error::Conflict(format!("app service {name} belongs to {who}")),
    })
}

/// The manifest with the batch applied, and the owned changes refused (by service name, with the answer
/// for their callers): only the named entries change; every other entry goes back as read, with both mark
/// flags false so it is not redeployed.
fn apply<'a>(manifest: &'a ManifestRead, batch: &BTreeMap<String, Pending>) -> (Edited<'a>, BTreeMap<String, Error>) {
    let refused: BTreeMap<String, Error> = batch
        .iter()
        .filter_map(|(name, pending)| Some((name.clone(), refusal(manifest, name, &pending.change)?)))
        .collect();
    let changes: BTreeMap<&str, (Option<&Owner>, &Change)> = batch
        .iter()
        .filter(|(name, _)| !refused.contains_key(*name))
        .map(|(name, pending)| (name.as_str(), pending.change.parts()))
        .collect();
    let mut scales_from_zero = false;
    let mut services = Vec::with_capacity(manifest.len() + changes.len());
    let mut upserted = std::collections::HashSet::new();
    for (name, text) in manifest.entries() {
        match changes.get(name) {
            Some((_, Change::Remove)) => {}
            // The first entry of the name is the one written (the others go back as read).
            Some(&(owner, change)) if upserted.insert(name) => {
                // Decoded once on arrival: this cannot fail.
                let mut service: AppService = serde_json::from_str(text.get()).unwrap_or_default();
                scales_from_zero |= upsert(&mut service, true, owner, change);
                services.push(Entry::Written(service));
            }
            _ => services.push(Entry::AsRead(text)),
        }
    }
    for (&name, &(owner, change)) in &changes {
        if matches!(change, Change::Upsert { .. }) && !upserted.contains(name) {
            let mut service = AppService::default();
            scales_from_zero |= upsert(&mut service, false, owner, change);
            services.push(Entry::Written(service));
        }
    }
    let mut attributes = manifest.attributes.clone();
    // Scaling from zero needs the owner-edit mode on platform 3.5.3 and later (§5).
    if scales_from_zero {
        attributes.insert("apply_services_mode".into(), Value::from("serviceOwnerEdit"));
    }
    attributes.insert("force_apply_all_mode".into(), Value::from("disabled"));
    // The platform answers nulls the vendor SDK never sends back (it serialises without None).
    attributes.retain(|_, v| !v.is_null());
    (Edited { services, attributes }, refused)
}

/// Applies an upsert to `service` (as read, if it `existed`, else empty); whether it scales the service
/// from zero. Other changes leave it as it is.
fn upsert(service: &mut AppService, existed: bool, owner: Option<&Owner>, change: &Change) -> bool {
    unmark(service);
    let Change::Upsert { spec, labels, restart_token } = change else { return false };
    let mut next = service.spec.clone();
    next.extend(spec.iter().map(clone_entry));
    let changed = without_flags(&next) != without_flags(&service.spec);
    let scales_from_zero =
        service.state() == Some("scaledToZero") && next.get("desired_state") == Some(&Value::from("ready"));
    let restart = existed && restart_token.is_some() && restart_token.as_deref() != service.restart_token();
    next.insert("mark_as_changed".into(), Value::Bool(changed || !existed));
    next.insert("mark_for_restart".into(), Value::Bool(restart));
    service.spec = next;
    let meta = service.meta.get_or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(meta) = meta {
        if let Some(labels) = labels {
            meta.insert("labels".into(), Value::Object(labels.clone()));
        }
        let mut notes: Vec<(&str, &str)> = Vec::new();
        if let Some(token) = restart_token {
            notes.push((RESTART_TOKEN, token.as_str()));
        }
        if let Some(owner) = owner {
            notes.extend([(OWNER_UID, owner.uid.as_str()), (OWNER, owner.name.as_str())]);
        }
        if !notes.is_empty() {
            let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(annotations) = annotations {
                annotations.extend(notes.into_iter().map(|(k, v)| (k.to_string(), Value::from(v))));
            }
        }
    }
    scales_from_zero
}

/// Both mark flags false: the entry is sent back without asking for a redeploy or a restart.
fn unmark(service: &mut AppService) {
    service.spec.insert("mark_as_changed".into(), Value::Bool(false));
    service.spec.insert("mark_for_restart".into(), Value::Bool(false));
}

/// The manifest a write sends: the entries it changed, decoded, and the others as read, each decoded only
/// while it is serialised (to send it back unmarked), so a write of a tenant of thousands of services holds
/// one of them decoded at a time, not the whole manifest.
struct Edited<'a> {
    services: Vec<Entry<'a>>,
    attributes: Map<String, Value>,
}

enum Entry<'a> {
    AsRead(&'a serde_json::value::RawValue),
    Written(AppService),
}

impl serde::Serialize for Edited<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        struct Services<'s, 'a>(&'s [Entry<'a>]);
        impl serde::Serialize for Services<'_, '_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
                use serde::ser::{Error as _, SerializeSeq as _};
                let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
                for entry in self.0 {
                    match entry {
                        Entry::AsRead(text) => {
                            let mut service: AppService = serde_json::from_str(text.get()).map_err(S::Error::custom)?;
                            unmark(&mut service);
                            seq.serialize_element(&service)?;
                        }
                        Entry::Written(service) => seq.serialize_element(service)?,
                    }
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(1 + self.attributes.len()))?;
        map.serialize_entry("app_services", &Services(&self.services))?;
        for (key, value) in &self.attributes {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
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

    use crate::iguazio::Manifest;

    fn manifest(services: Value) -> ManifestRead {
        let text = json!({"app_services": services, "state": "ready", "last_error": null}).to_string();
        serde_json::from_str(&text).unwrap()
    }

    /// `apply` of the batch to `current`, and the manifest it writes, as the platform decodes it.
    fn applied(current: &ManifestRead, batch: &BTreeMap<String, Pending>) -> (Manifest, BTreeMap<String, Error>) {
        let (edited, refused) = apply(current, batch);
        (serde_json::from_str(&serde_json::to_string(&edited).unwrap()).unwrap(), refused)
    }

    /// A manifest written, read back.
    fn read_back(written: &Manifest) -> ManifestRead {
        serde_json::from_str(&serde_json::to_string(written).unwrap()).unwrap()
    }

    #[test]
    fn entries_not_changed_go_back_as_read_but_unmarked_and_in_their_order() {
        let current = manifest(json!([
            {"spec": {"name": "b", "kind": "shell", "mark_for_restart": true, "weird": [1, {"x": null}]},
             "meta": {"labels": {"a": "1"}}, "status": {"state": "ready", "extra": 1.5}},
            {"spec": {"name": "a", "kind": "shell"}},
            {"spec": {"name": "a", "kind": "shell", "description": "second of the name"}},
        ]));
        let mut batch = BTreeMap::new();
        batch.insert("a".into(), upsert(json!({"name": "a", "kind": "shell", "description": "new"}), None));
        let (next, _) = applied(&current, &batch);
        let specs: Vec<Option<&Value>> = next.app_services.iter().map(|s| s.spec.get("description")).collect();
        assert_eq!(
            specs,
            [None, Some(&json!("new")), Some(&json!("second of the name"))],
            "the first of a name is written"
        );
        let b = &next.app_services[0];
        assert_eq!(b.spec["weird"], json!([1, {"x": null}]));
        assert_eq!((&b.spec["mark_as_changed"], &b.spec["mark_for_restart"]), (&json!(false), &json!(false)));
        assert_eq!(b.meta, Some(json!({"labels": {"a": "1"}})));
        assert_eq!(b.status.as_ref().unwrap()["extra"], 1.5);
        assert_eq!(next.app_services[2].spec["mark_as_changed"], false);
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
        let (next, refused) = applied(&current, &batch);
        assert!(refused.is_empty());
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
        let (next, _) = applied(&current, &batch);
        assert_eq!(next.app_services[0].spec["mark_as_changed"], false);
        assert_eq!(next.app_services[0].spec["mark_for_restart"], true);
        assert_eq!(next.app_services[0].restart_token(), Some("t1"));
        let (again, _) = applied(&read_back(&next), &batch);
        assert_eq!(again.app_services[0].spec["mark_for_restart"], false, "the same token restarts once");
    }

    #[test]
    fn scaling_from_zero_asks_for_the_owner_edit_mode() {
        let current = manifest(json!([{"spec": {"name": "a", "kind": "shell", "desired_state": "scaledToZero"},
                                        "status": {"state": "scaledToZero"}}]));
        let mut batch = BTreeMap::new();
        batch.insert("a".into(), upsert(json!({"name": "a", "kind": "shell", "desired_state": "ready"}), None));
        let (next, _) = applied(&current, &batch);
        assert_eq!(next.attributes["apply_services_mode"], "serviceOwnerEdit");
        assert_eq!(next.app_services[0].spec["mark_as_changed"], true);
    }

    fn owned(uid: &str, take_over: bool, change: Change) -> Pending {
        let owner = Owner { uid: uid.into(), name: format!("ns-{uid}/svc"), take_over };
        Pending { change: Change::Owned { owner, change: Box::new(change) }, waiters: vec![] }
    }

    fn shell(name: &str, description: &str) -> Change {
        let spec = json!({"name": name, "kind": "shell", "description": description}).as_object().cloned().unwrap();
        Change::Upsert { spec, labels: None, restart_token: None }
    }

    #[test]
    fn an_owned_upsert_marks_its_entry_and_leaves_another_owners_alone() {
        let current = manifest(json!([
            {"spec": {"name": "legacy", "kind": "shell"}, "meta": {"labels": {}}, "status": {"state": "ready"}},
            {"spec": {"name": "theirs", "kind": "shell", "description": "a"},
             "meta": {"annotations": {"tether.dev/owner-uid": "uid-a", "tether.dev/owner": "team-a/svc"}}, "status": {"state": "ready"}},
        ]));
        let mut batch = BTreeMap::new();
        batch.insert("new".into(), owned("uid-b", false, shell("new", "b")));
        batch.insert("legacy".into(), owned("uid-b", false, shell("legacy", "")));
        batch.insert("theirs".into(), owned("uid-b", false, shell("theirs", "b")));
        let (next, refused) = applied(&current, &batch);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["theirs"]);
        assert!(
            matches!(&refused["theirs"], Error::Conflict(m) if m.contains("team-a/svc (uid uid-a)")),
            "{refused:?}"
        );
        for name in ["new", "legacy"] {
            let entry = next.service(name).unwrap();
            assert_eq!((entry.owner_uid(), entry.owner()), (Some("uid-b"), Some("ns-uid-b/svc")), "{name}");
        }
        assert_eq!(next.service("legacy").unwrap().spec["mark_as_changed"], true, "the description changed");
        let theirs = next.service("theirs").unwrap();
        assert_eq!((theirs.owner_uid(), &theirs.spec["description"]), (Some("uid-a"), &json!("a")));

        // Taking over (an adoption asked for) re-marks it; the owner's own change goes through.
        let mut batch = BTreeMap::new();
        batch.insert("theirs".into(), owned("uid-b", true, shell("theirs", "b")));
        let (taken, refused) = applied(&current, &batch);
        assert!(refused.is_empty());
        assert_eq!(taken.service("theirs").unwrap().owner_uid(), Some("uid-b"));
        let mut batch = BTreeMap::new();
        batch.insert("theirs".into(), owned("uid-a", false, shell("theirs", "a2")));
        let (kept, refused) = applied(&current, &batch);
        assert!(refused.is_empty());
        assert_eq!(kept.service("theirs").unwrap().spec["description"], "a2");
    }

    /// A resource deleted with its entry orphaned, then created again under the same name (a new uid, as
    /// a GitOps tool recreates it): the entry is the new one's, to change and to remove.
    #[test]
    fn an_entry_of_an_earlier_owner_of_the_same_name_is_taken_back() {
        let current = manifest(json!([
            {"spec": {"name": "svc", "kind": "shell", "description": "old"},
             "meta": {"annotations": {"tether.dev/owner-uid": "uid-old", "tether.dev/owner": "ns-uid-new/svc"}},
             "status": {"state": "ready"}},
        ]));
        let mut batch = BTreeMap::new();
        batch.insert("svc".into(), owned("uid-new", false, shell("svc", "new")));
        let (next, refused) = applied(&current, &batch);
        assert!(refused.is_empty(), "{refused:?}");
        assert_eq!(next.service("svc").unwrap().owner_uid(), Some("uid-new"));
        let mut batch = BTreeMap::new();
        batch.insert("svc".into(), owned("uid-new", false, Change::Remove));
        let (next, refused) = applied(&current, &batch);
        assert!(refused.is_empty() && next.service("svc").is_none());
    }

    #[test]
    fn an_owned_remove_removes_only_its_own_entry() {
        let current = manifest(json!([
            {"spec": {"name": "theirs", "kind": "shell"}, "meta": {"annotations": {"tether.dev/owner-uid": "uid-a"}},
             "status": {"state": "ready"}},
            {"spec": {"name": "ours", "kind": "shell"}, "meta": {"annotations": {"tether.dev/owner-uid": "uid-b"}},
             "status": {"state": "ready"}},
        ]));
        let mut batch = BTreeMap::new();
        batch.insert("theirs".into(), owned("uid-b", false, Change::Remove));
        batch.insert("ours".into(), owned("uid-b", false, Change::Remove));
        batch.insert("absent".into(), owned("uid-b", false, Change::Remove));
        let (next, refused) = applied(&current, &batch);
        assert_eq!(refused.keys().collect::<Vec<_>>(), ["absent", "theirs"]);
        assert!(refused.values().all(|e| matches!(e, Error::NotFound(_))), "{refused:?}");
        let names: Vec<&str> = next.app_services.iter().map(AppService::name).collect();
        assert_eq!(names, ["theirs"]);
    }

    #[test]
    fn a_queued_change_of_one_owner_is_not_replaced_by_another_owners() {
        let (a, b) = (owned("uid-a", false, shell("x", "a")).change, owned("uid-b", false, shell("x", "b")).change);
        assert!(contested("x", &a, &b).is_some_and(|why| why.contains("ns-uid-a/svc (uid uid-a)")));
        assert_eq!(contested("x", &a, &owned("uid-a", false, Change::Remove).change), None, "the same owner");
        assert_eq!(contested("x", &a, &owned("uid-b", true, Change::Remove).change), None, "a take-over");
        assert_eq!(contested("x", &shell("x", "legacy"), &b), None, "not owned");
    }
}
