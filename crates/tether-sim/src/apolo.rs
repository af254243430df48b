//! Apolo apps API simulator (shared/platforms/apolo.md): apps installed from a seeded template catalogue,
//! with the asynchronous lifecycle queued → progressing → healthy (or errored/degraded when doomed through
//! `/_sim/fail`), configuration revisions, rollback, outputs, values, events, upgrades, uninstall
//! (uninstalling → uninstalled, the record kept), logs over a WebSocket, and the `/api/v1/config` handshake
//! the SDK logs in with. Auth is `Authorization: Bearer <token>`; errors are `{"error": ...}`, input
//! validation errors `{"errors": [{"path", "message"}]}`.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use crate::control::{self, Control};
use crate::read_json;

/// The token the simulator accepts.
pub const DEFAULT_TOKEN: &str = "tok";
/// The scope the token may use.
pub const CLUSTER: &str = "default";
/// The organisation of that scope.
pub const ORG: &str = "superorg";
/// The project of that scope.
pub const PROJECT: &str = "test3";
const USER: &str = "sim-user";

/// Seeded templates: name, title, versions (oldest first), input schema.
fn catalogue() -> Vec<(&'static str, &'static str, Vec<&'static str>, Value)> {
    vec![
        ("shell", "Shell", vec!["v1", "v2"], json!({"type": "object", "properties": {}, "additionalProperties": true})),
        (
            "postgres",
            "PostgreSQL",
            vec!["v1.0.0", "v1.1.0"],
            json!({"type": "object", "additionalProperties": false, "properties": {
                "preset": {"type": "string"}, "storage_gb": {"type": "integer", "minimum": 1}}}),
        ),
    ]
}

/// Simulator state and settings.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<Vec<App>>>,
    delay: Duration,
    origin: Arc<str>,
    control: Control,
}

struct App {
    fields: Map<String, Value>,
    input: Value,
    revisions: Vec<Map<String, Value>>,
    revision_inputs: Vec<Value>,
    events: Vec<Value>,
    outputs: Option<Map<String, Value>>,
    next_at: Option<Instant>,
    /// The stable state `progressing` settles in: healthy unless doomed.
    target: &'static str,
}

fn render_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

/// An Apolo error.
pub enum ApiError {
    /// `{"error": message}` with a status.
    Plain(StatusCode, String),
    /// 422 `{"errors": [{"path", "message"}]}`.
    Invalid(Vec<Value>),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Plain(status, message) => render_error(status, &message),
            ApiError::Invalid(errors) => {
                (StatusCode::UNPROCESSABLE_ENTITY, Json(json!({ "errors": errors }))).into_response()
            }
        }
    }
}

fn invalid(path: &[&str], message: impl Into<String>) -> ApiError {
    ApiError::Invalid(vec![json!({"path": path, "message": message.into()})])
}

fn not_found(what: &str) -> ApiError {
    ApiError::Plain(StatusCode::NOT_FOUND, format!("{what} not found"))
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
}

impl App {
    /// Applies every transition that is due: time passes on the platform whether or not anyone looks.
    fn advance(&mut self, delay: Duration) {
        while let Some(at) = self.next_at.filter(|at| Instant::now() >= *at) {
            let next = match self.fields["state"].as_str() {
                Some("queued") => "progressing",
                Some("progressing") => self.target,
                Some("uninstalling") => "uninstalled",
                _ => break,
            };
            self.set_state(next, "Autoupdated");
            self.next_at = (next == "progressing").then(|| at + delay);
            match next {
                "healthy" => {
                    let name = self.fields["name"].as_str().unwrap_or_default().to_string();
                    self.fields.insert("endpoints".into(), json!([format!("https://{name}.apps.sim.local")]));
                    self.outputs = Some(
                        json!({"instance_url": format!("https://{name}.apps.sim.local"),
                               "admin_password": format!("pw-{}", &self.fields["id"].as_str().unwrap_or_default()[..8])})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                    );
                }
                "uninstalled" => {
                    self.outputs = None;
                    self.fields.insert("endpoints".into(), json!([]));
                }
                _ => {}
            }
        }
    }

