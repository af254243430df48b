//! What every simulator shares besides its platform's API: request counters per method and route, fault
//! injection per route, and the `/_sim` control API that tests drive.
//!
//! Control API (JSON):
//! - `GET /_sim/counters` → `{"POST /v2.1/projects/{project_name}/services": 3, ...}` (route templates)
//! - `GET /_sim/log` → every API request so far, `[{"start": ms, "end": ms, "method", "route", "status",
//!   "auth"}]` (times in milliseconds since the Unix epoch; `auth` a digest of the credential headers, to
//!   tell accounts apart), the newest [`LOG_CAPACITY`]
//! - `POST /_sim/faults` with a [`Fault`] → adds it; `DELETE /_sim/faults` clears all faults
//! - `POST /_sim/reset` → clears state (back to the seeded fixtures), counters and faults
//! - `GET /_sim/state` → the platform's whole state, for duplicate and leak checks
//! - `POST /_sim/seed` → the platform's own seeding (e.g. an existing object to adopt)
//! - `POST /_sim/fail` → force an object into the platform's failure state

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Renders a platform's error body for a status and message.
pub type ErrorRenderer = fn(StatusCode, &str) -> Response;

/// One injected fault. It applies to requests whose method and route template (or path prefix) match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// HTTP method to match; any when unset.
    #[serde(default)]
    pub method: Option<String>,
    /// Route template (`/v2.1/projects/{project_name}/services`) or literal path prefix to match; any when unset.
    #[serde(default)]
    pub route: Option<String>,
    /// Probability (0..=1) that a matching request is hit; 1 when unset.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Hit at most this many requests, then retire; unlimited when unset.
    #[serde(default)]
    pub times: Option<u32>,
    /// Answer with this status and the platform's error body instead of handling the request.
    #[serde(default)]
    pub status: Option<u16>,
    /// With status 429: the Retry-After value in seconds (also sent as the platform's own rate-limit header).
    #[serde(default)]
    pub retry_after: Option<u64>,
    /// Delay the request by this many milliseconds (then handle it, or apply the other effects).
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Drop the connection without a complete response.
    #[serde(default)]
    pub reset: bool,
    /// Handle the request, then replace a successful body with malformed JSON.
    #[serde(default)]
    pub malformed_body: bool,
}

/// Counters and faults of one simulator.
#[derive(Clone)]
pub struct Control {
    inner: Arc<Mutex<ControlState>>,
    render_error: ErrorRenderer,
    /// The header a platform uses to say when to retry after a 429, besides Retry-After.
    rate_limit_header: Option<&'static str>,
}

#[derive(Default)]
struct ControlState {
    counters: BTreeMap<String, u64>,
    faults: Vec<Fault>,
    log: std::collections::VecDeque<Logged>,
}

/// Most requests `/_sim/log` keeps (the oldest go first).
pub const LOG_CAPACITY: usize = 200_000;

/// One request as `/_sim/log` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct Logged {
    /// When it arrived, in ms since the Unix epoch.
    pub start: u64,
    /// When its answer was ready.
    pub end: u64,
    /// HTTP method.
    pub method: String,
    /// Route template (or path, for one no route matches).
    pub route: String,
    /// Status answered (0: the connection was reset).
    pub status: u16,
    /// A digest of the credential headers (Authorization, Cookie, X-Api-Key, Token): one per account.
    pub auth: u64,
}

fn epoch_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

enum Effect {
    Respond(Response),
    Reset,
    Malformed,
}

