//! AppService ↔ one entry of the Iguazio tenant's app-services manifest. The natural key is the service
//! name (unique per tenant), so a lost write is found again by name. All writes to a tenant, from every
//! Connection and ClusterConnection of it, go through its one queue ([`ManifestWriter`]), which serialises
//! them, re-reads before each, and folds concurrent changes into one PUT. Fields the spec leaves unset are not managed: they keep the platform's value.
//!
//! Restart is the annotation `tether.dev/restart` (any new value, e.g. a timestamp, restarts once); disable,
//! enable and scale-from-zero are `desiredState`.
//!
//! Ownership: two resources (in two namespaces) may name the same service of one tenant, so the entry
//! records its owner in `meta.annotations`: `tether.dev/owner-uid` (the resource's uid) and
//! `tether.dev/owner` (`namespace/name`). Every write is a [`Change::Owned`], which the writer checks
//! against the manifest it re-reads just before the PUT: an entry another resource owns is never
//! overwritten or removed, and observe reports Conflict for it. An unmarked entry is adopted and marked;
//! the annotation `tether.dev/external-id` (the service name) takes an entry over whatever its mark.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use kube::ResourceExt;
use serde_json::{Map, Value, json};
use tether_api::iguazio::{AppServiceObservation, ENTRY_FIELDS, ServiceUrl};
use tether_api::{AppService, FreeForm, Platform};
use tether_platforms::Error as PlatformError;
use tether_platforms::iguazio::{self as igz, Change, Client, ManifestWriter, WriterTiming};

use super::{Owner, conflict, foreign, may_observe, spec_fields};
use crate::adapter::{Adapter, Deletion, EXTERNAL_ID, ManagedResource as _, Observation, Probe, Readiness, Request};
use crate::connection::Account;

managed_resource!(AppService, AppServiceObservation);
mod preview;

pub use crate::annotations::RESTART;

/// The AppService adapter.
pub struct Iguazio;

/// The spec fields and labels the resource declares, in the platform's names and shapes.
fn desired(cr: &AppService) -> (Map<String, Value>, Option<Map<String, Value>>) {
    let spec = &cr.spec;
    let mut fields = spec_fields(spec, &["labels", "serviceConfig", "advanced"], &["pvc"]);
    // Settings Tether will not send (nested too deep) are left out here and refused by `write`.
    if let Some(Ok(config)) = spec.service_config.as_ref().map(FreeForm::value) {
        fields.insert(spec.kind.clone(), config.clone());
    }
    if let Some(advanced) = &spec.advanced {
        let mut platform = Map::new();
        if let Some(selector) = &advanced.node_selector {
            let entries: Vec<Value> = selector.iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
            platform.insert("node_selector".into(), json!({ "entries": entries }));
        }
        if let Some(class) = advanced.priority_class_name {
            platform.insert("priority_class_name".into(), serde_json::to_value(class).unwrap_or_default());
        }
        fields.insert("advanced".into(), Value::Object(platform));
    }
    let labels = spec.labels.as_ref().map(|l| l.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect());
    (fields, labels)
}

/// What stops the spec from being written: admission refuses a `kind` that names one of the entry's own
/// fields, but a CRD installed before that rule lets it through, and the settings sent under that key
/// would overwrite the field (e.g. the name: a new entry on every write); settings nested too deep are
/// not sent. Checked before a write only: observing and deleting do not need either.
fn writable(cr: &AppService) -> Result<(), PlatformError> {
    if ENTRY_FIELDS.contains(&cr.spec.kind.as_str()) {
        let why = format!("kind {:?} is one of the app service's own fields, not a service kind", cr.spec.kind);
        return Err(PlatformError::Invalid(why));
    }
    if let Some(Err(why)) = cr.spec.service_config.as_ref().map(FreeForm::value) {
        return Err(PlatformError::Invalid(format!("spec.serviceConfig {why}")));
    }
    Ok(())
}

/// The owner the entry's annotations record, if any.
fn owner_mark(remote: &igz::AppService) -> Option<Owner> {
    let uid = remote.owner_uid()?.to_string();
    Some(Owner { uid, reference: remote.owner().map(str::to_string) })
}

/// The owner `cr` records on its entry.
fn owner(cr: &AppService) -> igz::Owner {
    let Owner { uid, reference } = Owner::of(cr);
    igz::Owner { uid, name: reference.unwrap_or_default(), take_over: cr.adopt_id().is_some() }
}

