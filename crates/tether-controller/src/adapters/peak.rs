//! PeakWebapp ↔ Peak webapp. The natural key is the name (unique per tenant), so a lost create answer is
//! found again by name. Create, redeploying updates and delete are asynchronous on the platform; nothing is
//! PATCHed while it is CREATING, DEPLOYING or DELETING.

use serde_json::Value;
use tether_api::peak::PeakWebappObservation;
use tether_api::{PeakWebapp, Platform};
use tether_platforms::Error as PlatformError;
use tether_platforms::peak::{Client, ImageDetails, Resources, Webapp, WebappFields};

use crate::adapter::{Adapter, Deletion, EXTERNAL_ID, ManagedResource as _, Observation, Readiness, Request, adopted};
use crate::connection::Account;

managed_resource!(PeakWebapp, PeakWebappObservation);

/// The PeakWebapp adapter.
pub struct Peak;

/// The fields the spec manages, as a create body; unset optional fields are left to the platform (an
/// unset image version means "the latest ready one", which is not drift).
fn desired(cr: &PeakWebapp) -> WebappFields {
    let spec = &cr.spec;
    WebappFields {
        name: Some(spec.name.clone()),
        title: spec.title.clone(),
        description: spec.description.clone(),
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

async fn find(client: &Client, cr: &PeakWebapp) -> Result<Option<Webapp>, PlatformError> {
    if let Some(id) = cr.adopt_id() {
        let Some(webapp) = adopted(client.describe(id).await)? else { return Ok(None) };
        if webapp.name != cr.spec.name {
            let why = format!("annotation {EXTERNAL_ID}: webapp {id} is named {}, not {}", webapp.name, cr.spec.name);
            return Err(PlatformError::Invalid(why));
        }
        return Ok(Some(webapp));
    }
    if let Some(id) = cr.status.as_ref().and_then(|s| s.external_id.as_deref()) {
        match client.describe(id).await {
            Ok(webapp) if webapp.name == cr.spec.name => return Ok(Some(webapp)),
            Ok(_) | Err(PlatformError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    client.find_by_name(&cr.spec.name).await
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
        match client.create(&desired(cr)).await {
            Ok(id) => Ok(id),
            Err(PlatformError::Conflict(message)) => match client.find_by_name(&cr.spec.name).await? {
                Some(existing) => Ok(existing.id),
                None => Err(PlatformError::Conflict(message)),
            },
            Err(e) => Err(e),
        }
    }

    async fn update(client: &Client, cr: &Request<'_, PeakWebapp>, external_id: &str) -> Result<(), PlatformError> {
        let remote = client.describe(external_id).await?;
        let patch = changes(cr, &remote);
        if patch != WebappFields::default() {
            client.update(external_id, &patch).await?;
        }
        Ok(())
    }

    async fn delete(
        client: &Client,
        _cr: &Request<'_, PeakWebapp>,
        external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        match client.describe(external_id).await {
            Err(PlatformError::NotFound(_)) => return Ok(Deletion::Gone),
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
