//! Civis Platform services client (shared/platforms/civis.md): services, their deployments, tokens,
//! shares, transfer and project membership. Auth is HTTP Basic with the API key as user name; errors carry
//! `errorDescription`. Requests use the documented camelCase keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::http::{Call, Dialect, Http, HttpConfig, MAX_PAGES, Secret, too_many_pages};
use crate::listing::{Compact, Listing};

/// A service (full form from get/create/update; list items carry a subset).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Integer id.
    pub id: i64,
    /// Name (not unique).
    #[serde(default)]
    pub name: Option<String>,
    /// Description (Tether keeps its ownership marker here).
    #[serde(default)]
    pub description: Option<String>,
    /// The active deployment.
    #[serde(default)]
    pub current_deployment: Option<Deployment>,
    /// URL the service is served at.
    #[serde(default)]
    pub current_url: Option<String>,
    /// Archived (the platform has sent both a bool and a "true"/"false" string).
    #[serde(default, deserialize_with = "bool_or_string")]
    pub archived: bool,
    /// Every other field, as the platform sent it.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A deployment of a service.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// Integer id.
    pub deployment_id: i64,
    /// pending, running, sleeping or terminated.
    pub state: String,
    /// The platform's words on the state.
    #[serde(default)]
    pub state_message: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A token; `token` (the secret) only in the create answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Token {
    /// Integer id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// The secret, present once.
    #[serde(default)]
    pub token: Option<String>,
    /// Every other field.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

fn bool_or_string<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<bool, D::Error> {
    Ok(match Value::deserialize(d)? {
        Value::Bool(b) => b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    })
}

/// List filters and paging of `GET /services`.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Include hidden services.
    pub hidden: bool,
    /// `true`, `false` (default) or `all`.
    pub archived: Option<&'static str>,
    /// Owner user ids.
    pub author: Option<String>,
    /// `running` and/or `idle`.
    pub status: Option<String>,
}

/// A Civis client for one API key.
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<Http>,
    /// The account's services as last listed (what of each summary is read later), and each one's full
    /// form as last read.
    listing: Arc<Listing<Listed, Compact<Service>>>,
}

/// What a listing keeps of a service's summary: what tells it changed, what finds it by its ownership
/// marker, and its deployment, which a full form kept from an earlier read takes from it. Only these: a
/// whole summary (its user, repository and times as a map of every field) is several times the size, and
/// a listing holds one per service of the account.
#[derive(Clone, Debug)]
struct Listed {
    id: i64,
    marker: Option<Box<str>>,
    description: Option<Box<str>>,
    current_deployment: Option<Deployment>,
}

/// A list item decoded for what [`Listed`] keeps of it, the other fields skipped: a listing decodes every
/// service of the account, and decoded whole (each into a map of every field) they were the largest
/// allocation of a drift period at the peak of a heap profile (2.5 of 37 MiB at N = 2000).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Summary {
    id: i64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    updated_at: Option<Value>,
    #[serde(default)]
    current_deployment: Option<Deployment>,
}

impl From<Summary> for Listed {
    fn from(summary: Summary) -> Self {
        Self {
            id: summary.id,
            marker: marker_of(summary.updated_at.as_ref(), summary.current_deployment.as_ref())
                .map(String::into_boxed_str),
            description: summary.description.map(String::into_boxed_str),
            current_deployment: summary.current_deployment,
        }
    }
}

fn message(body: &Value) -> Option<String> {
    body.get("errorDescription").and_then(Value::as_str).map(str::to_string)
}

const SERVICE: &str = "/services/{id}";

/// Services per page of a listing: the most the platform gives.
const PAGE: u32 = 50;

/// What tells a service's list entry changed: its update time and its current deployment (none without
/// an update time: then every drift check reads the service in full).
fn marker(service: &Service) -> Option<String> {
    marker_of(service.fields.get("updatedAt"), service.current_deployment.as_ref())
}

