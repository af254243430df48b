//! Iguazio management API client (shared/platforms/iguazio.md): the tenant's app-services manifest, read
//! and written whole, each write answered by a background job to poll. Auth is the access key as a
//! `session` cookie plus `Authorization: Basic user:key`, as the vendor SDK sends them; errors are
//! `{"errors": [{"status", "detail"}]}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::http::{Call, Dialect, Http, HttpConfig, Secret, segment};

mod writer;
pub use writer::{Change, ManifestWriter, OWNER, OWNER_UID, Owner, RESTART_TOKEN, WriterTiming};

/// The tenant's app-services manifest: every attribute as the platform sent it (a write sends them all
/// back, so nothing may be dropped), with the services as a typed list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The app services, each `{spec, meta, status}`.
    pub app_services: Vec<AppService>,
    /// `state`, `running_modification_job`, `last_error` and the rest, verbatim.
    #[serde(flatten)]
    pub attributes: Map<String, Value>,
    /// The services' positions by name, made on the first lookup: one shared read of a tenant's manifest
    /// answers every service of the tenant, so a lookup must not scan them all.
    #[serde(skip)]
    index: ServiceIndex,
}

/// `GET /api/app_services_manifests` answers `{"data": [{"attributes": <manifest>, ...}]}`.
#[derive(Deserialize)]
struct ManifestAnswer<M> {
    #[serde(default = "Vec::new")]
    data: Vec<ManifestEntry<M>>,
}

#[derive(Deserialize)]
struct ManifestEntry<M> {
    attributes: M,
}

/// A read of the manifest to share among the readers of a tenant (its resources' observes and drift
/// checks), each service kept as the JSON text the platform sent and decoded when asked for. A tenant's
/// manifest holds every app service of the tenant, and each read of it stays alive while a reader uses
/// it: parsed into `Map`s, a service takes several times the room of its text. Every entry is decoded
/// once when the read arrives, so a manifest [`Manifest`] would refuse is refused here too.
#[derive(Debug, Default)]
pub struct ManifestRead {
    /// `state`, `running_modification_job`, `last_error` and the rest, verbatim.
    pub attributes: Map<String, Value>,
    services: Vec<Box<serde_json::value::RawValue>>,
    /// The name of each service, by position.
    names: Vec<Box<str>>,
    /// The position of the first service of each name.
    index: std::collections::HashMap<Box<str>, usize>,
}

impl ManifestRead {
    /// The service named `name` (the first, should the platform list it twice), decoded.
    pub fn service(&self, name: &str) -> Option<AppService> {
        let text = self.services.get(*self.index.get(name)?)?;
        // Decoded once already when the read arrived (see `Deserialize`): this cannot fail.
        serde_json::from_str(text.get()).ok()
    }

    /// Each service's name and its text, in the manifest's order: what a write that changes a few entries
    /// sends back of the others (see `writer::Edited`).
    pub(crate) fn entries(&self) -> impl Iterator<Item = (&str, &serde_json::value::RawValue)> {
        self.names.iter().map(|name| &**name).zip(self.services.iter().map(|text| &**text))
    }

    /// How many services the manifest lists.
    pub fn len(&self) -> usize {
        self.services.len()
    }

    /// Whether it lists none.
    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The apply job in flight, if any.
    pub fn running_job(&self) -> Option<&str> {
        running_job(&self.attributes)
    }
}

impl<'de> Deserialize<'de> for ManifestRead {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = ManifestRead;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an app-services manifest")
            }

            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> std::result::Result<ManifestRead, M::Error> {
                use serde::de::Error as _;
                let mut read = ManifestRead::default();
                let mut listed = false;
                while let Some(key) = map.next_key::<String>()? {
                    if key != "app_services" {
                        read.attributes.insert(key, map.next_value()?);
                        continue;
                    }
                    let services: Vec<Box<serde_json::value::RawValue>> = map.next_value()?;
                    read.index.clear();
                    read.names.clear();
                    for (position, text) in services.iter().enumerate() {
                        let service: AppService = serde_json::from_str(text.get())
                            .map_err(|e| M::Error::custom(format!("app_services[{position}]: {e}")))?;
                        let name: Box<str> = service.name().into();
                        read.index.entry(name.clone()).or_insert(position);
                        read.names.push(name);
                    }
                    read.services = services;
                    listed = true;
                }
                if !listed {
                    return Err(M::Error::missing_field("app_services"));
                }
                Ok(read)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

fn running_job(attributes: &Map<String, Value>) -> Option<&str> {
    attributes.get("running_modification_job").and_then(Value::as_str).filter(|j| !j.is_empty())
}

/// Positions of [`Manifest::app_services`] by name. Not part of the manifest's value (equal always) and
/// not copied with it (a copy may be edited); a lookup checks what it finds, so a list edited after the
/// index was made is still answered right.
#[derive(Default)]
struct ServiceIndex(std::sync::OnceLock<(usize, std::collections::HashMap<String, usize>)>);

impl Clone for ServiceIndex {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for ServiceIndex {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ServiceIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceIndex")
    }
}

/// One app service of the manifest.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AppService {
    /// Desired state; `name` and `kind` are always there.
    pub spec: Map<String, Value>,
    /// Labels and other metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Value>,
    /// Observed state (read-only; the platform ignores it on write).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Map<String, Value>>,
}

