//! UbiOps client (shared/platforms/ubiops.md): services under a project, and the project, deployments and
//! versions they reference. Auth is `Authorization: Token <token>`; errors are `{"error": "..."}` and a 429
//! says when to retry in `x-ratelimit-reset`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::Result;
use crate::http::{Call, Dialect, Http, HttpConfig, Secret, segment};
use crate::listing::{Compact, Listing, Scoped};

/// A UbiOps service as the platform returns it (create, get, update, list).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Service {
    /// Stable UUID, kept across renames.
    #[serde(default)]
    pub id: Option<String>,
    /// Name, unique in the project.
    pub name: String,
    /// Deployment receiving the traffic.
    pub deployment: Option<String>,
    /// Version of that deployment; `None` follows its default version.
    #[serde(default)]
    pub version: Option<String>,
    /// Port traffic goes to.
    pub port: Option<i64>,
    /// Public URL.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Creation time (ISO-8601).
    #[serde(default)]
    pub time_created: Option<String>,
    /// Last change (ISO-8601).
    #[serde(default)]
    pub time_updated: Option<String>,
    /// Every other field, kept as the platform sent it.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// `GET .../services/{name}/status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// The service's id.
    pub id: String,
    /// Whether it serves traffic.
    pub ready: bool,
    /// Instances ready to serve.
    #[serde(default)]
    pub instances_ready: i64,
}

/// The body of a create or a (partial) update: only the fields set are sent. `version: Some(None)` sends
/// an explicit null, which returns the service to following the deployment's default version.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ServiceFields {
    /// Name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Deployment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deployment: Option<String>,
    /// Version; `Some(None)` is an explicit null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<Option<String>>,
    /// Port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<i64>,
    /// Any other writable field (description, labels, limits, ...), by its platform name.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// A UbiOps client for one account (token) and API base URL (`.../v2.1`).
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<Http>,
    /// Each project's services as last listed (list items are a subset of the fields), with each one's
    /// full form as last read.
    listings: Arc<Scoped<Listed, Compact<Service>>>,
}

/// What a listing keeps of a service's list item: only what tells it changed (its [`marker`]). The
/// full form comes from a read kept with that marker; a whole item, every field in a map, is several
/// times the size, and a listing holds one per service of the project.
#[derive(Clone, Debug)]
struct Listed {
    marker: Option<Box<str>>,
}

/// A list item decoded for its name and [`marker`] alone, every other field skipped (a listing decodes
/// every service of the project at once).
#[derive(Deserialize)]
struct Item {
    name: String,
    #[serde(default)]
    time_updated: Option<String>,
}

impl From<Item> for Listed {
    fn from(item: Item) -> Self {
        Self { marker: marker_of(item.time_updated).map(String::into_boxed_str) }
    }
}

/// What tells a service's list entry changed: its update time (none without one: then every drift check
/// reads the service in full).
fn marker(service: &Service) -> Option<String> {
    marker_of(service.time_updated.clone())
}

/// [`marker`] from the update time alone, as a list item has it: an empty one is none.
fn marker_of(time_updated: Option<String>) -> Option<String> {
    time_updated.filter(|t| !t.is_empty())
}

fn message(body: &Value) -> Option<String> {
    body.get("error").or_else(|| body.get("error_message")).and_then(Value::as_str).map(str::to_string)
}

// Path parameters are percent-encoded as a whole, as the SDK does; one that could leave its place in the
// path (`..`, `a/b`) is refused before any request.
fn project_seg(name: &str) -> Result<String> {
    segment("UbiOps project name", name)
}

fn deployment_seg(name: &str) -> Result<String> {
    segment("UbiOps deployment name", name)
}

fn version_seg(name: &str) -> Result<String> {
    segment("UbiOps deployment version", name)
}

impl Client {
    /// A client for `config.base_url` (e.g. `https://api.ubiops.com/v2.1`) with an API token (with or
    /// without its `Token ` prefix).
    pub fn new(config: HttpConfig, token: &Secret) -> Result<Self> {
        let raw = token.expose().trim();
        let value = if raw.contains(' ') { raw.to_string() } else { format!("Token {raw}") };
        let dialect = Dialect {
            platform: "ubiops",
            auth_headers: vec![(reqwest::header::AUTHORIZATION, Secret::new(value))],
            message,
            retry_header: Some("x-ratelimit-reset"),
            redact: vec![Secret::new(raw)],
        };
        Ok(Self { http: Http::new(config, dialect)?, listings: Arc::default() })
    }

    /// `GET /status`: the API answers and the token is accepted.
    pub async fn ping(&self) -> Result<()> {
        self.http.empty(Call::new(Method::GET, "/status", "status")).await
    }

    /// `GET /projects/{project}`.
    pub async fn project_get(&self, project: &str) -> Result<Map<String, Value>> {
        self.http
            .json(Call::new(Method::GET, "/projects/{project_name}", format!("projects/{}", project_seg(project)?)))
            .await
    }

