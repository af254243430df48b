//! Iguazio management API simulator (shared/platforms/iguazio.md): one app-services manifest per tenant,
//! read and written whole (JSON:API envelopes, snake_case), each accepted PUT starting a background job
//! that settles the touched services after the configured delay. Auth is the `session` cookie
//! (`j:{"sid": "<access key>"}`, raw or URL-encoded, possibly repeated), `Authorization: Basic`, or a
//! session from `POST /api/sessions`. Errors are `{"errors": [{"status", "detail"}], "meta": {"ctx"}}`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::control::{self, Control};
use crate::read_json;

/// The user the simulator knows.
pub const DEFAULT_USERNAME: &str = "admin";
/// That user's access key.
pub const DEFAULT_ACCESS_KEY: &str = "test-key";
/// That user's password, for `POST /api/sessions`.
pub const DEFAULT_PASSWORD: &str = "test-password";
/// The platform version the handshake reports (≥ 3.5.3: scale-from-zero uses `serviceOwnerEdit`).
const VERSION: &str = "3.6.0";
const TENANT: &str = "default-tenant";

/// Simulator state and settings.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<Store>>,
    delay: Duration,
    tenant_id: Arc<str>,
    control: Control,
}

#[derive(Default)]
struct Store {
    manifest: Map<String, Value>,
    services: Vec<Value>,
    jobs: BTreeMap<String, Job>,
    sessions: BTreeSet<String>,
    /// Services whose next apply fails (`/_sim/fail`).
    doomed: BTreeSet<String>,
}

struct Job {
    attributes: Map<String, Value>,
    completes_at: Instant,
    /// Service name → the state it settles in.
    touched: Vec<(String, String)>,
}

fn render_error(status: StatusCode, message: &str) -> Response {
    let ctx = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({"errors": [{"status": status.as_u16(), "detail": message}], "meta": {"ctx": ctx}});
    (status, Json(body)).into_response()
}

/// An Iguazio error.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render_error(self.0, &self.1)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

fn fresh_manifest() -> Map<String, Value> {
    let attributes = json!({
        "cluster_name": TENANT, "tenant_name": TENANT, "state": "ready", "last_error": "",
        "last_modification_job": "", "running_modification_job": "", "apply_services_mode": "default",
        "force_apply_all_mode": "disabled",
    });
    attributes.as_object().cloned().unwrap_or_default()
}

impl SimState {
    /// A simulator whose apply jobs take `delay`.
    pub fn new(delay: Duration) -> Self {
        let state = Self {
            inner: Arc::default(),
            delay,
            tenant_id: uuid::Uuid::new_v4().to_string().into(),
            control: Control::new(render_error, None),
        };
        state.reset();
        state
    }

    fn reset(&self) {
        let mut store = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *store = Store { manifest: fresh_manifest(), ..Store::default() };
        store.manifest.insert("tenant_id".into(), json!(&*self.tenant_id));
    }

    /// The counters and faults of this simulator.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// What a client needs to know of the seeded tenant (the endpoints file's `seeded`).
    pub fn seeded() -> Value {
        json!({"tenant": TENANT, "password": DEFAULT_PASSWORD, "version": VERSION})
    }

    /// The store, with a running job completed first if its time has come.
    fn lock(&self) -> MutexGuard<'_, Store> {
        let mut store = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let running = store.manifest["running_modification_job"].as_str().unwrap_or_default().to_string();
        if !running.is_empty() && store.jobs.get(&running).is_some_and(|j| Instant::now() >= j.completes_at) {
            complete_job(&mut store, &running);
        }
        store
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let unauthorized = || ApiError(StatusCode::UNAUTHORIZED, "Unauthorized: invalid or missing credentials".into());
        let sids = headers
            .get_all("cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().strip_prefix("session="))
            .filter_map(session_sid);
        let store = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for sid in sids {
            if sid == DEFAULT_ACCESS_KEY || store.sessions.contains(&sid) {
                return Ok(());
            }
        }
        let basic = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Basic "));
        if let Some(basic) = basic {
            use base64::Engine as _;
            let decoded = base64::engine::general_purpose::STANDARD.decode(basic.trim()).map_err(|_| unauthorized())?;
            let decoded = String::from_utf8(decoded).map_err(|_| unauthorized())?;
            if decoded.split_once(':') == Some((DEFAULT_USERNAME, DEFAULT_ACCESS_KEY)) {
                return Ok(());
            }
        }
        Err(unauthorized())
    }
}

