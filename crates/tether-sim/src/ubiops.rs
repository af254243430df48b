//! UbiOps API simulator (shared/platforms/ubiops.md): services under projects, and the deployments and
//! versions they point at. Served under both `/v2.1` and `/v2`; errors are `{"error": "..."}`; auth is
//! `Authorization: Token <token>`. Service create/update/delete are synchronous; readiness comes
//! `delay` after a create or a re-route, through `GET .../services/{name}/status`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value, json};

use crate::control::{self, Control};
use crate::{now_micros, read_json};

/// The token the simulator accepts unless configured otherwise.
pub const DEFAULT_TOKEN: &str = "test-token";

/// Simulator state and settings.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<Store>>,
    token: Arc<str>,
    delay: Duration,
    control: Control,
}

#[derive(Default)]
struct Store {
    projects: BTreeMap<String, Project>,
}

struct Project {
    id: String,
    created: String,
    deployments: BTreeMap<String, Deployment>,
    services: BTreeMap<String, Service>,
}

struct Deployment {
    fields: Map<String, Value>,
    versions: BTreeMap<String, Map<String, Value>>,
}

struct Service {
    fields: Map<String, Value>,
    ready_at: Instant,
    failed: bool,
}

/// A UbiOps error: status plus the `{"error": ...}` body the SDK parses.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render_error(self.0, &self.1)
    }
}

fn render_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type ApiResult<T = Response> = Result<T, ApiError>;

impl SimState {
    /// A simulator accepting `token`, whose services become ready `delay` after a (re-)route, seeded with
    /// project `proj` holding deployment `dep-1` with versions `v1` (default) and `v2`.
    pub fn new(token: &str, delay: Duration) -> Self {
        let state = Self {
            inner: Arc::default(),
            token: token.into(),
            delay,
            control: Control::new(render_error, Some("x-ratelimit-reset")),
        };
        state.seed_fixtures();
        state
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The counters and faults of this simulator.
    pub fn control(&self) -> &Control {
        &self.control
    }

    fn seed_fixtures(&self) {
        let mut store = self.lock();
        *store = Store::default();
        let project = store.projects.entry("proj".into()).or_insert_with(new_project);
        let deployment = project.deployments.entry("dep-1".into()).or_insert_with(|| new_deployment("proj", "dep-1"));
        for v in ["v1", "v2"] {
            add_version(deployment, "dep-1", v);
        }
    }

    /// What a client needs to know of the seeded fixtures (the endpoints file's `seeded`).
    pub fn seeded() -> Value {
        json!({"project": "proj", "deployment": "dep-1", "versions": ["v1", "v2"], "defaultVersion": "v1"})
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let Some(value) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
            return Err(ApiError(StatusCode::UNAUTHORIZED, "Authentication credentials were not provided.".into()));
        };
        let token = value.strip_prefix("Token ").or_else(|| value.strip_prefix("Bearer ")).unwrap_or(value);
        if token.trim() != &*self.token {
            return Err(ApiError(StatusCode::UNAUTHORIZED, "Invalid token.".into()));
        }
        Ok(())
    }
}

fn new_project() -> Project {
    Project {
        id: uuid::Uuid::new_v4().to_string(),
        created: now_micros(),
        deployments: BTreeMap::new(),
        services: BTreeMap::new(),
    }
}

fn new_deployment(project: &str, name: &str) -> Deployment {
    let now = now_micros();
    let fields = json!({
        "id": uuid::Uuid::new_v4().to_string(), "project": project, "name": name, "description": "",
        "input_type": "plain", "output_type": "plain", "labels": {}, "creation_date": now,
        "last_updated": now, "default_version": null,
    });
    Deployment { fields: as_map(fields), versions: BTreeMap::new() }
}

fn add_version(deployment: &mut Deployment, deployment_name: &str, version: &str) -> Map<String, Value> {
    let is_first = deployment.versions.is_empty();
    let now = now_micros();
    let fields = as_map(json!({
        "id": uuid::Uuid::new_v4().to_string(), "deployment": deployment_name, "version": version,
        "status": "available", "default": is_first, "minimum_instances": 0, "maximum_instances": 5,
        "maximum_idle_time": 300, "labels": {}, "creation_date": now, "last_updated": now,
    }));
    if is_first {
        deployment.fields.insert("default_version".into(), json!(version));
    }
    deployment.versions.insert(version.to_string(), fields.clone());
    fields
}

