//! UbiService ↔ UbiOps service. The natural key is (project, name): names are unique per project, so a
//! lost create answer is found again by name and nothing is created twice. Updates are partial PATCHes of
//! the fields that differ; delete is synchronous.
//!
//! Ownership: two resources (in two namespaces) may name the same (project, name) on one account, so the
//! service carries its owner in its labels: `tether-owner-uid` (the resource's uid) and, for the conflict
//! message, `tether-owner-namespace` and `tether-owner-name` (each only when it fits a 63-character label
//! value). A service marked by another resource is refused with Conflict and never updated or deleted; an
//! unmarked one is adopted and marked; the annotation `tether.dev/external-id` (the service's id) takes a
//! service over whatever its mark.

use std::time::Duration;

use futures::future::BoxFuture;
use kube::ResourceExt;
use serde_json::{Map, Value};
use tether_api::ubiops::UbiServiceObservation;
use tether_api::{Platform, UbiService};
use tether_platforms::Error as PlatformError;
use tether_platforms::listing::{digest, shows};
use tether_platforms::ubiops::{Client, Service, ServiceFields};

use super::{Owner, conflict, foreign, may_observe, spec_fields};
use crate::adapter::{
    Adapter, Deletion, EXTERNAL_ID, ManagedResource as _, Observation, Probe, Readiness, Request, adopted,
};
use crate::connection::Account;

managed_resource!(UbiService, UbiServiceObservation);
mod preview;

/// The UbiService adapter.
pub struct UbiOps;

/// Label: the uid of the resource the service belongs to.
pub const OWNER_UID: &str = "tether-owner-uid";
/// Label: the namespace of that resource.
pub const OWNER_NAMESPACE: &str = "tether-owner-namespace";
/// Label: the name of that resource.
pub const OWNER_NAME: &str = "tether-owner-name";

/// UbiOps does not document its label limits (shared/platforms/ubiops.md §8): values are kept to the
/// length of a Kubernetes label value.
const LABEL_VALUE_MAX: usize = 63;

/// The owner labels of `cr`'s service.
fn owner_labels(cr: &UbiService) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(OWNER_UID.into(), Value::from(cr.uid().unwrap_or_default()));
    for (key, value) in [(OWNER_NAMESPACE, cr.namespace().unwrap_or_default()), (OWNER_NAME, cr.name_any())] {
        if !value.is_empty() && value.len() <= LABEL_VALUE_MAX {
            labels.insert(key.into(), Value::from(value));
        }
    }
    labels
}

/// The owner a service's labels name, if any.
fn owner_mark(remote: &Service) -> Option<Owner> {
    let labels = remote.fields.get("labels")?.as_object()?;
    let label = |key: &str| labels.get(key).and_then(Value::as_str).filter(|v| !v.is_empty());
    let uid = label(OWNER_UID)?.to_string();
    let reference = label(OWNER_NAMESPACE).zip(label(OWNER_NAME)).map(|(ns, name)| format!("{ns}/{name}"));
    Some(Owner { uid, reference })
}

/// The platform fields the spec sets. `version` is always managed: unset means "follow the deployment's
/// default version", which is an explicit null on the platform. `labels` are always managed too, as they
/// carry the owner mark: the declared labels, or when none are declared the service's own, plus the mark.
fn desired(cr: &UbiService, remote: Option<&Service>) -> Map<String, Value> {
    let mut fields = spec_fields(&cr.spec, &["project"], &["labels"]);
    fields.entry("version").or_insert(Value::Null);
    let mut labels = match fields.remove("labels") {
        Some(Value::Object(declared)) => declared,
        _ => remote.and_then(|r| r.fields.get("labels")?.as_object().cloned()).unwrap_or_default(),
    };
    labels.retain(|k, _| ![OWNER_UID, OWNER_NAMESPACE, OWNER_NAME].contains(&k.as_str()));
    labels.extend(owner_labels(cr));
    fields.insert("labels".into(), Value::Object(labels));
    fields
}

/// The desired fields whose remote value differs.
fn differences(cr: &UbiService, remote: &Service) -> Map<String, Value> {
    let want = desired(cr, Some(remote));
    let remote = match serde_json::to_value(remote) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    want.into_iter().filter(|(k, v)| remote.get(k).unwrap_or(&Value::Null) != v).collect()
}

