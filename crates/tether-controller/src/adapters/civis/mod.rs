//! CivisService ↔ Civis service and its deployments. Civis names are not unique, so Tether appends an
//! ownership marker with the resource's UID to the description and finds its service by that marker: a
//! lost create answer is found again and nothing is created twice. Config changes are PATCHed; a change
//! of what a deployment runs (image, code, size, environment) redeploys a live service; `deployed` starts
//! or stops it. Deleting archives (Civis has no hard delete), stopping the deployment first unless the
//! policy is Archive. Shares, projects and tokens: [`access`]. `environmentVariablesFrom` values are read
//! from their Secrets and sent with `environmentVariables`.
//!
//! Redeploy on request: the annotation `tether.dev/redeploy` holds an RFC 3339 time; a live service whose
//! current deployment is older is redeployed. Once it is, the new deployment is newer: the request is
//! satisfied without any bookkeeping, also across a crash.

mod access;
mod preview;

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tether_api::civis::{CivisDeletionPolicy, CivisServiceObservation};
use tether_api::{CivisService, ConnectionRef, ManagedStatus, ManagementPolicy, Platform, SecretKeySelector};
use tether_platforms::Error as PlatformError;
use tether_platforms::civis::{Client, ListOptions, Service};
use tether_platforms::listing::{digest, shows};

use crate::adapter::{
    Adapter, Deletion, EXTERNAL_ID, ManagedResource, Observation, Probe, Readiness, Request, adopted,
};
use crate::connection::Account;
use kube::ResourceExt;

impl ManagedResource for CivisService {
    type Observation = CivisServiceObservation;

    fn connection_ref(&self) -> &ConnectionRef {
        &self.spec.managed.connection_ref
    }
    fn deletes_remote(&self) -> bool {
        self.spec.managed.deletion_policy != CivisDeletionPolicy::Orphan
    }
    fn observe_only(&self) -> bool {
        self.spec.managed.management_policy == ManagementPolicy::ObserveOnly
    }
    fn managed_status(&self) -> Option<&ManagedStatus<CivisServiceObservation>> {
        self.status.as_ref()
    }
    fn outputs_secret(&self) -> Option<&str> {
        self.spec.managed.write_outputs_to.as_deref()
    }
    fn secret_inputs(&self) -> Vec<(String, SecretKeySelector)> {
        self.spec.environment_variables_from.iter().map(|e| (e.name.clone(), e.secret_key_ref.clone())).collect()
    }
}

pub use crate::annotations::REDEPLOY;

/// The CivisService adapter.
pub struct Civis;

/// Spec fields that are Tether's or handled apart from the service's own fields.
const NOT_SERVICE_FIELDS: &[&str] = &[
    "connectionRef",
    "deletionPolicy",
    "managementPolicy",
    "writeOutputsTo",
    "deployed",
    "projects",
    "shares",
    "tokens",
    "environmentVariablesFrom",
];
/// Fields whose change only takes effect in a new deployment.
const REDEPLOY_FIELDS: &[&str] = &[
    "dockerImageName",
    "dockerImageTag",
    "gitRepoUrl",
    "gitRepoRef",
    "gitPathDir",
    "cpu",
    "memory",
    "instanceType",
    "replicas",
    "maxReplicas",
    "environmentVariables",
    "credentials",
    "partitionLabel",
    "permissionSetId",
];

fn marker(cr: &CivisService) -> String {
    format!("[tether:{}]", cr.uid().unwrap_or_default())
}

/// The service fields the spec sets, camelCase as on the wire, the description carrying the marker and
/// the environment including the values read from Secrets.
fn desired(cr: &Request<'_, CivisService>) -> Map<String, Value> {
    let Ok(Value::Object(mut map)) = serde_json::to_value(&cr.spec) else { return Map::new() };
    map.retain(|k, _| !NOT_SERVICE_FIELDS.contains(&k.as_str()));
    let description = match &cr.spec.description {
        Some(d) => format!("{d} {}", marker(cr)),
        None => marker(cr),
    };
    map.insert("description".into(), Value::String(description));
    if !cr.inputs.is_empty() {
        let mut env = cr.spec.environment_variables.clone().unwrap_or_default();
        env.extend(cr.inputs.iter().map(|(k, v)| (k.clone(), v.expose().to_string())));
        map.insert("environmentVariables".into(), serde_json::to_value(env).unwrap_or_default());
    }
    map
}

/// Whether the redeploy annotation asks for a deployment newer than the current one.
fn redeploy_requested(cr: &CivisService, service: &Service) -> Result<bool, PlatformError> {
    use k8s_openapi::jiff::Timestamp;
    let Some(value) = cr.annotations().get(REDEPLOY) else { return Ok(false) };
    let asked: Timestamp = value.parse().map_err(|_| {
        PlatformError::Invalid(format!(
            "annotation {REDEPLOY} must be an RFC 3339 time such as 2026-11-23T10:00:00Z, not {value:?}"
        ))
    })?;
    // A time ahead of now would redeploy at every look until then (each new deployment is still older
    // than it): refused instead.
    if asked > Timestamp::now() + std::time::Duration::from_secs(60) {
        return Err(PlatformError::Invalid(format!(
            "annotation {REDEPLOY} is {value}, a time in the future: set it to the current time to redeploy once"
        )));
    }
    let Some(deployment) = service.current_deployment.as_ref().filter(|_| cr.spec.deployed) else { return Ok(false) };
    let created = deployment.fields.get("createdAt").and_then(Value::as_str).and_then(|t| t.parse::<Timestamp>().ok());
    Ok(created.is_some_and(|created| created < asked))
}