fn marker_of(updated_at: Option<&Value>, deployment: Option<&Deployment>) -> Option<String> {
    let updated = updated_at.and_then(Value::as_str).filter(|t| !t.is_empty())?;
    Some(format!("{updated} {:?}", deployment.map(|d| d.deployment_id)))
}

impl Client {
    /// A client for `config.base_url` (e.g. `https://api.civisanalytics.com/`) and an API key.
    pub fn new(config: HttpConfig, api_key: &Secret) -> Result<Self> {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{}:", api_key.expose()));
        let dialect = Dialect {
            platform: "civis",
            auth_headers: vec![(reqwest::header::AUTHORIZATION, Secret::new(format!("Basic {basic}")))],
            message,
            retry_header: None,
            // The header carries the key only base64-encoded, as `key:`.
            redact: vec![api_key.clone()],
        };
        Ok(Self { http: Http::new(config, dialect)?, listing: Arc::default() })
    }

    /// One page of services (1-based `page`, at most 50 per page), newest change first.
    pub async fn list(&self, options: &ListOptions, page: u32, limit: u32) -> Result<Vec<Service>> {
        self.page(options, page, limit).await
    }

    /// One page of services, each decoded as `T` (a whole [`Service`], or only what a listing keeps).
    async fn page<T: serde::de::DeserializeOwned>(
        &self,
        options: &ListOptions,
        page: u32,
        limit: u32,
    ) -> Result<Vec<T>> {
        let mut call =
            Call::new(Method::GET, "/services", "services").query("page_num", page).query("limit", limit.min(50));
        if options.hidden {
            call = call.query("hidden", "true");
        }
        if let Some(archived) = options.archived {
            call = call.query("archived", archived);
        }
        if let Some(author) = &options.author {
            call = call.query("author", author);
        }
        if let Some(status) = &options.status {
            call = call.query("status", status);
        }
        self.http.json(call).await
    }

    /// Every page of services, until a page shorter than asked for (the platform has no end marker but
    /// an empty page: a short page is the last, which saves a request per listing), at most [`MAX_PAGES`].
    pub async fn list_all(&self, options: &ListOptions) -> Result<Vec<Service>> {
        self.pages(options, |service: Service| service).await
    }

    /// Every page of services as [`list_all`](Self::list_all) takes them, each item decoded as `T` and
    /// turned into what is kept with `keep` before the next page is asked for.
    async fn pages<T: serde::de::DeserializeOwned, U>(
        &self,
        options: &ListOptions,
        keep: impl Fn(T) -> U,
    ) -> Result<Vec<U>> {
        let mut out = Vec::new();
        for page in 1..=MAX_PAGES {
            let items: Vec<T> = self.page(options, page as u32, PAGE).await?;
            let last = items.len() < PAGE as usize;
            out.extend(items.into_iter().map(&keep));
            if last {
                return Ok(out);
            }
        }
        Err(too_many_pages("services"))
    }

    /// `GET /services/{id}`.
    pub async fn get(&self, id: i64) -> Result<Service> {
        self.listing.touch(&id.to_string());
        let service: Service = self.http.json(Call::new(Method::GET, SERVICE, format!("services/{id}"))).await?;
        if let Some(marker) = marker(&service) {
            self.listing.keep_detail(&id.to_string(), marker, Compact::of(&service));
        }
        Ok(service)
    }

    /// Service `id` as of a listing begun at most `max_age` ago (every page of the account's services,
    /// one listing shared by every caller), or `None` when a listing cannot tell (see
    /// [`Listing::entry`]). The list has summaries only: the full form comes from the last `get` while the
    /// summary's update time and current deployment are the same, with the summary's deployment state;
    /// else it is read again.
    pub async fn listed(&self, id: i64, max_age: Duration) -> Result<Option<Service>> {
        let key = id.to_string();
        let Some(summary) = self.listing.entry(&key, max_age, || self.listing_entries()).await? else {
            return Ok(None);
        };
        match summary.marker.as_deref().and_then(|marker| self.listing.detail(&key, marker)?.get()) {
            Some(mut service) => {
                service.current_deployment = summary.current_deployment;
                Ok(Some(service))
            }
            None => self.get(id).await.map(Some),
        }
    }

