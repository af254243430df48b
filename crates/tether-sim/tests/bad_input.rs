//! Bad input gets each platform's own validation error (4xx, its error body), never a panic or a 500:
//! malformed JSON, wrong types, missing required fields, unknown references, oversize bodies, bad auth.

use std::time::Duration;

use serde_json::Value;
use tether_sim::{SimOptions, spawn};

/// A write route of one platform, how to authenticate, and where its error text lives in the body.
struct Target {
    platform: &'static str,
    method: reqwest::Method,
    path: &'static str,
    auth: (&'static str, &'static str),
    /// A body of the right shape with one field of the wrong type.
    wrong_type: &'static str,
    /// A body missing a required field.
    missing: &'static str,
    /// A body referencing something that does not exist.
    unknown_ref: Option<&'static str>,
    error_text: fn(&Value) -> Option<String>,
}

fn targets() -> Vec<Target> {
    vec![
        Target {
            platform: "iguazio",
            method: reqwest::Method::PUT,
            path: "/api/app_services_manifests",
            auth: ("cookie", r#"session=j:{"sid": "test-key"}"#),
            wrong_type: r#"{"data": {"attributes": {"app_services": "all of them"}}}"#,
            missing: r#"{"data": {"attributes": {"app_services": [{"spec": {"name": "x"}}]}}}"#,
            unknown_ref: None,
            error_text: |b| b["errors"][0]["detail"].as_str().map(str::to_string),
        },
        Target {
            platform: "civis",
            method: reqwest::Method::POST,
            path: "/services",
            auth: ("authorization", "Basic c2ltLWtleTo="),
            wrong_type: r#"{"name": "x", "replicas": "two"}"#,
            missing: r#"{"name": "x", "schedule": {"recurrences": []}}"#,
            unknown_ref: None,
            error_text: |b| b["errorDescription"].as_str().map(str::to_string),
        },
        Target {
            platform: "apolo",
            method: reqwest::Method::POST,
            path: "/apis/apps/v1/cluster/default/org/superorg/project/test3/instances",
            auth: ("authorization", "Bearer tok"),
            wrong_type: r#"{"template_name": "postgres", "template_version": "v1.0.0", "input": {"storage_gb": "big"}}"#,
            missing: r#"{"template_name": "shell"}"#,
            unknown_ref: Some(r#"{"template_name": "nope", "template_version": "v1", "input": {}}"#),
            error_text: |b| {
                b["error"]
                    .as_str()
                    .map(str::to_string)
                    .or_else(|| b["errors"][0]["message"].as_str().map(str::to_string))
            },
        },
        Target {
            platform: "ubiops",
            method: reqwest::Method::POST,
            path: "/v2.1/projects/proj/services",
            auth: ("authorization", "Token test-token"),
            wrong_type: r#"{"name": "x", "deployment": "dep-1", "port": "eighty"}"#,
            missing: r#"{"name": "x", "deployment": "dep-1"}"#,
            unknown_ref: Some(r#"{"name": "x", "deployment": "nope", "port": 80}"#),
            error_text: |b| b["error"].as_str().map(str::to_string),
        },
        Target {
            platform: "peak",
            method: reqwest::Method::POST,
            path: "/webapps/api/v1/webapps/",
            auth: ("authorization", "sim-token"),
            wrong_type: r#"{"name": "x", "imageDetails": {"imageId": "one"}}"#,
            missing: r#"{"name": "x"}"#,
            unknown_ref: Some(r#"{"name": "x", "imageDetails": {"imageId": 999}}"#),
            error_text: |b| b["message"].as_str().map(str::to_string),
        },
    ]
}

#[tokio::test]
async fn every_platform_answers_bad_input_with_its_own_4xx_error_body() {
    let http = reqwest::Client::new();
    let mut failures = Vec::new();
    for t in targets() {
        let endpoint = spawn(t.platform, "127.0.0.1:0".parse().unwrap(), SimOptions { delay: Duration::ZERO })
            .await
            .expect("simulator starts");
        let origin = endpoint.url.split('/').take(3).collect::<Vec<_>>().join("/");
        let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
            ("malformed JSON", b"{\"name\": ".to_vec(), true),
            ("not an object", b"[1, 2, 3]".to_vec(), true),
            ("wrong type", t.wrong_type.as_bytes().to_vec(), true),
            ("missing field", t.missing.as_bytes().to_vec(), true),
            ("oversize body", vec![b' '; (tether_sim::MAX_BODY_BYTES) + 10], true),
            ("no credentials", t.missing.as_bytes().to_vec(), false),
        ];
        if let Some(body) = t.unknown_ref {
            cases.push(("unknown reference", body.as_bytes().to_vec(), true));
        }
        for (case, body, authenticated) in cases {
            let mut request = http
                .request(t.method.clone(), format!("{origin}{}", t.path))
                .header("content-type", "application/json")
                .body(body);
            if authenticated {
                request = request.header(t.auth.0, t.auth.1);
            }
            let response = request.send().await.expect("the simulator answers");
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let expected_status = if authenticated { status.is_client_error() && status != 401 } else { status == 401 };
            if !expected_status || (t.error_text)(&body).is_none_or(|m| m.is_empty()) {
                failures.push(format!("{} {case}: {status} {body}", t.platform));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
