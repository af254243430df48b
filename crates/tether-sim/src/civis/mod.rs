//! Civis Platform services API simulator (shared/platforms/civis.md): services with their deployments
//! (pending → running after the delay, or terminated when the image name contains `fail` or `/_sim/fail`
//! doomed it), archive, clone, logs, tokens, shares, transfer and project membership, plus the Swagger
//! document at `GET /endpoints` the SDK builds its client from. Request keys are accepted in camelCase and
//! snake_case at every level but inside `environmentVariables`; responses are camelCase. Auth is Basic with
//! the API key as user name; errors are `{"error", "errorDescription", "code"}`, and a 401 carries
//! `WWW-Authenticate`.

mod spec;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde_json::{Map, Value, json};

use crate::control::{self, Control};
use crate::read_json;

/// The API key the simulator accepts.
pub const DEFAULT_API_KEY: &str = "sim-key";
/// Seeded project ids services can join.
const PROJECTS: &[i64] = &[1, 2, 3];

fn user(id: i64) -> Value {
    if id == 1 {
        json!({"id": 1, "name": "Sim User", "username": "sim", "initials": "SU", "online": true})
    } else {
        json!({"id": id, "name": format!("User {id}"), "username": format!("user{id}"), "initials": "U", "online": false})
    }
}

/// Simulator state and settings.
#[derive(Clone)]
pub struct SimState {
    inner: Arc<Mutex<Store>>,
    delay: Duration,
    origin: Arc<str>,
    control: Control,
}

#[derive(Default)]
struct Store {
    next_id: i64,
    services: BTreeMap<i64, Service>,
    deployments: BTreeMap<i64, Deployment>,
}

struct Service {
    fields: Map<String, Value>,
    tokens: Vec<Map<String, Value>>,
    user_shares: BTreeMap<i64, String>,
    group_shares: BTreeMap<i64, String>,
    projects: BTreeSet<i64>,
    doomed: bool,
}

struct Deployment {
    fields: Map<String, Value>,
    running_at: Instant,
    crashes: bool,
    logs: Vec<Value>,
}

fn render_error(status: StatusCode, message: &str) -> Response {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        _ => "internal_server_error",
    };
    let mut response =
        (status, Json(json!({"error": code, "errorDescription": message, "code": status.as_u16()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert("www-authenticate", HeaderValue::from_static("Basic realm=\"Civis API\""));
    }
    response
}

/// A Civis error.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        render_error(self.0, &self.1)
    }
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "The requested resource could not be found.".into())
}

type ApiResult<T = Response> = Result<T, ApiError>;

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// snake_case → camelCase for one key.
fn camel(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    let mut upper = false;
    for c in key.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Request keys in camelCase at every level, except the user's keys inside `environmentVariables`.
fn normalize(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let key = camel(&k);
                    let v = if key == "environmentVariables" { v } else { normalize(v) };
                    (key, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(normalize).collect()),
        other => other,
    }
}

fn body_of(bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    match normalize(Value::Object(read_json(bytes).map_err(bad)?)) {
        Value::Object(map) => Ok(map),
        _ => unreachable!("normalize keeps objects objects"),
    }
}

/// The writable fields with the simulator's defaults.
fn service_defaults() -> Map<String, Value> {
    json!({
        "name": null, "description": null, "dockerImageName": null, "dockerImageTag": "latest",
        "schedule": {"runtimePlan": "on_demand", "recurrences": []}, "replicas": 1, "maxReplicas": null,
        "instanceType": null, "memory": 2000, "cpu": 1000, "credentials": [], "permissionSetId": null,
        "gitRepoUrl": null, "gitRepoRef": null, "gitPathDir": null, "environmentVariables": {},
        "notifications": {"failureEmailAddresses": [], "failureOn": false}, "partitionLabel": null,
    })
    .as_object()
    .cloned()
    .unwrap_or_default()
}

