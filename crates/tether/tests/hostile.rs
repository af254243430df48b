//! Hostile input against the operator process: one `tether run` serving every kind while 26 hostile
//! inputs of every kind arrive at once (annotation values, ids with paths, values nested too deep,
//! Connections and Secrets that are wrong or go away, endpoints that hang, answer garbage, answer a
//! 600 MiB body, a 1 MiB error, or echo the credential). Asserted, as the issue asks: the operator's PID
//! is unchanged and its RSS stays under the chart's memory limit throughout; a healthy resource of every
//! kind converges beside them; each hostile resource has a clear reason; no remote object is duplicated
//! or created for a refused spec; no request reached a route the platform does not have; no credential is
//! in the log, an Event or a status. Then the operator restarts with an ApoloApp nested 200 levels deep
//! in the cluster, and the Apolo controller still lists and serves.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Sims, kubectl, kubectl_with_input, operator};
use serde_json::{Value, json};
use tether_testenv::TestNamespace;

/// The chart's memory limit (deploy/helm/tether/values.yaml).
const CHART_MEMORY_LIMIT: u64 = 256 << 20;
/// A credential only the hostile Connections use; the echoing endpoint sends it back.
const HOSTILE_TOKEN: &str = "hostile-token-9f8e7d6c5b4a";

/// A loopback HTTP endpoint that misbehaves in one way, on its own thread, for the whole test.
fn hostile_endpoint(behaviour: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v2.1", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer(stream, behaviour));
        }
    });
    url
}

fn answer(mut stream: std::net::TcpStream, behaviour: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 4096];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let request = String::from_utf8_lossy(&request).to_string();
    let respond = |stream: &mut std::net::TcpStream, status: &str, body: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    };
    match behaviour {
        // Accepts, reads, never answers.
        "hang" => std::thread::sleep(Duration::from_secs(600)),
        // 200 with a 600 MiB body, streamed.
        "huge" => {
            let size: u64 = 600 << 20;
            let head = format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {size}\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(b"{\"items\": \"");
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..600 {
                if stream.write_all(&chunk).is_err() {
                    return;
                }
            }
        }
        // A 500 whose JSON message is 1 MiB.
        "error-1mib" => {
            let body = json!({"error": "e".repeat(1 << 20)}).to_string();
            respond(&mut stream, "500 Internal Server Error", body.as_bytes());
        }
        // A 401 that quotes the request's credential back.
        "echo-401" => {
            let auth = request
                .lines()
                .find_map(|l| l.strip_prefix("authorization: ").or_else(|| l.strip_prefix("Authorization: ")))
                .unwrap_or("none")
                .to_string();
            let body = json!({"error": format!("invalid credentials: {auth}")}).to_string();
            respond(&mut stream, "401 Unauthorized", body.as_bytes());
        }
        // 200 that is not JSON.
        _ => respond(&mut stream, "200 OK", b"<html>\x00\xff garbage"),
    }
}

/// The resident set of `pid`, in bytes.
fn rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches(" kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Samples the RSS of `pid` every 100 ms until `stop`; the highest seen.
fn watch_rss(pid: u32, stop: Arc<AtomicBool>) -> Arc<AtomicU64> {
    let peak = Arc::new(AtomicU64::new(0));
    let seen = peak.clone();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            if let Some(bytes) = rss(pid) {
                seen.fetch_max(bytes, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    peak
}

fn apply(namespace: &str, objects: &[Value]) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], &list.to_string());
}