fn as_map(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The router of the UbiOps API (both prefixes) and of `/_sim`.
pub fn router(state: SimState) -> Router {
    let api = Router::new()
        .route("/status", get(status))
        .route("/projects/{project_name}", get(project_get))
        .route("/projects/{project_name}/deployments", get(deployments_list).post(deployments_create))
        .route(
            "/projects/{project_name}/deployments/{deployment_name}",
            get(deployments_get).patch(deployments_update).delete(deployments_delete),
        )
        .route(
            "/projects/{project_name}/deployments/{deployment_name}/versions",
            get(versions_list).post(versions_create),
        )
        .route(
            "/projects/{project_name}/deployments/{deployment_name}/versions/{version}",
            get(versions_get).delete(versions_delete),
        )
        .route("/projects/{project_name}/services", get(services_list).post(services_create))
        .route(
            "/projects/{project_name}/services/{service_name}",
            get(services_get).patch(services_update).delete(services_delete),
        )
        .route("/projects/{project_name}/services/{service_name}/status", get(services_status));
    let versions = Router::new().nest("/v2.1", api.clone()).nest("/v2", api);
    use axum::routing::post;
    let own = control::SimRoutes {
        reset: post(sim_reset),
        state: get(sim_state),
        seed: post(sim_seed),
        fail: post(sim_fail),
    };
    control::assemble(versions, own, state.clone(), &state.control, "Not found.")
}

// === handlers: status, projects, deployments, versions ===

async fn status(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    Ok(Json(json!({"status": "ok"})).into_response())
}

fn project<'a>(store: &'a mut Store, name: &str) -> ApiResult<&'a mut Project> {
    store.projects.get_mut(name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Project not found".into()))
}

async fn project_get(State(s): State<SimState>, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    Ok(Json(json!({
        "id": project.id, "name": p, "organization_name": "tether-org", "creation_date": project.created,
        "advanced_permissions": false, "credits": null, "cors_origins": [], "labels": {},
    }))
    .into_response())
}

async fn deployments_list(State(s): State<SimState>, headers: HeaderMap, Path(p): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let items: Vec<Value> =
        project(&mut store, &p)?.deployments.values().map(|d| Value::Object(d.fields.clone())).collect();
    Ok(Json(items).into_response())
}

async fn deployments_create(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let name = required_name(&body, "name")?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    if project.deployments.contains_key(&name) {
        return Err(ApiError(StatusCode::CONFLICT, format!("Deployment '{name}' already exists")));
    }
    let mut deployment = new_deployment(&p, &name);
    for key in ["description", "input_type", "output_type", "labels"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            deployment.fields.insert(key.into(), v.clone());
        }
    }
    let out = Value::Object(deployment.fields.clone());
    project.deployments.insert(name, deployment);
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

fn deployment<'a>(project: &'a mut Project, name: &str) -> ApiResult<&'a mut Deployment> {
    project.deployments.get_mut(name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Deployment not found".into()))
}

async fn deployments_get(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    Ok(Json(Value::Object(deployment.fields.clone())).into_response())
}

async fn deployments_update(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    if let Some(v) = body.get("default_version").and_then(Value::as_str) {
        if !deployment.versions.contains_key(v) {
            return Err(bad(format!("Version '{v}' of deployment '{d}' not found")));
        }
        for (name, version) in deployment.versions.iter_mut() {
            version.insert("default".into(), json!(name == v));
        }
        deployment.fields.insert("default_version".into(), json!(v));
    }
    for key in ["description", "labels"] {
        if let Some(v) = body.get(key) {
            deployment.fields.insert(key.into(), v.clone());
        }
    }
    deployment.fields.insert("last_updated".into(), json!(now_micros()));
    Ok(Json(Value::Object(deployment.fields.clone())).into_response())
}

async fn deployments_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    project.deployments.remove(&d).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Deployment not found".into()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn versions_list(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    Ok(Json(deployment.versions.values().cloned().map(Value::Object).collect::<Vec<_>>()).into_response())
}

async fn versions_create(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let version = required_name(&body, "version")?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    if deployment.versions.contains_key(&version) {
        return Err(ApiError(StatusCode::CONFLICT, format!("Version '{version}' already exists")));
    }
    let mut fields = add_version(deployment, &d, &version);
    for key in ["minimum_instances", "maximum_instances", "maximum_idle_time", "labels", "environment"] {
        if let Some(v) = body.get(key).filter(|v| !v.is_null()) {
            fields.insert(key.into(), v.clone());
        }
    }
    deployment.versions.insert(version, fields.clone());
    Ok((StatusCode::CREATED, Json(Value::Object(fields))).into_response())
}

