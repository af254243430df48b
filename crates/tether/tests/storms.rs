//! Fault storms: with every Connection given `requestsPerSecond: 10, burst: 10`, each storm is injected
//! into all five simulators while resources are created and edited, then cleared. Measured per storm and
//! account: the most requests sent in any 1 s window, from the operator's own record of each request as it
//! leaves (the `tether::sent` trace events, where the limit is kept: never past rate + burst), and the same
//! on arrival at the simulators (their request log, `/_sim/log`, printed beside it); from the simulators:
//! requests that left sooner than a Retry-After allowed (none), POSTs sent
//! against remote objects created, the traffic per resource per minute during an outage (it falls), the
//! seconds to converge once the storm is cleared, duplicates and leaks (none).
//!
//! `STORM_SIZE=ci` (default, inside `make test`): each storm 5 s (long enough to hold every account at its
//! rate limit: the creates and edits of each storm queue behind it), the outage 20 s. `STORM_SIZE=full`
//! (`make storms`): 60 s each, the outage 2 minutes.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{DEFAULT_LOG, Sims, kubectl, kubectl_with_input, operator_logging};
use serde_json::{Value, json};
use tether_testenv::TestNamespace;

const PLATFORMS: [&str; 5] = ["iguazio", "civis", "apolo", "ubiops", "peak"];
const RATE: u64 = 10;
const BURST: u64 = 10;
/// The Retry-After of the 429 storm, in seconds.
const RETRY_AFTER: u64 = 2;

fn manifest(kind: &str, name: &str, version: u64) -> Value {
    let spec = match kind {
        "AppService" => json!({"connectionRef": {"name": "iguazio"}, "name": name, "kind": "jupyter",
            "serviceConfig": {"image_name": "jupyter-all"}, "description": format!("v{version}")}),
        "CivisService" => json!({"connectionRef": {"name": "civis"}, "name": name, "type": "Custom",
            "dockerImageName": "civisanalytics/streamlit-dashboard", "dockerImageTag": format!("1.{version}")}),
        "ApoloApp" => json!({"connectionRef": {"name": "apolo"}, "cluster": "default", "org": "superorg",
            "project": "test3", "templateName": "postgres", "templateVersion": "v1.0.0", "displayName": name,
            "input": {"preset": "cpu-small", "storage_gb": version}}),
        "UbiService" => json!({"connectionRef": {"name": "ubiops"}, "project": "proj", "name": name,
            "deployment": "dep-1", "version": "v1", "port": 8000 + version}),
        _ => json!({"connectionRef": {"name": "peak"}, "name": name, "imageDetails": {"imageId": 1},
            "title": format!("v{version}")}),
    };
    json!({"apiVersion": "tether.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

const KINDS: [&str; 5] = ["AppService", "CivisService", "ApoloApp", "UbiService", "PeakWebapp"];

fn apply(namespace: &str, items: Vec<Value>) {
    let list = json!({"apiVersion": "v1", "kind": "List", "items": items});
    kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], &list.to_string());
}

async fn on_every_sim(sims: &Sims, fault: Option<&Value>) {
    let http = reqwest::Client::new();
    for platform in PLATFORMS {
        let faults = format!("{}/_sim/faults", sims.origin(platform));
        http.delete(&faults).send().await.unwrap();
        if let Some(fault) = fault {
            let answer = http.post(&faults).json(fault).send().await.unwrap();
            assert!(answer.status().is_success(), "{platform}: {}", answer.text().await.unwrap());
        }
    }
}

#[derive(serde::Deserialize, Clone)]
struct Logged {
    start: u64,
    end: u64,
    method: String,
    route: String,
    status: u16,
    auth: u64,
}

async fn log(sims: &Sims, platform: &str) -> Vec<Logged> {
    reqwest::get(format!("{}/_sim/log", sims.origin(platform))).await.unwrap().json().await.unwrap()
}

/// The most requests of one account that started within any 1 s window.
fn peak_rate(requests: &[&Logged]) -> usize {
    let mut starts: Vec<u64> = requests.iter().map(|r| r.start).collect();
    starts.sort_unstable();
    let mut best = 0;
    let mut first = 0;
    for (i, start) in starts.iter().enumerate() {
        // Half-open windows of one second, less 2 ms for the log's millisecond clock and loopback jitter: a
        // token bucket allows rate + burst in any such window (a burst at t and the tenth refill at t + 1 s
        // would be 21 in a closed one).
        while starts[first] + 998 <= *start {
            first += 1;
        }
        best = best.max(i + 1 - first);
    }
    best
}

/// The operator's record of one request as it left: the account's tag and the instant, in microseconds
/// since the epoch (the `tether::sent` event of tether-platforms' HTTP layer).
fn sent(log: &str) -> Vec<(u64, u64)> {
    let field = |line: &str, name: &str| {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..].split(|c: char| !c.is_ascii_digit()).next()?.parse::<u64>().ok()
    };
    log.lines()
        .filter(|line| line.contains("request sent"))
        .filter_map(|line| Some((field(line, "account")?, field(line, "sent_us")?)))
        .collect()
}

