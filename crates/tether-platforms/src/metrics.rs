//! Prometheus metrics of every platform call, whoever makes it: one set per process, registered once
//! into the caller's registry ([`register`]). Until then, calls are not counted.
//!
//! - `tether_platform_requests_total{platform, method, route, code}`: each HTTP attempt (`code` is the
//!   status, or `error` when no answer came);
//! - `tether_platform_request_duration_seconds{platform, method, route}`: latency of each attempt;
//! - `tether_platform_errors_total{platform, class}`: calls that failed after their retries, by error
//!   class (the condition reason: NotFound, Conflict, InvalidSpec, Unauthorized, Throttled, Unavailable,
//!   PlatformError).

use std::sync::OnceLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    platform: &'static str,
    method: String,
    route: &'static str,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LatencyLabels {
    platform: &'static str,
    method: String,
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    platform: &'static str,
    class: &'static str,
}

struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<LatencyLabels, Histogram>,
    errors: Family<ErrorLabels, Counter>,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// Registers the platform metrics into `registry` (the first call wins; later calls register nothing).
pub fn register(registry: &mut Registry) {
    if METRICS.get().is_some() {
        return;
    }
    let metrics = Metrics {
        requests: Family::default(),
        latency: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
        errors: Family::default(),
    };
    registry.register(
        "tether_platform_requests",
        "HTTP attempts to the platforms, by answer",
        metrics.requests.clone(),
    );
    registry.register(
        "tether_platform_request_duration_seconds",
        "Latency of HTTP attempts to the platforms",
        metrics.latency.clone(),
    );
    registry.register(
        "tether_platform_errors",
        "Platform calls that failed after their retries, by error class",
        metrics.errors.clone(),
    );
    let _ = METRICS.set(metrics);
}

/// Records one HTTP attempt.
pub(crate) fn attempt(platform: &'static str, method: &str, route: &'static str, code: Option<u16>, took: Duration) {
    let Some(m) = METRICS.get() else { return };
    let code = code.map_or_else(|| "error".to_string(), |c| c.to_string());
    m.requests.get_or_create(&RequestLabels { platform, method: method.to_string(), route, code }).inc();
    m.latency.get_or_create(&LatencyLabels { platform, method: method.to_string(), route }).observe(took.as_secs_f64());
}

/// Records a call that failed for good.
pub(crate) fn failure(platform: &'static str, error: &crate::Error) {
    let Some(m) = METRICS.get() else { return };
    m.errors.get_or_create(&ErrorLabels { platform, class: error.reason() }).inc();
}
