//! The UbiOps client and the shared HTTP layer against the UbiOps simulator on a real socket: every
//! client method, each error class, retries, Retry-After, the rate limit, and no credential in Debug.

use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_platforms::ubiops::{Client, ServiceFields};
use tether_platforms::{Error, HttpConfig, Secret};
use tether_sim::{SimOptions, spawn};

struct Sim {
    url: String,
    origin: String,
}

async fn sim() -> Sim {
    let endpoint = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO }).await.unwrap();
    let origin = endpoint.url.trim_end_matches("/v2.1").to_string();
    Sim { url: endpoint.url, origin }
}

fn config(sim: &Sim) -> HttpConfig {
    let mut config = HttpConfig::new(sim.url.parse().unwrap());
    config.backoff_base = Duration::from_millis(10);
    config
}

fn client(sim: &Sim) -> Client {
    Client::new(config(sim), &Secret::new("test-token")).unwrap()
}

async fn fault(sim: &Sim, fault: Value) {
    let resp = reqwest::Client::new().post(format!("{}/_sim/faults", sim.origin)).json(&fault).send().await.unwrap();
    assert_eq!(resp.status(), 204);
}

async fn count(sim: &Sim, key: &str) -> u64 {
    let counters: Value = reqwest::get(format!("{}/_sim/counters", sim.origin)).await.unwrap().json().await.unwrap();
    counters[key].as_u64().unwrap_or(0)
}

fn fields(name: &str) -> ServiceFields {
    ServiceFields {
        name: Some(name.into()),
        deployment: Some("dep-1".into()),
        port: Some(8080),
        other: json!({"labels": {"team": "risk"}}).as_object().cloned().unwrap(),
        ..Default::default()
    }
}

const LIST: &str = "GET /v2.1/projects/{project_name}/services";
const CREATE: &str = "POST /v2.1/projects/{project_name}/services";

#[tokio::test]
async fn every_method_round_trips() {
    let sim = sim().await;
    let c = client(&sim);
    c.ping().await.unwrap();
    assert_eq!(c.project_get("proj").await.unwrap()["name"], "proj");
    assert_eq!(c.deployments_get("proj", "dep-1").await.unwrap()["default_version"], "v1");
    let v1 = c.versions_get("proj", "dep-1", "v1").await.unwrap();

    let created = c.services_create("proj", &fields("svc-1")).await.unwrap();
    assert!(created.id.is_some() && created.endpoint.is_some() && created.version.is_none());
    assert_eq!(created.fields["labels"], json!({"team": "risk"}));
    assert_eq!(c.services_get("proj", "svc-1").await.unwrap().id, created.id);

    let labels = [("team".to_string(), "risk".to_string())].into_iter().collect();
    assert_eq!(c.services_list("proj", Some(&Client::label_filter(&labels)), None).await.unwrap().len(), 1);
    assert!(c.services_list("proj", Some("team:other"), None).await.unwrap().is_empty());
    assert_eq!(c.services_list("proj", None, v1["id"].as_str()).await.unwrap().len(), 1);

    let pinned = ServiceFields { version: Some(Some("v2".into())), ..Default::default() };
    assert_eq!(c.services_update("proj", "svc-1", &pinned).await.unwrap().version.as_deref(), Some("v2"));
    let follow = ServiceFields { version: Some(None), ..Default::default() };
    assert_eq!(c.services_update("proj", "svc-1", &follow).await.unwrap().version, None, "explicit null sent");

    let status = c.services_status("proj", "svc-1").await.unwrap();
    assert_eq!(Some(status.id), created.id);
    assert!(status.ready);

    c.services_delete("proj", "svc-1").await.unwrap();
    assert!(matches!(c.services_get("proj", "svc-1").await, Err(Error::NotFound(m)) if m == "Service not found"));
}

#[tokio::test]
async fn deployments_and_versions_can_be_managed() {
    let sim = sim().await;
    let c = client(&sim);
    let body = |v: Value| v.as_object().cloned().unwrap();
    c.deployments_create("proj", &body(json!({"name": "dep-2", "input_type": "plain", "output_type": "plain"})))
        .await
        .unwrap();
    assert_eq!(c.deployments_list("proj").await.unwrap().len(), 2);
    c.versions_create("proj", "dep-2", &body(json!({"version": "a"}))).await.unwrap();
    c.versions_create("proj", "dep-2", &body(json!({"version": "b"}))).await.unwrap();
    assert_eq!(c.versions_list("proj", "dep-2").await.unwrap().len(), 2);
    let updated = c.deployments_update("proj", "dep-2", &body(json!({"default_version": "b"}))).await.unwrap();
    assert_eq!(updated["default_version"], "b");
    c.versions_delete("proj", "dep-2", "a").await.unwrap();
    assert!(matches!(c.versions_get("proj", "dep-2", "a").await, Err(Error::NotFound(_))));
    c.deployments_delete("proj", "dep-2").await.unwrap();
    assert!(matches!(c.deployments_get("proj", "dep-2").await, Err(Error::NotFound(_))));
}