impl AppService {
    /// `spec.name`.
    pub fn name(&self) -> &str {
        self.spec.get("name").and_then(Value::as_str).unwrap_or_default()
    }

    /// The restart request last acted on (`meta.annotations["tether.dev/restart"]`).
    pub fn restart_token(&self) -> Option<&str> {
        self.meta.as_ref()?.get("annotations")?.get(RESTART_TOKEN)?.as_str()
    }

    /// The uid of the owner the entry belongs to (`meta.annotations["tether.dev/owner-uid"]`).
    pub fn owner_uid(&self) -> Option<&str> {
        self.annotation(OWNER_UID)
    }

    /// The name of that owner (`meta.annotations["tether.dev/owner"]`).
    pub fn owner(&self) -> Option<&str> {
        self.annotation(OWNER)
    }

    fn annotation(&self, key: &str) -> Option<&str> {
        self.meta.as_ref()?.get("annotations")?.get(key)?.as_str().filter(|v| !v.is_empty())
    }

    /// `meta.labels`.
    pub fn labels(&self) -> Option<&Map<String, Value>> {
        self.meta.as_ref()?.get("labels")?.as_object()
    }

    /// `status.state`, e.g. ready, provisioning, error.
    pub fn state(&self) -> Option<&str> {
        self.status.as_ref()?.get("state")?.as_str()
    }
}

impl Manifest {
    /// The service named `name` (the first, should the platform list it twice).
    pub fn service(&self, name: &str) -> Option<&AppService> {
        let (len, index) = self.index.0.get_or_init(|| {
            let positions = self.app_services.iter().enumerate().map(|(i, s)| (s.name().to_string(), i));
            (self.app_services.len(), positions.rev().collect())
        });
        let indexed = index.get(name).and_then(|i| self.app_services.get(*i));
        if *len == self.app_services.len()
            && let Some(found) = indexed.filter(|s| s.name() == name)
        {
            return Some(found);
        }
        // Not indexed (a name the manifest lacks: a service about to be created), or edited since.
        self.app_services.iter().find(|s| s.name() == name)
    }

    /// The apply job in flight, if any.
    pub fn running_job(&self) -> Option<&str> {
        running_job(&self.attributes)
    }
}

/// A background job (`GET /api/jobs/{id}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Job id.
    pub id: String,
    /// created, dispatched, in_progress, completed, canceled, republishing or failed.
    pub state: String,
    /// `""` on success; on failure a JSON string `{"message", "status"}`.
    pub result: String,
}

impl Job {
    /// Whether the job has ended.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state.as_str(), "completed" | "failed" | "canceled")
    }
}

/// An Iguazio client for one user's access key at a dashboard URL.
#[derive(Clone, Debug)]
pub struct Client {
    http: Arc<Http>,
}

fn message(body: &Value) -> Option<String> {
    let errors = body.get("errors")?.as_array()?;
    let details: Vec<&str> = errors.iter().filter_map(|e| e.get("detail")?.as_str()).collect();
    (!details.is_empty()).then(|| details.join("; "))
}

fn job_of(envelope: &Value) -> Result<Job> {
    let data = &envelope["data"];
    let attrs = &data["attributes"];
    let id = data["id"].as_str().ok_or_else(|| Error::Decode("job without an id".into()))?;
    Ok(Job {
        id: id.to_string(),
        state: attrs["state"].as_str().unwrap_or_default().to_string(),
        result: attrs["result"].as_str().unwrap_or_default().to_string(),
    })
}

