//! Peak webapps API simulator (shared/platforms/peak.md): webapps with the asynchronous lifecycle
//! CREATING → AVAILABLE, DEPLOYING → AVAILABLE on a redeploying change, DELETING → gone, and the failure
//! states CREATE_FAILED and DELETE_FAILED. Auth is the raw token in `Authorization`; errors are
//! `{"statusCode", "message", "detail"}`. The session handshake (tenant metadata) and telemetry are served.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::control::{self, Control};
use crate::read_json;

/// The token the simulator accepts unless configured otherwise.
pub const DEFAULT_TOKEN: &str = "sim-token";
/// Who the simulator says created and changed webapps.
const PRINCIPAL: &str = "tether-sim@peak.ai";
/// Seeded image catalogue: image id → version ids, all ready.
const IMAGES: &[(i64, &[i64])] = &[(1, &[1, 2]), (100, &[100, 101])];
/// Seeded instance types (tenant instance options of entity type webapp).
const INSTANCE_TYPES: &[(i64, &str)] = &[(1, "Pico (0.125CPU, 0.125GB RAM)"), (20, "Small (1CPU, 2GB RAM)")];
const DEFAULT_INSTANCE_TYPE: i64 = 1;

/// Simulator state and settings.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<BTreeMap<String, Webapp>>>,
    token: Arc<str>,
    delay: Duration,
    origin: Arc<str>,
    control: Control,
}

struct Webapp {
    fields: Map<String, Value>,
    /// When the pending transition (CREATING/DEPLOYING/DELETING) completes.
    settles_at: Instant,
    /// Forced outcome of the pending transition (`/_sim/fail`).
    fails: bool,
}

/// A Peak error.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render_error(self.0, &self.1)
    }
}

fn render_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"statusCode": status.as_u16(), "message": message, "detail": message}))).into_response()
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn now_millis() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

impl SimState {
    /// A simulator accepting `token`, whose transitions take `delay`; `origin` is its own base URL (for the
    /// application URLs it makes up).
    pub fn new(token: &str, delay: Duration, origin: &str) -> Self {
        Self {
            inner: Arc::default(),
            token: token.into(),
            delay,
            origin: origin.into(),
            control: Control::new(render_error, None),
        }
    }

    /// What a client needs to know of the seeded catalogue (the endpoints file's `seeded`).
    pub fn seeded() -> Value {
        json!({
            "images": IMAGES.iter().map(|(id, versions)| json!({"imageId": id, "versionIds": versions})).collect::<Vec<_>>(),
            "instanceTypeIds": INSTANCE_TYPES.iter().map(|(id, _)| id).collect::<Vec<_>>(),
        })
    }

    /// The counters and faults of this simulator.
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// The store, with every transition that is due applied first: time passes on the platform whether or
    /// not anyone looks, and a read must see it.
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Webapp>> {
        let mut store = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let now = Instant::now();
        store.retain(|_, app| {
            if now < app.settles_at {
                return true;
            }
            let next = match (app.fields["status"].as_str(), app.fails) {
                (Some("CREATING"), false) | (Some("DEPLOYING"), _) => "AVAILABLE",
                (Some("CREATING"), true) => "CREATE_FAILED",
                (Some("DELETING"), false) => return false,
                (Some("DELETING"), true) => "DELETE_FAILED",
                _ => return true,
            };
            // A forced failure hits one transition; a retry after it can succeed.
            if next.ends_with("_FAILED") {
                app.fails = false;
            }
            app.fields.insert("status".into(), json!(next));
            app.fields.insert("updatedAt".into(), json!(now_millis()));
            true
        });
        store
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let token = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        let token = token.strip_prefix("Bearer ").unwrap_or(token);
        if token.is_empty() || token != &*self.token {
            return Err(ApiError(StatusCode::UNAUTHORIZED, "Unauthorized".into()));
        }
        Ok(())
    }
}

