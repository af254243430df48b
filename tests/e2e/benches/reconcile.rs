//! How the reconciler scales. For each kind: N resources made from its example are created at once
//! against the kind's simulator on a real control plane, left alone for three drift periods, then deleted.
//! Prints one row per kind:
//!
//! - ready: time from the creates until every resource is Ready for its generation;
//! - api/res, calls/res, writes/res: writes to the Kubernetes API (the kind's objects and status,
//!   Secrets, Events; read from kube-apiserver's `apiserver_request_total`), platform calls and platform
//!   writes (the simulator's counters), per resource, from the creates until all are Ready;
//! - steady calls/res/period and steady api writes: the same over three drift periods after that (the
//!   API writes must be 0: a reconcile that changes nothing writes nothing);
//! - steady reads/res/period: GETs and LISTs of Connections, ClusterConnections and Secrets per resource
//!   and drift period (0 when they come from the shared watches);
//! - gone: time from deleting them all until every one (and its remote object) is gone.
//!
//! ```text
//! cargo bench -p tether-e2e --bench reconcile            # N = 50
//! cargo bench -p tether-e2e --bench reconcile -- 200     # N = 200
//! ```
//!
//! The operator runs with production defaults (8 workers per lane, a look every 2 s while converging)
//! except the drift period, 2 s here so that the steady state is measured in seconds; the simulators use
//! their default 300 ms for asynchronous states. Under `cargo test` it runs with N = 3 as a smoke test.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::future::join_all;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams};
use kube::{Client, Resource};
use tether_controller::adapter::Adapter;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_e2e::{api_for, connect_with, create, example, manifests, numbered, sim_credentials, spawn_controller_with};
use tether_sim::{SimOptions, spawn};
use tether_testenv::{TestNamespace, repo_root};

const DRIFT: Duration = Duration::from_secs(2);

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(if bench { 50 } else { 3 });
    let deadline = if bench { Duration::from_secs(600) } else { Duration::from_secs(60) };
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        println!(
            "{:<13} {:>4} {:>8} {:>8} {:>10} {:>11} {:>25} {:>19} {:>23} {:>8}",
            "kind",
            "N",
            "ready",
            "api/res",
            "calls/res",
            "writes/res",
            "steady calls/res/period",
            "steady api writes",
            "steady reads/res/period",
            "gone"
        );
        measure::<Iguazio>("iguazio", "appservice.yaml", "AppService", n, deadline).await;
        measure::<Civis>("civis", "civisservice.yaml", "CivisService", n, deadline).await;
        measure::<Apolo>("apolo", "apoloapp.yaml", "ApoloApp", n, deadline).await;
        measure::<UbiOps>("ubiops", "ubiservice.yaml", "UbiService", n, deadline).await;
        measure::<Peak>("peak", "peakwebapp.yaml", "PeakWebapp", n, deadline).await;
    });
}