async fn versions_get(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d, v)): Path<(String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    let version =
        deployment.versions.get(&v).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Version not found".into()))?;
    Ok(Json(Value::Object(version.clone())).into_response())
}

async fn versions_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, d, v)): Path<(String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let deployment = deployment(project(&mut store, &p)?, &d)?;
    deployment.versions.remove(&v).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Version not found".into()))?;
    if deployment.fields.get("default_version").and_then(Value::as_str) == Some(v.as_str()) {
        deployment.fields.insert("default_version".into(), Value::Null);
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn required_name(body: &Map<String, Value>, key: &str) -> ApiResult<String> {
    match body.get(key) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 64 => Ok(s.clone()),
        Some(Value::String(_)) => Err(bad(format!("{key}: ensure this field has 1 to 64 characters"))),
        Some(_) => Err(bad(format!("{key}: not a valid string"))),
        None => Err(bad(format!("{key}: this field is required"))),
    }
}

// === handlers: services ===

/// The writable fields of a service, with the defaults the platform fills in.
fn service_defaults() -> Map<String, Value> {
    as_map(json!({
        "description": "", "labels": {}, "version": null, "authentication_required": true,
        "authentication_method_token_enabled": true, "authentication_header_pass_through": false,
        "request_logging_excluded_paths": null, "request_logging_excluded_extensions": [],
        "rate_limit": null, "rate_limit_user_default": null, "concurrency_limit": null,
        "concurrency_limit_user_default": null, "type": null, "cache_aware_llm_routing": false,
        "imported_name": null, "imported_namespace": null, "imported_cluster_domain": null,
        "health_check": null, "rate_limit_token": null,
    }))
}

/// Checks one field's type and bounds, as the platform's serializer would.
fn validate_field(key: &str, value: &Value) -> Result<(), String> {
    let string_max = |max: usize, nullable: bool| match value {
        Value::Null if nullable => Ok(()),
        Value::String(s) if s.chars().count() <= max => Ok(()),
        Value::String(_) => Err(format!("{key}: ensure this field has no more than {max} characters")),
        _ => Err(format!("{key}: not a valid string")),
    };
    let int = |nullable: bool| match value {
        Value::Null if nullable => Ok(()),
        Value::Number(n) if n.is_i64() => Ok(()),
        _ => Err(format!("{key}: a valid integer is required")),
    };
    let boolean = || value.is_boolean().then_some(()).ok_or_else(|| format!("{key}: must be a valid boolean"));
    match key {
        "name" => match value {
            Value::String(s) if valid_name(s) => Ok(()),
            _ => Err(format!(
                "{key}: must be 1 to 64 lowercase letters, digits or dashes, starting and ending with a letter or digit"
            )),
        },
        "deployment" => match value {
            Value::String(s) if !s.is_empty() && s.len() <= 64 => Ok(()),
            _ => Err(format!("{key}: not a valid string")),
        },
        "version" => string_max(64, true),
        "port" => match value.as_i64() {
            Some(1..=65535) => Ok(()),
            Some(_) => Err(format!("{key}: ensure this value is between 1 and 65535")),
            None => Err(format!("{key}: a valid integer is required")),
        },
        "description" => string_max(400, false),
        "request_logging_excluded_paths" => string_max(400, true),
        "imported_name" | "imported_namespace" | "imported_cluster_domain" | "type" => string_max(256, true),
        "labels" => match value {
            Value::Object(m) if m.values().all(Value::is_string) => Ok(()),
            _ => Err(format!("{key}: expected a dictionary of strings")),
        },
        "request_logging_excluded_extensions" => match value {
            Value::Array(a) if a.iter().all(Value::is_string) => Ok(()),
            _ => Err(format!("{key}: expected a list of strings")),
        },
        "authentication_required"
        | "authentication_method_token_enabled"
        | "authentication_header_pass_through"
        | "cache_aware_llm_routing" => boolean(),
        "rate_limit"
        | "rate_limit_user_default"
        | "concurrency_limit"
        | "concurrency_limit_user_default"
        | "rate_limit_token" => int(true),
        "health_check" => match value {
            Value::Null => Ok(()),
            Value::Object(h) => match h.get("path") {
                Some(Value::String(p)) if !p.starts_with('/') => Err("health_check.path: must start with '/'".into()),
                _ => Ok(()),
            },
            _ => Err(format!("{key}: expected an object")),
        },
        _ => Ok(()), // unknown keys are ignored, as the platform does
    }
}

fn valid_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    !s.is_empty()
        && s.len() <= 64
        && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Validates every known key of a create or update body and copies them onto `target`.
fn apply_body(target: &mut Map<String, Value>, body: &Map<String, Value>) -> ApiResult<()> {
    for (key, value) in body {
        validate_field(key, value).map_err(bad)?;
        if service_defaults().contains_key(key) || ["name", "deployment", "port"].contains(&key.as_str()) {
            target.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

/// The deployment version a service routes to: `None` when the deployment or the version is missing.
fn resolved_version<'a>(project: &'a Project, fields: &Map<String, Value>) -> Option<&'a Map<String, Value>> {
    let deployment = project.deployments.get(fields.get("deployment")?.as_str()?)?;
    let version = match fields.get("version").and_then(Value::as_str) {
        Some(v) => v,
        None => deployment.fields.get("default_version")?.as_str()?,
    };
    deployment.versions.get(version)
}

fn check_references(project: &Project, fields: &Map<String, Value>) -> ApiResult<()> {
    let d = fields.get("deployment").and_then(Value::as_str).unwrap_or_default();
    let Some(deployment) = project.deployments.get(d) else {
        return Err(bad(format!("Deployment '{d}' not found")));
    };
    if let Some(v) = fields.get("version").and_then(Value::as_str)
        && !deployment.versions.contains_key(v)
    {
        return Err(bad(format!("Version '{v}' of deployment '{d}' not found")));
    }
    Ok(())
}

fn service_detail(service: &Service) -> Value {
    Value::Object(service.fields.clone())
}

async fn services_create(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    let service = create_service(project, &body, s.delay)?;
    Ok((StatusCode::CREATED, Json(service)).into_response())
}

fn create_service(project: &mut Project, body: &Map<String, Value>, delay: Duration) -> ApiResult<Value> {
    for key in ["name", "deployment", "port"] {
        if body.get(key).is_none_or(Value::is_null) {
            return Err(bad(format!("{key}: this field is required")));
        }
    }
    let mut fields = service_defaults();
    apply_body(&mut fields, body)?;
    let name = fields["name"].as_str().unwrap_or_default().to_string();
    if project.services.contains_key(&name) {
        return Err(ApiError(StatusCode::CONFLICT, format!("A service with name '{name}' already exists")));
    }
    check_references(project, &fields)?;
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_micros();
    fields.insert("endpoint".into(), json!(format!("https://{id}.services.ubiops.com")));
    fields.insert("id".into(), json!(id));
    fields.insert("time_created".into(), json!(now));
    fields.insert("time_updated".into(), json!(now));
    fields.insert("imported_scheme".into(), Value::Null);
    let service = Service { fields, ready_at: Instant::now() + delay, failed: false };
    let detail = service_detail(&service);
    project.services.insert(name, service);
    Ok(detail)
}

fn service<'a>(project: &'a mut Project, name: &str) -> ApiResult<&'a mut Service> {
    project.services.get_mut(name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Service not found".into()))
}

#[derive(serde::Deserialize)]
struct ListQuery {
    labels: Option<String>,
    deployment_version_ids: Option<String>,
}

async fn services_list(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(p): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    let wanted_labels: Vec<(&str, Option<&str>)> = q
        .labels
        .as_deref()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(|pair| pair.split_once(':').map_or((pair, None), |(k, v)| (k, Some(v)))).collect())
        .unwrap_or_default();
    let wanted_versions: Vec<&str> = q
        .deployment_version_ids
        .as_deref()
        .filter(|v| !v.is_empty())
        .map(|v| v.split(',').collect())
        .unwrap_or_default();
    let items: Vec<Value> = project
        .services
        .values()
        .filter(|svc| {
            wanted_labels.is_empty()
                || wanted_labels.iter().any(|(k, v)| {
                    svc.fields["labels"].get(*k).is_some_and(|actual| v.is_none_or(|v| actual.as_str() == Some(v)))
                })
        })
        .filter(|svc| {
            wanted_versions.is_empty()
                || resolved_version(project, &svc.fields)
                    .and_then(|v| v.get("id")?.as_str())
                    .is_some_and(|id| wanted_versions.contains(&id))
        })
        .map(service_detail)
        .collect();
    Ok(Json(items).into_response())
}