fn get(namespace: &str, what: &str) -> Value {
    let out = kubectl(&["get", what, "-n", namespace, "-o", "json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A resource's generation and status only: the whole object of the deep ApoloApp is past what serde_json
/// reads (kubectl, in Go, reads it).
fn status_of(namespace: &str, what: &str) -> Value {
    let out = kubectl(&["get", what, "-n", namespace, "-o", r#"jsonpath={.metadata.generation}{"\t"}{.status}"#]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let (generation, status) = text.split_once('\t').unwrap_or((&text, "null"));
    let status: Value = serde_json::from_str(status).unwrap_or(Value::Null);
    json!({"metadata": {"generation": generation.trim().parse::<i64>().ok()}, "status": status})
}

/// `(reason, message)` of the resource's Synced condition, else of its Ready condition.
fn verdict(object: &Value) -> Option<(String, String)> {
    let conditions = object["status"]["conditions"].as_array()?;
    let of = |t: &str| conditions.iter().find(|c| c["type"] == t).cloned();
    let synced = of("Synced").filter(|c| c["status"] != "True").or_else(|| of("Ready"))?;
    Some((synced["reason"].as_str()?.to_string(), synced["message"].as_str().unwrap_or("").to_string()))
}

fn is_ready(object: &Value) -> bool {
    object["status"]["conditions"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        && object["status"]["observedGeneration"] == object["metadata"]["generation"]
}

fn connection(name: &str, platform: &str, endpoint: &str, key: &str) -> Value {
    let credential = if platform == "peak" { "apiKey" } else { "token" };
    json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": name},
           "spec": {"platform": platform, "endpoint": endpoint, "timeoutSeconds": 2,
                    "credentials": {credential: {"name": "hostile-credentials", "key": key}}}})
}

fn ubi(name: &str, connection: &str, annotations: Value) -> Value {
    json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"connectionRef": {"name": connection}, "project": "proj", "name": name,
                    "deployment": "dep-1", "version": "v1", "port": 8080}})
}

fn peak(name: &str, annotations: Value) -> Value {
    json!({"apiVersion": "tether.dev/v1alpha1", "kind": "PeakWebapp", "metadata": {"name": name, "annotations": annotations},
           "spec": {"connectionRef": {"name": "peak"}, "name": name, "imageDetails": {"imageId": 1}}})
}

fn apolo(name: &str, annotations: Value, spec: Value) -> Value {
    let mut app = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "ApoloApp",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"connectionRef": {"name": "apolo"}, "cluster": "default", "org": "superorg", "project": "test3",
                    "templateName": "postgres", "templateVersion": "v1.0.0", "input": {"preset": "cpu-small"}}});
    for (k, v) in spec.as_object().unwrap() {
        app["spec"][k] = v.clone();
    }
    app
}

fn civis(name: &str, annotations: Value, spec: Value) -> Value {
    let mut service = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "CivisService",
           "metadata": {"name": name, "annotations": annotations},
           "spec": {"connectionRef": {"name": "civis"}, "name": name, "type": "Custom",
                    "dockerImageName": "civisanalytics/streamlit-dashboard", "dockerImageTag": "1.4.2"}});
    for (k, v) in spec.as_object().unwrap() {
        service["spec"][k] = v.clone();
    }
    service
}

fn appservice(name: &str, annotations: Value, config: Value) -> Value {
    json!({"apiVersion": "tether.dev/v1alpha1", "kind": "AppService", "metadata": {"name": name, "annotations": annotations},
           "spec": {"connectionRef": {"name": "iguazio"}, "name": name, "kind": "jupyter", "serviceConfig": config}})
}

/// `{"a": {"a": … 1}}`, `levels` deep (built without parsing: serde_json stops reading at 128 levels).
fn nested(levels: usize) -> Value {
    (0..levels).fold(json!(1), |inner, _| json!({ "a": inner }))
}

/// A hostile case: the resource, the reasons that tell the truth about it, and words its message must hold.
struct Case {
    kind: &'static str,
    name: &'static str,
    reasons: &'static [&'static str],
    says: &'static str,
}