fn fields_of(map: Map<String, Value>) -> ServiceFields {
    let mut other = map;
    let take_str = |m: &mut Map<String, Value>, k: &str| m.remove(k).and_then(|v| v.as_str().map(str::to_string));
    ServiceFields {
        name: take_str(&mut other, "name"),
        deployment: take_str(&mut other, "deployment"),
        version: other.remove("version").map(|v| v.as_str().map(str::to_string)),
        port: other.remove("port").and_then(|v| v.as_i64()),
        other,
    }
}

/// `project/name`: the external id of a service the platform answers without an id.
fn key(spec: &tether_api::UbiServiceSpec) -> String {
    format!("{}/{}", spec.project, spec.name)
}

fn external_id(spec: &tether_api::UbiServiceSpec, remote: &Service) -> String {
    remote.id.clone().unwrap_or_else(|| key(spec))
}

/// How the service is named in messages.
fn object(spec: &tether_api::UbiServiceSpec) -> String {
    format!("UbiOps service {}", key(spec))
}

/// The refusal to touch `remote`, when another resource's mark is on it.
fn refuse_foreign(cr: &UbiService, remote: &Service) -> Result<(), PlatformError> {
    match foreign(cr, owner_mark(remote).as_ref()) {
        Some(owner) => Err(conflict(cr, &object(&cr.spec), owner, &external_id(&cr.spec, remote))),
        None => Ok(()),
    }
}

/// A drift check reads the service's entry in its project's listing, and its status.
struct Listed {
    project: String,
    name: String,
    /// The [`digest`] of the service as the observe read it (its full form: the listing keeps it by the
    /// entry's update time).
    read: u64,
    status: tether_platforms::ubiops::ServiceStatus,
}

impl Probe<Client> for Listed {
    fn unchanged<'a>(&'a self, client: &'a Client, max_age: Duration) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move {
            let listed = client.services_listed(&self.project, &self.name, max_age).await?;
            Ok(shows(listed, self.read) && client.services_status(&self.project, &self.name).await? == self.status)
        })
    }
}

/// The service this resource is bound to: the one named (project, name), or with the annotation
/// `tether.dev/external-id`, the service of that id (its name must be the spec's: names are how UbiOps
/// addresses services, and the spec's name is immutable).
async fn find(client: &Client, cr: &Request<'_, UbiService>) -> Result<Option<Service>, PlatformError> {
    let spec = &cr.spec;
    // A drift check reads the project's listing, and the service in full only if its entry changed.
    let named = match client.services_listed(&spec.project, &spec.name, cr.shared_read_age).await? {
        Some(service) => Some(service),
        None => adopted(client.services_get(&spec.project, &spec.name).await)?,
    };
    let Some(id) = cr.adopt_id() else { return Ok(named) };
    if named.as_ref().is_some_and(|s| s.id.as_deref() == Some(id) || id == key(spec)) {
        return Ok(named);
    }
    let services = client.services_list(&spec.project, None, None).await?;
    match services.into_iter().find(|s| s.id.as_deref() == Some(id)) {
        Some(other) => Err(PlatformError::Invalid(format!(
            "annotation {EXTERNAL_ID}: UbiOps service {id} is named {}, not {}",
            other.name, spec.name
        ))),
        None => Ok(None),
    }
}

/// Why a service is not ready. UbiOps has no failed state for a service: a failure shows as the target
/// deployment version's status (`failed` or `cancelled`, the states the SDK's waiters treat as failure),
/// read only while the service is not ready.
async fn not_ready(
    client: &Client,
    spec: &tether_api::UbiServiceSpec,
    remote: &Service,
) -> Result<Readiness, PlatformError> {
    let waiting = Readiness::Unavailable(format!("no instance of deployment {} is ready yet", spec.deployment));
    let version = match remote.version.clone().or_else(|| spec.version.clone()) {
        Some(version) => version,
        None => match client.deployments_get(&spec.project, &spec.deployment).await {
            Ok(deployment) => match deployment.get("default_version").and_then(Value::as_str) {
                Some(version) => version.to_string(),
                None => return Ok(waiting),
            },
            Err(PlatformError::NotFound(_)) => {
                return Ok(Readiness::Failed(format!("deployment {} no longer exists", spec.deployment)));
            }
            Err(e) => return Err(e),
        },
    };
    let state = match client.versions_get(&spec.project, &spec.deployment, &version).await {
        Ok(detail) => detail.get("status").and_then(Value::as_str).unwrap_or_default().to_string(),
        Err(PlatformError::NotFound(_)) => "deleted".to_string(),
        Err(e) => return Err(e),
    };
    Ok(match state.as_str() {
        "failed" | "cancelled" | "deleted" => Readiness::Failed(format!(
            "version {version} of deployment {} is {state} on UbiOps, so the service cannot serve",
            spec.deployment
        )),
        _ => waiting,
    })
}