/// `j:{"sid": "<sid>"}`, raw or URL-encoded → `<sid>`.
fn session_sid(cookie: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(cookie).decode_utf8().ok()?;
    let json = decoded.strip_prefix("j:")?;
    serde_json::from_str::<Value>(json).ok()?.get("sid")?.as_str().map(str::to_string)
}

/// Settles the services a job touched and closes the job and the manifest's apply.
fn complete_job(store: &mut Store, job_id: &str) {
    let Some(job) = store.jobs.get_mut(job_id) else { return };
    let touched = std::mem::take(&mut job.touched);
    let mut failures = Vec::new();
    for (name, target) in &touched {
        let Some(service) = store.services.iter_mut().find(|s| s["spec"]["name"] == json!(name)) else {
            continue;
        };
        let status = service["status"].as_object_mut().expect("stored services always have a status");
        if store.doomed.remove(name) {
            let description = format!("service {name} failed to deploy: image pull back-off");
            status.insert("state".into(), json!("error"));
            status.insert("last_error".into(), json!(description));
            status.insert("error_info".into(), json!({"description": description, "timestamp": now()}));
            failures.push(description);
        } else {
            status.insert("state".into(), json!(target));
            status.remove("error_info");
            status.insert("last_error".into(), json!(""));
            if target == "ready" {
                let url = format!("https://{name}.{TENANT}.app.sim.local");
                status.insert("urls".into(), json!([{"kind": "https", "url": url}]));
                status.insert("api_urls".into(), json!([{"kind": "https", "url": format!("{url}/api")}]));
                status.insert(
                    "internal_api_urls".into(),
                    json!([{"kind": "http", "url": format!("http://{name}:8080")}]),
                );
            }
        }
    }
    let attrs = &mut job.attributes;
    attrs.insert("updated_at".into(), json!(now()));
    if failures.is_empty() {
        attrs.insert("state".into(), json!("completed"));
        store.manifest.insert("state".into(), json!("ready"));
        store.manifest.insert("last_error".into(), json!(""));
    } else {
        let message = failures.join("; ");
        attrs.insert("state".into(), json!("failed"));
        attrs.insert("result".into(), json!(json!({"message": message, "status": 500}).to_string()));
        store.manifest.insert("state".into(), json!("error"));
        store.manifest.insert("last_error".into(), json!(message));
    }
    store.manifest.insert("running_modification_job".into(), json!(""));
    store.manifest.insert("last_modification_job".into(), json!(job_id));
}

/// The router of the Iguazio API and of `/_sim`.
pub fn router(state: SimState) -> Router {
    let api = Router::new()
        .route("/api/tunnel/{tunnel}/external_versions/{node}", get(external_version))
        .route("/api/sessions", post(login))
        .route("/api/sessions/verifications/planes/any/internal", post(verify_session))
        .route("/api/app_services_manifests", get(manifest_get).put(manifest_put))
        .route("/api/jobs/{job_id}", get(job_get));
    let own = control::SimRoutes {
        reset: post(sim_reset),
        state: get(sim_state),
        seed: post(sim_seed),
        fail: post(sim_fail),
    };
    control::assemble(api, own, state.clone(), &state.control, "Not found")
}

// === handshake and sessions ===

async fn external_version(Path((tunnel, node)): Path<(String, String)>) -> ApiResult {
    if tunnel != format!("{node}.version.0") || !["igz0", "igz1", "igz2"].contains(&node.as_str()) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no tunnel {tunnel}")));
    }
    Ok(Json(json!({"data": {"type": "external_version", "id": "0", "attributes": {"external": VERSION}}}))
        .into_response())
}

async fn login(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let attrs = &body.get("data").and_then(|d| d.get("attributes")).cloned().unwrap_or_default();
    if attrs.get("username").and_then(Value::as_str) != Some(DEFAULT_USERNAME)
        || attrs.get("password").and_then(Value::as_str) != Some(DEFAULT_PASSWORD)
    {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "Authentication failed: wrong username or password".into()));
    }
    let sid = uuid::Uuid::new_v4().to_string();
    s.inner.lock().unwrap_or_else(|p| p.into_inner()).sessions.insert(sid.clone());
    let cookie = format!("session=j%3A%7B%22sid%22%3A%20%22{sid}%22%7D; Path=/");
    let mut response =
        (StatusCode::CREATED, Json(json!({"data": {"type": "session", "id": sid, "attributes": {}}}))).into_response();
    response.headers_mut().insert("set-cookie", HeaderValue::from_str(&cookie).expect("ascii cookie"));
    Ok(response)
}