fn object(cr: &AppService) -> String {
    format!("Iguazio app service {}", cr.spec.name)
}

/// What differs between the declaration and the remote entry, by field name.
fn differences(cr: &AppService, remote: &igz::AppService) -> Vec<String> {
    let (fields, labels) = desired(cr);
    let idle_by_design =
        cr.spec.scale_to_zero.as_ref().is_some_and(|s| s.mode == tether_api::iguazio::ScaleToZeroMode::Enabled);
    let mut differing: Vec<String> = fields
        .iter()
        .filter(|(k, v)| remote.spec.get(*k) != Some(*v))
        // Scaled to zero by the platform while idle is what scale-to-zero asked for, not drift.
        .filter(|(k, v)| {
            !(*k == "desired_state" && *v == "ready" && idle_by_design && remote.state() == Some("scaledToZero"))
        })
        .map(|(k, _)| k.clone())
        .collect();
    if labels.is_some_and(|l| Some(&l) != remote.labels()) {
        differing.push("labels".into());
    }
    if let Some(Err(why)) = cr.spec.service_config.as_ref().map(FreeForm::value) {
        // Not sent (see `desired`), and not up to date either: the write refuses it as InvalidSpec.
        differing.push(format!("serviceConfig ({why})"));
    }
    if let Some(token) = cr.annotations().get(RESTART)
        && remote.restart_token() != Some(token.as_str())
    {
        differing.push(format!("restart ({RESTART}={token})"));
    }
    let mine = owner(cr);
    if remote.owner_uid() != Some(mine.uid.as_str()) || remote.owner() != Some(mine.name.as_str()) {
        differing.push(format!("owner ({}={})", igz::OWNER_UID, mine.uid));
    }
    differing
}

/// The entry as declared, written for this resource.
fn upsert(cr: &AppService) -> Change {
    let (spec, labels) = desired(cr);
    let change = Change::Upsert { spec, labels, restart_token: cr.annotations().get(RESTART).cloned() };
    Change::Owned { owner: owner(cr), change: Box::new(change) }
}

/// Writes the entry. A refusal (another resource's entry, met in the read just before the write: it was
/// created between this resource's observe and now) is told as observe tells it.
async fn write(writer: &ManifestWriter, cr: &AppService) -> Result<String, PlatformError> {
    writable(cr)?;
    match writer.submit(&cr.spec.name, upsert(cr)).await {
        Err(PlatformError::Conflict(why)) => {
            let manifest = writer.read().await?;
            let mark = manifest.service(&cr.spec.name).as_ref().and_then(owner_mark);
            match foreign(cr, mark.as_ref()) {
                Some(other) => Err(conflict(cr, &object(cr), other, &cr.spec.name)),
                None => Err(PlatformError::Conflict(why)),
            }
        }
        answer => answer,
    }
}

/// The state the declaration asks for, as the platform names it.
fn target_state(cr: &AppService) -> &'static str {
    use tether_api::iguazio::DesiredState;
    match cr.spec.desired_state {
        Some(DesiredState::Disabled) => "disabled",
        Some(DesiredState::ScaledToZero) => "scaledToZero",
        Some(DesiredState::Ready) | None => "ready",
    }
}

fn urls(status: Option<&Map<String, Value>>, key: &str) -> Vec<ServiceUrl> {
    let list = status.and_then(|s| s.get(key)).cloned().unwrap_or(Value::Null);
    serde_json::from_value(list).unwrap_or_default()
}

fn text(status: Option<&Map<String, Value>>, key: &str) -> Option<String> {
    status?.get(key)?.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A drift check reads the service's entry in its tenant's manifest (shared by the tenant's drift checks).
struct Listed {
    name: String,
    /// The [`digest`](tether_platforms::listing::digest) of the entry the observe read.
    entry: u64,
}

impl Probe<ManifestWriter> for Listed {
    fn unchanged<'a>(
        &'a self,
        writer: &'a ManifestWriter,
        max_age: Duration,
    ) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move {
            let manifest = writer.read_within(max_age).await?;
            Ok(manifest.service(&self.name).is_some_and(|s| tether_platforms::listing::digest(&s) == self.entry))
        })
    }
}

impl Adapter for Iguazio {
    type Resource = AppService;
    type Client = ManifestWriter;
    const PLATFORM: Platform = Platform::Iguazio;

