//! PeakWebapp ↔ Peak webapp. The natural key is the name (unique per tenant), so a lost create answer is
//! found again by name. Create, redeploying updates and delete are asynchronous on the platform; nothing is
//! PATCHed while it is CREATING, DEPLOYING or DELETING.
//!
//! Ownership: two resources (in two namespaces) may name the same webapp in one tenant. Peak has no
//! writable labels or tags (`tags` is read-only, shared/platforms/peak.md §4), so the owner is marked the
//! way CivisService marks its service: Tether appends `[tether:<uid> <namespace>/<name>]` to the
//! description (a description-only PATCH does not redeploy). A webapp marked by another resource is
//! refused with Conflict and never updated or deleted; an unmarked one is adopted and marked; the
//! annotation `tether.dev/external-id` (the webapp's id) takes a webapp over whatever its mark.

use std::time::Duration;

use futures::future::BoxFuture;
use kube::ResourceExt;
use serde_json::Value;
use tether_api::peak::PeakWebappObservation;
use tether_api::{PeakWebapp, Platform};
use tether_platforms::Error as PlatformError;
use tether_platforms::listing::{digest, shows};
use tether_platforms::peak::{Client, ImageDetails, Resources, Webapp, WebappFields};

use super::{Owner, conflict, foreign, may_observe};
use crate::adapter::{
    Adapter, Deletion, EXTERNAL_ID, ManagedResource as _, Observation, Probe, Readiness, Request, adopted,
};
use crate::connection::Account;

managed_resource!(PeakWebapp, PeakWebappObservation);
mod preview;

/// The PeakWebapp adapter.
pub struct Peak;

/// Where the owner mark starts in a description.
const MARK: &str = "[tether:";

/// `[tether:<uid> <namespace>/<name>]`: the owner mark Tether appends to the description.
fn marker(cr: &PeakWebapp) -> String {
    format!("{MARK}{} {}/{}]", cr.uid().unwrap_or_default(), cr.namespace().unwrap_or_default(), cr.name_any())
}

/// The description as Tether writes it: the declared one, then the owner mark.
fn description(cr: &PeakWebapp) -> String {
    match cr.spec.description.as_deref() {
        Some(declared) if !declared.is_empty() => format!("{declared} {}", marker(cr)),
        _ => marker(cr),
    }
}

/// The owner the description's (last) mark names, if any.
fn owner_mark(remote: &Webapp) -> Option<Owner> {
    let text = remote.fields.get("description")?.as_str()?;
    let inside = &text[text.rfind(MARK)? + MARK.len()..];
    let mut words = inside[..inside.find(']')?].split_whitespace();
    let uid = words.next()?.to_string();
    let reference = words.next().filter(|r| r.contains('/')).map(str::to_string);
    Some(Owner { uid, reference })
}

/// The refusal to touch `remote`, when another resource's mark is on it.
fn refuse_foreign(cr: &PeakWebapp, remote: &Webapp) -> Result<(), PlatformError> {
    match foreign(cr, owner_mark(remote).as_ref()) {
        Some(owner) => Err(conflict(cr, &format!("Peak webapp {}", remote.name), owner, &remote.id)),
        None => Ok(()),
    }
}

/// The fields the spec manages, as a create body; unset optional fields are left to the platform (an
/// unset image version means "the latest ready one", which is not drift). The description always carries
/// the owner mark.
fn desired(cr: &PeakWebapp) -> WebappFields {
    let spec = &cr.spec;
    WebappFields {
        name: Some(spec.name.clone()),
        title: spec.title.clone(),
        description: Some(description(cr)),
        image_details: Some(ImageDetails {
            image_id: spec.image_details.image_id,
            version_id: spec.image_details.version_id,
        }),
        resources: spec.resources.as_ref().map(|r| Resources { instance_type_id: r.instance_type_id }),
        session_stickiness: spec.session_stickiness,
        scale_to_zero: spec.scale_to_zero,
    }
}