async fn measure<A: Adapter>(platform: &str, file: &str, kind: &str, n: usize, deadline: Duration) {
    let ns = TestNamespace::new(&format!("bench-{platform}")).await;
    let client = ns.client.clone();
    let sim = spawn(platform, "127.0.0.1:0".parse().unwrap(), SimOptions::default()).await.expect("a simulator");
    let origin = reqwest::Url::parse(&sim.url).unwrap().origin().ascii_serialization();
    connect_with(&client, &ns.name, platform, &sim.url, sim_credentials(platform)).await;
    for secret in manifests(&repo_root().join("examples").join(file)).iter().filter(|d| d["kind"] == "Secret") {
        create(&client, &ns.name, secret, false).await.expect("the example's Secret");
    }
    let config = tether_controller::Config { poll_interval: DRIFT, concurrency: 8, ..Default::default() };
    let controller = spawn_controller_with::<A>(&client, &ns.name, config);
    let template = example(file, kind);
    let api = api_for(&client, &ns.name, &template).await;
    let plural = A::Resource::plural(&()).to_string();

    let (api_before, sim_before) = (api_writes(&client, &plural).await, sim_calls(&origin).await);
    let started = Instant::now();
    let creates = (0..n).map(|i| {
        let resource = numbered(&template, i);
        let (client, ns) = (client.clone(), ns.name.clone());
        async move { create(&client, &ns, &resource, false).await.expect("created") }
    });
    join_all(creates).await;
    wait(&api, "Ready", started, deadline, |list| list.len() == n && list.iter().all(ready)).await;
    let ready_after = started.elapsed();
    let (api_converge, sim_converge) = (api_writes(&client, &plural).await, sim_calls(&origin).await);

    // The look each resource gets after its last status write, then the steady state.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (api_settled, sim_settled) = (api_writes(&client, &plural).await, sim_calls(&origin).await);
    let reads_settled = api_reads(&client).await;
    tokio::time::sleep(DRIFT * 3).await;
    let (api_steady, sim_steady) = (api_writes(&client, &plural).await, sim_calls(&origin).await);
    let steady_reads = api_reads(&client).await - reads_settled;

    let deleting = Instant::now();
    api.delete_collection(&DeleteParams::default(), &ListParams::default()).await.expect("deleted");
    wait(&api, "gone", deleting, deadline, |list| list.is_empty()).await;
    let gone_after = deleting.elapsed();
    controller.abort();

    let per = |count: u64| count as f64 / n as f64;
    let steady_api = api_steady - api_settled;
    println!(
        "{:<13} {:>4} {:>7.1}s {:>8.1} {:>10.1} {:>11.1} {:>25.2} {:>19} {:>23.2} {:>7.1}s",
        kind,
        n,
        ready_after.as_secs_f64(),
        per(api_converge - api_before),
        per(sim_converge.0 - sim_before.0),
        per(sim_converge.1 - sim_before.1),
        per(sim_steady.0 - sim_settled.0) / 3.0,
        steady_api,
        steady_reads as f64 / n as f64 / 3.0,
        gone_after.as_secs_f64()
    );
    assert_eq!(steady_api, 0, "{kind}: API writes in the steady state");
}

fn ready(obj: &DynamicObject) -> bool {
    let ready = obj.data["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    ready && obj.metadata.generation.is_some_and(|g| obj.data["status"]["observedGeneration"] == g)
}

async fn wait(
    api: &Api<DynamicObject>,
    what: &str,
    started: Instant,
    deadline: Duration,
    done: impl Fn(&[DynamicObject]) -> bool,
) {
    loop {
        let list = api.list(&ListParams::default()).await.expect("list").items;
        if done(&list) {
            return;
        }
        let ready = list.iter().filter(|o| ready(o)).count();
        assert!(
            started.elapsed() < deadline,
            "not all {what} after {deadline:?}: {} listed, {ready} Ready",
            list.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Writes so far to the kind's objects (metadata and status), to Secrets and to Events, by kube-apiserver's
/// own count. Creates of the kind are the benchmark's, not Tether's, and are left out.
async fn api_writes(client: &Client, plural: &str) -> u64 {
    api_counts(client, plural).await.0
}

/// Reads so far of Connections, ClusterConnections and Secrets (GET and LIST): what a reconcile would
/// read to resolve its account, by kube-apiserver's own count. Watches are not requests it counts here.
async fn api_reads(client: &Client) -> u64 {
    api_counts(client, "").await.1
}

/// `(writes, reads)`: see [`api_writes`] and [`api_reads`].
async fn api_counts(client: &Client, plural: &str) -> (u64, u64) {
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.expect("kube-apiserver /metrics");
    let (mut total, mut reads) = (0, 0);
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |key: &str| labels.split(&format!("{key}=\"")).nth(1).and_then(|rest| rest.split('"').next());
        let (Some(resource), Some(verb)) = (label("resource"), label("verb")) else { continue };
        let write = match resource {
            r if r == plural => matches!(verb, "PATCH" | "PUT" | "APPLY"),
            "secrets" | "events" => matches!(verb, "POST" | "PATCH" | "PUT" | "APPLY"),
            _ => false,
        };
        let count = value.parse::<f64>().unwrap_or(0.0) as u64;
        if write {
            total += count;
        }
        if matches!(resource, "connections" | "clusterconnections" | "secrets") && matches!(verb, "GET" | "LIST") {
            reads += count;
        }
    }
    (total, reads)
}

/// `(calls, writes)` the simulator has answered so far; a write is any call but a GET.
async fn sim_calls(origin: &str) -> (u64, u64) {
    let counters: BTreeMap<String, u64> =
        reqwest::get(format!("{origin}/_sim/counters")).await.expect("counters").json().await.expect("json");
    let writes = counters.iter().filter(|(k, _)| !k.starts_with("GET ")).map(|(_, v)| v).sum();
    (counters.values().sum(), writes)
}
