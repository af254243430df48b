//! Peak webapps client (shared/platforms/peak.md): the raw token in `Authorization`, page-number lists,
//! and the asynchronous lifecycle CREATING → AVAILABLE, DEPLOYING → AVAILABLE, DELETING → gone, with the
//! failure states CREATE_FAILED and DELETE_FAILED.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::http::{Call, Dialect, Http, HttpConfig, MAX_PAGES, Secret, segment, too_many_pages};
use crate::listing::{Keyed, Listing};

/// A webapp as `describe` and list items return it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Webapp {
    /// Server id (UUID).
    pub id: String,
    /// Unique name.
    pub name: String,
    /// CREATING, DEPLOYING, AVAILABLE, DELETING, CREATE_FAILED or DELETE_FAILED.
    pub status: String,
    /// Image and the version deployed.
    #[serde(default)]
    pub image_details: Option<ImageDetails>,
    /// Instance type.
    #[serde(default)]
    pub resources: Option<Resources>,
    /// Public URL.
    #[serde(default)]
    pub application_url: Option<String>,
    /// Every other field, as the platform sent it.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

/// Image of a webapp.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageDetails {
    /// Image id.
    pub image_id: i64,
    /// Version id; the platform picks the latest ready one when unset. Unset is sent as an explicit
    /// `null`, not left out: the platform merges `imageDetails` per key, so a PATCH of a new `imageId`
    /// without `versionId` would keep the old image's version (and fail: that image has no such version).
    #[serde(default)]
    pub version_id: Option<i64>,
}

/// Resources of a webapp.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Resources {
    /// Instance type id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type_id: Option<i64>,
}

/// Create body, or (all optional but `name` ignored) a partial update: only the fields set are sent.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WebappFields {
    /// Name (create only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Title.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// Description.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image (required on create).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_details: Option<ImageDetails>,
    /// Resources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Session stickiness.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_stickiness: Option<bool>,
    /// Scale to zero when idle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_to_zero: Option<bool>,
}

/// One page of `list`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page {
    /// The webapps of this page.
    pub webapps: Vec<Webapp>,
    /// Matching webapps on all pages.
    #[serde(default)]
    pub webapps_count: u64,
    /// Number of pages.
    pub page_count: u64,
}

#[derive(Deserialize)]
struct IdOnly {
    id: String,
}

/// A Peak client for one API key and base URL (`https://service.peak.ai`).
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<Http>,
    /// The account's webapps as last listed: list entries are whole webapps, so a drift check needs
    /// nothing else.
    listing: Arc<Listing<Listed>>,
}

/// A webapp as a listing keeps it: keyed by its name, which a delete's search by name compares.
pub type Listed = Keyed<Webapp>;

fn message(body: &Value) -> Option<String> {
    ["message", "detail"].iter().find_map(|k| body.get(*k)?.as_str()).map(str::to_string)
}

/// Webapps asked for per page of a listing (as the SDK's name search does).
const PAGE_SIZE: u64 = 100;

const WEBAPPS: &str = "webapps/api/v1/webapps/";
const WEBAPP: &str = "/webapps/api/v1/webapps/{webappId}";

/// The path of one webapp; its id (from the platform, or from a user's annotation) is refused when it
/// could leave its place in the path.
fn webapp_path(id: &str) -> Result<String> {
    Ok(format!("{WEBAPPS}{}", segment("Peak webapp id", id)?))
}

impl Client {
    /// A client for `config.base_url` with an API key (sent as is in `Authorization`).
    pub fn new(config: HttpConfig, api_key: &Secret) -> Result<Self> {
        let dialect = Dialect {
            platform: "peak",
            auth_headers: vec![(reqwest::header::AUTHORIZATION, api_key.clone())],
            message,
            retry_header: None,
            redact: Vec::new(),
        };
        Ok(Self { http: Http::new(config, dialect)?, listing: Arc::default() })
    }

    /// `GET /tenant-management/.../tenant-metadata`: the key is accepted.
    pub async fn tenant_metadata(&self) -> Result<Map<String, Value>> {
        let path = "tenant-management/api/v1/external/tenants/tenant-metadata";
        self.http.json(Call::new(Method::GET, "/tenant-management/api/v1/external/tenants/tenant-metadata", path)).await
    }

    /// One page of `GET /webapps/api/v1/webapps/` (1-based page), filtered by statuses (any) and a name
    /// search (substring, not exact).
    pub async fn list(&self, page: u64, page_size: u64, statuses: &[&str], search: Option<&str>) -> Result<Page> {
        let mut call = Call::new(Method::GET, "/webapps/api/v1/webapps/", WEBAPPS)
            .query("pageNumber", page)
            .query("pageSize", page_size);
        for status in statuses {
            call = call.query("status", status);
        }
        if let Some(term) = search {
            call = call.query("searchTerm", term);
        }
        self.http.json(call).await
    }