#[tokio::test]
async fn each_error_class_comes_from_its_response() {
    let sim = sim().await;
    let c = client(&sim);
    c.services_create("proj", &fields("dup")).await.unwrap();
    assert!(matches!(c.services_create("proj", &fields("dup")).await, Err(Error::Conflict(_))));
    let bad_ref = ServiceFields { deployment: Some("nope".into()), ..fields("x") };
    assert!(
        matches!(c.services_create("proj", &bad_ref).await, Err(Error::Invalid(m)) if m.contains("'nope' not found"))
    );
    let wrong = Client::new(config(&sim), &Secret::new("wrong")).unwrap();
    assert!(matches!(wrong.ping().await, Err(Error::Unauthorized(_))));

    fault(&sim, json!({"method": "GET", "status": 403, "times": 1})).await;
    assert!(matches!(c.services_list("proj", None, None).await, Err(Error::Forbidden(_))));

    fault(&sim, json!({"method": "GET", "malformedBody": true, "times": 1})).await;
    assert!(matches!(c.services_list("proj", None, None).await, Err(Error::Decode(_))));

    fault(&sim, json!({"method": "GET", "status": 429, "retryAfter": 0})).await;
    assert!(matches!(c.services_list("proj", None, None).await, Err(Error::Throttled { .. })));
}

#[tokio::test]
async fn transient_failures_of_safe_calls_are_retried_until_they_pass() {
    let sim = sim().await;
    let c = client(&sim);
    fault(&sim, json!({"route": "/v2.1/projects/{project_name}/services", "method": "GET", "status": 503, "times": 2}))
        .await;
    c.services_list("proj", None, None).await.expect("recovered on the third attempt");
    assert_eq!(count(&sim, LIST).await, 3);

    fault(&sim, json!({"method": "GET", "reset": true, "times": 1})).await;
    c.services_list("proj", None, None).await.expect("recovered from a reset connection");
}

#[tokio::test]
async fn a_failed_create_is_not_repeated_on_5xx_but_is_on_429() {
    let sim = sim().await;
    let c = client(&sim);
    fault(&sim, json!({"method": "POST", "status": 503, "times": 1})).await;
    assert!(matches!(c.services_create("proj", &fields("once")).await, Err(Error::Transient(_))));
    assert_eq!(count(&sim, CREATE).await, 1, "a POST that may have gone through is not resent");

    fault(&sim, json!({"method": "POST", "status": 429, "retryAfter": 0, "times": 1})).await;
    c.services_create("proj", &fields("after-429")).await.expect("a 429 was not acted on, so it is resent");
    assert_eq!(count(&sim, CREATE).await, 3);
}

#[tokio::test]
async fn a_429_waits_at_least_retry_after() {
    let sim = sim().await;
    let c = client(&sim);
    fault(&sim, json!({"method": "GET", "status": 429, "retryAfter": 1, "times": 1})).await;
    let start = Instant::now();
    c.services_list("proj", None, None).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(1), "retried after {:?}", start.elapsed());
    assert_eq!(count(&sim, LIST).await, 2);
}

