//! Apolo apps client (shared/platforms/apolo.md): apps installed from templates in one
//! cluster/org/project scope, with the asynchronous lifecycle queued → progressing → healthy (or
//! degraded/errored) and uninstalling → uninstalled. Auth is `Authorization: Bearer <token>`; errors are
//! `{"error": ...}` or, for input validation, `{"errors": [{"path", "message"}]}`. The logs WebSocket is
//! not covered: the operator has no use for it, and it would need a WebSocket client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::http::{Call, Dialect, Http, HttpConfig, MAX_PAGES, Secret, segment, too_many_pages};
use crate::listing::{Keyed, Listing, Scoped};

/// Apps per page of a listing: the server's default (the SDK never sends `size`).
const SERVER_PAGE_SIZE: usize = 50;

/// An app as get, list, install, configure and rollback return it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// Id (UUID).
    pub id: String,
    /// Server-generated name.
    pub name: String,
    /// Human label (not unique).
    pub display_name: String,
    /// Template.
    pub template_name: String,
    /// Installed template version.
    pub template_version: String,
    /// queued, progressing, healthy, degraded, errored, uninstalling or uninstalled.
    pub state: String,
    /// Public URLs.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Every other field, as the platform sent it.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// A configuration revision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    /// 1, 2, ...
    pub revision_number: i64,
    /// Who made it.
    pub creator: String,
    /// Why.
    pub comment: Option<String>,
    /// When it started.
    pub created_at: String,
    /// When it was superseded; `None` for the current one.
    pub end_at: Option<String>,
}

/// One page of an Apolo list (`{items, pages}`; `pages` is 1 when absent). Public for the fuzz targets.
#[derive(Deserialize)]
pub struct Page<T> {
    /// The entries of this page.
    pub items: Vec<T>,
    /// How many pages the list has.
    #[serde(default = "one")]
    pub pages: u64,
}

fn one() -> u64 {
    1
}

/// An Apolo client for one token and scope.
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<Http>,
    /// The scope's path, or why the scope cannot be one (returned by every scoped call).
    scope: Result<String>,
    scope_query: [(String, String); 3],
    /// Each scope's live apps as last listed (list entries are whole apps), with what a caller derived
    /// from an app's details (input, revisions, outputs) for the entry it read them for.
    listings: Arc<Scoped<Listed, Derived>>,
}

/// An app as a listing keeps it: keyed by its display name, which carries the ownership marker a search
/// looks for.
type Listed = Keyed<App>;

/// What a caller derived from an app's details, kept with its listing (see [`Client::derived`]).
pub type Derived = Arc<dyn std::any::Any + Send + Sync>;

/// The states of an app that is installed (not uninstalled): what `find`-by-marker and the listing read.
pub const LIVE_STATES: [&str; 6] = ["queued", "progressing", "healthy", "degraded", "errored", "uninstalling"];

/// The path of a scope; a cluster, organisation or project that could leave its place in the path is
/// refused (the error is kept, and returned by each call in that scope: a client for the account is made
/// before the scope is known).
fn scope_path(cluster: &str, org: &str, project: &str) -> Result<String> {
    Ok(format!(
        "apis/apps/v1/cluster/{}/org/{}/project/{}",
        segment("Apolo cluster", cluster)?,
        segment("Apolo organisation", org)?,
        segment("Apolo project", project)?
    ))
}

fn app_id(id: &str) -> Result<String> {
    segment("Apolo app id", id)
}