impl Adapter for UbiOps {
    type Resource = UbiService;
    type Client = Client;
    const PLATFORM: Platform = Platform::Ubiops;
    // POST and PATCH are synchronous and answer with the service.
    const WRITES_ANSWER_THE_OBJECT: bool = true;

    fn connect(account: &Account) -> Result<Client, PlatformError> {
        Client::new(account.http.clone(), account.credential("token")?)
    }

    async fn verify(client: &Client) -> Result<(), PlatformError> {
        client.ping().await
    }

    async fn observe(
        client: &Client,
        cr: &Request<'_, UbiService>,
    ) -> Result<Observation<UbiServiceObservation>, PlatformError> {
        let spec = &cr.spec;
        // Right after a create or update, the platform's answer is the service as it now is.
        let remote = match cr.recall::<Service>() {
            Some(written) => written,
            None => match find(client, cr).await? {
                Some(remote) => remote,
                None => return Ok(Observation::Absent),
            },
        };
        let external_id = external_id(spec, &remote);
        if !may_observe::<UbiService>(cr, owner_mark(&remote).as_ref(), &object(spec), &external_id)? {
            return Ok(Observation::Absent);
        }
        let up_to_date = differences(cr, &remote).is_empty();
        cr.remember(remote.clone());
        // Readiness is read only for what is reported: an out-of-date service is updated first, and
        // observed again from the update's answer (not for an ObserveOnly resource, which reports drift);
        // a resource being deleted needs only the service.
        let deleting = cr.metadata.deletion_timestamp.is_some();
        let status = if (up_to_date || cr.observe_only()) && !deleting {
            Some(client.services_status(&spec.project, &spec.name).await?)
        } else {
            None
        };
        if let Some(status) = status.as_ref().filter(|s| s.ready && cr.adopt_id().is_none()) {
            // Readiness is not in the listing: a drift check reads the status too (not the deployment
            // version's, read only while not ready).
            let (project, name) = (spec.project.clone(), spec.name.clone());
            cr.probe(Listed { project, name, read: digest(&remote), status: status.clone() });
        }
        let ready = match &status {
            Some(status) if status.ready => Readiness::Ready,
            Some(_) => not_ready(client, spec, &remote).await?,
            None => Readiness::Updating("the service differs from the spec".into()),
        };
        let at_provider = UbiServiceObservation {
            state: status.as_ref().map(|s| if s.ready { "ready" } else { "notReady" }.to_string()),
            endpoint: remote.endpoint.clone(),
            instances_ready: status.as_ref().map(|s| s.instances_ready),
            version: remote.version.clone(),
            time_created: remote.time_created.clone(),
            time_updated: remote.time_updated.clone(),
        };
        let outputs = remote.endpoint.iter().map(|url| ("endpoint".to_string(), url.clone())).collect();
        Ok(Observation::Present { external_id, up_to_date, ready, at_provider, outputs })
    }

    async fn create(client: &Client, cr: &Request<'_, UbiService>) -> Result<String, PlatformError> {
        let spec = &cr.spec;
        // Marked at creation: a create whose answer is lost is found again as ours.
        let created = match client.services_create(&spec.project, &fields_of(desired(cr, None))).await {
            Ok(created) => created,
            // Our own lost attempt, or someone else, created it first: adopt it unless another resource's
            // mark is on it; the next observe compares (and marks an unmarked one).
            Err(PlatformError::Conflict(_)) => {
                let existing = client.services_get(&spec.project, &spec.name).await?;
                refuse_foreign(cr, &existing)?;
                existing
            }
            Err(e) => return Err(e),
        };
        let id = external_id(spec, &created);
        cr.remember(created);
        Ok(id)
    }

    async fn update(client: &Client, cr: &Request<'_, UbiService>, _external_id: &str) -> Result<(), PlatformError> {
        let remote = match cr.recall::<Service>() {
            Some(observed) => observed,
            None => client.services_get(&cr.spec.project, &cr.spec.name).await?,
        };
        refuse_foreign(cr, &remote)?;
        let changes = differences(cr, &remote);
        if !changes.is_empty() {
            let updated = client.services_update(&cr.spec.project, &cr.spec.name, &fields_of(changes)).await?;
            cr.remember(updated);
        }
        Ok(())
    }