/// Checks the type of one writable field.
fn validate(key: &str, value: &Value) -> ApiResult<()> {
    let ok = match key {
        "name" | "description" | "dockerImageName" | "dockerImageTag" | "instanceType" | "gitRepoUrl"
        | "gitRepoRef" | "gitPathDir" | "partitionLabel" | "type" => value.is_string() || value.is_null(),
        "replicas" | "memory" | "cpu" => value.is_i64(),
        "maxReplicas" | "permissionSetId" => value.is_i64() || value.is_null(),
        "hidden" => value.is_boolean(),
        "credentials" => value.as_array().is_some_and(|a| a.iter().all(Value::is_i64)),
        "environmentVariables" => value.as_object().is_some_and(|m| m.values().all(Value::is_string)),
        "notifications" => value.is_object(),
        "schedule" => return validate_schedule(value),
        _ => true,
    };
    if ok { Ok(()) } else { Err(bad(format!("{key} has the wrong type"))) }
}

fn validate_schedule(value: &Value) -> ApiResult<()> {
    let plan = value.get("runtimePlan").and_then(Value::as_str);
    if !plan.is_some_and(|p| ["on_demand", "specific_times", "always_on"].contains(&p)) {
        return Err(bad("schedule.runtimePlan is required: on_demand, specific_times or always_on"));
    }
    let Some(recurrences) = value.get("recurrences").and_then(Value::as_array) else {
        return Err(bad("schedule.recurrences is required"));
    };
    for r in recurrences {
        let in_range = |key: &str, max: i64| {
            r.get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().all(|v| v.as_i64().is_some_and(|n| (0..=max).contains(&n))))
        };
        if !in_range("scheduledDays", 6) || !in_range("scheduledHours", 23) {
            return Err(bad("schedule.recurrences need scheduledDays (0-6) and scheduledHours (0-23)"));
        }
    }
    Ok(())
}

impl SimState {
    /// A simulator whose deployments start after `delay`; `origin` is its own base URL.
    pub fn new(delay: Duration, origin: &str) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Store { next_id: 1000, ..Store::default() })),
            delay,
            origin: origin.into(),
            control: Control::new(render_error, Some("x-ratelimit-reset")),
        }
    }

    /// What a client needs to know of the seeded data (the endpoints file's `seeded`).
    pub fn seeded() -> Value {
        json!({"projectIds": PROJECTS, "userId": 1})
    }

    /// The counters and faults of this simulator.
    pub fn control(&self) -> &Control {
        &self.control
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        let mut store = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        for d in store.deployments.values_mut() {
            if d.fields["state"] == "pending" && now >= d.running_at {
                let (state, message) = if d.crashes {
                    ("terminated", "Container crashed: exited with code 1 (CrashLoopBackOff)")
                } else {
                    ("running", "Deployment is running")
                };
                d.fields.insert("state".into(), json!(state));
                d.fields.insert("stateMessage".into(), json!(message));
                d.fields.insert("updatedAt".into(), json!(crate::civis::now()));
                d.logs.push(json!({"message": message, "stream": "stdout", "createdAt": crate::civis::now(), "source": "system"}));
            }
        }
        store
    }

    fn authorize(&self, headers: &HeaderMap) -> ApiResult<()> {
        use base64::Engine as _;
        let unauthorized = || ApiError(StatusCode::UNAUTHORIZED, "Invalid API key".into());
        let header = headers.get("authorization").and_then(|v| v.to_str().ok()).ok_or_else(unauthorized)?;
        let key = if let Some(basic) = header.strip_prefix("Basic ") {
            let raw = base64::engine::general_purpose::STANDARD.decode(basic.trim()).map_err(|_| unauthorized())?;
            let raw = String::from_utf8(raw).map_err(|_| unauthorized())?;
            raw.split_once(':').map_or(raw.clone(), |(user, _)| user.to_string())
        } else if let Some(bearer) = header.strip_prefix("Bearer ") {
            bearer.to_string()
        } else {
            return Err(unauthorized());
        };
        if key != DEFAULT_API_KEY {
            return Err(unauthorized());
        }
        Ok(())
    }
}