    /// What a listing holds: every service, hidden ones too, by id.
    async fn listing_entries(&self) -> Result<Vec<(String, Listed)>> {
        let options = ListOptions { hidden: true, ..Default::default() };
        self.pages(&options, |s: Summary| (s.id.to_string(), Listed::from(s))).await
    }

    /// The ids of the services whose description ends with the ownership `marker`, as of a listing
    /// begun after `not_before` and after this process's last [`create`](Self::create) with that marker:
    /// one listing serves the searches of every create that needs one (see [`Listing::since`]).
    pub async fn marked(&self, marker: &str, not_before: tokio::time::Instant) -> Result<Vec<i64>> {
        let ours = |s: &Listed| s.description.as_deref().is_some_and(|d| d.ends_with(marker));
        let found = self.listing.since(marker, not_before, || self.listing_entries(), ours).await?;
        Ok(found.into_iter().map(|s| s.id).collect())
    }

    /// [`create`](Self::create) of a service whose description ends with the ownership `marker`, recorded
    /// as an attempt however it ends, so that [`marked`](Self::marked) searches a listing taken after it.
    pub async fn create_marked(&self, marker: &str, fields: &Map<String, Value>) -> Result<Service> {
        let _attempt = self.listing.attempting(marker);
        self.create(fields).await
    }

    /// `POST /services` with camelCase fields. Not retried after a 5xx (names are not unique: a retry
    /// could make two); the caller finds a lost create by its ownership marker.
    pub async fn create(&self, fields: &Map<String, Value>) -> Result<Service> {
        let service: Service = self.http.json(Call::new(Method::POST, "/services", "services").json(fields)?).await?;
        self.listing.touch(&service.id.to_string());
        Ok(service)
    }

    /// `PATCH /services/{id}`: changes the top-level fields given.
    pub async fn patch(&self, id: i64, fields: &Map<String, Value>) -> Result<Service> {
        let patched = self.http.json(Call::new(Method::PATCH, SERVICE, format!("services/{id}")).json(fields)?).await;
        self.listing.touch(&id.to_string());
        patched
    }

    /// `PUT /services/{id}`: replaces every writable field (those left out go back to defaults).
    pub async fn put(&self, id: i64, fields: &Map<String, Value>) -> Result<Service> {
        let put = self.http.json(Call::new(Method::PUT, SERVICE, format!("services/{id}")).json(fields)?).await;
        self.listing.touch(&id.to_string());
        put
    }

    /// `PUT /services/{id}/archive`.
    pub async fn archive(&self, id: i64, archived: bool) -> Result<Service> {
        let call = Call::new(Method::PUT, "/services/{id}/archive", format!("services/{id}/archive"));
        let answer = self.http.json(call.json(&json!({ "status": archived }))?).await;
        // An archived service leaves the listing: its kept full form would wait for the next listing to
        // prune it, which never comes once the account's last service is gone.
        if archived {
            self.listing.forget(&id.to_string());
        } else {
            self.listing.touch(&id.to_string());
        }
        answer
    }

    /// `POST /services/{id}/clone`.
    pub async fn clone_service(&self, id: i64) -> Result<Service> {
        self.http.json(Call::new(Method::POST, "/services/{id}/clone", format!("services/{id}/clone"))).await
    }

    /// Starts a new deployment of the current config (`POST .../deployments`), or with `redeploy` the
    /// restart endpoint (`POST .../redeploy`); the previous deployment terminates.
    pub async fn deploy(&self, id: i64, redeploy: bool) -> Result<Deployment> {
        let (route, path) = if redeploy {
            ("/services/{id}/redeploy", format!("services/{id}/redeploy"))
        } else {
            ("/services/{id}/deployments", format!("services/{id}/deployments"))
        };
        let deployed = self.http.json(Call::new(Method::POST, route, path).json(&json!({}))?).await;
        self.listing.touch(&id.to_string());
        deployed
    }

