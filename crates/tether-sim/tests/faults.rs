//! The `/_sim` control API: counters, injected faults and reset, against a simulator on a real socket.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_sim::{SimOptions, spawn};

struct Sim {
    api: String,
    origin: String,
    http: reqwest::Client,
}

impl Sim {
    async fn start() -> Self {
        let endpoint = spawn("ubiops", "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO })
            .await
            .expect("simulator starts");
        let origin = endpoint.url.trim_end_matches("/v2.1").to_string();
        Self { api: endpoint.url, origin, http: reqwest::Client::new() }
    }

    async fn list(&self) -> Result<reqwest::Response, reqwest::Error> {
        self.http
            .get(format!("{}/projects/proj/services", self.api))
            .header("authorization", "Token test-token")
            .send()
            .await
    }

    async fn fault(&self, fault: Value) {
        let resp = self.http.post(format!("{}/_sim/faults", self.origin)).json(&fault).send().await.unwrap();
        assert_eq!(resp.status(), 204, "fault accepted");
    }

    async fn counters(&self) -> Value {
        self.http.get(format!("{}/_sim/counters", self.origin)).send().await.unwrap().json().await.unwrap()
    }
}

const LIST: &str = "GET /v2.1/projects/{project_name}/services";

#[tokio::test]
async fn counters_count_requests_by_method_and_route_template() {
    let sim = Sim::start().await;
    for _ in 0..3 {
        assert_eq!(sim.list().await.unwrap().status(), 200);
    }
    assert_eq!(sim.counters().await[LIST], 3);
}

#[tokio::test]
async fn a_status_fault_with_times_hits_that_many_requests_in_the_platform_error_shape() {
    let sim = Sim::start().await;
    sim.fault(json!({"route": "/v2.1/projects/{project_name}/services", "status": 503, "times": 2})).await;
    for _ in 0..2 {
        let resp = sim.list().await.unwrap();
        assert_eq!(resp.status(), 503);
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap().contains("503"), "UbiOps error body: {body}");
    }
    assert_eq!(sim.list().await.unwrap().status(), 200, "the fault retired after two hits");
}

#[tokio::test]
async fn a_429_fault_carries_retry_after_and_the_platform_rate_limit_header() {
    let sim = Sim::start().await;
    sim.fault(json!({"method": "GET", "status": 429, "retryAfter": 7, "times": 1})).await;
    let resp = sim.list().await.unwrap();
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "7");
    assert_eq!(resp.headers()["x-ratelimit-reset"], "7");
}

#[tokio::test]
async fn a_fault_only_hits_its_method() {
    let sim = Sim::start().await;
    sim.fault(json!({"method": "POST", "status": 500})).await;
    assert_eq!(sim.list().await.unwrap().status(), 200);
}

#[tokio::test]
async fn latency_delays_the_answer() {
    let sim = Sim::start().await;
    sim.fault(json!({"latencyMs": 300, "times": 1})).await;
    let start = Instant::now();
    assert_eq!(sim.list().await.unwrap().status(), 200);
    assert!(start.elapsed() >= Duration::from_millis(300), "took {:?}", start.elapsed());
}

#[tokio::test]
async fn reset_breaks_the_connection() {
    let sim = Sim::start().await;
    sim.fault(json!({"reset": true, "times": 1})).await;
    let outcome = match sim.list().await {
        Err(e) => Err(e),
        Ok(resp) => resp.bytes().await.map(|_| ()),
    };
    assert!(outcome.is_err(), "an injected reset must fail the request");
    assert_eq!(sim.list().await.unwrap().status(), 200);
}

#[tokio::test]
async fn malformed_body_is_not_json() {
    let sim = Sim::start().await;
    sim.fault(json!({"malformedBody": true, "times": 1})).await;
    let resp = sim.list().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.is_err(), "the body must fail to parse");
}

#[tokio::test]
async fn rate_zero_never_hits_and_reset_clears_faults_and_counters() {
    let sim = Sim::start().await;
    sim.fault(json!({"status": 500, "rate": 0.0})).await;
    assert_eq!(sim.list().await.unwrap().status(), 200);
    sim.fault(json!({"status": 500})).await;
    assert_eq!(sim.list().await.unwrap().status(), 500);
    let resp = sim.http.post(format!("{}/_sim/reset", sim.origin)).send().await.unwrap();
    assert_eq!(resp.status(), 204);
    assert_eq!(sim.counters().await, json!({}));
    assert_eq!(sim.list().await.unwrap().status(), 200);
}

#[tokio::test]
async fn a_malformed_fault_is_refused() {
    let sim = Sim::start().await;
    let resp = sim.http.post(format!("{}/_sim/faults", sim.origin)).json(&json!({"stauts": 500})).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn bad_input_gets_the_platform_validation_error_not_a_500() {
    let sim = Sim::start().await;
    let post = |body: reqwest::Body| {
        sim.http
            .post(format!("{}/projects/proj/services", sim.api))
            .header("authorization", "Token test-token")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(reqwest::Body, &str)> = vec![
        ("{not json".into(), "JSON parse error"),
        (r#"[1, 2]"#.into(), "Expected a dictionary"),
        (r#"{"deployment": "dep-1", "port": 80}"#.into(), "name: this field is required"),
        (r#"{"name": "s", "deployment": "dep-1", "port": "eighty"}"#.into(), "port: a valid integer is required"),
        (r#"{"name": "s", "deployment": "dep-1", "port": 70000}"#.into(), "between 1 and 65535"),
        (r#"{"name": "Bad_Name", "deployment": "dep-1", "port": 80}"#.into(), "name: must be"),
        (
            r#"{"name": "s", "deployment": "dep-1", "port": 80, "health_check": {"path": "x"}}"#.into(),
            "must start with '/'",
        ),
        (vec![b' '; 2 << 20].into(), "Request body too large"),
    ];
    for (body, expect) in cases {
        let resp = post(body).await.unwrap();
        assert_eq!(resp.status(), 400, "{expect}");
        let body: Value = resp.json().await.unwrap();
        assert!(body["error"].as_str().unwrap_or_default().contains(expect), "{expect}: got {body}");
    }
}

#[tokio::test]
async fn seed_and_fail_drive_adoption_and_failure_scenarios() {
    let sim = Sim::start().await;
    let seeded = sim
        .http
        .post(format!("{}/_sim/seed", sim.origin))
        .json(&json!({"project": "proj", "service": {"name": "existing", "deployment": "dep-1", "port": 80}}))
        .send()
        .await
        .unwrap();
    assert_eq!(seeded.status(), 201);
    let state: Value = sim.http.get(format!("{}/_sim/state", sim.origin)).send().await.unwrap().json().await.unwrap();
    assert_eq!(state["projects"]["proj"]["services"][0]["name"], "existing");
    let failed =
        sim.http.post(format!("{}/_sim/fail", sim.origin)).json(&json!({"project": "proj", "service": "existing"}));
    assert_eq!(failed.send().await.unwrap().status(), 204);
    let status: Value = sim
        .http
        .get(format!("{}/projects/proj/services/existing/status", sim.api))
        .header("authorization", "Token test-token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["ready"], false);
}