    fn set_state(&mut self, state: &str, reason: &str) {
        self.fields.insert("state".into(), json!(state));
        self.fields.insert("updated_at".into(), json!(now()));
        let message = match state {
            "progressing" => Some("Deployment is in progress"),
            "errored" => Some("Deployment failed: container exited with code 1"),
            "degraded" => Some("Some resources are unhealthy"),
            _ => None,
        };
        self.events.push(json!({"created_at": now(), "state": state, "reason": reason, "message": message,
            "resources": [{"kind": "Deployment", "name": self.fields["name"], "uid": self.fields["id"],
                           "health_status": if state == "healthy" { "Healthy" } else { "Progressing" },
                           "health_message": null}]}));
    }

    fn in_scope(&self, cluster: &str, org: &str, project: &str) -> bool {
        self.fields["cluster_name"] == cluster
            && self.fields["org_name"] == org
            && self.fields["project_name"] == project
    }

    /// Closes the current revision and opens a new one with `input` and `comment`.
    fn new_revision(&mut self, comment: Option<String>) {
        let stamp = now();
        if let Some(current) = self.revisions.last_mut() {
            current.insert("end_at".into(), json!(stamp));
        }
        let number = self.revisions.len() + 1;
        let revision = json!({"revision_number": number, "creator": USER, "comment": comment, "created_at": stamp, "end_at": null});
        self.revisions.push(revision.as_object().cloned().unwrap_or_default());
        self.revision_inputs.push(json!({"display_name": self.fields["display_name"], "input": self.input}));
    }

    fn redeploy(&mut self, delay: Duration) {
        self.set_state("progressing", "Autoupdated");
        self.next_at = Some(Instant::now() + delay);
    }
}

impl SimState {
    /// A simulator whose transitions take `delay`; `origin` is its own base URL (for `/config`).
    pub fn new(delay: Duration, origin: &str) -> Self {
        Self { inner: Arc::default(), delay, origin: origin.into(), control: Control::new(render_error, None) }
    }

    /// What a client needs to know of the seeded catalogue and scope (the endpoints file's `seeded`).
    pub fn seeded() -> Value {
        let templates: Vec<Value> =
            catalogue().into_iter().map(|(name, _, versions, _)| json!({"name": name, "versions": versions})).collect();
        json!({ "templates": templates })
    }

    /// The counters and faults of this simulator.
    pub fn control(&self) -> &Control {
        &self.control
    }

    fn lock(&self) -> MutexGuard<'_, Vec<App>> {
        let mut apps = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        for app in apps.iter_mut() {
            app.advance(self.delay);
        }
        apps
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        let token = headers.get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if token != Some(DEFAULT_TOKEN) {
            return Err(ApiError::Plain(StatusCode::UNAUTHORIZED, "Unauthorized".into()));
        }
        Ok(())
    }
}

fn check_scope(cluster: &str, org: &str, project: &str) -> ApiResult<()> {
    if (cluster, org, project) != (CLUSTER, ORG, PROJECT) {
        return Err(ApiError::Plain(StatusCode::FORBIDDEN, "Forbidden".into()));
    }
    Ok(())
}

fn find<'a>(apps: &'a mut [App], id: &str) -> ApiResult<&'a mut App> {
    apps.iter_mut().find(|a| a.fields["id"] == id).ok_or_else(|| not_found("App instance"))
}

/// `find` for v1 paths: the app must be in the path's scope.
fn find_scoped<'a>(apps: &'a mut [App], scope: &(String, String, String), id: &str) -> ApiResult<&'a mut App> {
    check_scope(&scope.0, &scope.1, &scope.2)?;
    let app = find(apps, id)?;
    if !app.in_scope(&scope.0, &scope.1, &scope.2) {
        return Err(not_found("App instance"));
    }
    Ok(app)
}

fn resolve_version(name: &str, version: &str) -> ApiResult<(String, Value)> {
    let (_, _, versions, schema) =
        catalogue().into_iter().find(|(n, ..)| *n == name).ok_or_else(|| not_found(&format!("Template {name}")))?;
    let resolved =
        if version == "latest" { versions.last().copied() } else { versions.iter().copied().find(|v| *v == version) };
    let resolved = resolved.ok_or_else(|| not_found(&format!("Template {name} version {version}")))?;
    Ok((resolved.to_string(), schema))
}