async fn services_get(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let service = service(project(&mut store, &p)?, &name)?;
    Ok(Json(service_detail(service)).into_response())
}

async fn services_update(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    let current = service(project, &name)?;
    let mut fields = current.fields.clone();
    apply_body(&mut fields, &body)?;
    for key in ["name", "deployment", "port"] {
        if fields.get(key).is_none_or(Value::is_null) {
            return Err(bad(format!("{key}: this field may not be null")));
        }
    }
    let new_name = fields["name"].as_str().unwrap_or_default().to_string();
    if new_name != name && project.services.contains_key(&new_name) {
        return Err(ApiError(StatusCode::CONFLICT, format!("A service with name '{new_name}' already exists")));
    }
    check_references(project, &fields)?;
    let mut service = project.services.remove(&name).expect("checked above");
    let rerouted = ["deployment", "version", "port"].iter().any(|k| fields.get(*k) != service.fields.get(*k));
    if rerouted {
        service.ready_at = Instant::now() + s.delay;
    }
    fields.insert("time_updated".into(), json!(now_micros()));
    service.fields = fields;
    let detail = service_detail(&service);
    project.services.insert(new_name, service);
    Ok(Json(detail).into_response())
}

async fn services_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    project.services.remove(&name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Service not found".into()))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn services_status(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((p, name)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let project = project(&mut store, &p)?;
    let svc = project.services.get(&name).ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "Service not found".into()))?;
    let target = resolved_version(project, &svc.fields);
    let ready = !svc.failed
        && Instant::now() >= svc.ready_at
        && target.is_some_and(|v| v.get("status").and_then(Value::as_str) == Some("available"));
    let instances = if ready { target.and_then(|v| v["minimum_instances"].as_i64()).unwrap_or(0).max(1) } else { 0 };
    Ok(Json(json!({"id": svc.fields["id"], "ready": ready, "instances_ready": instances})).into_response())
}