fn message(body: &Value) -> Option<String> {
    if let Some(e) = body.get("error").and_then(Value::as_str) {
        return Some(e.to_string());
    }
    let errors = body.get("errors")?.as_array()?;
    Some(
        errors
            .iter()
            .map(|e| {
                let path: Vec<&str> = e["path"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
                format!("{}: {}", path.join("."), e["message"].as_str().unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("; "),
    )
}

impl Client {
    /// A client for the API at `config.base_url` (its origin; any path is ignored, as the SDK does) in
    /// the given scope.
    pub fn new(mut config: HttpConfig, token: &Secret, cluster: &str, org: &str, project: &str) -> Result<Self> {
        config.base_url.set_path("/");
        let dialect = Dialect {
            platform: "apolo",
            auth_headers: vec![(reqwest::header::AUTHORIZATION, Secret::new(format!("Bearer {}", token.expose())))],
            message,
            retry_header: None,
            redact: Vec::new(),
        };
        Ok(Self {
            http: Http::new(config, dialect)?,
            scope: scope_path(cluster, org, project),
            scope_query: [
                ("cluster".into(), cluster.into()),
                ("org".into(), org.into()),
                ("project".into(), project.into()),
            ],
            listings: Arc::default(),
        })
    }

    /// The same account (connection, rate limit) in another cluster/org/project.
    pub fn with_scope(&self, cluster: &str, org: &str, project: &str) -> Self {
        Self {
            http: self.http.clone(),
            scope: scope_path(cluster, org, project),
            scope_query: [
                ("cluster".into(), cluster.into()),
                ("org".into(), org.into()),
                ("project".into(), project.into()),
            ],
            listings: self.listings.clone(),
        }
    }

    /// This scope's listing (one per scope and account; a scope that cannot be one gets its own, unused).
    fn listing(&self) -> Arc<Listing<Listed, Derived>> {
        self.listings.of(self.scope.as_deref().unwrap_or_default())
    }

    /// App `id` as of a listing of the scope's live apps begun at most `max_age` ago (one listing shared
    /// by every caller), or `None` when a listing cannot tell (see [`Listing::entry`]).
    pub async fn listed(&self, id: &str, max_age: Duration) -> Result<Option<App>> {
        Ok(self.listing().entry(id, max_age, || self.live()).await?.and_then(|listed| listed.get()))
    }

    /// App `id` as of a young listing of the scope's live apps begun after Tether last wrote or read it,
    /// when there is one or it costs no more than reading each app waiting on one (see
    /// [`Listing::fresh`]); `None`: read it on its own (an app the listing lacks may be uninstalled).
    pub async fn fresh(&self, id: &str, max_age: Duration) -> Result<Option<App>> {
        let pages = |apps: usize| apps.div_ceil(SERVER_PAGE_SIZE);
        Ok(self.listing().fresh(id, max_age, pages, || self.live()).await?.and_then(|apps| apps.get(id)?.get()))
    }

    /// What a listing holds: the scope's live apps by id.
    async fn live(&self) -> Result<Vec<(String, Listed)>> {
        self.pages(&LIVE_STATES, |a| (a.id.clone(), Listed::of(&a.display_name, &a))).await
    }

    /// What the caller kept with [`keep_derived`](Self::keep_derived) for app `id` at this `marker`.
    pub fn derived(&self, id: &str, marker: &str) -> Option<Derived> {
        self.listing().detail(id, marker)
    }

    /// Keeps what the caller derived from app `id`'s details while its entry has this `marker` (its
    /// update time, which the platform bumps on any change of state, input, version or revision).
    pub fn keep_derived(&self, id: &str, marker: String, derived: Derived) {
        self.listing().keep_detail(id, marker, derived);
    }

    fn touch(&self, id: &str) {
        self.listing().touch(id);
    }

    /// A call in the scope; `rest` is built from constants and [`segment`]s.
    fn v1(&self, method: Method, route: &'static str, rest: &str) -> Result<Call> {
        let scope = self.scope.as_ref().map_err(Clone::clone)?;
        Ok(Call::new(method, route, format!("{scope}/{rest}")))
    }

    /// `GET /api/v1/config`: whether the token is accepted (`authorized`); a refused token is
    /// [`Error::Unauthorized`].
    pub async fn authorized(&self) -> Result<()> {
        let config: Value = self.http.json(Call::new(Method::GET, "/api/v1/config", "api/v1/config")).await?;
        match config.get("authorized").and_then(Value::as_bool) {
            Some(false) => Err(Error::Unauthorized("the platform does not accept the token".into())),
            _ => Ok(()),
        }
    }

    /// Apps of the scope in any of `states` (all states when empty), every page.
    pub async fn list(&self, states: &[&str]) -> Result<Vec<App>> {
        self.pages(states, |app| app).await
    }

    /// Every page of `list`, each app turned into what is kept with `keep` before the next page is asked
    /// for.
    async fn pages<U>(&self, states: &[&str], keep: impl Fn(App) -> U) -> Result<Vec<U>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let mut call = Call::new(Method::GET, "/apis/apps/v2/instances", "apis/apps/v2/instances");
            for (k, v) in &self.scope_query {
                call = call.query(k, v);
            }
            call = call.query("page", page);
            for state in states {
                call = call.query("states", state);
            }
            let answer: Page<App> = self.http.json(call).await?;
            out.extend(answer.items.into_iter().map(&keep));
            if page >= answer.pages {
                return Ok(out);
            }
            if page >= MAX_PAGES {
                return Err(too_many_pages("apps"));
            }
            page += 1;
        }
    }

    /// One app by id.
    pub async fn get(&self, id: &str) -> Result<App> {
        self.touch(id);
        self.http
            .json(Call::new(
                Method::GET,
                "/apis/apps/v2/instances/{id}",
                format!("apis/apps/v2/instances/{}", app_id(id)?),
            ))
            .await
    }

    /// Newer template versions per app, in request order (at most 100 ids per request).
    pub async fn upgrades(&self, ids: &[&str]) -> Result<Vec<Map<String, Value>>> {
        let mut out = Vec::new();
        for chunk in ids.chunks(100) {
            let mut call =
                Call::new(Method::GET, "/apis/apps/v2/instances/upgrades", "apis/apps/v2/instances/upgrades");
            for id in chunk {
                call = call.query("id", id);
            }
            out.extend(self.http.json::<Vec<Map<String, Value>>>(call).await?);
        }
        Ok(out)
    }

    /// The scope's live apps whose display name ends with the ownership `marker`, as of a listing begun
    /// after `not_before` and after this process's last [`install`](Self::install) with that marker: one
    /// listing serves the searches of every install that needs one (see [`Listing::since`]).
    pub async fn marked(&self, marker: &str, not_before: tokio::time::Instant) -> Result<Vec<App>> {
        let ours = |a: &Listed| a.key().ends_with(marker);
        let found = self.listing().since(marker, not_before, || self.live(), ours).await?;
        // Decoded: the few that carry the marker. One that does not decode is an error, not an absence: a
        // create on top of it could make a second app.
        found
            .iter()
            .map(|listed| {
                let kept = || Error::Decode(format!("the listed app {} does not decode as kept", listed.key()));
                listed.get().ok_or_else(kept)
            })
            .collect()
    }

    /// [`install`](Self::install) of an app whose display name ends with the ownership `marker`, recorded as
    /// an attempt however it ends, so that [`marked`](Self::marked) searches a listing taken after it.
    pub async fn install_marked(
        &self,
        marker: &str,
        template: &str,
        version: &str,
        input: &Value,
        display_name: &str,
    ) -> Result<App> {
        debug_assert!(display_name.ends_with(marker), "the marker ends the display name");
        let listing = self.listing();
        let _attempt = listing.attempting(marker);
        self.install(template, version, input, Some(display_name)).await
    }

    /// Installs an app; it starts queued. Not retried after a 5xx: list by display name to find it.
    pub async fn install(
        &self,
        template: &str,
        version: &str,
        input: &Value,
        display_name: Option<&str>,
    ) -> Result<App> {
        let mut body = json!({"template_name": template, "template_version": version, "input": input});
        if let Some(name) = display_name {
            body["display_name"] = json!(name);
        }
        let app: App =
            self.http.json(self.v1(Method::POST, "/apis/apps/v1/.../instances", "instances")?.json(&body)?).await?;
        self.touch(&app.id);
        Ok(app)
    }

    /// Reconfigures: a new revision; `input` replaces the whole input; `upgrade_to` changes the version.
    pub async fn configure(
        &self,
        id: &str,
        input: Option<&Value>,
        display_name: Option<&str>,
        upgrade_to: Option<&str>,
        comment: Option<&str>,
    ) -> Result<App> {
        let mut body = Map::new();
        if let Some(input) = input {
            body.insert("input".into(), input.clone());
        }
        if let Some(name) = display_name {
            body.insert("display_name".into(), json!(name));
        }
        if let Some(version) = upgrade_to {
            body.insert("template_version".into(), json!(version));
        }
        if let Some(comment) = comment {
            body.insert("comment".into(), json!(comment));
        }
        let call = self
            .v1(Method::PUT, "/apis/apps/v1/.../instances/{id}", &format!("instances/{}", app_id(id)?))?
            .json(&body)?;
        let configured = self.http.json(call.not_idempotent()).await;
        self.touch(id);
        configured
    }

    /// Starts uninstalling (`force` skips the graceful cleanup).
    pub async fn uninstall(&self, id: &str, force: bool) -> Result<()> {
        let mut call =
            self.v1(Method::DELETE, "/apis/apps/v1/.../instances/{id}", &format!("instances/{}", app_id(id)?))?;
        if force {
            call = call.query("force", "true");
        }
        let uninstalled = self.http.empty(call).await;
        // What was derived from its details goes now, not at the next listing (none comes once the scope's
        // last app is gone); an uninstalling app's update time moves, so it would not be read again anyway.
        self.listing().forget(id);
        uninstalled
    }

    /// The app's output parameters; `NotFound` until it has some.
    pub async fn output(&self, id: &str) -> Result<Map<String, Value>> {
        self.http
            .json(self.v1(
                Method::GET,
                "/apis/apps/v1/.../instances/{id}/output",
                &format!("instances/{}/output", app_id(id)?),
            )?)
            .await
    }

    /// Values an app (or, with `None`, every app of the scope) publishes, optionally of one type.
    pub async fn values(&self, id: Option<&str>, kind: Option<&str>) -> Result<Vec<Map<String, Value>>> {
        let mut call = match id {
            Some(id) => self.v1(
                Method::GET,
                "/apis/apps/v1/.../instances/{id}/values",
                &format!("instances/{}/values", app_id(id)?),
            )?,
            None => self.v1(Method::GET, "/apis/apps/v1/.../instances/values", "instances/values")?,
        };
        if let Some(kind) = kind {
            call = call.query("type", kind);
        }
        Ok(self.http.json::<Page<Map<String, Value>>>(call).await?.items)
    }

    /// The app's events, newest first, every page.
    pub async fn events(&self, id: &str) -> Result<Vec<Map<String, Value>>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let mut call = self.v1(
                Method::GET,
                "/apis/apps/v1/.../instances/{id}/events",
                &format!("instances/{}/events", app_id(id)?),
            )?;
            if page > 1 {
                call = call.query("page", page);
            }
            let answer: Page<Map<String, Value>> = self.http.json(call).await?;
            out.extend(answer.items);
            if page >= answer.pages {
                return Ok(out);
            }
            if page >= MAX_PAGES {
                return Err(too_many_pages("events"));
            }
            page += 1;
        }
    }

    /// Configuration revisions, newest first.
    pub async fn revisions(&self, id: &str) -> Result<Vec<Revision>> {
        let path = format!("apis/apps/v2/instances/{}/revisions", app_id(id)?);
        self.http.json(Call::new(Method::GET, "/apis/apps/v2/instances/{id}/revisions", path)).await
    }

    /// Rolls back to revision `n` (a new revision with n's input).
    pub async fn rollback(&self, id: &str, n: i64, comment: Option<&str>) -> Result<App> {
        let body = comment.map_or_else(|| json!({}), |c| json!({ "comment": c }));
        let route = "/apis/apps/v1/.../instances/{id}/revisions/{n}/rollback";
        let rolled_back = self
            .http
            .json(
                self.v1(Method::POST, route, &format!("instances/{}/revisions/{n}/rollback", app_id(id)?))?
                    .json(&body)?,
            )
            .await;
        self.touch(id);
        rolled_back
    }

    /// `{display_name, input}` now, or of revision `n`.
    pub async fn input(&self, id: &str, revision: Option<i64>) -> Result<Map<String, Value>> {
        let call = match revision {
            None => self.v1(
                Method::GET,
                "/apis/apps/v1/.../instances/{id}/input",
                &format!("instances/{}/input", app_id(id)?),
            )?,
            Some(n) => self.v1(
                Method::GET,
                "/apis/apps/v1/.../instances/{id}/revisions/{n}/input",
                &format!("instances/{}/revisions/{n}/input", app_id(id)?),
            )?,
        };
        self.http.json(call).await
    }

    /// The template catalogue (latest version of each).
    pub async fn templates(&self) -> Result<Vec<Map<String, Value>>> {
        self.http.json(self.v1(Method::GET, "/apis/apps/v1/.../templates", "templates")?).await
    }

    /// Versions of one template.
    pub async fn template_versions(&self, name: &str) -> Result<Vec<Map<String, Value>>> {
        let path = format!("templates/{}", segment("Apolo template name", name)?);
        self.http.json(self.v1(Method::GET, "/apis/apps/v1/.../templates/{name}", &path)?).await
    }

    /// One template version (`latest` resolves), with its input schema.
    pub async fn template(&self, name: &str, version: &str) -> Result<Map<String, Value>> {
        let route = "/apis/apps/v1/.../templates/{name}/{version}";
        let path = format!(
            "templates/{}/{}",
            segment("Apolo template name", name)?,
            segment("Apolo template version", version)?
        );
        self.http.json(self.v1(Method::GET, route, &path)?).await
    }

    /// Polls until the app reaches one of `wanted`; `errored` (unless wanted) is a [`Error::Platform`].
    pub async fn wait(&self, id: &str, wanted: &[&str], interval: Duration, timeout: Duration) -> Result<App> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let app = self.get(id).await?;
            if wanted.contains(&app.state.as_str()) {
                return Ok(app);
            }
            if app.state == "errored" {
                return Err(Error::Platform(self.http.clean(&format!("app {} errored", app.display_name))));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let why = format!("app {id} still {} after {timeout:?}", app.state);
                return Err(Error::Transient(self.http.clean(&why)));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

// === day 2: reads for `kubectl tether` ===

impl Client {
    /// Where the log stream of app `id` in `cluster` is served, as the SDK finds it: the cluster's
    /// `monitoring_url` from `/api/v1/config` (else the API origin) with its path replaced by
    /// `/api/v1/apps/{id}/log_ws` and the scheme `ws`/`wss` (shared/platforms/apolo.md §2.1, §3.2).
    pub async fn log_stream_url(&self, cluster: &str, id: &str) -> Result<url::Url> {
        let config: Value = self.http.json(Call::new(Method::GET, "/api/v1/config", "api/v1/config")).await?;
        let monitoring = config
            .get("clusters")
            .and_then(Value::as_array)
            .and_then(|clusters| clusters.iter().find(|c| c.get("name").and_then(Value::as_str) == Some(cluster)))
            .and_then(|c| c.get("monitoring_url")?.as_str()?.parse::<url::Url>().ok());
        let mut url = monitoring.unwrap_or_else(|| self.http.endpoint().clone());
        let scheme = if url.scheme() == "https" { "wss" } else { "ws" };
        url.set_scheme(scheme)
            .map_err(|()| Error::Decode(format!("monitoring URL {url} cannot be a WebSocket URL")))?;
        url.set_path(&format!("/api/v1/apps/{}/log_ws", app_id(id)?));
        url.set_query(None);
        Ok(url)
    }
}