    fn connect(account: &Account) -> Result<ManifestWriter, PlatformError> {
        let client = Client::new(
            account.http.clone(),
            account.credential("username")?.expose(),
            account.credential("accessKey")?,
        )?;
        Ok(ManifestWriter::new(client, WriterTiming::default()))
    }

    async fn verify(writer: &ManifestWriter) -> Result<(), PlatformError> {
        writer.client().verify().await.map(drop)
    }

    async fn observe(
        writer: &ManifestWriter,
        cr: &Request<'_, AppService>,
    ) -> Result<Observation<AppServiceObservation>, PlatformError> {
        if let Some(id) = cr.adopt_id().filter(|id| *id != cr.spec.name) {
            let why =
                format!("annotation {EXTERNAL_ID}: an app service is known by its name, {}, not {id}", cr.spec.name);
            return Err(PlatformError::Invalid(why));
        }
        let manifest = writer.read_within(cr.shared_read_age).await?;
        let Some(remote) = manifest.service(&cr.spec.name) else { return Ok(Observation::Absent) };
        let remote = &remote;
        if !may_observe::<AppService>(cr, owner_mark(remote).as_ref(), &object(cr), &cr.spec.name)? {
            return Ok(Observation::Absent);
        }
        let status = remote.status.as_ref();
        let state = remote.state().unwrap_or("unknown");
        let target = target_state(cr);
        let settled = matches!(state, "ready" | "disabled" | "scaledToZero" | "error");
        let ready = if state == target || (state == "scaledToZero" && target == "ready") {
            Readiness::Ready
        } else if state == "error" {
            let why = status
                .and_then(|s| s.get("error_info")?.get("description")?.as_str().map(str::to_string))
                .or_else(|| text(status, "last_error"))
                .unwrap_or_else(|| "the platform reports the service in state error".into());
            Readiness::Failed(why)
        } else {
            Readiness::Unavailable(format!("app service {} is {state}, waiting for {target}", cr.spec.name))
        };
        let manifest_text = |key: &str| manifest.attributes.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
        let at_provider = AppServiceObservation {
            state: Some(state.to_string()),
            urls: urls(status, "urls"),
            api_urls: urls(status, "api_urls"),
            internal_api_urls: urls(status, "internal_api_urls"),
            version: text(status, "version"),
            last_error: text(status, "last_error"),
            // Job ids and the manifest state change with every write to the tenant, by anyone: recorded
            // while this service converges, so settled resources are not rewritten for others' writes.
            last_job_id: manifest_text("last_modification_job").filter(|_| !settled).map(str::to_string),
            running_job_id: manifest.running_job().filter(|_| !settled).map(str::to_string),
            manifest_state: manifest_text("state").filter(|_| !settled).map(str::to_string),
        };
        let mut outputs = BTreeMap::new();
        for (key, list) in [
            ("url", &at_provider.urls),
            ("apiUrl", &at_provider.api_urls),
            ("internalApiUrl", &at_provider.internal_api_urls),
        ] {
            if let Some(first) = list.first() {
                outputs.insert(key.to_string(), first.url.clone());
            }
        }
        let up_to_date = differences(cr, remote).is_empty();
        if settled {
            // Settled, the observation is the service's entry alone (job ids and the manifest's state are
            // recorded only while it converges).
            let entry = tether_platforms::listing::digest(remote);
            cr.probe(Listed { name: cr.spec.name.clone(), entry });
        }
        Ok(Observation::Present { external_id: cr.spec.name.clone(), up_to_date, ready, at_provider, outputs })
    }

    async fn create(writer: &ManifestWriter, cr: &Request<'_, AppService>) -> Result<String, PlatformError> {
        // Marked at creation: a write whose answer is lost is found again as ours.
        let job = write(writer, cr).await?;
        tracing::debug!(%job, "manifest apply started");
        Ok(cr.spec.name.clone())
    }

    async fn update(
        writer: &ManifestWriter,
        cr: &Request<'_, AppService>,
        _external_id: &str,
    ) -> Result<(), PlatformError> {
        let job = write(writer, cr).await?;
        tracing::debug!(%job, "manifest apply started");
        Ok(())
    }