    async fn delete(
        client: &Client,
        cr: &Request<'_, UbiService>,
        _external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        let read = match cr.recall::<Service>() {
            Some(observed) => Ok(observed),
            None => client.services_get(&cr.spec.project, &cr.spec.name).await,
        };
        let remote = match read {
            Ok(remote) => remote,
            Err(PlatformError::NotFound(_)) => return Ok(Deletion::Gone),
            Err(e) => return Err(e),
        };
        if let Some(owner) = foreign::<UbiService>(cr, owner_mark(&remote).as_ref()) {
            // Another resource's service: deleting this resource deletes nothing of it.
            tracing::info!(owner = %owner.uid, "the service belongs to another resource: not deleted");
            return Ok(Deletion::Gone);
        }
        match client.services_delete(&cr.spec.project, &cr.spec.name).await {
            Ok(()) | Err(PlatformError::NotFound(_)) => Ok(Deletion::Gone),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(spec: Value) -> UbiService {
        let mut spec = spec;
        spec["connectionRef"] = json!({"name": "ubiops"});
        serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
            "metadata": {"name": "scoring", "namespace": "team-a", "uid": "uid-a"}, "spec": spec}))
        .unwrap()
    }

    fn service(labels: Value) -> Service {
        serde_json::from_value(json!({"id": "s-1", "name": "scoring", "deployment": "dep-1", "version": null,
            "port": 8080, "labels": labels}))
        .unwrap()
    }

    const MARK: [(&str, &str); 3] =
        [("tether-owner-uid", "uid-a"), ("tether-owner-namespace", "team-a"), ("tether-owner-name", "scoring")];

    fn marked(labels: Value) -> Value {
        let mut labels = labels;
        for (k, v) in MARK {
            labels[k] = Value::from(v);
        }
        labels
    }

    #[test]
    fn the_labels_carry_the_owner_mark() {
        let spec = json!({"project": "proj", "name": "scoring", "deployment": "dep-1", "port": 8080});
        let declared = resource(json!({"labels": {"team": "risk"}, "project": "proj", "name": "scoring",
            "deployment": "dep-1", "port": 8080}));
        assert_eq!(desired(&declared, None)["labels"], marked(json!({"team": "risk"})));
        // Undeclared labels keep the service's own; a stale mark is replaced.
        let undeclared = resource(spec);
        let remote = service(json!({"env": "prod", "tether-owner-uid": "old", "tether-owner-name": "old"}));
        assert_eq!(desired(&undeclared, Some(&remote))["labels"], marked(json!({"env": "prod"})));
        assert_eq!(differences(&undeclared, &service(marked(json!({})))), Map::new());
        // An unmarked service is not up to date: the next update marks it.
        let unmarked = differences(&undeclared, &service(json!({})));
        assert_eq!(unmarked.keys().collect::<Vec<_>>(), ["labels"]);
    }

    #[test]
    fn the_mark_names_the_owner() {
        let theirs = service(json!({"tether-owner-uid": "uid-b", "tether-owner-namespace": "team-b",
            "tether-owner-name": "scoring"}));
        let owner = owner_mark(&theirs).unwrap();
        assert_eq!((owner.uid.as_str(), owner.reference.as_deref()), ("uid-b", Some("team-b/scoring")));
        assert_eq!(owner_mark(&service(json!({"team": "risk"}))), None);
        let cr = resource(json!({"project": "proj", "name": "scoring", "deployment": "dep-1", "port": 8080}));
        let Err(PlatformError::Conflict(why)) = refuse_foreign(&cr, &theirs) else { panic!("not refused") };
        assert!(why.starts_with("UbiOps service proj/scoring is managed by UbiService team-b/scoring (uid uid-b)"));
        assert!(why.contains("tether.dev/external-id: s-1"), "{why}");
        assert!(refuse_foreign(&cr, &service(marked(json!({})))).is_ok());
        // The same namespace and name, another uid: what a resource deleted with Orphan leaves behind; the
        // resource applied again under that name takes it back.
        let mut labels = marked(json!({}));
        labels["tether-owner-uid"] = json!("uid-0");
        assert!(refuse_foreign(&cr, &service(labels)).is_ok(), "an earlier resource of the same name");
        let mut adopting = cr.clone();
        adopting.annotations_mut().insert(EXTERNAL_ID.into(), "s-1".into());
        assert!(refuse_foreign(&adopting, &theirs).is_ok(), "adoption by annotation takes it over");
    }
}