/// The router of the Civis services API and of `/_sim`. Every path parameter after /services is named
/// `{id}` in the router (the router needs one name per position); the Swagger document names them as
/// the platform does.
pub fn router(state: SimState) -> Router {
    let api = Router::new()
        .route("/endpoints", get(endpoints))
        .route("/services", get(list).post(create))
        .route("/services/", get(list).post(create))
        .route("/services/{id}", get(get_one).put(replace).patch(update).delete(legacy_delete))
        .route("/services/{id}/archive", put(archive))
        .route("/services/{id}/clone", post(clone))
        .route("/services/{id}/deployments", get(deployments_list).post(deploy))
        .route("/services/{id}/deployments/{deployment_id}", get(deployments_get).delete(deployments_delete))
        .route("/services/{id}/deployments/{deployment_id}/logs", get(deployment_logs))
        .route("/services/{id}/redeploy", post(deploy))
        .route("/services/{id}/tokens", get(tokens_list).post(tokens_create))
        .route("/services/{id}/tokens/{token_id}", axum::routing::delete(tokens_delete))
        .route("/services/{id}/shares", get(shares_list))
        .route("/services/{id}/shares/{kind}", put(shares_put))
        .route("/services/{id}/shares/{kind}/{principal}", axum::routing::delete(shares_delete))
        .route("/services/{id}/dependencies", get(dependencies))
        .route("/services/{id}/transfer", put(transfer))
        .route("/services/{id}/projects", get(projects_list))
        .route("/services/{id}/projects/{project_id}", put(projects_put).delete(projects_delete));
    let own = control::SimRoutes {
        reset: post(sim_reset),
        state: get(sim_state),
        seed: post(sim_seed),
        fail: post(sim_fail),
    };
    control::assemble(api, own, state.clone(), &state.control, "The requested resource could not be found.")
}

async fn endpoints(State(s): State<SimState>, headers: HeaderMap) -> ApiResult {
    s.authorize(&headers)?;
    Ok(([("content-type", "application/json")], spec::document()).into_response())
}

// === services ===

fn detail(store: &Store, id: i64) -> Value {
    let service = &store.services[&id];
    let mut out = service.fields.clone();
    let current = out.get("currentDeploymentId").and_then(Value::as_i64).and_then(|d| store.deployments.get(&d));
    out.insert("currentDeployment".into(), current.map_or(Value::Null, |d| Value::Object(d.fields.clone())));
    let url = current
        .filter(|d| d.fields["state"] == "running")
        .map(|_| json!(format!("{}/svc/{id}", "http://services.sim.local")));
    out.insert("currentUrl".into(), url.unwrap_or(Value::Null));
    out.remove("currentDeploymentId");
    Value::Object(out)
}

fn summary(store: &Store, id: i64) -> Value {
    let full = detail(store, id);
    let mut out = Map::new();
    for key in [
        "id",
        "name",
        "description",
        "user",
        "type",
        "createdAt",
        "updatedAt",
        "gitRepoUrl",
        "gitRepoRef",
        "gitPathDir",
        "archived",
    ] {
        out.insert(key.into(), full[key].clone());
    }
    let mut current = full["currentDeployment"].clone();
    if let Some(c) = current.as_object_mut() {
        c.remove("displayUrl");
    }
    out.insert("currentDeployment".into(), current);
    Value::Object(out)
}

fn service_mut(store: &mut Store, id: i64) -> ApiResult<&mut Service> {
    store.services.get_mut(&id).ok_or_else(not_found)
}