// === /_sim: platform-specific control ===

async fn sim_reset(State(s): State<SimState>) -> StatusCode {
    s.seed_fixtures();
    s.control.reset();
    StatusCode::NO_CONTENT
}

async fn sim_state(State(s): State<SimState>) -> Json<Value> {
    let store = s.lock();
    let projects: Map<String, Value> = store
        .projects
        .iter()
        .map(|(name, p)| {
            let deployments: Map<String, Value> = p
                .deployments
                .iter()
                .map(|(d, dep)| {
                    let mut out = dep.fields.clone();
                    out.insert("versions".into(), dep.versions.values().cloned().map(Value::Object).collect());
                    (d.clone(), Value::Object(out))
                })
                .collect();
            let services: Vec<Value> = p.services.values().map(service_detail).collect();
            (name.clone(), json!({"id": p.id, "deployments": deployments, "services": services}))
        })
        .collect();
    Json(json!({ "projects": projects }))
}

/// `POST /_sim/seed` `{"project": "p", "service": {<create body>}}`: creates the project if missing and,
/// when given, a service as if someone else had created it (for adoption tests).
async fn sim_seed(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let p = body.get("project").and_then(Value::as_str).ok_or_else(|| bad("project: this field is required"))?;
    let mut store = s.lock();
    let project = store.projects.entry(p.to_string()).or_insert_with(new_project);
    match body.get("service") {
        Some(Value::Object(service)) => {
            Ok((StatusCode::CREATED, Json(create_service(project, service, s.delay)?)).into_response())
        }
        Some(_) => Err(bad("service: expected an object")),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `POST /_sim/fail` `{"project": "p", "service": "name"}`: the service never becomes ready again, and its
/// target deployment version shows why, as on UbiOps: status `failed`.
async fn sim_fail(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let (Some(p), Some(name)) =
        (body.get("project").and_then(Value::as_str), body.get("service").and_then(Value::as_str))
    else {
        return Err(bad("project and service are required"));
    };
    let mut store = s.lock();
    let project = project(&mut store, p)?;
    let svc = service(project, name)?;
    svc.failed = true;
    let fields = svc.fields.clone();
    let target = fields.get("deployment").and_then(Value::as_str).and_then(|d| {
        let deployment = project.deployments.get_mut(d)?;
        let version = match fields.get("version").and_then(Value::as_str) {
            Some(v) => v.to_string(),
            None => deployment.fields.get("default_version")?.as_str()?.to_string(),
        };
        deployment.versions.get_mut(&version)
    });
    if let Some(version) = target {
        version.insert("status".into(), json!("failed"));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