/// The most of `sends` (microseconds) within any closed 1 s window.
fn peak_sent(sends: &mut [u64]) -> usize {
    sends.sort_unstable();
    let mut best = 0;
    let mut first = 0;
    for (i, at) in sends.iter().enumerate() {
        while sends[first] + 1_000_000 < *at {
            first += 1;
        }
        best = best.max(i + 1 - first);
    }
    best
}

/// Requests of the account of a 429 that started after the 429 was answered and before its Retry-After
/// had passed (100 ms of slack on either side for the loopback).
fn undercuts(requests: &[&Logged]) -> usize {
    let throttled: Vec<u64> = requests.iter().filter(|r| r.status == 429).map(|r| r.end).collect();
    requests
        .iter()
        .filter(|r| throttled.iter().any(|t| r.start > t + 100 && r.start + 100 < t + RETRY_AFTER * 1000))
        .count()
}

/// The resources not Ready at their generation yet.
async fn converged(ns: &str) -> Vec<String> {
    let mut pending = Vec::new();
    for kind in KINDS {
        let out = kubectl(&["get", &format!("{}s", kind.to_lowercase()), "-n", ns, "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in list["items"].as_array().into_iter().flatten() {
            let ready = item["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
            if !ready || item["status"]["observedGeneration"] != item["metadata"]["generation"] {
                pending.push(format!("{kind}/{}", item["metadata"]["name"].as_str().unwrap_or_default()));
            }
        }
    }
    pending
}

#[tokio::test]
async fn fault_storms_keep_the_rate_the_retry_after_and_converge_without_duplicates() {
    let full = std::env::var("STORM_SIZE").is_ok_and(|s| s == "full");
    let (storm, outage) = if full { (60, 120) } else { (5, 20) };
    // STORM_OUTAGE_SECONDS lengthens the outage (to watch the backoff past two minutes); STORM_ONLY=outage
    // runs that storm alone.
    let outage = std::env::var("STORM_OUTAGE_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(outage);
    let only = std::env::var("STORM_ONLY").ok();
    let ns = TestNamespace::new("storms").await;
    let sims = Sims::start(&ns.name, "all", 100);
    let dir = sims.dir.clone();
    kubectl(&["apply", "-n", &ns.name, "-f", sims.connections.to_str().unwrap()]);
    for platform in PLATFORMS {
        let limits = format!(r#"{{"spec": {{"requestsPerSecond": {RATE}, "burst": {BURST}}}}}"#);
        kubectl(&["patch", "-n", &ns.name, &format!("connection/{platform}"), "--type=merge", "-p", &limits]);
    }
    let operator_log = dir.join("operator.log");
    let _operator = operator_logging(&ns.name, &[], operator_log.clone(), &format!("{DEFAULT_LOG},tether::sent=trace"));

    let storms: Vec<(&str, Value, u64)> = vec![
        ("30 % 5xx", json!({"rate": 0.3, "status": 500}), storm),
        ("429 with Retry-After on half", json!({"rate": 0.5, "status": 429, "retryAfter": RETRY_AFTER}), storm),
        ("2 s latency", json!({"latencyMs": 2000}), storm),
        ("connection resets", json!({"rate": 0.3, "reset": true}), storm),
        ("malformed bodies", json!({"rate": 0.3, "malformedBody": true}), storm),
        ("outage", json!({"status": 503}), outage),
    ];
    let mut names: BTreeMap<String, &'static str> = BTreeMap::new();
    let mut versions: BTreeMap<String, u64> = BTreeMap::new();
    let mut report = Vec::new();
    let mut failures = Vec::new();
    for (index, (what, fault, seconds)) in storms.iter().enumerate() {
        if only.as_deref().is_some_and(|only| !what.contains(only)) {
            continue;
        }
        let began = Instant::now();
        let began_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
        on_every_sim(&sims, Some(fault)).await;
        // During the storm: four new resources of every kind, and an edit of every earlier one.
        let mut items = Vec::new();
        for kind in KINDS {
            for i in 0..4 {
                let name = format!("s{index}-{i}-{}", kind.to_lowercase());
                names.insert(name.clone(), kind);
                versions.insert(name.clone(), 1);
                items.push(manifest(kind, &name, 1));
            }
        }
        for (name, kind) in &names {
            if !name.starts_with(&format!("s{index}-")) {
                let version = versions.get_mut(name).unwrap();
                *version += 1;
                items.push(manifest(kind, name, *version));
            }
        }
        apply(&ns.name, items);
        tokio::time::sleep(Duration::from_secs(*seconds)).await;
        on_every_sim(&sims, None).await;
        let cleared = Instant::now();
        let deadline = cleared + Duration::from_secs(120);
        let pending = loop {
            let pending = converged(&ns.name).await;
            if pending.is_empty() || Instant::now() > deadline {
                break pending;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        };
        let converge = cleared.elapsed();
        if !pending.is_empty() {
            failures.push(format!("{what}: not converged after 120 s: {pending:?}"));
        }

        // From the request logs of this storm.
        let until_ms = began_ms + began.elapsed().as_millis() as u64;
        let mut peak = 0;
        let mut peak_sent_rate = 0;
        let mut undercut = 0;
        let mut requests = 0;
        let mut outage_halves = (0, 0);
        let mut checks = 0;
        let mut minute_counts = vec![0usize; (*seconds as usize).div_ceil(60)];
        for platform in PLATFORMS {
            let all = log(&sims, platform).await;
            let window: Vec<&Logged> = all.iter().filter(|r| r.start >= began_ms && r.start <= until_ms).collect();
            requests += window.len();
            let mut by_account: BTreeMap<u64, Vec<&Logged>> = BTreeMap::new();
            for r in &window {
                by_account.entry(r.auth).or_default().push(r);
            }
            for account in by_account.values() {
                peak = peak.max(peak_rate(account));
                undercut += undercuts(account);
            }
            if *what == "outage" && std::env::var("STORM_ROUTES").is_ok() {
                let mut routes: BTreeMap<String, usize> = BTreeMap::new();
                for r in &window {
                    *routes.entry(format!("{} {} {}", r.method, r.route, r.status)).or_default() += 1;
                }
                eprintln!("storm: {platform} outage requests by route: {routes:?}");
            }
            if *what == "outage" {
                // The Connections' own credential checks, told apart from the resources' traffic.
                let check = |r: &&&Logged| {
                    ["/sessions/verifications", "/api/v1/config", "/v2.1/status", "tenant-metadata"]
                        .iter()
                        .any(|route| r.route.contains(route))
                };
                checks += window.iter().filter(|r| r.start < began_ms + seconds * 1000).filter(check).count();
                let middle = began_ms + seconds * 500;
                let end = began_ms + seconds * 1000;
                outage_halves.0 += window.iter().filter(|r| r.start < middle).count();
                outage_halves.1 += window.iter().filter(|r| r.start >= middle && r.start < end).count();
                for r in window.iter().filter(|r| r.start < end) {
                    minute_counts[((r.start - began_ms) / 60_000) as usize] += 1;
                }
            }
        }
        // The limiter allows RATE + BURST in any second, and this is judged where it is kept, from the
        // operator's record of each request as it left. On arrival at the simulator the two ends of a window
        // carry the client-to-server delay of their requests (scheduling on a loaded 2-core machine), so
        // one request more is seen there now and then: that figure is printed, not judged.
        let text = std::fs::read_to_string(&operator_log).unwrap_or_default();
        let mut by_account: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
        for (account, at) in sent(&text) {
            if at >= began_ms * 1000 && at <= until_ms * 1000 {
                by_account.entry(account).or_default().push(at);
            }
        }
        let sent_requests: usize = by_account.values().map(Vec::len).sum();
        for sends in by_account.values_mut() {
            peak_sent_rate = peak_sent_rate.max(peak_sent(sends));
        }
        if sent_requests == 0 {
            failures.push(format!("{what}: no `request sent` record in the operator's log"));
        }
        if peak_sent_rate as u64 > RATE + BURST {
            failures.push(format!(
                "{what}: {peak_sent_rate} requests of one account sent in one second (limit {RATE} + burst {BURST})"
            ));
        }
        if undercut > 0 {
            failures.push(format!("{what}: {undercut} requests sooner than a Retry-After allowed"));
        }
        let resources = names.len();
        let mut line = format!(
            "{what:<30} {requests:>6} requests  peak per account {peak_sent_rate:>2}/s sent, {peak:>2}/s arrived  \
             {undercut} undercuts  converged {:.1} s",
            converge.as_secs_f64()
        );
        if *what == "outage" {
            let per_minute = |n: usize| n as f64 / resources as f64 / (*seconds as f64 / 2.0 / 60.0);
            line += &format!(
                "  outage traffic {:.2} then {:.2} requests per resource per minute",
                per_minute(outage_halves.0),
                per_minute(outage_halves.1)
            );
            line += &format!(" ({checks} of them the Connections' credential checks)");
            if *seconds >= 120 {
                let minutes: Vec<String> =
                    minute_counts.iter().map(|n| format!("{:.2}", *n as f64 / resources as f64)).collect();
                line += &format!("; per resource, minute by minute: {}", minutes.join(", "));
            }
            if outage_halves.1 > outage_halves.0 {
                failures.push(format!("{what}: the traffic did not fall ({outage_halves:?})"));
            }
        }
        eprintln!("storm: {line}");
        report.push(line);
    }

    // No duplicates: one remote object per resource, counted by name on the platforms.
    let state = |platform: &'static str| {
        let origin = sims.origin(platform);
        async move { reqwest::get(format!("{origin}/_sim/state")).await.unwrap().json::<Value>().await.unwrap() }
    };
    let mut remote: BTreeMap<String, usize> = BTreeMap::new();
    let mut count = |name: Option<&str>| {
        if let Some(name) = name {
            *remote.entry(name.split(' ').next().unwrap_or_default().to_string()).or_default() += 1;
        }
    };
    let igz = state("iguazio").await;
    igz["manifest"]["attributes"]["app_services"]
        .as_array()
        .into_iter()
        .flatten()
        .for_each(|e| count(e["spec"]["name"].as_str()));
    state("civis").await["services"].as_array().into_iter().flatten().for_each(|s| count(s["name"].as_str()));
    state("apolo").await["apps"].as_array().into_iter().flatten().for_each(|a| count(a["display_name"].as_str()));
    let ubi = state("ubiops").await;
    ubi["projects"]["proj"]["services"].as_array().into_iter().flatten().for_each(|s| count(s["name"].as_str()));
    state("peak").await["webapps"].as_array().into_iter().flatten().for_each(|w| count(w["name"].as_str()));
    for name in names.keys() {
        match remote.get(name) {
            Some(1) => {}
            other => failures.push(format!("{name}: {other:?} remote objects")),
        }
    }
    let mut posts = 0;
    for platform in PLATFORMS {
        posts += log(&sims, platform).await.iter().filter(|r| r.method == "POST").count();
    }
    eprintln!(
        "storm: {} resources, {} remote objects, {posts} POSTs sent (creates and actions, retries included)",
        names.len(),
        remote.values().sum::<usize>()
    );
    assert!(failures.is_empty(), "{}\n{}", report.join("\n"), failures.join("\n"));
    sims.clean_up();
}