    async fn delete(
        writer: &ManifestWriter,
        cr: &Request<'_, AppService>,
        _external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        // The entry leaves the manifest with the PUT; the next observe sees it gone. The writer leaves an
        // entry another resource owns (or one already gone) alone and sends nothing for it: NotFound.
        let remove = Change::Owned { owner: owner(cr), change: Box::new(Change::Remove) };
        match writer.submit(&cr.spec.name, remove).await {
            Ok(_) => Ok(Deletion::InProgress),
            Err(PlatformError::NotFound(why)) => {
                tracing::info!(%why, "nothing of this resource's to remove");
                Ok(Deletion::Gone)
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(spec: Value) -> AppService {
        let mut spec = spec;
        spec["connectionRef"] = json!({"name": "igz"});
        serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AppService",
            "metadata": {"name": "x", "namespace": "ns", "uid": "uid-x"}, "spec": spec}))
        .unwrap()
    }

    #[test]
    fn the_spec_becomes_the_platforms_fields() {
        let cr = resource(json!({"name": "nb", "kind": "jupyter", "serviceConfig": {"image_name": "jupyter-all"},
            "minReplicas": 1, "advanced": {"nodeSelector": {"nodeType": "gpu"}, "priorityClassName": "igz-workload-high"},
            "pvc": {"mounts": {"myVolume": [{"mountPath": "/data"}]}}, "labels": {"team": "data"}}));
        let (fields, labels) = desired(&cr);
        assert_eq!(
            Value::Object(fields),
            json!({"name": "nb", "kind": "jupyter", "jupyter": {"image_name": "jupyter-all"}, "min_replicas": 1,
                   "advanced": {"node_selector": {"entries": [{"key": "nodeType", "value": "gpu"}]},
                                "priority_class_name": "igz-workload-high"},
                   "pvc": {"mounts": {"myVolume": [{"mountPath": "/data"}]}}})
        );
        assert_eq!(labels.map(Value::Object), Some(json!({"team": "data"})));
    }

    #[test]
    fn a_kind_naming_an_entry_field_is_refused() {
        for kind in ["name", "pvc", "desired_state", "min_replicas", "kind"] {
            let cr = resource(json!({"name": "nb", "kind": kind, "serviceConfig": {"image_name": "x"}}));
            assert!(matches!(writable(&cr), Err(PlatformError::Invalid(why)) if why.contains(kind)), "{kind}");
        }
        assert!(writable(&resource(json!({"name": "nb", "kind": "jupyter"}))).is_ok());
    }

    /// An edit to settings nested too deep is not "applied": it is a difference, which the write refuses.
    #[test]
    fn settings_nested_too_deep_are_a_difference_not_up_to_date() {
        let deep = (0..40).fold(json!(1), |inner, _| json!({ "a": inner }));
        let cr = resource(json!({"name": "nb", "kind": "jupyter", "serviceConfig": deep}));
        let remote = igz::AppService { spec: desired(&cr).0, meta: None, status: None };
        assert!(
            differences(&cr, &remote).iter().any(|d| d.starts_with("serviceConfig")),
            "{:?}",
            differences(&cr, &remote)
        );
        assert!(matches!(writable(&cr), Err(PlatformError::Invalid(why)) if why.contains("nests deeper")));
    }

    #[test]
    fn unmanaged_fields_and_idle_scale_to_zero_are_not_drift() {
        let cr = resource(json!({"name": "nb", "kind": "shell", "desiredState": "ready",
            "scaleToZero": {"mode": "enabled", "scaleResources": [{"metricName": "num_of_requests", "windowSize": "1h"}]}}));
        let (fields, _) = desired(&cr);
        let mut remote_spec = fields.clone();
        remote_spec.insert("target_cpu".into(), json!(75));
        remote_spec.insert("desired_state".into(), json!("scaledToZero"));
        let mut remote = igz::AppService {
            spec: remote_spec,
            meta: None,
            status: Some(json!({"state": "scaledToZero"}).as_object().cloned().unwrap()),
        };
        assert_eq!(
            differences(&cr, &remote),
            ["owner (tether.dev/owner-uid=uid-x)"],
            "an unmarked entry gets its mark"
        );
        remote.meta = Some(json!({"annotations": {"tether.dev/owner-uid": "uid-x", "tether.dev/owner": "ns/x"}}));
        assert!(differences(&cr, &remote).is_empty(), "{:?}", differences(&cr, &remote));
        let mut restarted = cr.clone();
        restarted.annotations_mut().insert(RESTART.into(), "2026-11-23T10:00:00Z".into());
        assert_eq!(differences(&restarted, &remote).len(), 1);
    }
}