async fn verify_session(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    Ok(Json(json!({"data": {"type": "session_verification", "id": uuid::Uuid::new_v4().to_string(), "attributes": {
        "username": DEFAULT_USERNAME,
        "context": {"authentication": {"tenant_id": &*s.tenant_id, "user_id": uuid::Uuid::new_v4().to_string()}},
    }}}))
    .into_response())
}

// === manifest and jobs ===

fn manifest_document(store: &Store) -> Value {
    let mut attributes = store.manifest.clone();
    attributes.insert("app_services".into(), Value::Array(store.services.clone()));
    json!({"data": [{"type": "app_services_manifest", "id": 1, "attributes": attributes, "relationships": {}}],
           "meta": {"ctx": uuid::Uuid::new_v4().simple().to_string()}})
}

async fn manifest_get(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    Ok(Json(manifest_document(&s.lock())).into_response())
}

const DESIRED_STATES: &[&str] = &["ready", "disabled", "scaledToZero"];

/// Checks an incoming service entry; returns its name.
fn validate_service(entry: &Value) -> ApiResult<String> {
    let spec = entry.get("spec").and_then(Value::as_object).ok_or_else(|| bad("every app service needs a spec"))?;
    let name = spec.get("name").and_then(Value::as_str).filter(|n| !n.is_empty());
    let name = name.ok_or_else(|| bad("app service spec.name is required"))?;
    if spec.get("kind").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(bad(format!("app service {name}: spec.kind is required")));
    }
    if let Some(state) = spec.get("desired_state").filter(|v| !v.is_null())
        && !state.as_str().is_some_and(|s| DESIRED_STATES.contains(&s))
    {
        return Err(bad(format!("app service {name}: desired_state must be one of {}", DESIRED_STATES.join(", "))));
    }
    Ok(name.to_string())
}

fn flag(spec: &Value, key: &str) -> bool {
    spec.get(key).and_then(Value::as_bool).unwrap_or(false)
}