/// The partial update that brings `remote` to the spec (empty when it matches).
fn changes(cr: &PeakWebapp, remote: &Webapp) -> WebappFields {
    let want = desired(cr);
    let text = |key: &str| remote.fields.get(key).and_then(Value::as_str).map(str::to_string);
    let flag = |key: &str| remote.fields.get(key).and_then(Value::as_bool);
    let remote_image = remote.image_details.clone().unwrap_or_default();
    let want_image = want.image_details.clone().unwrap_or_default();
    let image_differs = want_image.image_id != remote_image.image_id
        || want_image.version_id.is_some_and(|v| Some(v) != remote_image.version_id);
    let remote_type = remote.resources.as_ref().and_then(|r| r.instance_type_id);
    let type_differs = want.resources.as_ref().and_then(|r| r.instance_type_id).is_some_and(|t| Some(t) != remote_type);
    WebappFields {
        name: None,
        title: want.title.filter(|t| Some(t) != text("title").as_ref()),
        description: want.description.filter(|d| Some(d) != text("description").as_ref()),
        image_details: want.image_details.filter(|_| image_differs),
        resources: want.resources.filter(|_| type_differs),
        session_stickiness: want.session_stickiness.filter(|s| Some(*s) != flag("sessionStickiness")),
        scale_to_zero: want.scale_to_zero.filter(|s| Some(*s) != flag("scaleToZero")),
    }
}