fn new_service(store: &mut Store, body: &Map<String, Value>) -> ApiResult<i64> {
    let mut fields = service_defaults();
    for (key, value) in body {
        validate(key, value)?;
        if fields.contains_key(key) {
            fields.insert(key.clone(), value.clone());
        }
    }
    store.next_id += 1;
    let id = store.next_id;
    let stamp = now();
    for (key, value) in [
        ("id", json!(id)),
        ("user", user(1)),
        ("type", body.get("type").cloned().unwrap_or(Value::Null)),
        ("hidden", body.get("hidden").cloned().unwrap_or(json!(false))),
        ("timeZone", json!("America/Chicago")),
        ("createdAt", json!(stamp)),
        ("updatedAt", json!(stamp)),
        ("reportId", Value::Null),
        ("myPermissionLevel", json!("manage")),
        ("archived", json!(false)),
        ("currentDeploymentId", Value::Null),
    ] {
        fields.insert(key.into(), value);
    }
    store.services.insert(
        id,
        Service {
            fields,
            tokens: Vec::new(),
            user_shares: BTreeMap::new(),
            group_shares: BTreeMap::new(),
            projects: BTreeSet::new(),
            doomed: false,
        },
    );
    Ok(id)
}

async fn create(State(s): State<SimState>, headers: HeaderMap, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let mut store = s.lock();
    let id = new_service(&mut store, &body)?;
    Ok((StatusCode::CREATED, Json(detail(&store, id))).into_response())
}

async fn get_one(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    service_mut(&mut store, id)?;
    Ok(Json(detail(&store, id)).into_response())
}

/// PATCH merges top-level keys; PUT (`replace`) resets what it leaves out.
fn write(s: &SimState, id: i64, body: Bytes, replace: bool) -> ApiResult {
    let body = body_of(&body)?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    if replace {
        for (key, value) in service_defaults() {
            service.fields.insert(key, value);
        }
    }
    for (key, value) in &body {
        if key == "type" || key == "hidden" {
            return Err(bad(format!("{key} can only be set when the service is created")));
        }
        validate(key, value)?;
        if service_defaults().contains_key(key) {
            service.fields.insert(key.clone(), value.clone());
        }
    }
    service.fields.insert("updatedAt".into(), json!(now()));
    Ok(Json(detail(&store, id)).into_response())
}

async fn replace(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    write(&s, id, body, true)
}

async fn update(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    write(&s, id, body, false)
}

fn set_archived(store: &mut Store, id: i64, archived: bool) -> ApiResult<()> {
    let service = service_mut(store, id)?;
    service.fields.insert("archived".into(), json!(archived));
    service.fields.insert("updatedAt".into(), json!(now()));
    let current = service.fields.get("currentDeploymentId").and_then(Value::as_i64);
    if archived && let Some(d) = current.and_then(|d| store.deployments.get_mut(&d)) {
        terminate(d, "Service archived");
    }
    Ok(())
}

async fn legacy_delete(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    set_archived(&mut s.lock(), id, true)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn archive(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let status =
        body.get("status").and_then(Value::as_bool).ok_or_else(|| bad("status is required (true or false)"))?;
    let mut store = s.lock();
    set_archived(&mut store, id, status)?;
    Ok(Json(detail(&store, id)).into_response())
}

async fn clone(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let source = service_mut(&mut store, id)?.fields.clone();
    let mut body: Map<String, Value> =
        service_defaults().keys().filter_map(|k| Some((k.clone(), source.get(k)?.clone()))).collect();
    body.insert("name".into(), json!(format!("Clone of {}", source["name"].as_str().unwrap_or_default())));
    body.insert("type".into(), source["type"].clone());
    body.insert("hidden".into(), source["hidden"].clone());
    let new = new_service(&mut store, &body)?;
    Ok((StatusCode::CREATED, Json(detail(&store, new))).into_response())
}

fn query(raw: Option<String>) -> ApiResult<Vec<(String, String)>> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or_default()).map_err(|e| bad(e.to_string()))
}

/// One query value, also under the SDK's `name[]` list form; lists joined with commas.
fn param(pairs: &[(String, String)], name: &str) -> Option<String> {
    let list = format!("{name}[]");
    let values: Vec<&str> = pairs.iter().filter(|(k, _)| *k == name || *k == list).map(|(_, v)| v.as_str()).collect();
    (!values.is_empty()).then(|| values.join(","))
}