#[tokio::test]
async fn the_rate_limit_holds_under_200_concurrent_calls() {
    let sim = sim().await;
    let mut config = config(&sim);
    config.requests_per_second = NonZeroU32::new(100);
    let c = client_with(config);
    let start = Instant::now();
    let calls = (0..200).map(|_| c.services_list("proj", None, None));
    for result in futures::future::join_all(calls).await {
        result.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = 200.0 / elapsed;
    assert!(rate <= 110.0, "measured {rate:.1} requests/s against a limit of 100");
    assert_eq!(count(&sim, LIST).await, 200);
}

fn client_with(config: HttpConfig) -> Client {
    Client::new(config, &Secret::new("test-token")).unwrap()
}

#[test]
fn debug_output_never_shows_the_token() {
    let c = Client::new(HttpConfig::new("http://127.0.0.1:1/v2.1".parse().unwrap()), &Secret::new("s3cr3t")).unwrap();
    let shown = format!("{c:?} {:?}", Secret::new("s3cr3t"));
    assert!(!shown.contains("s3cr3t"), "{shown}");
}

#[tokio::test]
async fn hostile_names_are_refused_before_any_request() {
    let sim = sim().await;
    let c = client(&sim);
    let hostile = ["../x", "a/b", "..", "%2e%2e", "", "a\\b", "x%2F..%2Fy"];
    for bad in hostile {
        let outcomes = [
            c.project_get(bad).await.map(drop),
            c.services_list(bad, None, None).await.map(drop),
            c.services_get("proj", bad).await.map(drop),
            c.services_delete("proj", bad).await,
            c.services_delete(bad, "svc").await,
            c.services_update("proj", bad, &ServiceFields::default()).await.map(drop),
            c.services_status("proj", bad).await.map(drop),
            c.deployments_delete("proj", bad).await,
            c.versions_delete("proj", "dep-1", bad).await,
            c.versions_get("proj", bad, "v1").await.map(drop),
        ];
        for (i, outcome) in outcomes.into_iter().enumerate() {
            assert!(
                matches!(&outcome, Err(Error::Invalid(m)) if m.contains("is not a valid UbiOps")),
                "{bad:?} #{i}: {outcome:?}"
            );
        }
    }
    let counters: Value = reqwest::get(format!("{}/_sim/counters", sim.origin)).await.unwrap().json().await.unwrap();
    assert_eq!(counters, json!({}), "no request reached any route");
    // A name that only needs escaping still works.
    assert!(matches!(c.services_get("proj", "no such?service").await, Err(Error::NotFound(_))));
}

/// A Retry-After binds the account, not the call: a client built later for the same account (a rotation,
/// another resource's reconcile) sends nothing before it; another account is not held back.
#[tokio::test]
async fn a_retry_after_holds_every_client_of_the_account() {
    let sim = sim().await;
    fault(&sim, json!({"method": "GET", "status": 429, "retryAfter": 120, "times": 1})).await;
    let first = client(&sim).services_list("proj", None, None).await;
    assert!(matches!(first, Err(Error::Throttled { .. })), "past the longest wait within a call: {first:?}");
    assert_eq!(count(&sim, LIST).await, 1);
    let rebuilt = client(&sim).services_list("proj", None, None).await;
    assert!(
        matches!(rebuilt, Err(Error::Throttled { retry_after: Some(w) }) if w > Duration::from_secs(100)),
        "{rebuilt:?}"
    );
    assert_eq!(count(&sim, LIST).await, 1, "no request before the Retry-After, from any client of the account");
    let other = sim_with_its_own_account().await;
    client(&other).services_list("proj", None, None).await.expect("another account is not held back");

    // A short one is waited for, by a client that did not get the 429 itself too.
    let short = other;
    fault(&short, json!({"method": "GET", "status": 429, "retryAfter": 1, "times": 1})).await;
    let (a, b) = (client(&short), client(&short));
    let started = Instant::now();
    let first = tokio::spawn(async move { a.services_list("proj", None, None).await.map(drop) });
    tokio::time::sleep(Duration::from_millis(300)).await;
    b.services_list("proj", None, None).await.unwrap();
    assert!(started.elapsed() >= Duration::from_secs(1), "the other client went after {:?}", started.elapsed());
    first.await.unwrap().unwrap();
}

async fn sim_with_its_own_account() -> Sim {
    sim().await
}

/// Inside `with_attempts(1)` (a resource whose last reconcile failed) a failing read is sent once.
#[tokio::test]
async fn one_attempt_per_call_after_a_failure() {
    let sim = sim().await;
    let c = client(&sim);
    fault(&sim, json!({"method": "GET", "route": "/v2.1/projects/{project_name}/services", "status": 503})).await;
    let once = tether_platforms::http::with_attempts(1, c.services_list("proj", None, None)).await;
    assert!(matches!(once, Err(Error::Transient(_))));
    assert_eq!(count(&sim, LIST).await, 1);
    let _ = c.services_list("proj", None, None).await;
    assert_eq!(count(&sim, LIST).await, 5, "otherwise the configured four");
    let _ = tether_platforms::http::with_attempts(u32::MAX, c.services_list("proj", None, None)).await;
    assert_eq!(count(&sim, LIST).await, 9, "never more than configured");
}