async fn find(client: &Client, cr: &Request<'_, PeakWebapp>) -> Result<Option<Webapp>, PlatformError> {
    if let Some(id) = cr.adopt_id() {
        let Some(webapp) = adopted(client.describe(id).await)? else { return Ok(None) };
        if webapp.name != cr.spec.name {
            let why = format!("annotation {EXTERNAL_ID}: webapp {id} is named {}, not {}", webapp.name, cr.spec.name);
            return Err(PlatformError::Invalid(why));
        }
        return Ok(Some(webapp));
    }
    let recorded = cr.status.as_ref().and_then(|s| s.external_id.as_deref());
    // Waiting for a delete: names are unique on Peak, so the one search by name says both whether the
    // webapp is gone and whether another of ours (a create whose status write was lost) is left to delete.
    // A young listing begun after the DELETE answers that as well, for every webapp waiting on one.
    if cr.delete_requested() {
        if let Some(id) = recorded
            && let Some(webapps) = client.fresh(id, cr.fresh_read_age).await?
        {
            match webapps.values().find(|w| w.key() == cr.spec.name) {
                None => return Ok(None),
                // An entry whose kept text does not decode is searched for on the platform below.
                Some(listed) => {
                    if let Some(webapp) = listed.get() {
                        return Ok(Some(webapp));
                    }
                }
            }
        }
        return client.find_by_name(&cr.spec.name).await;
    }
    if let Some(id) = recorded {
        // A drift check reads the account's listing: list entries are whole webapps. Any other reconcile
        // reads a young listing begun after Tether's last write or read of the webapp, when there is one
        // or enough webapps wait on one (a mass change, the polls of writes in progress).
        let listed = match client.listed(id, cr.shared_read_age).await? {
            Some(webapp) => Some(webapp),
            None => client.fresh(id, cr.fresh_read_age).await?.and_then(|webapps| webapps.get(id)?.get()),
        };
        if let Some(webapp) = listed.filter(|w| w.name == cr.spec.name) {
            return Ok(Some(webapp));
        }
        match client.describe(id).await {
            Ok(webapp) if webapp.name == cr.spec.name => return Ok(Some(webapp)),
            Ok(_) | Err(PlatformError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    client.find_by_name(&cr.spec.name).await
}

/// A drift check reads the webapp's entry in the account's listing (entries are whole webapps).
struct Listed {
    id: String,
    /// The [`digest`] of the webapp as the observe read it.
    read: u64,
}

impl Probe<Client> for Listed {
    fn unchanged<'a>(&'a self, client: &'a Client, max_age: Duration) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move { Ok(shows(client.listed(&self.id, max_age).await?, self.read)) })
    }
}

impl Adapter for Peak {
    type Resource = PeakWebapp;
    type Client = Client;
    const PLATFORM: Platform = Platform::Peak;

    fn connect(account: &Account) -> Result<Client, PlatformError> {
        Client::new(account.http.clone(), account.credential("apiKey")?)
    }

    async fn verify(client: &Client) -> Result<(), PlatformError> {
        client.tenant_metadata().await.map(drop)
    }

    async fn observe(
        client: &Client,
        cr: &Request<'_, PeakWebapp>,
    ) -> Result<Observation<PeakWebappObservation>, PlatformError> {
        let Some(remote) = find(client, cr).await? else { return Ok(Observation::Absent) };
        let object = format!("Peak webapp {}", remote.name);
        if !may_observe::<PeakWebapp>(cr, owner_mark(&remote).as_ref(), &object, &remote.id)? {
            return Ok(Observation::Absent);
        }
        cr.remember(remote.clone());
        cr.probe(Listed { id: remote.id.clone(), read: digest(&remote) });
        let settled = !matches!(remote.status.as_str(), "CREATING" | "DEPLOYING" | "DELETING");
        let up_to_date = !settled || changes(cr, &remote) == WebappFields::default();
        let ready = match remote.status.as_str() {
            "AVAILABLE" => Readiness::Ready,
            "CREATING" => Readiness::Creating("Peak is creating the webapp".into()),
            "DEPLOYING" => Readiness::Updating("Peak is redeploying the webapp".into()),
            "DELETING" => Readiness::Deleting("Peak is deleting the webapp".into()),
            other => Readiness::Failed(format!("the webapp is {other} on Peak")),
        };
        let text = |key: &str| remote.fields.get(key).and_then(Value::as_str).map(str::to_string);
        let at_provider = PeakWebappObservation {
            state: Some(remote.status.clone()),
            image_version_id: remote.image_details.as_ref().and_then(|i| i.version_id),
            instance_type_id: remote.resources.as_ref().and_then(|r| r.instance_type_id),
            application_url: remote.application_url.clone(),
            created_at: text("createdAt"),
            updated_at: text("updatedAt"),
            updated_by: text("updatedBy"),
        };
        let outputs = remote.application_url.iter().map(|url| ("applicationUrl".to_string(), url.clone())).collect();
        Ok(Observation::Present { external_id: remote.id.clone(), up_to_date, ready, at_provider, outputs })
    }

    async fn create(client: &Client, cr: &Request<'_, PeakWebapp>) -> Result<String, PlatformError> {
        // Marked at creation: a create whose answer is lost is found again as ours.
        match client.create(&desired(cr)).await {
            Ok(id) => Ok(id),
            // Our own lost attempt, or someone else, created it first: adopt it unless another resource's
            // mark is on it; the next observe compares (and marks an unmarked one).
            Err(PlatformError::Conflict(message)) => match client.find_by_name(&cr.spec.name).await? {
                Some(existing) => refuse_foreign(cr, &existing).map(|()| existing.id),
                None => Err(PlatformError::Conflict(message)),
            },
            Err(e) => Err(e),
        }
    }

    async fn update(client: &Client, cr: &Request<'_, PeakWebapp>, external_id: &str) -> Result<(), PlatformError> {
        let remote = match cr.recall::<Webapp>().filter(|w| w.id == external_id) {
            Some(observed) => observed,
            None => client.describe(external_id).await?,
        };
        refuse_foreign(cr, &remote)?;
        let patch = changes(cr, &remote);
        if patch != WebappFields::default() {
            client.update(external_id, &patch).await?;
        }
        // A title or description change leaves an AVAILABLE webapp AVAILABLE (§5): nothing to wait for.
        let redeploys = WebappFields { title: None, description: None, ..patch } != WebappFields::default();
        if remote.status == "AVAILABLE" && !redeploys {
            cr.done_at_once();
        }
        Ok(())
    }

    async fn delete(
        client: &Client,
        cr: &Request<'_, PeakWebapp>,
        external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        let read = match cr.recall::<Webapp>().filter(|w| w.id == external_id) {
            Some(observed) => Ok(observed),
            None => client.describe(external_id).await,
        };
        match read {
            Err(PlatformError::NotFound(_)) => return Ok(Deletion::Gone),
            // Another resource's webapp: deleting this resource deletes nothing of it.
            Ok(webapp) if foreign::<PeakWebapp>(cr, owner_mark(&webapp).as_ref()).is_some() => {
                tracing::info!(%external_id, "the webapp belongs to another resource: not deleted");
                return Ok(Deletion::Gone);
            }
            Ok(webapp) if webapp.status == "DELETING" => return Ok(Deletion::InProgress),
            Ok(_) => {}
            Err(e) => return Err(e),
        }
        match client.delete(external_id).await {
            Ok(()) | Err(PlatformError::Conflict(_)) => Ok(Deletion::InProgress),
            Err(PlatformError::NotFound(_)) => Ok(Deletion::Gone),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn resource(description: Option<&str>) -> PeakWebapp {
        serde_json::from_value(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "PeakWebapp",
            "metadata": {"name": "explorer", "namespace": "team-a", "uid": "uid-a"},
            "spec": {"connectionRef": {"name": "peak"}, "name": "explorer", "description": description,
                     "imageDetails": {"imageId": 100}}}))
        .unwrap()
    }

    fn webapp(description: &str) -> Webapp {
        serde_json::from_value(json!({"id": "w-1", "name": "explorer", "status": "AVAILABLE",
            "description": description, "imageDetails": {"imageId": 100, "versionId": 100}}))
        .unwrap()
    }

    #[test]
    fn the_description_carries_the_owner_mark() {
        let cr = resource(Some("Forecasts [draft]"));
        assert_eq!(description(&cr), "Forecasts [draft] [tether:uid-a team-a/explorer]");
        assert_eq!(description(&resource(None)), "[tether:uid-a team-a/explorer]");
        let ours = webapp(&description(&cr));
        assert_eq!(owner_mark(&ours), Some(Owner { uid: "uid-a".into(), reference: Some("team-a/explorer".into()) }));
        assert_eq!(changes(&cr, &ours), WebappFields::default());
        // An unmarked webapp is not up to date: the next update marks it, by a description-only PATCH.
        let unmarked = changes(&cr, &webapp("Forecasts [draft]"));
        assert_eq!(unmarked, WebappFields { description: Some(description(&cr)), ..Default::default() });
        assert_eq!(owner_mark(&webapp("Forecasts [draft]")), None);
    }

    #[test]
    fn only_a_deleted_resource_whose_status_says_deleting_waits_by_name_alone() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
        let with = |deleted: bool, reason: Option<&str>| {
            let mut cr = resource(None);
            cr.metadata.deletion_timestamp = deleted.then(|| Time(k8s_openapi::jiff::Timestamp::now()));
            cr.status = reason.map(|reason| {
                serde_json::from_value(json!({"externalId": "w-1", "conditions": [{"type": "Ready", "status": "False",
                    "reason": reason, "lastTransitionTime": "2026-12-02T00:00:00Z"}]}))
                .unwrap()
            });
            cr.delete_requested()
        };
        assert!(with(true, Some("Deleting")));
        assert!(!with(false, Some("Deleting")), "the platform deleting a live resource's webapp: find it by id");
        assert!(!with(true, Some("Available")), "no delete asked yet: the webapp is read by id first");
        assert!(!with(true, None), "no status yet");
    }

    #[test]
    fn another_resources_webapp_is_refused_naming_it() {
        let theirs = webapp("x [tether:uid-b team-b/explorer]");
        let Err(PlatformError::Conflict(why)) = refuse_foreign(&resource(None), &theirs) else { panic!("not refused") };
        assert!(why.starts_with("Peak webapp explorer is managed by PeakWebapp team-b/explorer (uid uid-b)"), "{why}");
        let only_uid = webapp("[tether:uid-b]");
        assert_eq!(owner_mark(&only_uid), Some(Owner { uid: "uid-b".into(), reference: None }));
    }
}
