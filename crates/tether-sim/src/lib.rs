//! Stateful simulators of the platform APIs (axum), faithful to shared/platforms/*.md and judged by the
//! vendors' own SDKs (tests/conformance), with fault injection and request counters ([`control`]), for
//! tests, the demo and benchmarks.
//!
//! Served: Iguazio ([`iguazio`]), Civis ([`civis`]), Apolo ([`apolo`]), UbiOps ([`ubiops`]) and Peak
//! ([`peak`]).

pub mod apolo;
pub mod civis;
pub mod control;
pub mod iguazio;
pub mod peak;
pub mod ubiops;

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};
use tokio::net::TcpListener;

/// Largest request body a simulator reads; a larger one gets the platform's validation error.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// The platforms a simulator exists for.
pub const PLATFORMS: &[&str] = &["iguazio", "civis", "apolo", "ubiops", "peak"];

/// One running simulator: where it listens and how a client authenticates, named as the vendor's SDK
/// names its settings.
#[derive(Clone, Debug, Serialize)]
pub struct Endpoint {
    /// Base URL a client (or the vendor SDK) is pointed at.
    pub url: String,
    /// Credentials, keyed as the vendor SDK names them.
    pub credentials: Map<String, Value>,
    /// Fixtures the simulator was seeded with that a client must reference.
    pub seeded: Value,
}

/// Settings shared by every simulator.
#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// How long asynchronous transitions take (0 for benchmarks).
    pub delay: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { delay: Duration::from_millis(300) }
    }
}

/// Starts the simulator of `platform` on `addr` (port 0: a free port) and returns its endpoint; it serves
/// until the process ends.
pub async fn spawn(platform: &str, addr: SocketAddr, options: SimOptions) -> std::io::Result<Endpoint> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let (router, endpoint) = match platform {
        "ubiops" => {
            let state = ubiops::SimState::new(ubiops::DEFAULT_TOKEN, options.delay);
            let credentials = serde_json::json!({"token": ubiops::DEFAULT_TOKEN, "project": "proj"});
            let endpoint = Endpoint {
                url: format!("http://{local}/v2.1"),
                credentials: credentials.as_object().cloned().unwrap_or_default(),
                seeded: ubiops::SimState::seeded(),
            };
            (ubiops::router(state), endpoint)
        }
        "iguazio" => {
            let state = iguazio::SimState::new(options.delay);
            let credentials =
                serde_json::json!({"username": iguazio::DEFAULT_USERNAME, "access_key": iguazio::DEFAULT_ACCESS_KEY});
            let endpoint = Endpoint {
                url: format!("http://{local}"),
                credentials: credentials.as_object().cloned().unwrap_or_default(),
                seeded: iguazio::SimState::seeded(),
            };
            (iguazio::router(state), endpoint)
        }
        "civis" => {
            let origin = format!("http://{local}");
            let state = civis::SimState::new(options.delay, &origin);
            let credentials = serde_json::json!({"api_key": civis::DEFAULT_API_KEY});
            let endpoint = Endpoint {
                url: format!("{origin}/"),
                credentials: credentials.as_object().cloned().unwrap_or_default(),
                seeded: civis::SimState::seeded(),
            };
            (civis::router(state), endpoint)
        }
        "apolo" => {
            let origin = format!("http://{local}");
            let state = apolo::SimState::new(options.delay, &origin);
            let credentials = serde_json::json!({
                "token": apolo::DEFAULT_TOKEN, "cluster": apolo::CLUSTER, "org": apolo::ORG, "project": apolo::PROJECT,
            });
            let endpoint = Endpoint {
                url: format!("{origin}/api/v1"),
                credentials: credentials.as_object().cloned().unwrap_or_default(),
                seeded: apolo::SimState::seeded(),
            };
            (apolo::router(state), endpoint)
        }
        "peak" => {
            let origin = format!("http://{local}");
            let state = peak::SimState::new(peak::DEFAULT_TOKEN, options.delay, &origin);
            let credentials = serde_json::json!({"api_key": peak::DEFAULT_TOKEN});
            let endpoint = Endpoint {
                url: origin,
                credentials: credentials.as_object().cloned().unwrap_or_default(),
                seeded: peak::SimState::seeded(),
            };
            (peak::router(state), endpoint)
        }
        other => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("no simulator for platform {other:?} (available: {})", PLATFORMS.join(", ")),
            ));
        }
    };
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "simulator stopped");
        }
    });
    Ok(endpoint)
}

/// The current time as the platforms print it: UTC, microseconds, `Z`.
pub(crate) fn now_micros() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// Parses a request body as a JSON object; the error says what is wrong, in words for the platform's
/// error body. An empty body counts as `{}` (SDKs send none on some calls).
pub(crate) fn read_json(body: &[u8]) -> Result<Map<String, Value>, String> {
    if body.len() > MAX_BODY_BYTES {
        return Err(format!("Request body too large: at most {MAX_BODY_BYTES} bytes"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("Invalid data. Expected a dictionary.".into()),
        Err(e) => Err(format!("JSON parse error - {e}")),
    }
}

/// Kubernetes manifests that point Tether at running simulators: for each platform a Secret
/// `<platform>-credentials` holding the simulator's credentials (keys as the vendor SDK names them, as in
/// examples/) and a Connection `<platform>` at the simulator's URL. Applied after examples/, they turn the
/// examples' placeholder accounts into the simulators' (the demo does this).
pub fn connections_manifest(endpoints: &std::collections::BTreeMap<String, Endpoint>) -> String {
    use serde_json::json;
    // Connection credential name → Secret key, per platform.
    let keys: &[(&str, &[(&str, &str)])] = &[
        ("iguazio", &[("username", "username"), ("accessKey", "access_key")]),
        ("civis", &[("apiKey", "api_key")]),
        ("apolo", &[("token", "token")]),
        ("ubiops", &[("token", "token")]),
        ("peak", &[("apiKey", "api_key")]),
    ];
    let mut documents = Vec::new();
    for (platform, credentials) in keys {
        let Some(endpoint) = endpoints.get(*platform) else { continue };
        let secret = format!("{platform}-credentials");
        let data: Map<String, Value> =
            endpoint.credentials.iter().filter_map(|(k, v)| Some((k.clone(), Value::from(v.as_str()?)))).collect();
        let selectors: Map<String, Value> =
            credentials.iter().map(|(name, key)| (name.to_string(), json!({"name": secret, "key": key}))).collect();
        documents.push(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": secret},
            "type": "Opaque", "stringData": data}));
        documents
            .push(json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": platform},
            "spec": {"platform": platform, "endpoint": endpoint.url, "credentials": selectors}}));
    }
    documents
        .iter()
        .map(|d| format!("---\n{}", serde_json::to_string_pretty(d).unwrap_or_default()))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