fn creator(service: &Service) -> Option<i64> {
    service.fields.get("user")?.get("id")?.as_i64()
}

/// Credentials come back as ids or as `{id, name}` objects; compare ids.
fn normalized(key: &str, value: &Value) -> Value {
    match (key, value) {
        ("credentials", Value::Array(items)) => {
            Value::Array(items.iter().map(|i| i.get("id").cloned().unwrap_or_else(|| i.clone())).collect())
        }
        _ => value.clone(),
    }
}

fn differences(cr: &Request<'_, CivisService>, remote: &Service) -> Map<String, Value> {
    let remote = match serde_json::to_value(remote) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    desired(cr)
        .into_iter()
        .filter(|(k, _)| k != "type" && k != "hidden")
        .filter(|(k, v)| normalized(k, remote.get(k).unwrap_or(&Value::Null)) != normalized(k, v))
        .collect()
}

fn running(service: &Service) -> bool {
    service.current_deployment.as_ref().is_some_and(|d| matches!(d.state.as_str(), "pending" | "running" | "sleeping"))
}

/// Whether the service should get a new deployment because it is not running but should be. A
/// deployment that ended by itself after this spec was applied is not restarted: Civis cannot tell a
/// crash from a stop by someone else, and restarting a crash loop forever would hide it. A spec change
/// or `tether.dev/redeploy` starts one.
fn start_wanted(cr: &CivisService, service: &Service) -> bool {
    let ended = service.current_deployment.as_ref().is_some_and(|d| d.state == "terminated");
    cr.spec.deployed && !running(service) && !(ended && cr.spec_applied())
}

/// A drift check reads the service as the account's listing shows it (its summary, with the full form
/// kept by the summary's update time and current deployment).
struct Listed {
    id: i64,
    /// The [`digest`] of the service as the observe read it.
    read: u64,
    /// The shares, projects and tokens the observe read, with their digest.
    access: access::Reads,
}

impl Probe<Client> for Listed {
    fn unchanged<'a>(&'a self, client: &'a Client, max_age: Duration) -> BoxFuture<'a, Result<bool, PlatformError>> {
        Box::pin(async move {
            Ok(shows(client.listed(self.id, max_age).await?, self.read)
                && self.access.read(client, self.id).await?.1 == self.access)
        })
    }
}