async fn manifest_put(State(s): State<SimState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let attrs = body
        .get("data")
        .and_then(|d| d.get("attributes"))
        .and_then(Value::as_object)
        .ok_or_else(|| bad("body must be {\"data\": {\"attributes\": {...}}}"))?;
    let incoming =
        attrs.get("app_services").and_then(Value::as_array).ok_or_else(|| bad("app_services must be a list"))?;
    let force_all = match attrs.get("force_apply_all_mode").and_then(Value::as_str) {
        None | Some("disabled") => false,
        Some("enabled") => true,
        Some(other) => return Err(bad(format!("force_apply_all_mode {other} is not enabled or disabled"))),
    };
    let mode = attrs.get("apply_services_mode").and_then(Value::as_str).unwrap_or("default");
    if !["default", "scaleFromZeroOnly", "serviceOwnerEdit"].contains(&mode) {
        return Err(bad(format!("apply_services_mode {mode} is not default, scaleFromZeroOnly or serviceOwnerEdit")));
    }
    let mut names = BTreeSet::new();
    for entry in incoming {
        let name = validate_service(entry)?;
        if !names.insert(name.clone()) {
            return Err(bad(format!("app service name {name} appears twice")));
        }
    }

    let mut store = s.lock();
    let running = store.manifest["running_modification_job"].as_str().unwrap_or_default().to_string();
    if !running.is_empty() {
        return Err(ApiError(StatusCode::CONFLICT, format!("modification job {running} is still running")));
    }
    let mut next = Vec::with_capacity(incoming.len());
    let mut touched = Vec::new();
    for entry in incoming {
        let spec = &entry["spec"];
        let name = spec["name"].as_str().unwrap_or_default().to_string();
        let existing = store.services.iter().find(|s| s["spec"]["name"] == json!(name));
        let changed = flag(spec, "mark_as_changed") || force_all;
        let restart = flag(spec, "mark_for_restart");
        let (mut stored_spec, previous_state) = match existing {
            Some(old) if !changed => (old["spec"].clone(), old["status"]["state"].as_str().map(str::to_string)),
            Some(old) => (spec.clone(), old["status"]["state"].as_str().map(str::to_string)),
            None => (spec.clone(), None),
        };
        stored_spec["mark_as_changed"] = json!(false);
        stored_spec["mark_for_restart"] = json!(false);
        let target = match stored_spec.get("desired_state").and_then(Value::as_str) {
            Some("disabled") => "disabled",
            Some("scaledToZero") => "scaledToZero",
            _ => "ready",
        };
        let transitional = match (previous_state.as_deref(), changed || restart) {
            (None, _) => Some("waitingForProvisioning"),
            (Some("scaledToZero"), true) if target == "ready" => Some("scalingFromZero"),
            (Some(_), true) if target == "scaledToZero" => Some("scalingToZero"),
            (Some(_), true) => Some("provisioning"),
            (Some(_), false) => None,
        };
        let mut status = existing.map(|old| old["status"].clone()).unwrap_or_else(|| json!({}));
        if let Some(state) = transitional {
            status["state"] = json!(state);
            touched.push((name.clone(), target.to_string()));
        }
        let meta = entry.get("meta").cloned().unwrap_or_else(|| json!({"labels": {}}));
        next.push(json!({"spec": stored_spec, "meta": meta, "status": status}));
    }
    store.services = next;

    let job_id = uuid::Uuid::new_v4().to_string();
    let created = now();
    let attributes = json!({
        "state": "in_progress", "kind": "app_services_manifest.apply", "params": "{}", "result": "",
        "created_at": created, "updated_at": created, "max_total_execution_time": 10800,
        "max_worker_execution_time": null, "delay": 0, "on_success": null, "on_failure": null,
        "handler": "app_services_manifest.apply", "ctx_id": uuid::Uuid::new_v4().simple().to_string(),
    });
    let attributes = attributes.as_object().cloned().unwrap_or_default();
    store.manifest.insert("running_modification_job".into(), json!(job_id));
    store.manifest.insert("state".into(), json!("provisioning"));
    store.manifest.insert("apply_services_mode".into(), json!("default"));
    store.jobs.insert(
        job_id.clone(),
        Job { attributes: attributes.clone(), completes_at: Instant::now() + s.delay, touched },
    );
    if s.delay.is_zero() {
        complete_job(&mut store, &job_id);
    }
    let attributes = store.jobs[&job_id].attributes.clone();
    Ok(Json(json!({"data": {"type": "job", "id": job_id, "attributes": attributes}})).into_response())
}

async fn job_get(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    if !store.jobs.contains_key(&id) {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("Job {id} not found")));
    }
    if store.jobs[&id].completes_at <= Instant::now() && store.jobs[&id].attributes["state"] == "in_progress" {
        complete_job(&mut store, &id);
    }
    let attributes = store.jobs[&id].attributes.clone();
    Ok(Json(json!({"data": {"type": "job", "id": id, "attributes": attributes}})).into_response())
}

// === /_sim: platform-specific control ===

async fn sim_reset(State(s): State<SimState>) -> StatusCode {
    s.reset();
    s.control.reset();
    StatusCode::NO_CONTENT
}

async fn sim_state(State(s): State<SimState>) -> Json<Value> {
    let store = s.lock();
    let jobs: Map<String, Value> =
        store.jobs.iter().map(|(id, j)| (id.clone(), Value::Object(j.attributes.clone()))).collect();
    Json(json!({"manifest": manifest_document(&store)["data"][0], "jobs": jobs}))
}

/// `POST /_sim/seed` `{"service": {<spec>}}`: an app service someone else created, already ready.
async fn sim_seed(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let spec = body.get("service").cloned().ok_or_else(|| bad("service: expected a spec object"))?;
    let entry = json!({"spec": spec, "meta": {"labels": {}}, "status": {"state": "ready"}});
    let name = validate_service(&entry)?;
    let mut store = s.lock();
    if store.services.iter().any(|s| s["spec"]["name"] == json!(name)) {
        return Err(ApiError(StatusCode::CONFLICT, format!("app service {name} exists")));
    }
    store.services.push(entry);
    Ok(StatusCode::CREATED.into_response())
}

/// `POST /_sim/fail` `{"service": "name"}`: the next apply job touching that service fails it.
async fn sim_fail(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let name = body.get("service").and_then(Value::as_str).ok_or_else(|| bad("service is required"))?;
    s.lock().doomed.insert(name.to_string());
    Ok(StatusCode::NO_CONTENT.into_response())
}