fn paging(pairs: &[(String, String)]) -> ApiResult<(usize, usize, bool)> {
    let number = |name: &str, default: usize| match param(pairs, name) {
        None => Ok(default),
        Some(v) => {
            v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| bad(format!("{name} must be a positive integer")))
        }
    };
    let limit = number("limit", 20)?.min(50);
    let page = number("page_num", 1)?;
    let ascending = match param(pairs, "order_dir").as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(other) => return Err(bad(format!("order_dir {other} is not asc or desc"))),
    };
    Ok((limit, page, ascending))
}

fn page<T>(items: Vec<T>, limit: usize, page: usize) -> Vec<T> {
    items.into_iter().skip((page - 1) * limit).take(limit).collect()
}

async fn list(State(s): State<SimState>, headers: HeaderMap, RawQuery(raw): RawQuery) -> ApiResult {
    s.authorize(&headers)?;
    let pairs = query(raw)?;
    let (limit, page_num, ascending) = paging(&pairs)?;
    let hidden = param(&pairs, "hidden").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let archived = param(&pairs, "archived").unwrap_or_default().to_lowercase();
    let authors: Vec<String> =
        param(&pairs, "author").map(|a| a.split(',').map(str::to_string).collect()).unwrap_or_default();
    let statuses: Vec<String> =
        param(&pairs, "status").map(|a| a.split(',').map(str::to_string).collect()).unwrap_or_default();
    let order = param(&pairs, "order").unwrap_or_else(|| "updated_at".into());
    let sort_key = match order.as_str() {
        "updated_at" => "updatedAt",
        "created_at" => "createdAt",
        "name" => "name",
        other => return Err(bad(format!("order {other} is not updated_at, created_at or name"))),
    };
    let store = s.lock();
    let mut ids: Vec<i64> = store
        .services
        .iter()
        .filter(|(_, svc)| hidden || svc.fields["hidden"] != true)
        .filter(|(_, svc)| match archived.as_str() {
            "all" => true,
            "true" => svc.fields["archived"] == true,
            _ => svc.fields["archived"] != true,
        })
        .filter(|(_, svc)| {
            authors.is_empty() || authors.iter().any(|a| a.parse::<i64>().ok() == svc.fields["user"]["id"].as_i64())
        })
        .filter(|(id, _)| {
            let running = detail(&store, **id)["currentDeployment"]["state"] == "running";
            statuses.is_empty()
                || statuses.iter().any(|st| (st == "running") == running && ["running", "idle"].contains(&st.as_str()))
        })
        .map(|(id, _)| *id)
        .collect();
    ids.sort_by(|a, b| {
        let key = |id: &i64| store.services[id].fields[sort_key].as_str().unwrap_or_default().to_string();
        key(a).cmp(&key(b)).then(a.cmp(b))
    });
    if !ascending {
        ids.reverse();
    }
    let items: Vec<Value> = page(ids, limit, page_num).into_iter().map(|id| summary(&store, id)).collect();
    Ok(Json(items).into_response())
}

// === deployments ===

fn terminate(d: &mut Deployment, why: &str) {
    if d.fields["state"] != "terminated" {
        d.fields.insert("state".into(), json!("terminated"));
        d.fields.insert("stateMessage".into(), json!(why));
        d.fields.insert("updatedAt".into(), json!(now()));
        d.logs.push(json!({"message": why, "stream": "stdout", "createdAt": now(), "source": "system"}));
    }
}