/// The router of the Peak API and of `/_sim`.
pub fn router(state: SimState) -> Router {
    let webapps = "/webapps/api/v1/webapps";
    let api = Router::new()
        .route("/tenant-management/api/v1/external/tenants/tenant-metadata", get(tenant_metadata))
        .route("/resource-usage/api/v1/telemetry", post(telemetry))
        .route("/quota/api/v1/settings/tenant-instance-options", get(instance_options))
        .route(webapps, get(webapps_list).post(webapps_create))
        .route(&format!("{webapps}/"), get(webapps_list).post(webapps_create))
        .route(&format!("{webapps}/{{webapp_id}}"), get(webapps_describe).patch(webapps_update).delete(webapps_delete));
    let own = control::SimRoutes {
        reset: post(sim_reset),
        state: get(sim_state),
        seed: post(sim_seed),
        fail: post(sim_fail),
    };
    control::assemble(api, own, state.clone(), &state.control, "Not Found")
}

// === handshake and side calls ===

async fn tenant_metadata(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    Ok(Json(json!({"tenantName": "tether-sim"})).into_response())
}

async fn telemetry() -> Response {
    (StatusCode::CREATED, Json(json!({}))).into_response()
}

async fn instance_options(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    let data: Vec<Value> = INSTANCE_TYPES
        .iter()
        .map(|(id, name)| json!({"id": id, "name": name, "instanceClass": "General Purpose", "provider": "k8s"}))
        .collect();
    Ok(Json(json!({ "data": data })).into_response())
}

// === webapps ===

/// Checks a create or update body and returns the fields it sets, with `imageDetails` and `resources`
/// merged into `current` per key.
fn merged_fields(current: &Map<String, Value>, body: &Map<String, Value>) -> ApiResult<Map<String, Value>> {
    let mut out = current.clone();
    for (key, value) in body {
        match key.as_str() {
            "name" | "title" | "description" | "entrypoint" | "healthCheckURL" | "serviceType" => {
                if !value.is_string() {
                    return Err(bad(format!("{key} must be a string")));
                }
                out.insert(key.clone(), value.clone());
            }
            "sessionStickiness" | "scaleToZero" => {
                if !value.is_boolean() {
                    return Err(bad(format!("{key} must be a boolean")));
                }
                out.insert(key.clone(), value.clone());
            }
            "minInstances" => {
                if !value.is_number() {
                    return Err(bad(format!("{key} must be a number")));
                }
                out.insert(key.clone(), value.clone());
            }
            "parameters" => {
                out.insert(key.clone(), value.clone());
            }
            "imageDetails" | "resources" => {
                let Value::Object(inner) = value else {
                    return Err(bad(format!("{key} must be an object")));
                };
                let mut merged = out.get(key).and_then(Value::as_object).cloned().unwrap_or_default();
                for (k, v) in inner {
                    if !(v.is_i64() || v.is_null()) {
                        return Err(bad(format!("{key}.{k} must be an integer")));
                    }
                    merged.insert(k.clone(), v.clone());
                }
                if key == "imageDetails" && !inner.get("imageId").is_some_and(Value::is_i64) {
                    return Err(bad("imageDetails.imageId is required and must be an integer"));
                }
                out.insert(key.clone(), Value::Object(merged));
            }
            _ => {} // unknown keys are ignored
        }
    }
    resolve_references(&mut out)?;
    Ok(out)
}

/// Checks image, version and instance type against the catalogue and fills the platform's defaults.
fn resolve_references(fields: &mut Map<String, Value>) -> ApiResult<()> {
    let image = fields.get("imageDetails").and_then(|d| d.get("imageId")).and_then(Value::as_i64);
    let Some(image) = image else {
        return Err(bad("imageDetails.imageId is required"));
    };
    let Some((_, versions)) = IMAGES.iter().find(|(id, _)| *id == image) else {
        return Err(bad(format!("Image with id {image} not found")));
    };
    let details = fields.get_mut("imageDetails").and_then(Value::as_object_mut).expect("checked above");
    match details.get("versionId").and_then(Value::as_i64) {
        Some(v) if !versions.contains(&v) => return Err(bad(format!("Version {v} of image {image} not found"))),
        Some(_) => {}
        None => {
            details.insert("versionId".into(), json!(versions.iter().max()));
        }
    }
    let resources = fields.entry("resources").or_insert_with(|| json!({}));
    let Some(resources) = resources.as_object_mut() else {
        return Err(bad("resources must be an object"));
    };
    match resources.get("instanceTypeId").and_then(Value::as_i64) {
        Some(t) if !INSTANCE_TYPES.iter().any(|(id, _)| *id == t) => {
            return Err(bad(format!("Instance type with id {t} not found")));
        }
        Some(_) => {}
        None => {
            resources.insert("instanceTypeId".into(), json!(DEFAULT_INSTANCE_TYPE));
        }
    }
    Ok(())
}