impl Control {
    /// A control for a platform whose errors `render_error` renders.
    pub fn new(render_error: ErrorRenderer, rate_limit_header: Option<&'static str>) -> Self {
        Self { inner: Arc::default(), render_error, rate_limit_header }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ControlState> {
        // A panic while holding the lock cannot leave counters or faults half-written; keep serving.
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Requests counted so far, by `METHOD route-template`.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.lock().counters.clone()
    }

    /// Adds a fault.
    pub fn add_fault(&self, fault: Fault) {
        self.lock().faults.push(fault);
    }

    /// Clears counters, faults and the request log.
    pub fn reset(&self) {
        let mut state = self.lock();
        state.counters.clear();
        state.faults.clear();
        state.log.clear();
    }

    fn record(&self, entry: Logged) {
        let mut state = self.lock();
        if state.log.len() >= LOG_CAPACITY {
            state.log.pop_front();
        }
        state.log.push_back(entry);
    }

    /// Counts the request and picks the fault (if any) that hits it, consuming one of its `times`.
    fn admit(&self, method: &str, route: &str, path: &str) -> Option<Fault> {
        let mut state = self.lock();
        *state.counters.entry(format!("{method} {route}")).or_default() += 1;
        let index = state.faults.iter().position(|f| {
            f.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && f.route.as_deref().is_none_or(|r| r == route || path.starts_with(r))
                && f.rate.is_none_or(|rate| fastrand::f64() < rate)
        })?;
        let fault = state.faults[index].clone();
        if let Some(times) = state.faults[index].times.as_mut() {
            *times = times.saturating_sub(1);
            if *times == 0 {
                state.faults.remove(index);
            }
        }
        Some(fault)
    }

    fn effect(&self, fault: &Fault) -> Option<Effect> {
        if fault.reset {
            return Some(Effect::Reset);
        }
        if let Some(code) = fault.status {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status {
                StatusCode::TOO_MANY_REQUESTS => "Too many requests".to_string(),
                _ => format!("Injected fault: {status}"),
            };
            let mut response = (self.render_error)(status, &message);
            if let Some(secs) = fault.retry_after {
                let value = HeaderValue::from(secs);
                response.headers_mut().insert("retry-after", value.clone());
                if let Some(name) = self.rate_limit_header {
                    response.headers_mut().insert(name, value);
                }
            }
            return Some(Effect::Respond(response));
        }
        fault.malformed_body.then_some(Effect::Malformed)
    }
}

/// Middleware counting every API request and applying the faults that match it.
pub async fn layer(State(control): State<Control>, request: Request, next: Next) -> Response {
    use std::hash::{Hash, Hasher};
    let start = epoch_ms();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    for name in ["authorization", "cookie", "x-api-key", "token"] {
        request.headers().get(name).map(|v| v.as_bytes().to_vec()).hash(&mut digest);
    }
    let auth = digest.finish();
    let method = request.method().as_str().to_string();
    let (log_method, log_route) = (method.clone(), route_of(&request));
    let response = handle(control.clone(), request, next).await;
    let status = if response.extensions().get::<ResetMark>().is_some() { 0 } else { response.status().as_u16() };
    control.record(Logged { start, end: epoch_ms(), method: log_method, route: log_route, status, auth });
    response
}

/// Marks a response whose connection is reset, for the log.
#[derive(Clone, Copy)]
struct ResetMark;

fn route_of(request: &Request) -> String {
    let path = request.uri().path().to_string();
    request.extensions().get::<MatchedPath>().map_or(format!("{path} (no such route)"), |m| m.as_str().to_string())
}

async fn handle(control: Control, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_string();
    let path = request.uri().path().to_string();
    // A request no route of the platform matches is counted as such, so a test can tell that a value
    // built into a path sent a request nowhere the platform has.
    let route =
        request.extensions().get::<MatchedPath>().map_or(format!("{path} (no such route)"), |m| m.as_str().to_string());
    let Some(fault) = control.admit(&method, &route, &path) else {
        return next.run(request).await;
    };
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    match control.effect(&fault) {
        None => next.run(request).await,
        Some(Effect::Respond(response)) => response,
        Some(Effect::Reset) => {
            let mut response = broken_connection();
            response.extensions_mut().insert(ResetMark);
            response
        }
        Some(Effect::Malformed) => {
            let response = next.run(request).await;
            if !response.status().is_success() {
                return response;
            }
            let (mut parts, _) = response.into_parts();
            parts.headers.insert("content-type", HeaderValue::from_static("application/json"));
            parts.headers.remove("content-length");
            Response::from_parts(parts, Body::from(r#"{"malformed": tru"#))
        }
    }
}

/// A response whose body fails at once: the server aborts the connection mid-message, which the client
/// sees as a reset / incomplete message.
fn broken_connection() -> Response {
    let stream = futures::stream::once(async {
        Err::<bytes::Bytes, std::io::Error>(std::io::Error::new(std::io::ErrorKind::ConnectionReset, "injected reset"))
    });
    let mut response = Response::new(Body::from_stream(stream));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

// === /_sim handlers shared by every platform ===

/// `GET /_sim/counters`
pub async fn counters(State(control): State<Control>) -> Json<BTreeMap<String, u64>> {
    Json(control.counters())
}

/// `GET /_sim/log`
pub async fn log(State(control): State<Control>) -> Json<Vec<Logged>> {
    Json(control.lock().log.iter().cloned().collect())
}

/// `POST /_sim/faults`
pub async fn add_fault(State(control): State<Control>, body: axum::body::Bytes) -> Response {
    match serde_json::from_slice::<Fault>(&body) {
        Ok(fault) => {
            control.add_fault(fault);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, format!("not a fault: {e}")).into_response(),
    }
}

/// `DELETE /_sim/faults`
pub async fn clear_faults(State(control): State<Control>) -> StatusCode {
    control.lock().faults.clear();
    StatusCode::NO_CONTENT
}

/// The handlers of a platform's own `/_sim` routes.
pub struct SimRoutes<S> {
    /// `POST /_sim/reset`: back to the seeded state (and clear counters and faults).
    pub reset: axum::routing::MethodRouter<S>,
    /// `GET /_sim/state`: the whole state.
    pub state: axum::routing::MethodRouter<S>,
    /// `POST /_sim/seed`: an object created behind the client's back.
    pub seed: axum::routing::MethodRouter<S>,
    /// `POST /_sim/fail`: force an object into the platform's failure state.
    pub fail: axum::routing::MethodRouter<S>,
}

/// Puts a platform's API together the way every simulator serves it: unknown paths get the platform's
/// own 404 (`not_found` in its error body), every API request is counted and exposed to faults, bodies
/// are capped, and `/_sim` carries the shared control routes beside the platform's own.
pub fn assemble<S: Clone + Send + Sync + 'static>(
    api: axum::Router<S>,
    own: SimRoutes<S>,
    state: S,
    control: &Control,
    not_found: &'static str,
) -> axum::Router {
    use axum::routing::{get, post};
    let render = control.render_error;
    let api = api
        .fallback(move || async move { render(StatusCode::NOT_FOUND, not_found) })
        .layer(axum::middleware::from_fn_with_state(control.clone(), layer))
        .layer(axum::extract::DefaultBodyLimit::max(8 * crate::MAX_BODY_BYTES));
    let sim = axum::Router::new()
        .route("/counters", get(counters))
        .route("/log", get(log))
        .route("/faults", post(add_fault).delete(clear_faults))
        .with_state(control.clone())
        .merge(
            axum::Router::new()
                .route("/reset", own.reset)
                .route("/state", own.state)
                .route("/seed", own.seed)
                .route("/fail", own.fail)
                .with_state(state.clone()),
        );
    api.with_state(state).nest("/_sim", sim)
}