/// `POST .../deployments` and `POST .../redeploy`: a new deployment of the current config becomes current;
/// the previous one terminates.
async fn deploy(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let mut store = s.lock();
    if let Some(previous) = body.get("deploymentId").filter(|v| !v.is_null()) {
        let belongs =
            previous.as_i64().and_then(|d| store.deployments.get(&d)).is_some_and(|d| d.fields["serviceId"] == id);
        if !belongs {
            return Err(not_found());
        }
    }
    let service = service_mut(&mut store, id)?;
    let config = service.fields.clone();
    let doomed = service.doomed || config["dockerImageName"].as_str().is_some_and(|i| i.contains("fail"));
    store.next_id += 1;
    let deployment_id = store.next_id;
    let stamp = now();
    let fields = json!({
        "deploymentId": deployment_id, "userId": 1, "host": "services.sim.local",
        "name": format!("service-{id}-{deployment_id}"), "dockerImageName": config["dockerImageName"],
        "dockerImageTag": config["dockerImageTag"], "displayUrl": format!("{}/svc/{id}?token=signed", s.origin),
        "instanceType": config["instanceType"], "memory": config["memory"], "cpu": config["cpu"],
        "state": "pending", "stateMessage": "Deployment is starting", "maxMemoryUsage": null, "maxCpuUsage": null,
        "createdAt": stamp, "updatedAt": stamp, "serviceId": id,
    });
    let logs =
        vec![json!({"message": "Deployment created", "stream": "stdout", "createdAt": stamp, "source": "system"})];
    if let Some(previous) =
        config.get("currentDeploymentId").and_then(Value::as_i64).and_then(|d| store.deployments.get_mut(&d))
    {
        terminate(previous, "Replaced by a new deployment");
    }
    store.deployments.insert(
        deployment_id,
        Deployment {
            fields: fields.as_object().cloned().unwrap_or_default(),
            running_at: Instant::now() + s.delay,
            crashes: doomed,
            logs,
        },
    );
    let service = service_mut(&mut store, id)?;
    service.fields.insert("currentDeploymentId".into(), json!(deployment_id));
    drop(store);
    let store = s.lock();
    Ok((StatusCode::CREATED, Json(Value::Object(store.deployments[&deployment_id].fields.clone()))).into_response())
}

fn deployment_of(store: &mut Store, id: i64, deployment_id: i64) -> ApiResult<&mut Deployment> {
    service_mut(store, id)?;
    store.deployments.get_mut(&deployment_id).filter(|d| d.fields["serviceId"] == id).ok_or_else(not_found)
}

async fn deployments_list(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    let pairs = query(raw)?;
    let (limit, page_num, ascending) = paging(&pairs)?;
    let only: Option<i64> = param(&pairs, "deployment_id").and_then(|v| v.parse().ok());
    let mut store = s.lock();
    service_mut(&mut store, id)?;
    let mut items: Vec<Value> = store
        .deployments
        .values()
        .filter(|d| d.fields["serviceId"] == id && only.is_none_or(|o| d.fields["deploymentId"] == o))
        .map(|d| {
            let mut f = d.fields.clone();
            f.remove("displayUrl");
            Value::Object(f)
        })
        .collect();
    if !ascending {
        items.reverse();
    }
    Ok(Json(page(items, limit, page_num)).into_response())
}

async fn deployments_get(State(s): State<SimState>, headers: HeaderMap, Path((id, d)): Path<(i64, i64)>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    Ok(Json(Value::Object(deployment_of(&mut store, id, d)?.fields.clone())).into_response())
}

async fn deployments_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((id, d)): Path<(i64, i64)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    terminate(deployment_of(&mut store, id, d)?, "Stopped by user");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deployment_logs(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((id, d)): Path<(i64, i64)>,
    RawQuery(raw): RawQuery,
) -> ApiResult {
    s.authorize(&headers)?;
    let pairs = query(raw)?;
    let start = param(&pairs, "start_at");
    let end = param(&pairs, "end_at");
    let limit: usize = param(&pairs, "limit").and_then(|v| v.parse().ok()).unwrap_or(10_000);
    let mut store = s.lock();
    let deployment = deployment_of(&mut store, id, d)?;
    let items: Vec<Value> = deployment
        .logs
        .iter()
        .filter(|l| {
            let at = l["createdAt"].as_str().unwrap_or_default();
            start.as_deref().is_none_or(|s| at >= s) && end.as_deref().is_none_or(|e| at <= e)
        })
        .take(limit)
        .cloned()
        .collect();
    Ok(Json(items).into_response())
}