/// The fields whose change redeploys a webapp.
const REDEPLOY_FIELDS: &[&str] =
    &["imageDetails", "resources", "sessionStickiness", "scaleToZero", "parameters", "healthCheckURL", "entrypoint"];

fn insert_webapp(
    s: &SimState,
    store: &mut BTreeMap<String, Webapp>,
    body: &Map<String, Value>,
    status: &str,
) -> ApiResult<String> {
    let name = match body.get("name") {
        Some(Value::String(n)) if !n.trim().is_empty() => n.clone(),
        _ => return Err(bad("name is required and must be a non-empty string")),
    };
    if !body.contains_key("imageDetails") {
        return Err(bad("imageDetails is required"));
    }
    let now = now_millis();
    let id = uuid::Uuid::new_v4().to_string();
    let base = json!({
        "id": id, "name": name, "title": name, "description": "", "status": status,
        "sessionStickiness": false, "scaleToZero": false,
        "applicationUrl": format!("{}/apps/{name}", s.origin),
        "createdAt": now, "createdBy": PRINCIPAL, "updatedAt": now, "updatedBy": PRINCIPAL, "tags": [],
    });
    let fields = merged_fields(base.as_object().expect("object"), body)?;
    if store.values().any(|w| w.fields["name"] == json!(name)) {
        return Err(ApiError(StatusCode::CONFLICT, format!("Webapp with name {name} already exists")));
    }
    store.insert(id.clone(), Webapp { fields, settles_at: Instant::now() + s.delay, fails: false });
    Ok(id)
}

async fn webapps_create(State(s): State<SimState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let mut store = s.lock();
    let id = insert_webapp(&s, &mut store, &body, "CREATING")?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

fn not_found(id: &str) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("Webapp with id {id} not found"))
}

async fn webapps_describe(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let store = s.lock();
    let app = store.get(&id).ok_or_else(|| not_found(&id))?;
    Ok(Json(Value::Object(app.fields.clone())).into_response())
}

async fn webapps_update(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(bad)?;
    let mut store = s.lock();
    let app = store.get_mut(&id).ok_or_else(|| not_found(&id))?;
    match app.fields["status"].as_str() {
        Some("DELETING") => return Err(ApiError(StatusCode::CONFLICT, "Webapp is being deleted".into())),
        Some("CREATING" | "DEPLOYING") => {
            return Err(ApiError(StatusCode::UNPROCESSABLE_ENTITY, "Webapp is being deployed; try again later".into()));
        }
        _ => {}
    }
    if body.get("name").is_some_and(|n| *n != app.fields["name"]) {
        return Err(bad("name cannot be changed"));
    }
    let fields = merged_fields(&app.fields, &body)?;
    let redeploy = REDEPLOY_FIELDS.iter().any(|k| fields.get(*k) != app.fields.get(*k));
    app.fields = fields;
    app.fields.insert("updatedAt".into(), json!(now_millis()));
    app.fields.insert("updatedBy".into(), json!(PRINCIPAL));
    if redeploy {
        app.fields.insert("status".into(), json!("DEPLOYING"));
        app.settles_at = Instant::now() + s.delay;
        app.fails = false;
    }
    Ok(Json(json!({ "id": id })).into_response())
}