/// Checks input against a template schema: an object, known keys when extra keys are not allowed, and
/// the declared types. App-instance references are accepted anywhere.
fn validate_input(input: &Value, schema: &Value) -> ApiResult<()> {
    let Value::Object(input) = input else {
        return Err(invalid(&["input"], "Input should be a valid dictionary"));
    };
    let props = schema["properties"].as_object().cloned().unwrap_or_default();
    let mut errors = Vec::new();
    for (key, value) in input {
        if value.get("type").and_then(Value::as_str) == Some("app-instance-ref") {
            continue;
        }
        match props.get(key) {
            None if schema["additionalProperties"] == json!(false) => {
                errors.push(json!({"path": ["input", key], "message": "Extra inputs are not permitted"}));
            }
            Some(p) if p["type"] == "integer" && !value.is_i64() => {
                errors.push(json!({"path": ["input", key], "message": "Input should be a valid integer"}));
            }
            Some(p) if p["type"] == "integer" && p["minimum"].as_i64().is_some_and(|m| value.as_i64() < Some(m)) => {
                errors.push(json!({"path": ["input", key], "message": "Input should be greater than or equal to 1"}));
            }
            Some(p) if p["type"] == "string" && !value.is_string() => {
                errors.push(json!({"path": ["input", key], "message": "Input should be a valid string"}));
            }
            _ => {}
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(ApiError::Invalid(errors)) }
}

/// The router of the Apolo API and of `/_sim`.
pub fn router(state: SimState) -> Router {
    let v1 = "/apis/apps/v1/cluster/{cluster}/org/{org}/project/{project}";
    let v2 = "/apis/apps/v2";
    let api = Router::new()
        .route("/api/v1/config", get(config))
        .route("/api/v1/apps/{id}/log_ws", get(logs))
        .route(&format!("{v2}/instances"), get(list))
        .route(&format!("{v2}/instances/upgrades"), get(upgrades))
        .route(&format!("{v2}/instances/{{id}}"), get(get_app))
        .route(&format!("{v2}/instances/{{id}}/revisions"), get(revisions))
        .route(&format!("{v2}/templates/{{name}}/{{version}}/schema"), get(template_schema))
        .route(&format!("{v1}/instances"), post(install))
        .route(&format!("{v1}/instances/values"), get(project_values))
        .route(&format!("{v1}/instances/{{id}}"), axum::routing::put(configure).delete(uninstall))
        .route(&format!("{v1}/instances/{{id}}/values"), get(app_values))
        .route(&format!("{v1}/instances/{{id}}/output"), get(output))
        .route(&format!("{v1}/instances/{{id}}/events"), get(events))
        .route(&format!("{v1}/instances/{{id}}/input"), get(current_input))
        .route(&format!("{v1}/instances/{{id}}/revisions/{{n}}/input"), get(revision_input))
        .route(&format!("{v1}/instances/{{id}}/revisions/{{n}}/rollback"), post(rollback))
        .route(&format!("{v1}/templates"), get(templates))
        .route(&format!("{v1}/templates/{{name}}"), get(template_versions))
        .route(&format!("{v1}/templates/{{name}}/{{version}}"), get(template));
    let own = control::SimRoutes {
        reset: post(sim_reset),
        state: get(sim_state),
        seed: post(sim_seed),
        fail: post(sim_fail),
    };
    control::assemble(api, own, state.clone(), &state.control, "Not found")
}

type Scope = (String, String, String);

// === handshake, catalogue ===

async fn config(State(s): State<SimState>, headers: HeaderMap) -> Json<Value> {
    let o = &*s.origin;
    Json(json!({
        "auth_url": format!("{o}/authorize"), "token_url": format!("{o}/oauth/token"), "logout_url": format!("{o}/logout"),
        "client_id": "tether-sim", "audience": o, "headless_callback_url": format!("{o}/cb"),
        "authorized": s.authorize(&headers).is_ok(),
        "clusters": [{"name": CLUSTER, "orgs": [ORG], "registry_url": format!("{o}/registry"),
            "storage_url": format!("{o}/storage"), "users_url": o, "monitoring_url": format!("{o}/api/v1/jobs"),
            "secrets_url": format!("{o}/secrets"), "disks_url": format!("{o}/disks"), "buckets_url": format!("{o}/buckets"),
            "resource_pool_types": [], "resource_presets": []}],
        "projects": [{"name": PROJECT, "cluster_name": CLUSTER, "org_name": ORG, "role": "admin"}],
    }))
}

fn template_summary(name: &str, title: &str, version: &str) -> Value {
    json!({"name": name, "version": version, "title": title, "short_description": format!("{title} app"), "tags": ["sim"]})
}

async fn templates(State(s): State<SimState>, headers: HeaderMap, Path(scope): Path<Scope>) -> ApiResult {
    s.authorize(&headers)?;
    check_scope(&scope.0, &scope.1, &scope.2)?;
    let items: Vec<Value> = catalogue()
        .into_iter()
        .map(|(name, title, versions, _)| template_summary(name, title, versions.last().copied().unwrap_or_default()))
        .collect();
    Ok(Json(items).into_response())
}

async fn template_versions(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, name)): Path<(String, String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    check_scope(&c, &o, &p)?;
    let (_, title, versions, _) =
        catalogue().into_iter().find(|(n, ..)| *n == name).ok_or_else(|| not_found("Template"))?;
    let items: Vec<Value> = versions.iter().map(|v| template_summary(&name, title, v)).collect();
    Ok(Json(items).into_response())
}