    /// `GET /services/{id}/deployments`, newest first.
    pub async fn deployments(&self, id: i64) -> Result<Vec<Deployment>> {
        let call = Call::new(Method::GET, "/services/{id}/deployments", format!("services/{id}/deployments"));
        self.http.json(call.query("limit", 50)).await
    }

    /// `GET /services/{id}/deployments/{d}`.
    pub async fn deployment(&self, id: i64, deployment: i64) -> Result<Deployment> {
        let path = format!("services/{id}/deployments/{deployment}");
        self.http.json(Call::new(Method::GET, "/services/{id}/deployments/{deployment_id}", path)).await
    }

    /// `DELETE /services/{id}/deployments/{d}`: stops it.
    pub async fn stop(&self, id: i64, deployment: i64) -> Result<()> {
        let path = format!("services/{id}/deployments/{deployment}");
        let stopped =
            self.http.empty(Call::new(Method::DELETE, "/services/{id}/deployments/{deployment_id}", path)).await;
        self.listing.touch(&id.to_string());
        stopped
    }

    /// Log lines of a deployment.
    pub async fn logs(&self, id: i64, deployment: i64) -> Result<Vec<Map<String, Value>>> {
        let path = format!("services/{id}/deployments/{deployment}/logs");
        self.http.json(Call::new(Method::GET, "/services/{id}/deployments/{deployment_id}/logs", path)).await
    }

    /// Mints a token; its secret is in the answer only.
    pub async fn create_token(&self, id: i64, name: &str, machine: bool, expires_in: Option<i64>) -> Result<Token> {
        let mut body = json!({"name": name, "machineToken": machine});
        if let Some(secs) = expires_in {
            body["expiresIn"] = json!(secs);
        }
        let call = Call::new(Method::POST, "/services/{id}/tokens", format!("services/{id}/tokens"));
        self.http.json(call.json(&body)?).await
    }

    /// Tokens of the service (without secrets).
    pub async fn tokens(&self, id: i64) -> Result<Vec<Token>> {
        self.http.json(Call::new(Method::GET, "/services/{id}/tokens", format!("services/{id}/tokens"))).await
    }

    /// Revokes a token.
    pub async fn delete_token(&self, id: i64, token: i64) -> Result<()> {
        let path = format!("services/{id}/tokens/{token}");
        self.http.empty(Call::new(Method::DELETE, "/services/{id}/tokens/{token_id}", path)).await
    }

    /// Who the service is shared with (the first ShareIndex of the list).
    pub async fn shares(&self, id: i64) -> Result<Map<String, Value>> {
        let list: Vec<Map<String, Value>> =
            self.http.json(Call::new(Method::GET, "/services/{id}/shares", format!("services/{id}/shares"))).await?;
        list.into_iter().next().ok_or_else(|| Error::Decode("empty share list".into()))
    }

    /// Shares with users (`groups = false`) or groups at a permission level (read, write, manage).
    pub async fn share(&self, id: i64, groups: bool, ids: &[i64], level: &str) -> Result<()> {
        let (kind, key) = if groups { ("groups", "groupIds") } else { ("users", "userIds") };
        let body = json!({ key: ids, "permissionLevel": level, "sendSharedEmail": false });
        let call = Call::new(Method::PUT, "/services/{id}/shares/{kind}", format!("services/{id}/shares/{kind}"));
        self.http.empty(call.json(&body)?).await
    }

    /// Revokes a user's or group's share.
    pub async fn unshare(&self, id: i64, groups: bool, principal: i64) -> Result<()> {
        let kind = if groups { "groups" } else { "users" };
        let path = format!("services/{id}/shares/{kind}/{principal}");
        self.http.empty(Call::new(Method::DELETE, "/services/{id}/shares/{kind}/{principal_id}", path)).await
    }

    /// Objects the service depends on.
    pub async fn dependencies(&self, id: i64) -> Result<Vec<Map<String, Value>>> {
        self.http
            .json(Call::new(Method::GET, "/services/{id}/dependencies", format!("services/{id}/dependencies")))
            .await
    }