async fn webapps_delete(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let app = store.get_mut(&id).ok_or_else(|| not_found(&id))?;
    if app.fields["status"] == "DELETING" {
        return Err(ApiError(StatusCode::CONFLICT, "Webapp is already being deleted".into()));
    }
    app.fields.insert("status".into(), json!("DELETING"));
    app.settles_at = Instant::now() + s.delay;
    drop(store);
    // A zero delay completes the deletion at once, as a later read would see it.
    drop(s.lock());
    Ok(Json(json!({ "id": id })).into_response())
}

async fn webapps_list(State(s): State<SimState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult {
    s.authorize(&headers)?;
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
    let param = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let number = |name: &str, default: u64| match param(name) {
        None => Ok(default),
        Some(v) => {
            v.parse::<u64>().ok().filter(|n| *n >= 1).ok_or_else(|| bad(format!("{name} must be a positive integer")))
        }
    };
    let page_size = number("pageSize", 25)?;
    let page_number = number("pageNumber", 1)?;
    let statuses: Vec<&str> = pairs.iter().filter(|(k, _)| k == "status").map(|(_, v)| v.as_str()).collect();
    const KNOWN: &[&str] = &["CREATING", "DEPLOYING", "AVAILABLE", "DELETING", "CREATE_FAILED", "DELETE_FAILED"];
    if let Some(bad_status) = statuses.iter().find(|s| !KNOWN.contains(s)) {
        return Err(bad(format!("status {bad_status} is not one of {}", KNOWN.join(", "))));
    }
    let search = param("searchTerm").map(str::to_lowercase);
    let store = s.lock();
    let mut matching: Vec<&Webapp> = store
        .values()
        .filter(|w| statuses.is_empty() || statuses.iter().any(|s| w.fields["status"] == *s))
        .filter(|w| {
            search.as_deref().is_none_or(|t| w.fields["name"].as_str().unwrap_or_default().to_lowercase().contains(t))
        })
        .collect();
    matching.sort_by(|a, b| b.fields["createdAt"].as_str().cmp(&a.fields["createdAt"].as_str()));
    let total = matching.len() as u64;
    let items: Vec<Value> = matching
        .into_iter()
        .skip(((page_number - 1) * page_size) as usize)
        .take(page_size as usize)
        .map(|w| Value::Object(w.fields.clone()))
        .collect();
    let (items_key, count_key) = if param("featureType") == Some("services") {
        ("services", "servicesCount")
    } else {
        ("webapps", "webappsCount")
    };
    let mut page = Map::new();
    page.insert(items_key.into(), Value::Array(items));
    page.insert(count_key.into(), json!(total));
    page.insert("pageCount".into(), json!(total.div_ceil(page_size)));
    page.insert("pageNumber".into(), json!(page_number));
    page.insert("pageSize".into(), json!(page_size));
    Ok(Json(Value::Object(page)).into_response())
}

// === /_sim: platform-specific control ===

async fn sim_reset(State(s): State<SimState>) -> StatusCode {
    s.lock().clear();
    s.control.reset();
    StatusCode::NO_CONTENT
}

async fn sim_state(State(s): State<SimState>) -> Json<Value> {
    let store = s.lock();
    Json(json!({ "webapps": store.values().map(|w| Value::Object(w.fields.clone())).collect::<Vec<_>>() }))
}

/// `POST /_sim/seed` `{"webapp": {<create body>}}`: a webapp created behind Tether's back, already AVAILABLE.
async fn sim_seed(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let Some(Value::Object(webapp)) = body.get("webapp") else {
        return Err(bad("webapp: expected an object"));
    };
    let mut store = s.lock();
    let id = insert_webapp(&s, &mut store, webapp, "AVAILABLE")?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))).into_response())
}

/// `POST /_sim/fail` `{"id": "..."}`: the webapp's pending (or next) create or delete ends in CREATE_FAILED
/// or DELETE_FAILED, once; an AVAILABLE webapp turns CREATE_FAILED at once.
async fn sim_fail(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(bad)?;
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| bad("id is required"))?;
    let mut store = s.lock();
    let app = store.get_mut(id).ok_or_else(|| not_found(id))?;
    if app.fields["status"] == "AVAILABLE" {
        app.fields.insert("status".into(), json!("CREATE_FAILED"));
    } else {
        app.fails = true;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