    /// `GET /projects/{p}/services`, filtered by labels (`k:v,...`, any matches) and deployment version ids.
    pub async fn services_list(
        &self,
        project: &str,
        labels: Option<&str>,
        deployment_version_ids: Option<&str>,
    ) -> Result<Vec<Service>> {
        self.services_list_as(project, labels, deployment_version_ids).await
    }

    /// `services_list`, each item decoded as `T` (a whole [`Service`], or only what a listing keeps).
    async fn services_list_as<T: serde::de::DeserializeOwned>(
        &self,
        project: &str,
        labels: Option<&str>,
        deployment_version_ids: Option<&str>,
    ) -> Result<Vec<T>> {
        let mut call = Call::new(
            Method::GET,
            "/projects/{project_name}/services",
            format!("projects/{}/services", project_seg(project)?),
        );
        if let Some(labels) = labels {
            call = call.query("labels", labels);
        }
        if let Some(ids) = deployment_version_ids {
            call = call.query("deployment_version_ids", ids);
        }
        self.http.json(call).await
    }

    fn listing(&self, project: &str) -> Arc<Listing<Listed, Compact<Service>>> {
        self.listings.of(project)
    }

    /// `GET /projects/{p}/services/{name}`.
    pub async fn services_get(&self, project: &str, name: &str) -> Result<Service> {
        let listing = self.listing(project);
        listing.touch(name);
        let service: Service = self.http.json(Call::new(Method::GET, SERVICE, service_path(project, name)?)).await?;
        if let Some(marker) = marker(&service) {
            listing.keep_detail(name, marker, Compact::of(&service));
        }
        Ok(service)
    }

    /// Service `name` of `project` as of a listing of the project's services begun at most `max_age` ago
    /// (one listing shared by every caller), or `None` when a listing cannot tell (see
    /// [`Listing::entry`]). List items carry a subset of the fields: the full form comes from the last
    /// `services_get` while the item's update time is the same, else it is read again.
    pub async fn services_listed(&self, project: &str, name: &str, max_age: Duration) -> Result<Option<Service>> {
        let listing = self.listing(project);
        let list = || async {
            let items: Vec<Item> = self.services_list_as(project, None, None).await?;
            Ok(items.into_iter().map(|item| (item.name.clone(), Listed::from(item))).collect())
        };
        let Some(item) = listing.entry(name, max_age, list).await? else { return Ok(None) };
        match item.marker.as_deref().and_then(|marker| listing.detail(name, marker)?.get()) {
            Some(service) => Ok(Some(service)),
            None => self.services_get(project, name).await.map(Some),
        }
    }

    /// `POST /projects/{p}/services`. Not retried on 5xx (a retry could race a create that went through);
    /// a caller that lost the answer finds the service by name.
    pub async fn services_create(&self, project: &str, fields: &ServiceFields) -> Result<Service> {
        let call = Call::new(
            Method::POST,
            "/projects/{project_name}/services",
            format!("projects/{}/services", project_seg(project)?),
        );
        let created = self.http.json(call.json(fields)?).await;
        self.wrote(project, fields.name.as_deref().unwrap_or_default(), &created);
        created
    }

    /// `PATCH /projects/{p}/services/{name}`: changes only the fields set.
    pub async fn services_update(&self, project: &str, name: &str, fields: &ServiceFields) -> Result<Service> {
        let updated =
            self.http.json(Call::new(Method::PATCH, SERVICE, service_path(project, name)?).json(fields)?).await;
        self.wrote(project, name, &updated);
        updated
    }

    /// After a write of service `name`: the listing does not answer for it until a newer one, and the
    /// service in the write's answer (the full form) serves as its detail while its update time holds.
    fn wrote(&self, project: &str, name: &str, answer: &Result<Service>) {
        let listing = self.listing(project);
        listing.touch(name);
        if let Ok(service) = answer
            && let Some(marker) = marker(service)
        {
            listing.keep_detail(name, marker, Compact::of(service));
        }
    }

    /// `DELETE /projects/{p}/services/{name}` (synchronous: gone on success).
    pub async fn services_delete(&self, project: &str, name: &str) -> Result<()> {
        let deleted = self.http.empty(Call::new(Method::DELETE, SERVICE, service_path(project, name)?)).await;
        self.listing(project).forget(name);
        deleted
    }

    /// `GET /projects/{p}/services/{name}/status`.
    pub async fn services_status(&self, project: &str, name: &str) -> Result<ServiceStatus> {
        let path = format!("{}/status", service_path(project, name)?);
        self.http.json(Call::new(Method::GET, "/projects/{project_name}/services/{service_name}/status", path)).await
    }

    /// `GET /projects/{p}/deployments/{d}`.
    pub async fn deployments_get(&self, project: &str, deployment: &str) -> Result<Map<String, Value>> {
        let path = format!("projects/{}/deployments/{}", project_seg(project)?, deployment_seg(deployment)?);
        self.http.json(Call::new(Method::GET, "/projects/{project_name}/deployments/{deployment_name}", path)).await
    }