    /// Gives the service to another user.
    pub async fn transfer(&self, id: i64, user: i64, include_dependencies: bool) -> Result<()> {
        let body = json!({"userId": user, "includeDependencies": include_dependencies, "sendEmail": false});
        let call = Call::new(Method::PUT, "/services/{id}/transfer", format!("services/{id}/transfer"));
        self.http.empty(call.json(&body)?).await
    }

    /// Ids of the projects the service belongs to.
    pub async fn projects(&self, id: i64) -> Result<Vec<i64>> {
        let list: Vec<Map<String, Value>> = self
            .http
            .json(Call::new(Method::GET, "/services/{id}/projects", format!("services/{id}/projects")))
            .await?;
        Ok(list.iter().filter_map(|p| p.get("id")?.as_i64()).collect())
    }

    /// Adds the service to a project (`join`) or removes it.
    pub async fn set_project(&self, id: i64, project: i64, join: bool) -> Result<()> {
        let method = if join { Method::PUT } else { Method::DELETE };
        let path = format!("services/{id}/projects/{project}");
        self.http.empty(Call::new(method, "/services/{id}/projects/{project_id}", path)).await
    }

    /// Polls until the current deployment runs; a terminated one is a [`Error::Platform`] with its message.
    pub async fn wait_running(&self, id: i64, interval: Duration, timeout: Duration) -> Result<Deployment> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if let Some(d) = self.get(id).await?.current_deployment {
                match d.state.as_str() {
                    "running" => return Ok(d),
                    "terminated" => {
                        let why = d.state_message.unwrap_or_default();
                        let why = format!("deployment {} terminated: {why}", d.deployment_id);
                        return Err(Error::Platform(self.http.clean(&why)));
                    }
                    _ => {}
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Transient(format!("service {id} not running after {timeout:?}")));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

// === day 2: reads for `kubectl tether` ===

impl Client {
    /// Log lines of a deployment, oldest first: from `start_at` (RFC 3339) on when given, at most `limit`
    /// (the platform's default is 10000).
    pub async fn logs_since(
        &self,
        id: i64,
        deployment: i64,
        start_at: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<Map<String, Value>>> {
        let path = format!("services/{id}/deployments/{deployment}/logs");
        let mut call = Call::new(Method::GET, "/services/{id}/deployments/{deployment_id}/logs", path);
        if let Some(start_at) = start_at {
            call = call.query("start_at", start_at);
        }
        if let Some(limit) = limit {
            call = call.query("limit", limit);
        }
        self.http.json(call.idempotent()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_listed_summary_keeps_the_marker_its_full_form_has_and_no_other_field() {
        let deployment = json!({"deploymentId": 7, "state": "running", "createdAt": "2026-01-01T00:00:00Z"});
        let summary = json!({
            "id": 3, "name": "svc", "description": "scoring [tether:abc]", "user": {"id": 1, "name": "u"},
            "type": "Custom", "updatedAt": "2026-01-02T00:00:00Z", "currentDeployment": deployment, "archived": false,
        });
        let mut full = summary.clone();
        full["currentUrl"] = json!("https://svc.example");
        full["gitRepoUrl"] = json!("https://git.example/repo");
        let full: Service = serde_json::from_value(full).unwrap();
        let listed = Listed::from(serde_json::from_value::<Summary>(summary).unwrap());
        assert_eq!(listed.id, 3);
        assert_eq!(listed.marker.as_deref(), marker(&full).as_deref(), "a detail kept for it is found again");
        assert_eq!(listed.marker.as_deref(), Some("2026-01-02T00:00:00Z Some(7)"));
        assert_eq!(listed.description.as_deref(), Some("scoring [tether:abc]"));
        assert_eq!(listed.current_deployment, full.current_deployment);
        // Without an update time there is no marker: every drift check reads the service in full.
        let bare: Summary = serde_json::from_value(json!({"id": 4, "updatedAt": null})).unwrap();
        assert_eq!(Listed::from(bare).marker, None);
    }
}