async fn template(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, name, version)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    check_scope(&c, &o, &p)?;
    let (resolved, schema) = resolve_version(&name, &version)?;
    let title = catalogue().into_iter().find(|(n, ..)| *n == name).map(|(_, t, ..)| t).unwrap_or_default();
    let mut out = template_summary(&name, title, &resolved);
    out["description"] = json!(format!("{title}, simulated"));
    out["input"] = schema;
    Ok(Json(out).into_response())
}

async fn template_schema(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    Ok(Json(resolve_version(&name, &version)?.1).into_response())
}

// === apps ===

async fn install(State(s): State<SimState>, headers: HeaderMap, Path(scope): Path<Scope>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    check_scope(&scope.0, &scope.1, &scope.2)?;
    let body = read_json(&body).map_err(|e| invalid(&["body"], e))?;
    let name = body
        .get("template_name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(&["template_name"], "Field required"))?;
    let version = body.get("template_version").and_then(Value::as_str).unwrap_or("latest");
    let (version, schema) = resolve_version(name, version)?;
    let input = body.get("input").cloned().ok_or_else(|| invalid(&["input"], "Field required"))?;
    validate_input(&input, &schema)?;
    let display_name = match body.get("display_name") {
        None | Some(Value::Null) => name.to_string(),
        Some(Value::String(d)) => d.clone(),
        Some(_) => return Err(invalid(&["display_name"], "Input should be a valid string")),
    };
    let id = uuid::Uuid::new_v4().to_string();
    let (cluster, org, project) = scope;
    let stamp = now();
    let fields = json!({
        "id": id, "name": format!("{org}-{project}-{name}-{}", &id[..8]), "display_name": display_name,
        "template_name": name, "template_version": version, "project_name": project, "org_name": org,
        "cluster_name": cluster, "namespace": format!("apolo--{org}--{project}"), "state": "queued",
        "creator": USER, "created_at": stamp, "updated_at": stamp, "endpoints": [],
    });
    let mut app = App {
        fields: fields.as_object().cloned().unwrap_or_default(),
        input,
        revisions: Vec::new(),
        revision_inputs: Vec::new(),
        events: Vec::new(),
        outputs: None,
        next_at: Some(Instant::now() + s.delay),
        target: "healthy",
    };
    app.new_revision(None);
    app.events.push(json!({"created_at": stamp, "state": "queued", "reason": "App instance created", "message": null, "resources": []}));
    let mut apps = s.lock();
    apps.push(app);
    let app = apps.last_mut().expect("just pushed");
    app.advance(s.delay);
    Ok((StatusCode::CREATED, Json(Value::Object(app.fields.clone()))).into_response())
}

async fn get_app(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut apps = s.lock();
    Ok(Json(Value::Object(find(&mut apps, &id)?.fields.clone())).into_response())
}

fn query_pairs(query: Option<String>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(query.as_deref().unwrap_or_default()).map_err(|e| invalid(&["query"], e.to_string()))
}

fn page_number(pairs: &[(String, String)], key: &str, default: usize) -> ApiResult<usize> {
    match pairs.iter().find(|(k, _)| k == key) {
        None => Ok(default),
        Some((_, v)) => {
            v.parse().ok().filter(|n| *n >= 1).ok_or_else(|| invalid(&["query", key], "Input should be >= 1"))
        }
    }
}

fn page_of(items: Vec<Value>, page: usize, size: usize) -> Value {
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let items: Vec<Value> = items.into_iter().skip((page - 1) * size).take(size).collect();
    json!({"items": items, "total": total, "page": page, "size": size, "pages": pages})
}

async fn list(State(s): State<SimState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult {
    s.authorize(&headers)?;
    let pairs = query_pairs(query)?;
    let get = |key: &str| pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let states: Vec<&str> = pairs.iter().filter(|(k, _)| k == "states").map(|(_, v)| v.as_str()).collect();
    let page = page_number(&pairs, "page", 1)?;
    let size = page_number(&pairs, "size", 50)?;
    let apps = s.lock();
    let items: Vec<Value> = apps
        .iter()
        .filter(|a| get("cluster").is_none_or(|c| a.fields["cluster_name"] == c))
        .filter(|a| get("org").is_none_or(|o| a.fields["org_name"] == o))
        .filter(|a| get("project").is_none_or(|p| a.fields["project_name"] == p))
        .filter(|a| states.is_empty() || states.iter().any(|st| a.fields["state"] == *st))
        .map(|a| Value::Object(a.fields.clone()))
        .collect();
    Ok(Json(page_of(items, page, size)).into_response())
}

async fn upgrades(State(s): State<SimState>, headers: HeaderMap, RawQuery(query): RawQuery) -> ApiResult {
    s.authorize(&headers)?;
    let ids: Vec<String> = query_pairs(query)?.into_iter().filter(|(k, _)| k == "id").map(|(_, v)| v).collect();
    if ids.len() > 100 {
        return Err(invalid(&["query", "id"], "At most 100 ids per request"));
    }
    let mut apps = s.lock();
    let mut out = Vec::new();
    for id in ids {
        let app = find(&mut apps, &id)?;
        let name = app.fields["template_name"].as_str().unwrap_or_default().to_string();
        let current = app.fields["template_version"].as_str().unwrap_or_default().to_string();
        let versions = catalogue().into_iter().find(|(n, ..)| *n == name).map(|(_, _, v, _)| v).unwrap_or_default();
        let newer: Vec<&str> = versions.iter().copied().skip_while(|v| *v != current).skip(1).collect();
        out.push(json!({"id": id, "template_name": name, "template_version": current, "available_versions": newer}));
    }
    Ok(Json(out).into_response())
}

async fn configure(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(|e| invalid(&["body"], e))?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    if matches!(app.fields["state"].as_str(), Some("uninstalling" | "uninstalled")) {
        return Err(ApiError::Plain(StatusCode::CONFLICT, "App instance is uninstalled".into()));
    }
    let template = app.fields["template_name"].as_str().unwrap_or_default().to_string();
    let mut redeploy = false;
    if let Some(version) = body.get("template_version").and_then(Value::as_str) {
        let (resolved, _) = resolve_version(&template, version)?;
        redeploy |= app.fields["template_version"] != resolved;
        app.fields.insert("template_version".into(), json!(resolved));
    }
    if let Some(input) = body.get("input") {
        let version = app.fields["template_version"].as_str().unwrap_or_default().to_string();
        validate_input(input, &resolve_version(&template, &version)?.1)?;
        redeploy |= *input != app.input;
        app.input = input.clone();
    }
    if let Some(display_name) = body.get("display_name") {
        let name = display_name.as_str().ok_or_else(|| invalid(&["display_name"], "Input should be a valid string"))?;
        app.fields.insert("display_name".into(), json!(name));
    }
    app.new_revision(body.get("comment").and_then(Value::as_str).map(str::to_string));
    app.fields.insert("updated_at".into(), json!(now()));
    if redeploy {
        app.redeploy(s.delay);
    }
    Ok(Json(Value::Object(app.fields.clone())).into_response())
}

async fn uninstall(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    let force = query_pairs(query)?.iter().any(|(k, v)| k == "force" && v.eq_ignore_ascii_case("true"));
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    match (app.fields["state"].as_str(), force) {
        (Some("uninstalled"), _) => {}
        (_, true) => {
            app.set_state("uninstalled", "Uninstalled");
            app.outputs = None;
            app.fields.insert("endpoints".into(), json!([]));
            app.next_at = None;
        }
        (Some("uninstalling"), false) => {}
        (_, false) => {
            app.set_state("uninstalling", "Uninstall requested");
            app.next_at = Some(Instant::now() + s.delay);
            app.advance(s.delay);
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn values_of(app: &App, kind: Option<&str>) -> Vec<Value> {
    let Some(outputs) = &app.outputs else { return Vec::new() };
    outputs
        .iter()
        .map(|(key, value)| {
            let kind_of = if key.contains("password") { "password" } else { "url" };
            (
                kind_of,
                json!({"instance_id": app.fields["id"], "app_instance_id": app.fields["id"], "type": kind_of,
                             "path": format!("/{key}"), "value": value}),
            )
        })
        .filter(|(k, _)| kind.is_none_or(|t| t == *k))
        .map(|(_, v)| v)
        .collect()
}

async fn project_values(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(scope): Path<Scope>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    check_scope(&scope.0, &scope.1, &scope.2)?;
    let kind = query_pairs(query)?.into_iter().find(|(k, _)| k == "type").map(|(_, v)| v);
    let apps = s.lock();
    let items: Vec<Value> = apps
        .iter()
        .filter(|a| a.in_scope(&scope.0, &scope.1, &scope.2))
        .flat_map(|a| values_of(a, kind.as_deref()))
        .collect();
    Ok(Json(json!({ "items": items })).into_response())
}

async fn app_values(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    let kind = query_pairs(query)?.into_iter().find(|(k, _)| k == "type").map(|(_, v)| v);
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    Ok(Json(json!({ "items": values_of(app, kind.as_deref()) })).into_response())
}

async fn output(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    let outputs = app.outputs.clone().ok_or_else(|| not_found("App output"))?;
    Ok(Json(Value::Object(outputs)).into_response())
}

async fn events(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
    RawQuery(query): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    let pairs = query_pairs(query)?;
    let page = page_number(&pairs, "page", 1)?;
    let size = page_number(&pairs, "size", 50)?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    let newest_first: Vec<Value> = app.events.iter().rev().cloned().collect();
    Ok(Json(page_of(newest_first, page, size)).into_response())
}

async fn current_input(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id)): Path<(String, String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    Ok(Json(json!({"display_name": app.fields["display_name"], "input": app.input})).into_response())
}

fn revision_index(app: &App, n: &str) -> ApiResult<usize> {
    n.parse::<usize>()
        .ok()
        .filter(|n| (1..=app.revisions.len()).contains(n))
        .map(|n| n - 1)
        .ok_or_else(|| not_found("Revision"))
}

async fn revision_input(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id, n)): Path<(String, String, String, String, String)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    let index = revision_index(app, &n)?;
    Ok(Json(app.revision_inputs[index].clone()).into_response())
}

async fn revisions(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult {
    s.authorize(&headers)?;
    let mut apps = s.lock();
    let app = find(&mut apps, &id)?;
    Ok(Json(app.revisions.iter().rev().cloned().map(Value::Object).collect::<Vec<_>>()).into_response())
}

async fn rollback(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((c, o, p, id, n)): Path<(String, String, String, String, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = read_json(&body).map_err(|e| invalid(&["body"], e))?;
    let mut apps = s.lock();
    let app = find_scoped(&mut apps, &(c, o, p), &id)?;
    if matches!(app.fields["state"].as_str(), Some("uninstalling" | "uninstalled")) {
        return Err(ApiError::Plain(StatusCode::CONFLICT, "App instance is uninstalled".into()));
    }
    let index = revision_index(app, &n)?;
    let old = app.revision_inputs[index].clone();
    app.input = old["input"].clone();
    app.fields.insert("display_name".into(), old["display_name"].clone());
    app.new_revision(body.get("comment").and_then(Value::as_str).map(str::to_string));
    app.redeploy(s.delay);
    Ok(Json(Value::Object(app.fields.clone())).into_response())
}

/// Logs over a WebSocket: the app's history as binary frames of text lines, then a close. Never a text
/// frame: the SDK rejects those.
async fn logs(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(e) = s.authorize(&headers) {
        let mut response = e.into_response();
        response.headers_mut().insert("x-error", axum::http::HeaderValue::from_static("Unauthorized"));
        return response;
    }
    let pairs = query_pairs(query).unwrap_or_default();
    let timestamps = pairs.iter().any(|(k, v)| k == "timestamps" && v == "true");
    let since = pairs.iter().find(|(k, _)| k == "since").map(|(_, v)| v.clone());
    let lines: Option<Vec<String>> = {
        let mut apps = s.lock();
        find(&mut apps, &id).ok().map(|app| {
            app.events
                .iter()
                .filter(|e| since.as_deref().is_none_or(|since| e["created_at"].as_str().unwrap_or_default() >= since))
                .map(|e| {
                    let line = format!(
                        "app state {}: {}",
                        e["state"].as_str().unwrap_or_default(),
                        e["reason"].as_str().unwrap_or_default()
                    );
                    if timestamps {
                        format!("{} {line}\n", e["created_at"].as_str().unwrap_or_default())
                    } else {
                        format!("{line}\n")
                    }
                })
                .collect()
        })
    };
    let Some(lines) = lines else {
        let mut response = render_error(StatusCode::NOT_FOUND, "App instance not found");
        response.headers_mut().insert("x-error", axum::http::HeaderValue::from_static("App instance not found"));
        return response;
    };
    ws.on_upgrade(move |mut socket| async move {
        for line in lines {
            if socket.send(Message::Binary(line.into_bytes().into())).await.is_err() {
                return;
            }
        }
        let _ = socket.send(Message::Close(None)).await;
    })
}

// === /_sim: platform-specific control ===

async fn sim_reset(State(s): State<SimState>) -> StatusCode {
    s.lock().clear();
    s.control.reset();
    StatusCode::NO_CONTENT
}

async fn sim_state(State(s): State<SimState>) -> Json<Value> {
    let apps = s.lock();
    Json(json!({ "apps": apps.iter().map(|a| {
        let mut out = a.fields.clone();
        out.insert("input".into(), a.input.clone());
        out.insert("revisions".into(), a.revisions.len().into());
        Value::Object(out)
    }).collect::<Vec<_>>() }))
}

/// `POST /_sim/seed` `{"app": {<install body>}}`: an app someone else installed, already healthy.
async fn sim_seed(State(s): State<SimState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    let parsed = read_json(&body).map_err(|e| invalid(&["body"], e))?;
    let app = parsed.get("app").ok_or_else(|| invalid(&["app"], "Field required"))?;
    let mut auth = headers.clone();
    auth.insert("authorization", axum::http::HeaderValue::from_static("Bearer tok"));
    let scope = (CLUSTER.to_string(), ORG.to_string(), PROJECT.to_string());
    let response = install(State(s.clone()), auth, Path(scope), Bytes::from(app.to_string())).await?;
    let mut apps = s.inner.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(last) = apps.last_mut() {
        last.next_at = Some(Instant::now());
        last.fields.insert("state".into(), json!("progressing"));
        last.advance(s.delay);
    }
    Ok(response)
}

/// `POST /_sim/fail` `{"id": "...", "state": "errored"|"degraded"}`: the app settles in that state from
/// its next deployment on (at once if it is healthy now).
async fn sim_fail(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = read_json(&body).map_err(|e| invalid(&["body"], e))?;
    let id = body.get("id").and_then(Value::as_str).ok_or_else(|| invalid(&["id"], "Field required"))?;
    let target = match body.get("state").and_then(Value::as_str).unwrap_or("errored") {
        "errored" => "errored",
        "degraded" => "degraded",
        other => return Err(invalid(&["state"], format!("{other} is not errored or degraded"))),
    };
    let mut apps = s.lock();
    let app = find(&mut apps, id)?;
    app.target = target;
    if app.fields["state"] == "healthy" {
        app.set_state(target, "Autoupdated");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