#[tokio::test]
async fn hostile_inputs_of_every_kind_never_crash_leak_or_misroute() {
    let ns = TestNamespace::new("hostile-operator").await;
    let sims = Sims::start(&ns.name, "all", 0);
    let dir = sims.dir.clone();
    sims.apply(&ns.name, "examples");
    let first = operator(&ns.name, &["--reconcile-timeout-seconds", "20"], dir.join("operator-1.log"));
    let pid = first.process.0.id();
    let stop = Arc::new(AtomicBool::new(false));
    let peak_rss = watch_rss(pid, stop.clone());

    let healthy = [
        ("appservice", "team-notebook"),
        ("civisservice", "sales-dashboard"),
        ("apoloapp", "feature-store-db"),
        ("ubiservice", "scoring-api"),
        ("peakwebapp", "forecast-explorer"),
    ];
    let wait_healthy = |what: &str| {
        let mut args = vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=120s"];
        let names: Vec<String> = healthy.iter().map(|(k, n)| format!("{k}/{n}")).collect();
        args.extend(names.iter().map(String::as_str));
        let out = std::process::Command::new("kubectl")
            .args(&args)
            .env("KUBECONFIG", tether_testenv::control_plane().kubeconfig())
            .output()
            .unwrap();
        assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
    };
    wait_healthy("the examples converge");
    let doomed_secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hostile-credentials"},
        "type": "Opaque", "stringData": {"token": HOSTILE_TOKEN, "apiKey": HOSTILE_TOKEN}});
    let ubiops_url = sims.endpoints["ubiops"]["url"].as_str().unwrap().to_string();
    let sim_token = get(&ns.name, "secret/ubiops-credentials")["data"]["token"].clone();
    let mut objects = vec![
        doomed_secret,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "not-utf8"}, "type": "Opaque",
               "data": {"token": "//79/A=="}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "doomed-credentials"}, "type": "Opaque",
               "data": {"token": sim_token}}),
        connection("ubiops-hang", "ubiops", &hostile_endpoint("hang"), "token"),
        connection("ubiops-huge", "ubiops", &hostile_endpoint("huge"), "token"),
        connection("ubiops-error", "ubiops", &hostile_endpoint("error-1mib"), "token"),
        connection("ubiops-echo", "ubiops", &hostile_endpoint("echo-401"), "token"),
        connection("ubiops-garbage", "ubiops", &hostile_endpoint("garbage"), "token"),
        connection("ubiops-refused", "ubiops", "http://127.0.0.1:1/v2.1", "token"),
        connection("ubiops-no-key", "ubiops", &ubiops_url, "missing-key"),
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "ubiops-not-utf8"},
               "spec": {"platform": "ubiops", "endpoint": ubiops_url,
                        "credentials": {"token": {"name": "not-utf8", "key": "token"}}}}),
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "Connection", "metadata": {"name": "ubiops-doomed"},
               "spec": {"platform": "ubiops", "endpoint": ubiops_url,
                        "credentials": {"token": {"name": "doomed-credentials", "key": "token"}}}}),
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "ClusterConnection",
               "metadata": {"name": format!("{}-elsewhere", ns.name)},
               "spec": {"platform": "ubiops", "endpoint": ubiops_url, "allowedNamespaces": ["some-other-team"],
                        "credentials": {"token": {"name": "ubiops-credentials", "namespace": ns.name, "key": "token"}}}}),
        ubi("hang", "ubiops-hang", json!({})),
        ubi("huge", "ubiops-huge", json!({})),
        ubi("error-1mib", "ubiops-error", json!({})),
        ubi("echo-401", "ubiops-echo", json!({})),
        ubi("garbage", "ubiops-garbage", json!({})),
        ubi("refused", "ubiops-refused", json!({})),
        ubi("no-key", "ubiops-no-key", json!({})),
        ubi("not-utf8", "ubiops-not-utf8", json!({})),
        ubi("other-platform", "peak", json!({})),
        ubi("no-connection", "nowhere", json!({})),
        ubi("poll-u64-max", "ubiops", json!({"tether.dev/poll-interval": "18446744073709551615s"})),
        ubi("doomed-connection", "ubiops-doomed", json!({})),
        peak("path-id", json!({"tether.dev/external-id": "x/../other"})),
        peak("poll-minutes", json!({"tether.dev/poll-interval": "999999999999999999m"})),
        apolo("path-id", json!({"tether.dev/external-id": "a/../b"}), json!({})),
        apolo("deep-input", json!({}), json!({"input": nested(200)})),
        apolo("no-template", json!({}), json!({"templateName": "no-such-template"})),
        apolo("poll-negative", json!({"tether.dev/poll-interval": "-5s"}), json!({})),
        civis("future-redeploy", json!({"tether.dev/redeploy": "2999-01-01T00:00:00Z"}), json!({})),
        civis("bad-id", json!({"tether.dev/external-id": "not-a-number"}), json!({})),
        civis("shares-outputs", json!({}), json!({"writeOutputsTo": "sales-dashboard-outputs"})),
        civis("poll-words", json!({"tether.dev/poll-interval": "whenever"}), json!({})),
        appservice("id-mismatch", json!({"tether.dev/external-id": "someone-else"}), json!({"image_name": "x"})),
        appservice("deep-config", json!({}), nested(40)),
    ];
    let mut clustered = ubi("not-allowed", "", json!({}));
    clustered["spec"]["connectionRef"] = json!({"name": format!("{}-elsewhere", ns.name), "kind": "ClusterConnection"});
    objects.push(clustered);
    // Ten more on the endpoint that never answers: they hold their own connection's workers only.
    for i in 0..10 {
        objects.push(ubi(&format!("hang-{i}"), "ubiops-hang", json!({})));
    }
    apply(&ns.name, &objects);
    // A Peak image change without a version: the new image's latest, not an InvalidSpec.
    kubectl(&[
        "patch",
        "-n",
        &ns.name,
        "peakwebapp/forecast-explorer",
        "--type=merge",
        "-p",
        r#"{"spec": {"imageDetails": {"imageId": 100}}}"#,
    ]);

    let cases = [
        Case { kind: "ubiservice", name: "hang", reasons: &["Unavailable", "Timeout"], says: "" },
        Case { kind: "ubiservice", name: "huge", reasons: &["InvalidResponse"], says: "exceeds" },
        Case { kind: "ubiservice", name: "error-1mib", reasons: &["Unavailable", "PlatformError"], says: "500" },
        Case { kind: "ubiservice", name: "echo-401", reasons: &["Unauthorized"], says: "invalid credentials" },
        Case { kind: "ubiservice", name: "garbage", reasons: &["InvalidResponse"], says: "" },
        Case { kind: "ubiservice", name: "refused", reasons: &["Unavailable"], says: "" },
        Case { kind: "ubiservice", name: "no-key", reasons: &["ConnectionNotFound"], says: "has no key" },
        Case { kind: "ubiservice", name: "not-utf8", reasons: &["ConnectionNotFound"], says: "not UTF-8" },
        Case { kind: "ubiservice", name: "other-platform", reasons: &["ConnectionNotFound"], says: "is for platform" },
        Case { kind: "ubiservice", name: "no-connection", reasons: &["ConnectionNotFound"], says: "not found" },
        Case { kind: "ubiservice", name: "poll-u64-max", reasons: &["InvalidSpec"], says: "poll-interval" },
        Case { kind: "ubiservice", name: "not-allowed", reasons: &["ConnectionNotFound"], says: "does not allow" },
        Case { kind: "peakwebapp", name: "path-id", reasons: &["InvalidSpec"], says: "not a valid Peak webapp id" },
        Case { kind: "peakwebapp", name: "poll-minutes", reasons: &["InvalidSpec"], says: "poll-interval" },
        Case { kind: "apoloapp", name: "path-id", reasons: &["InvalidSpec"], says: "" },
        Case { kind: "apoloapp", name: "deep-input", reasons: &["InvalidSpec"], says: "nests deeper than 32" },
        Case { kind: "apoloapp", name: "no-template", reasons: &["InvalidSpec"], says: "no-such-template" },
        Case { kind: "apoloapp", name: "poll-negative", reasons: &["InvalidSpec"], says: "poll-interval" },
        Case { kind: "civisservice", name: "future-redeploy", reasons: &["InvalidSpec"], says: "redeploy" },
        Case { kind: "civisservice", name: "bad-id", reasons: &["InvalidSpec"], says: "not a Civis service id" },
        Case { kind: "civisservice", name: "shares-outputs", reasons: &["Conflict"], says: "sales-dashboard" },
        Case { kind: "civisservice", name: "poll-words", reasons: &["InvalidSpec"], says: "poll-interval" },
        Case { kind: "appservice", name: "id-mismatch", reasons: &["InvalidSpec"], says: "known by its name" },
        Case { kind: "appservice", name: "deep-config", reasons: &["InvalidSpec"], says: "nests deeper than 32" },
    ];
    // The Connection deleted under a live resource: Ready first, then gone.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_ready(&status_of(&ns.name, "ubiservice/doomed-connection")) {
        assert!(Instant::now() < deadline, "doomed-connection never became Ready");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    kubectl(&["delete", "-n", &ns.name, "connection/ubiops-doomed", "--wait=false"]);

    let deadline = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<String>;
    loop {
        pending = Vec::new();
        for case in &cases {
            let object = status_of(&ns.name, &format!("{}/{}", case.kind, case.name));
            match verdict(&object) {
                Some((reason, message)) if case.reasons.contains(&reason.as_str()) && message.contains(case.says) => {
                    assert!(
                        message.chars().count() <= 1100,
                        "{}/{}: a message of {} chars",
                        case.kind,
                        case.name,
                        message.len()
                    );
                }
                other => pending.push(format!("{}/{}: {other:?}", case.kind, case.name)),
            }
        }
        match verdict(&status_of(&ns.name, "ubiservice/doomed-connection")) {
            Some((reason, _)) if reason == "ConnectionNotFound" => {}
            other => pending.push(format!("doomed-connection: {other:?}")),
        }
        let image = status_of(&ns.name, "peakwebapp/forecast-explorer");
        if !(is_ready(&image) && image["status"]["atProvider"]["imageVersionId"] == 101) {
            pending.push(format!("forecast-explorer on image 100: {:?}", image["status"]));
        }
        if pending.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(pending.is_empty(), "{} cases without their verdict:\n{}", pending.len(), pending.join("\n"));
    wait_healthy("the healthy resources stay Ready beside the hostile ones");
    // A healthy resource created now converges too: no worker is wedged by the hanging endpoints.
    let created = Instant::now();
    apply(&ns.name, &[ubi("latecomer", "ubiops", json!({})), peak("latecomer", json!({}))]);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(is_ready(&status_of(&ns.name, "ubiservice/latecomer"))
        && is_ready(&status_of(&ns.name, "peakwebapp/latecomer")))
    {
        assert!(Instant::now() < deadline, "the latecomers did not converge beside the hostile resources");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("latecomers Ready {:?} after creation, beside 11 resources on a hanging endpoint", created.elapsed());

    // The same process all along, under the chart's memory limit.
    let mut first = first;
    assert!(first.process.0.try_wait().unwrap().is_none(), "the operator exited");
    stop.store(true, Ordering::Relaxed);
    let peak = peak_rss.load(Ordering::Relaxed);
    eprintln!("operator peak RSS: {} MiB", peak >> 20);
    assert!(peak > 0 && peak < CHART_MEMORY_LIMIT, "peak RSS {} MiB", peak >> 20);

    // Nothing duplicated, nothing created for a refused spec, no request to a route the platform lacks.
    let state = |platform: &str| {
        let origin = sims.origin(platform);
        async move { reqwest::get(format!("{origin}/_sim/state")).await.unwrap().json::<Value>().await.unwrap() }
    };
    let apps = state("apolo").await["apps"].as_array().cloned().unwrap();
    assert_eq!(apps.iter().filter(|a| a["state"] != "uninstalled").count(), 1, "Apolo apps: {apps:?}");
    let webapps = state("peak").await["webapps"].as_array().cloned().unwrap();
    assert_eq!(webapps.len(), 2, "Peak webapps (the example and the latecomer): {webapps:?}");
    let services = state("ubiops").await["projects"]["proj"]["services"].as_array().cloned().unwrap();
    let mut names: Vec<&str> = services.iter().filter_map(|s| s["name"].as_str()).collect();
    names.sort();
    assert_eq!(names, ["doomed-connection", "latecomer", "scoring-api"], "UbiOps services");
    let manifest = state("iguazio").await;
    let entries = manifest["manifest"]["attributes"]["app_services"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = entries.iter().filter_map(|s| s["spec"]["name"].as_str()).collect();
    assert!(!names.contains(&"deep-config") && !names.contains(&"someone-else"), "Iguazio entries: {names:?}");
    let civis_services = state("civis").await["services"].as_array().cloned().unwrap();
    assert!(
        civis_services.iter().all(|s| s["name"] != "bad-id"),
        "a refused adoption created nothing: {civis_services:?}"
    );
    for platform in ["iguazio", "civis", "apolo", "ubiops", "peak"] {
        let counters: Value =
            reqwest::get(format!("{}/_sim/counters", sims.origin(platform))).await.unwrap().json().await.unwrap();
        let strays: Vec<&String> =
            counters.as_object().unwrap().keys().filter(|k| k.ends_with("(no such route)")).collect();
        assert!(strays.is_empty(), "{platform}: requests to routes it lacks: {strays:?}");
        let deletes: Vec<&String> = counters.as_object().unwrap().keys().filter(|k| k.starts_with("DELETE")).collect();
        assert!(deletes.is_empty(), "{platform}: nothing was deleted, yet: {deletes:?}");
    }

    // No credential in the log, an Event or a status.
    // Every credential the simulators' Connections use, and the hostile one.
    let mut credentials = vec![HOSTILE_TOKEN.to_string()];
    let manifest = std::fs::read_to_string(&sims.connections).unwrap();
    for document in serde_yaml_ng::Deserializer::from_str(&manifest) {
        let object: Value = serde::Deserialize::deserialize(document).unwrap();
        for (key, value) in object["stringData"].as_object().into_iter().flatten() {
            // The credential keys; the others (cluster, org, project, username) are names, not secrets.
            let secret = ["access_key", "api_key", "token", "password"].contains(&key.as_str());
            // Shorter values ("tok") would match ordinary words.
            if let Some(value) = value.as_str().filter(|v| secret && v.len() >= 6) {
                credentials.push(value.to_string());
            }
        }
    }
    assert!(credentials.len() >= 4, "the simulators' credentials are among them: {credentials:?}");
    let log = std::fs::read_to_string(&first.log).unwrap();
    let events = String::from_utf8_lossy(&kubectl(&["get", "events", "-n", &ns.name, "-o", "json"]).stdout).to_string();
    let statuses =
        String::from_utf8_lossy(&kubectl(&["get", "tether", "-n", &ns.name, "-o", "json"]).stdout).to_string();
    for credential in &credentials {
        let shown = format!("{}… ({} chars)", &credential[..3], credential.len());
        for (place, text) in [("the operator log", &log), ("an Event", &events), ("a resource", &statuses)] {
            if let Some(at) = text.find(credential.as_str()) {
                let context = &text[text[..at].char_indices().rev().nth(120).map_or(0, |(i, _)| i)..at];
                panic!("credential {shown} is in {place}, after: {context:?}");
            }
        }
    }
    assert!(log.lines().all(|l| l.len() < 16 * 1024), "a log line over 16 KiB");

    // A restart with the ApoloApp nested 200 levels deep in the cluster: the initial list still decodes,
    // and the Apolo controller serves a new app.
    drop(first);
    let second = operator(&ns.name, &[], dir.join("operator-2.log"));
    apply(&ns.name, &[apolo("after-restart", json!({}), json!({}))]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !is_ready(&status_of(&ns.name, "apoloapp/after-restart")) {
        assert!(Instant::now() < deadline, "the Apolo controller does not serve after a restart");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let log = std::fs::read_to_string(&second.log).unwrap();
    assert!(!log.contains("recursion limit"), "the list failed to decode");
    drop(second);
    kubectl(&["delete", "clusterconnection", &format!("{}-elsewhere", ns.name)]);
    sims.clean_up();
}
