//! UbiService ↔ UbiOps service. The natural key is (project, name): names are unique per project, so a
//! lost create answer is found again by name and nothing is created twice. Updates are partial PATCHes of
//! the fields that differ; delete is synchronous.

use serde_json::{Map, Value};
use tether_api::ubiops::UbiServiceObservation;
use tether_api::{Platform, UbiService};
use tether_platforms::Error as PlatformError;
use tether_platforms::ubiops::{Client, Service, ServiceFields};

use super::spec_fields;
use crate::adapter::{Adapter, Deletion, Observation, Readiness, Request};
use crate::connection::Account;

managed_resource!(UbiService, UbiServiceObservation);

/// The UbiService adapter.
pub struct UbiOps;

/// The platform fields the spec sets. `version` is always managed: unset means "follow the deployment's
/// default version", which is an explicit null on the platform.
fn desired(cr: &UbiService) -> Map<String, Value> {
    let mut fields = spec_fields(&cr.spec, &["project"], &["labels"]);
    fields.entry("version").or_insert(Value::Null);
    fields
}

/// The desired fields whose remote value differs.
fn differences(cr: &UbiService, remote: &Service) -> Map<String, Value> {
    let remote = match serde_json::to_value(remote) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    desired(cr).into_iter().filter(|(k, v)| remote.get(k).unwrap_or(&Value::Null) != v).collect()
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
        let remote = match client.services_get(&spec.project, &spec.name).await {
            Ok(remote) => remote,
            Err(PlatformError::NotFound(_)) => return Ok(Observation::Absent),
            Err(e) => return Err(e),
        };
        let status = client.services_status(&spec.project, &spec.name).await?;
        let up_to_date = differences(cr, &remote).is_empty();
        let ready = if status.ready { Readiness::Ready } else { not_ready(client, spec, &remote).await? };
        let at_provider = UbiServiceObservation {
            state: Some(if status.ready { "ready" } else { "notReady" }.to_string()),
            endpoint: remote.endpoint.clone(),
            instances_ready: Some(status.instances_ready),
            version: remote.version.clone(),
            time_created: remote.time_created.clone(),
            time_updated: remote.time_updated.clone(),
        };
        let external_id = remote.id.clone().unwrap_or_else(|| format!("{}/{}", spec.project, spec.name));
        let outputs = remote.endpoint.iter().map(|url| ("endpoint".to_string(), url.clone())).collect();
        Ok(Observation::Present { external_id, up_to_date, ready, at_provider, outputs })
    }

    async fn create(client: &Client, cr: &Request<'_, UbiService>) -> Result<String, PlatformError> {
        let spec = &cr.spec;
        let created = match client.services_create(&spec.project, &fields_of(desired(cr))).await {
            Ok(created) => created,
            // Someone (or our own lost attempt) created it first: adopt it, the next observe compares.
            Err(PlatformError::Conflict(_)) => client.services_get(&spec.project, &spec.name).await?,
            Err(e) => return Err(e),
        };
        Ok(created.id.unwrap_or_else(|| format!("{}/{}", spec.project, spec.name)))
    }

    async fn update(client: &Client, cr: &Request<'_, UbiService>, _external_id: &str) -> Result<(), PlatformError> {
        let remote = client.services_get(&cr.spec.project, &cr.spec.name).await?;
        let changes = differences(cr, &remote);
        if !changes.is_empty() {
            client.services_update(&cr.spec.project, &cr.spec.name, &fields_of(changes)).await?;
        }
        Ok(())
    }

    async fn delete(
        client: &Client,
        cr: &Request<'_, UbiService>,
        _external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        match client.services_delete(&cr.spec.project, &cr.spec.name).await {
            Ok(()) | Err(PlatformError::NotFound(_)) => Ok(Deletion::Gone),
            Err(e) => Err(e),
        }
    }
}