// === tokens, shares, dependencies, transfer, projects ===

async fn tokens_create(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let name =
        body.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()).ok_or_else(|| bad("name is required"))?;
    let expires_at = match body.get("expiresIn") {
        None | Some(Value::Null) => Value::Null,
        Some(v) => {
            let secs = v.as_i64().filter(|s| *s > 0).ok_or_else(|| bad("expiresIn must be a positive integer"))?;
            json!((chrono::Utc::now() + chrono::Duration::seconds(secs)).format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        }
    };
    let mut store = s.lock();
    store.next_id += 1;
    let token_id = store.next_id;
    let token = json!({"id": token_id, "name": name, "user": user(1), "machineToken": body.get("machineToken").and_then(Value::as_bool).unwrap_or(false),
                       "expiresAt": expires_at, "createdAt": now()});
    let token = token.as_object().cloned().unwrap_or_default();
    service_mut(&mut store, id)?.tokens.push(token.clone());
    let mut out = token;
    out.insert("token".into(), json!(format!("civis-sim-{}", uuid::Uuid::new_v4().simple())));
    Ok((StatusCode::CREATED, Json(Value::Object(out))).into_response())
}

async fn tokens_list(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let tokens = service_mut(&mut store, id)?.tokens.iter().cloned().map(Value::Object).collect::<Vec<_>>();
    Ok(Json(tokens).into_response())
}

async fn tokens_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((id, token_id)): Path<(i64, i64)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    let before = service.tokens.len();
    service.tokens.retain(|t| t["id"] != token_id);
    if service.tokens.len() == before {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn share_index(service: &Service) -> Value {
    let level = |map: &BTreeMap<i64, String>, wanted: &str, group: bool| -> Vec<Value> {
        map.iter()
            .filter(|(_, l)| l.as_str() == wanted)
            .map(|(id, _)| json!({"id": id, "name": if group { format!("Group {id}") } else { user(*id)["name"].as_str().unwrap_or_default().to_string() }}))
            .collect()
    };
    let section = |wanted: &str| json!({"users": level(&service.user_shares, wanted, false), "groups": level(&service.group_shares, wanted, true)});
    let mut owners = section("manage");
    if let Some(users) = owners["users"].as_array_mut() {
        users.insert(0, json!({"id": 1, "name": "Sim User"}));
    }
    json!({"readers": section("read"), "writers": section("write"), "owners": owners,
           "totalUserShares": service.user_shares.len() + 1, "totalGroupShares": service.group_shares.len()})
}

async fn shares_list(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    Ok(Json(json!([share_index(service_mut(&mut store, id)?)])).into_response())
}

async fn shares_put(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((id, kind)): Path<(i64, String)>,
    body: Bytes,
) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let ids_key = match kind.as_str() {
        "users" => "userIds",
        "groups" => "groupIds",
        _ => return Err(not_found()),
    };
    let ids: Vec<i64> = body
        .get(ids_key)
        .and_then(Value::as_array)
        .and_then(|a| a.iter().map(Value::as_i64).collect())
        .ok_or_else(|| bad(format!("{ids_key} is required: a list of ids")))?;
    let level = body.get("permissionLevel").and_then(Value::as_str).filter(|l| ["read", "write", "manage"].contains(l));
    let level = level.ok_or_else(|| bad("permissionLevel is required: read, write or manage"))?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    let map = if kind == "users" { &mut service.user_shares } else { &mut service.group_shares };
    for principal in ids {
        map.insert(principal, level.to_string());
    }
    Ok(Json(share_index(service)).into_response())
}

async fn shares_delete(
    State(s): State<SimState>,
    headers: HeaderMap,
    Path((id, kind, principal)): Path<(i64, String, i64)>,
) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    let map = match kind.as_str() {
        "users" => &mut service.user_shares,
        "groups" => &mut service.group_shares,
        _ => return Err(not_found()),
    };
    map.remove(&principal).ok_or_else(not_found)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn dependencies(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    let credentials: Vec<Value> = service.fields["credentials"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            json!({"objectType": "Credential", "fcoType": "credentials", "id": c, "name": format!("credential {c}"),
                        "permissionLevel": "read", "description": null, "shareable": true})
        })
        .collect();
    Ok(Json(credentials).into_response())
}