    /// `GET /projects/{p}/deployments`.
    pub async fn deployments_list(&self, project: &str) -> Result<Vec<Map<String, Value>>> {
        let path = format!("projects/{}/deployments", project_seg(project)?);
        self.http.json(Call::new(Method::GET, "/projects/{project_name}/deployments", path)).await
    }

    /// `POST /projects/{p}/deployments` with a DeploymentCreate body (`name` required).
    pub async fn deployments_create(&self, project: &str, body: &Map<String, Value>) -> Result<Map<String, Value>> {
        let path = format!("projects/{}/deployments", project_seg(project)?);
        self.http.json(Call::new(Method::POST, "/projects/{project_name}/deployments", path).json(body)?).await
    }

    /// `PATCH /projects/{p}/deployments/{d}` (e.g. `default_version`).
    pub async fn deployments_update(
        &self,
        project: &str,
        deployment: &str,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let path = format!("projects/{}/deployments/{}", project_seg(project)?, deployment_seg(deployment)?);
        let route = "/projects/{project_name}/deployments/{deployment_name}";
        self.http.json(Call::new(Method::PATCH, route, path).json(body)?).await
    }

    /// `DELETE /projects/{p}/deployments/{d}`.
    pub async fn deployments_delete(&self, project: &str, deployment: &str) -> Result<()> {
        let path = format!("projects/{}/deployments/{}", project_seg(project)?, deployment_seg(deployment)?);
        self.http.empty(Call::new(Method::DELETE, "/projects/{project_name}/deployments/{deployment_name}", path)).await
    }

    /// `GET /projects/{p}/deployments/{d}/versions`.
    pub async fn versions_list(&self, project: &str, deployment: &str) -> Result<Vec<Map<String, Value>>> {
        let path = format!("projects/{}/deployments/{}/versions", project_seg(project)?, deployment_seg(deployment)?);
        let route = "/projects/{project_name}/deployments/{deployment_name}/versions";
        self.http.json(Call::new(Method::GET, route, path)).await
    }

    /// `POST /projects/{p}/deployments/{d}/versions` with a DeploymentVersionCreate body (`version` required).
    pub async fn versions_create(
        &self,
        project: &str,
        deployment: &str,
        body: &Map<String, Value>,
    ) -> Result<Map<String, Value>> {
        let path = format!("projects/{}/deployments/{}/versions", project_seg(project)?, deployment_seg(deployment)?);
        let route = "/projects/{project_name}/deployments/{deployment_name}/versions";
        self.http.json(Call::new(Method::POST, route, path).json(body)?).await
    }

    /// `DELETE /projects/{p}/deployments/{d}/versions/{v}`.
    pub async fn versions_delete(&self, project: &str, deployment: &str, version: &str) -> Result<()> {
        let path = format!(
            "projects/{}/deployments/{}/versions/{}",
            project_seg(project)?,
            deployment_seg(deployment)?,
            version_seg(version)?
        );
        let route = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}";
        self.http.empty(Call::new(Method::DELETE, route, path)).await
    }

    /// `GET /projects/{p}/deployments/{d}/versions/{v}`.
    pub async fn versions_get(&self, project: &str, deployment: &str, version: &str) -> Result<Map<String, Value>> {
        let path = format!(
            "projects/{}/deployments/{}/versions/{}",
            project_seg(project)?,
            deployment_seg(deployment)?,
            version_seg(version)?
        );
        let route = "/projects/{project_name}/deployments/{deployment_name}/versions/{version}";
        self.http.json(Call::new(Method::GET, route, path)).await
    }

    /// Labels as the list filter takes them: `k1:v1,k2:v2`.
    pub fn label_filter(labels: &BTreeMap<String, String>) -> String {
        labels.iter().map(|(k, v)| format!("{k}:{v}")).collect::<Vec<_>>().join(",")
    }
}

const SERVICE: &str = "/projects/{project_name}/services/{service_name}";

fn service_path(project: &str, name: &str) -> Result<String> {
    Ok(format!("projects/{}/services/{}", project_seg(project)?, segment("UbiOps service name", name)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_item_is_kept_by_the_marker_its_full_form_has() {
        let item = serde_json::json!({
            "id": "u-1", "name": "api", "deployment": "dep-1", "version": "v1", "port": 8080,
            "time_created": "2026-01-01T00:00:00Z", "time_updated": "2026-01-02T00:00:00Z",
            "labels": {"team": "risk"}, "description": "scoring",
        });
        let full: Service = serde_json::from_value(item.clone()).unwrap();
        let kept: Item = serde_json::from_value(item).unwrap();
        assert_eq!(kept.name, "api");
        assert!(marker(&full).is_some());
        assert_eq!(Listed::from(kept).marker.as_deref(), marker(&full).as_deref());
        let never: Item = serde_json::from_value(serde_json::json!({"name": "b", "time_updated": ""})).unwrap();
        assert_eq!(Listed::from(never).marker, None, "an empty update time is no marker");
    }
}