    /// Every page of `list`.
    pub async fn list_all(&self, statuses: &[&str], search: Option<&str>) -> Result<Vec<Webapp>> {
        self.pages(statuses, search, |webapp| webapp).await
    }

    /// Every page of `list`, each webapp turned into what is kept with `keep` before the next page is
    /// asked for.
    async fn pages<U>(&self, statuses: &[&str], search: Option<&str>, keep: impl Fn(Webapp) -> U) -> Result<Vec<U>> {
        let mut out = Vec::new();
        let mut page = 1;
        loop {
            let answer = self.list(page, PAGE_SIZE, statuses, search).await?;
            out.extend(answer.webapps.into_iter().map(&keep));
            if page >= answer.page_count {
                return Ok(out);
            }
            if page >= MAX_PAGES {
                return Err(too_many_pages("webapps"));
            }
            page += 1;
        }
    }

    /// The webapp named exactly `name`, if any (the platform's search is a substring match).
    pub async fn find_by_name(&self, name: &str) -> Result<Option<Webapp>> {
        Ok(self.list_all(&[], Some(name)).await?.into_iter().find(|w| w.name == name))
    }

    /// The webapp `id` as listed at most `max_age` ago (every page of the account's webapps, one listing
    /// shared by every caller), or `None` when a listing cannot tell (see [`Listing::entry`]).
    pub async fn listed(&self, id: &str, max_age: Duration) -> Result<Option<Webapp>> {
        Ok(self.listing.entry(id, max_age, || self.entries()).await?.and_then(|listed| listed.get()))
    }

    /// The account's webapps, by id, as listed at most `max_age` ago and after `id` was last written or
    /// read on its own, when that costs no more than reading the webapps waiting on it one by one (see
    /// [`Listing::fresh`]); `None`: read `id` on its own.
    pub async fn fresh(&self, id: &str, max_age: Duration) -> Result<Option<Arc<HashMap<String, Listed>>>> {
        self.listing.fresh(id, max_age, |items| items.div_ceil(PAGE_SIZE as usize), || self.entries()).await
    }

    /// What a listing holds: every webapp of the account, by id.
    async fn entries(&self) -> Result<Vec<(String, Listed)>> {
        self.pages(&[], None, |w| (w.id.clone(), Listed::of(&w.name, &w))).await
    }

    /// `POST`: starts creating a webapp; returns its id.
    pub async fn create(&self, fields: &WebappFields) -> Result<String> {
        let call = Call::new(Method::POST, "/webapps/api/v1/webapps/", WEBAPPS).json(fields)?;
        // An ambiguous failure leaves an object the listing has not seen: the caller finds it by name.
        let id = self.http.json::<IdOnly>(call).await?.id;
        self.listing.touch(&id);
        Ok(id)
    }

    /// `GET /webapps/{id}`.
    pub async fn describe(&self, id: &str) -> Result<Webapp> {
        self.listing.touch(id);
        self.http.json(Call::new(Method::GET, WEBAPP, webapp_path(id)?)).await
    }

    /// `PATCH /webapps/{id}`: changes the fields set; a change of image, version, instance type,
    /// stickiness or scale-to-zero redeploys.
    pub async fn update(&self, id: &str, fields: &WebappFields) -> Result<()> {
        let updated = self.http.empty(Call::new(Method::PATCH, WEBAPP, webapp_path(id)?).json(fields)?).await;
        self.listing.touch(id);
        updated
    }

    /// `DELETE /webapps/{id}`: starts the teardown.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let deleted = self.http.empty(Call::new(Method::DELETE, WEBAPP, webapp_path(id)?)).await;
        self.listing.touch(id);
        deleted
    }

    /// Polls `describe` every `interval` until the webapp is AVAILABLE (or gone, with `gone_ok`), failing
    /// with [`Error::Platform`] on CREATE_FAILED/DELETE_FAILED and [`Error::Transient`] at the deadline.
    pub async fn wait(&self, id: &str, gone_ok: bool, interval: Duration, timeout: Duration) -> Result<Option<Webapp>> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            match self.describe(id).await {
                Ok(w) if w.status == "AVAILABLE" && !gone_ok => return Ok(Some(w)),
                Ok(w) if w.status.ends_with("_FAILED") => {
                    return Err(Error::Platform(self.http.clean(&format!("webapp {} is {}", w.name, w.status))));
                }
                Err(Error::NotFound(_)) if gone_ok => return Ok(None),
                Err(e) => return Err(e),
                Ok(_) => {}
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Error::Transient(
                    self.http.clean(&format!("webapp {id} did not settle within {timeout:?}")),
                ));
            }
            tokio::time::sleep(interval).await;
        }
    }
}