async fn transfer(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>, body: Bytes) -> ApiResult {
    s.authorize(&headers)?;
    let body = body_of(&body)?;
    let to = body.get("userId").and_then(Value::as_i64).ok_or_else(|| bad("userId is required"))?;
    body.get("includeDependencies").and_then(Value::as_bool).ok_or_else(|| bad("includeDependencies is required"))?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    service.fields.insert("user".into(), user(to));
    service.fields.insert("updatedAt".into(), json!(now()));
    Ok(Json(json!({"dependencies": []})).into_response())
}

fn project(id: i64) -> Value {
    json!({"id": id, "author": user(1), "name": format!("Project {id}"), "description": null, "users": [user(1)],
           "autoShare": false, "createdAt": "2024-01-01T00:00:00.000Z", "updatedAt": "2024-01-01T00:00:00.000Z", "archived": false})
}

async fn projects_list(State(s): State<SimState>, headers: HeaderMap, Path(id): Path<i64>) -> ApiResult {
    s.authorize(&headers)?;
    let mut store = s.lock();
    let projects: Vec<Value> = service_mut(&mut store, id)?.projects.iter().map(|p| project(*p)).collect();
    Ok(Json(projects).into_response())
}

async fn projects_put(State(s): State<SimState>, headers: HeaderMap, Path((id, p)): Path<(i64, i64)>) -> ApiResult {
    s.authorize(&headers)?;
    if !PROJECTS.contains(&p) {
        return Err(not_found());
    }
    service_mut(&mut s.lock(), id)?.projects.insert(p);
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn projects_delete(State(s): State<SimState>, headers: HeaderMap, Path((id, p)): Path<(i64, i64)>) -> ApiResult {
    s.authorize(&headers)?;
    if !service_mut(&mut s.lock(), id)?.projects.remove(&p) {
        return Err(not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

// === /_sim: platform-specific control ===

async fn sim_reset(State(s): State<SimState>) -> StatusCode {
    *s.inner.lock().unwrap_or_else(|p| p.into_inner()) = Store { next_id: 1000, ..Store::default() };
    s.control.reset();
    StatusCode::NO_CONTENT
}

async fn sim_state(State(s): State<SimState>) -> Json<Value> {
    let store = s.lock();
    let services: Vec<Value> = store.services.keys().map(|id| detail(&store, *id)).collect();
    let deployments: Vec<Value> = store.deployments.values().map(|d| Value::Object(d.fields.clone())).collect();
    Json(json!({"services": services, "deployments": deployments}))
}

/// `POST /_sim/seed` `{"service": {<create body>}}`: a service someone else created.
async fn sim_seed(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = body_of(&body)?;
    let Some(Value::Object(service)) = body.get("service") else {
        return Err(bad("service: expected an object"));
    };
    let mut store = s.lock();
    let id = new_service(&mut store, service)?;
    Ok((StatusCode::CREATED, Json(detail(&store, id))).into_response())
}

/// `POST /_sim/fail` `{"id": <service id>}`: its running or next deployment crashes (terminated).
async fn sim_fail(State(s): State<SimState>, body: Bytes) -> ApiResult {
    let body = body_of(&body)?;
    let id = body.get("id").and_then(Value::as_i64).ok_or_else(|| bad("id is required"))?;
    let mut store = s.lock();
    let service = service_mut(&mut store, id)?;
    service.doomed = true;
    let current = service.fields.get("currentDeploymentId").and_then(Value::as_i64);
    if let Some(d) = current.and_then(|d| store.deployments.get_mut(&d)) {
        d.crashes = true;
        if d.fields["state"] == "running" {
            terminate(d, "Container crashed: exited with code 1 (CrashLoopBackOff)");
        }
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}