impl Client {
    /// A client for the dashboard at `config.base_url`, authenticating as `username` with `access_key`.
    pub fn new(config: HttpConfig, username: &str, access_key: &Secret) -> Result<Self> {
        use base64::Engine as _;
        // The cookie the vendor SDK sends: `j:` then JSON with a space after the colon, not URL-encoded.
        let quoted = serde_json::to_string(access_key.expose()).unwrap_or_default();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{}", access_key.expose()));
        let dialect = Dialect {
            platform: "iguazio",
            auth_headers: vec![
                (reqwest::header::COOKIE, Secret::new(format!(r#"session=j:{{"sid": {quoted}}}"#))),
                (reqwest::header::AUTHORIZATION, Secret::new(format!("Basic {basic}"))),
            ],
            message,
            retry_header: None,
            // The headers carry the key only inside JSON and base64.
            redact: vec![access_key.clone()],
        };
        Ok(Self { http: Http::new(config, dialect)? })
    }

    /// Logs in with a password (`POST /api/sessions`) and returns a client that sends the session cookie
    /// the platform set.
    pub async fn login(config: HttpConfig, username: &str, password: &Secret) -> Result<Self> {
        // The password goes in the body: a platform echoing it must not put it into an error.
        let anonymous = Dialect {
            platform: "iguazio",
            auth_headers: Vec::new(),
            message,
            retry_header: None,
            redact: vec![password.clone()],
        };
        let http = Http::new(config.clone(), anonymous)?;
        let body = json!({"data": {"type": "session", "attributes": {
            "username": username, "password": password.expose(), "plane": "control"}, "relationships": {}}});
        let (headers, _) =
            http.send_full(Call::new(Method::POST, "/api/sessions", "api/sessions").json(&body)?).await?;
        let cookie = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.split(';').next().filter(|c| c.trim_start().starts_with("session=")))
            .ok_or_else(|| Error::Decode("login answered without a session cookie".into()))?;
        let dialect = Dialect {
            platform: "iguazio",
            auth_headers: vec![(reqwest::header::COOKIE, Secret::new(cookie.trim()))],
            message,
            retry_header: None,
            redact: Vec::new(),
        };
        Ok(Self { http: Http::new(config, dialect)? })
    }

    /// The platform version (`GET /api/tunnel/igz0.version.0/external_versions/igz0`).
    pub async fn version(&self) -> Result<String> {
        let route = "/api/tunnel/{tunnel}/external_versions/{node}";
        let answer: Value =
            self.http.json(Call::new(Method::GET, route, "api/tunnel/igz0.version.0/external_versions/igz0")).await?;
        answer["data"]["attributes"]["external"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Decode("no version".into()))
    }

    /// Verifies the credentials; returns `(username, tenant id)`.
    pub async fn verify(&self) -> Result<(String, String)> {
        let route = "/api/sessions/verifications/planes/any/internal";
        let answer: Value = self.http.json(Call::new(Method::POST, route, route).idempotent()).await?;
        let attrs = &answer["data"]["attributes"];
        let user = attrs["username"].as_str().unwrap_or_default().to_string();
        let tenant = attrs["context"]["authentication"]["tenant_id"].as_str().unwrap_or_default().to_string();
        Ok((user, tenant))
    }

    /// `GET /api/app_services_manifests`: the tenant's one manifest, to edit.
    pub async fn manifest(&self) -> Result<Manifest> {
        self.get_manifest().await
    }

    /// `GET /api/app_services_manifests`: the tenant's one manifest, to read and share
    /// ([`ManifestRead`]: each service kept as its text).
    pub async fn manifest_read(&self) -> Result<ManifestRead> {
        self.get_manifest().await
    }

    async fn get_manifest<M: serde::de::DeserializeOwned>(&self) -> Result<M> {
        let route = "/api/app_services_manifests";
        // Decoded straight into its type: no `Value` tree of the whole answer, nor a copy of it.
        let answer: ManifestAnswer<M> = self.http.json(Call::new(Method::GET, route, route)).await?;
        let manifest = answer.data.into_iter().next().map(|m| m.attributes);
        manifest.ok_or_else(|| Error::Decode("no manifest in the answer".into()))
    }

    /// `PUT /api/app_services_manifests`: writes the whole manifest; returns the apply job. The write is
    /// not retried after a 5xx: the job may have started, and re-reading the manifest tells.
    pub async fn put_manifest(&self, manifest: &impl Serialize) -> Result<Job> {
        let route = "/api/app_services_manifests";
        // Serialised from the manifest itself: a `json!` body would first copy every service into a
        // `Value` tree.
        #[derive(Serialize)]
        struct Body<'a, M> {
            data: Data<'a, M>,
        }
        #[derive(Serialize)]
        struct Data<'a, M> {
            r#type: &'static str,
            attributes: &'a M,
            relationships: Map<String, Value>,
        }
        let data = Data { r#type: "app_services_manifest", attributes: manifest, relationships: Map::new() };
        let call = Call::new(Method::PUT, route, route).json(&Body { data })?.not_idempotent();
        job_of(&self.http.json::<Value>(call).await?)
    }

    /// `GET /api/jobs/{id}`.
    pub async fn job(&self, id: &str) -> Result<Job> {
        let path = format!("api/jobs/{}", segment("Iguazio job id", id)?);
        job_of(&self.http.json::<Value>(Call::new(Method::GET, "/api/jobs/{job_id}", path)).await?)
    }

    /// Polls the job until it ends; a failed or canceled job is a [`Error::Platform`] with its message.
    pub async fn wait_job(&self, id: &str, interval: Duration, timeout: Duration) -> Result<Job> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let job = self.job(id).await?;
            if job.is_terminal() {
                if job.state == "completed" {
                    return Ok(job);
                }
                let why = serde_json::from_str::<Value>(&job.result)
                    .ok()
                    .and_then(|r| r["message"].as_str().map(str::to_string))
                    .unwrap_or_else(|| job.result.clone());
                return Err(Error::Platform(self.http.clean(&format!("job {id} {}: {why}", job.state))));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let why = format!("job {id} still {} after {timeout:?}", job.state);
                return Err(Error::Transient(self.http.clean(&why)));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

// === day 2: reads for `kubectl tether` ===

impl Client {
    /// `GET /api/jobs/{id}`: every attribute of the job as the platform sent it (`state`, `kind`, `result`,
    /// `created_at`, `updated_at`, ...).
    pub async fn job_attributes(&self, id: &str) -> Result<Map<String, Value>> {
        let path = format!("api/jobs/{}", segment("Iguazio job id", id)?);
        let answer: Value = self.http.json(Call::new(Method::GET, "/api/jobs/{job_id}", path)).await?;
        match answer.pointer("/data/attributes") {
            Some(Value::Object(attributes)) => Ok(attributes.clone()),
            _ => Err(Error::Decode("a job answer without data.attributes".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, image: &str) -> AppService {
        let spec = json!({"name": name, "kind": "jupyter", "image": image});
        AppService { spec: spec.as_object().cloned().unwrap_or_default(), ..Default::default() }
    }

    #[test]
    fn a_lookup_by_name_finds_the_first_of_that_name_also_after_the_list_is_edited() {
        let mut manifest =
            Manifest { app_services: vec![named("a", "1"), named("b", "1"), named("a", "2")], ..Default::default() };
        assert_eq!(manifest.service("a").map(|s| &s.spec["image"]), Some(&json!("1")), "the first");
        assert!(manifest.service("c").is_none());
        manifest.app_services.retain(|s| s.name() != "b");
        manifest.app_services.push(named("c", "1"));
        assert!(manifest.service("c").is_some(), "added after the index was made, same length");
        assert!(manifest.service("b").is_none(), "removed");
        manifest.app_services.swap(0, 1);
        assert_eq!(manifest.service("a").map(|s| &s.spec["image"]), Some(&json!("2")), "moved");
        assert_eq!(manifest.clone(), manifest, "the index is not part of the value");
    }

    /// A shared read answers as the edited manifest does: the same entries (the first of a name), the
    /// attributes verbatim, and the same refusals.
    #[test]
    fn a_shared_read_decodes_each_service_as_the_manifest_does() {
        let answer = json!({
            "app_services": [
                {"spec": {"name": "a", "kind": "jupyter", "image": "1", "extra": {"deep": [1, null]}},
                 "meta": {"annotations": {"tether.dev/owner-uid": "u"}}, "status": {"state": "ready"}},
                {"spec": {"name": "b", "kind": "shell"}},
                {"spec": {"name": "a", "kind": "jupyter", "image": "2"}},
            ],
            "state": "ready", "running_modification_job": "job-1", "last_error": null, "tenant_id": "t",
        });
        let text = answer.to_string();
        let read: ManifestRead = serde_json::from_str(&text).unwrap();
        let manifest: Manifest = serde_json::from_str(&text).unwrap();
        assert_eq!(read.len(), 3);
        for name in ["a", "b", "c"] {
            assert_eq!(read.service(name).as_ref(), manifest.service(name), "{name}");
        }
        assert_eq!(read.service("a").unwrap().owner_uid(), Some("u"));
        assert_eq!(read.attributes, manifest.attributes);
        assert_eq!((read.running_job(), manifest.running_job()), (Some("job-1"), Some("job-1")));

        for refused in [
            json!({"state": "ready"}),
            json!({"app_services": null}),
            json!({"app_services": [{"spec": "not an object"}]}),
            json!({"app_services": [{"meta": {}}]}),
        ] {
            let text = refused.to_string();
            assert!(serde_json::from_str::<Manifest>(&text).is_err(), "the manifest refuses {refused}");
            assert!(serde_json::from_str::<ManifestRead>(&text).is_err(), "so does the read: {refused}");
        }
    }
}