async fn find(client: &Client, cr: &Request<'_, CivisService>) -> Result<Option<Service>, PlatformError> {
    if let Some(id) = cr.adopt_id() {
        let number = id.parse().map_err(|_| {
            PlatformError::Invalid(format!("annotation {EXTERNAL_ID}: {id:?} is not a Civis service id"))
        })?;
        return Ok(adopted(client.get(number).await)?.filter(|s| !s.archived));
    }
    if let Some(id) = cr.status.as_ref().and_then(|s| s.external_id.as_deref()).and_then(|id| id.parse().ok()) {
        // A drift check reads the account's listing, and the service in full only if its entry changed.
        if let Some(service) = client.listed(id, cr.shared_read_age).await?
            && !service.archived
        {
            return Ok(Some(service));
        }
        match client.get(id).await {
            Ok(service) if !service.archived => return Ok(Some(service)),
            Ok(_) | Err(PlatformError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    // One listing serves the searches of many creates (see `Client::marked`).
    let mut ours: Vec<i64> = client.marked(&marker(cr), cr.held_since).await?;
    ours.sort_by_key(|id| std::cmp::Reverse(*id));
    if ours.len() > 1 {
        let others = &ours[1..];
        tracing::warn!(kept = ours[0], ?others, "several Civis services carry this resource's marker");
        cr.warn(
            "DuplicateRemoteObjects",
            format!(
                "Civis services {others:?} also carry this resource's marker; Tether keeps {} and leaves them alone",
                ours[0]
            ),
        );
    }
    match ours.first() {
        // The list has a summary; the comparison needs every field.
        Some(id) => client.get(*id).await.map(Some),
        None => Ok(None),
    }
}

impl Adapter for Civis {
    type Resource = CivisService;
    type Client = Client;
    const PLATFORM: Platform = Platform::Civis;

    fn connect(account: &Account) -> Result<Client, PlatformError> {
        Client::new(account.http.clone(), account.credential("apiKey")?)
    }

    async fn verify(client: &Client) -> Result<(), PlatformError> {
        client.list(&ListOptions::default(), 1, 1).await.map(drop)
    }

    async fn observe(
        client: &Client,
        cr: &Request<'_, CivisService>,
    ) -> Result<Observation<CivisServiceObservation>, PlatformError> {
        let Some(service) = find(client, cr).await? else { return Ok(Observation::Absent) };
        let live = running(&service);
        let access = access::plan(client, service.id, creator(&service), cr).await?;
        let stop_wanted = live && !cr.spec.deployed;
        let up_to_date = differences(cr, &service).is_empty()
            && !start_wanted(cr, &service)
            && !stop_wanted
            && access.is_empty()
            && !redeploy_requested(cr, &service)?;
        let deployment = service.current_deployment.as_ref();
        let ready = match (cr.spec.deployed, deployment.map(|d| d.state.as_str())) {
            (true, Some("running" | "sleeping")) | (false, _) => Readiness::Ready,
            (true, Some("pending")) => Readiness::Creating("the deployment is starting".into()),
            (true, Some("terminated")) => {
                let why = deployment.and_then(|d| d.state_message.clone()).unwrap_or_default();
                Readiness::Failed(format!(
                    "the deployment terminated: {why}; Tether starts a new one when the spec changes or annotation \
                     {REDEPLOY} is set to the current time"
                ))
            }
            (true, _) => Readiness::Creating("no deployment yet".into()),
        };
        let text = |key: &str| service.fields.get(key).and_then(Value::as_str).map(str::to_string);
        let at_provider = CivisServiceObservation {
            state: Some(deployment.map_or("none".to_string(), |d| d.state.clone())),
            state_message: deployment.and_then(|d| d.state_message.clone()),
            current_deployment_id: deployment.map(|d| d.deployment_id),
            current_url: service.current_url.clone(),
            report_id: service.fields.get("reportId").and_then(Value::as_i64),
            archived: Some(service.archived),
            owner: service
                .fields
                .get("user")
                .and_then(|u| u.get("username"))
                .and_then(Value::as_str)
                .map(str::to_string),
            my_permission_level: text("myPermissionLevel"),
            deployed_config_hash: None,
            token_ids: (!access.token_ids.is_empty()).then(|| access.token_ids.clone()),
            created_at: text("createdAt"),
            updated_at: text("updatedAt"),
        };
        let outputs = service.current_url.iter().map(|url| ("url".to_string(), url.clone())).collect();
        let external_id = service.id.to_string();
        if cr.adopt_id().is_none() {
            // Shares, projects and tokens show no update time: those the spec manages are read again.
            cr.probe(Listed { id: service.id, read: digest(&service), access: access.reads });
        }
        cr.remember((service, access));
        Ok(Observation::Present { external_id, up_to_date, ready, at_provider, outputs })
    }

    async fn create(client: &Client, cr: &Request<'_, CivisService>) -> Result<String, PlatformError> {
        let service = client.create_marked(&marker(cr), &desired(cr)).await?;
        let plan = access::plan(client, service.id, creator(&service), cr).await?;
        access::apply(client, service.id, plan, cr).await?;
        if cr.spec.deployed {
            client.deploy(service.id, false).await?;
        }
        Ok(service.id.to_string())
    }

    async fn update(client: &Client, cr: &Request<'_, CivisService>, external_id: &str) -> Result<(), PlatformError> {
        let id: i64 = external_id.parse().map_err(|_| PlatformError::Decode(format!("service id {external_id:?}")))?;
        let (service, plan) = match cr.recall::<(Service, access::AccessPlan)>().filter(|(s, _)| s.id == id) {
            Some((service, plan)) => (service, Some(plan)),
            None => (client.get(id).await?, None),
        };
        let changes = differences(cr, &service);
        let redeploy =
            changes.keys().any(|k| REDEPLOY_FIELDS.contains(&k.as_str())) || redeploy_requested(cr, &service)?;
        if !changes.is_empty() {
            client.patch(id, &changes).await?;
        }
        let plan = match plan {
            Some(plan) => plan,
            None => access::plan(client, id, creator(&service), cr).await?,
        };
        access::apply(client, id, plan, cr).await?;
        match (cr.spec.deployed, running(&service)) {
            (true, false) if redeploy || start_wanted(cr, &service) => drop(client.deploy(id, false).await?),
            (true, true) if redeploy => drop(client.deploy(id, true).await?),
            (false, true) => {
                if let Some(d) = &service.current_deployment {
                    client.stop(id, d.deployment_id).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn delete(
        client: &Client,
        cr: &Request<'_, CivisService>,
        external_id: &str,
    ) -> Result<Deletion, PlatformError> {
        let Ok(id) = external_id.parse::<i64>() else { return Ok(Deletion::Gone) };
        let read = match cr.recall::<(Service, access::AccessPlan)>().filter(|(s, _)| s.id == id) {
            Some((observed, _)) => Ok(observed),
            None => client.get(id).await,
        };
        let service = match read {
            Ok(service) => service,
            Err(PlatformError::NotFound(_)) => return Ok(Deletion::Gone),
            Err(e) => return Err(e),
        };
        if cr.spec.managed.deletion_policy == CivisDeletionPolicy::Delete
            && let Some(d) = service.current_deployment.as_ref().filter(|_| running(&service))
        {
            client.stop(id, d.deployment_id).await?;
        }
        if !service.archived {
            client.archive(id, true).await?;
        }
        Ok(Deletion::Gone)
    }
}
