//! What the real operator costs: the `tether` binary (built by `cargo bench`, so a release build) runs as
//! its own process against the five simulators (`tether sim`, no delay) on a real control plane, and N
//! resources of the five kinds (N/5 each, from `examples/`) are created at once, changed, left alone for
//! three drift periods and deleted. Side by side in the same run, the floor: a raw kube client making the
//! same creates and one status write per resource, as fast as the API server takes them.
//!
//! Prints a table and writes it as JSON to `target/bench/operator-N.json`:
//! - all Ready: seconds from the first create until every resource is Ready at its generation, and its
//!   ratio to the floor; apply→Ready p50 and p99 (from each create's answer to the watch showing it Ready);
//! - per resource, for create, change and delete: platform calls (reads and writes, the simulators' own
//!   counts) and Tether's API writes (kube-apiserver's count of PATCH/PUT/POST on the kinds, their
//!   status, Secrets and Events, less the benchmark's own), and API reads by verb and resource (GET and
//!   LIST of the kinds, Connections, Secrets, Events and namespaces, the benchmark's own polls among them);
//! - steady state, per resource and drift period: platform calls, API reads (GET and LIST of anything)
//!   and API writes;
//! - operator peak RSS, its CPU seconds per phase, and the control plane's.
//!
//! ```text
//! cargo bench -p tether --bench operator                  # N = 1000, 20 s drift period
//! cargo bench -p tether --bench operator -- 10000 --drift-seconds 60
//! cargo bench -p tether --bench operator -- 1000 --kinds UbiService,PeakWebapp --steady-periods 6
//! ```
//!
//! `--kinds` spreads the N resources over some kinds only; `--steady-periods` measures the steady state
//! over more periods (the operator's pid is printed as each phase begins, to attach a profiler). More
//! than [`SERVICES_PER_TENANT`] AppServices are spread over as many Iguazio tenants as they need, each
//! with a simulator and a Connection of its own.
//!
//! Under `cargo test` (`--all-targets`) it runs with N = 10 and a 2 s drift period as a smoke test.

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, stream};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tether_e2e::{manifests, numbered};
use tether_testenv::{TestNamespace, control_plane, repo_root};

/// The kinds, each with its example file, simulator and the spec change the benchmark makes.
const KINDS: [(&str, &str, &str); 5] = [
    ("AppService", "appservice.yaml", "iguazio"),
    ("CivisService", "civisservice.yaml", "civis"),
    ("ApoloApp", "apoloapp.yaml", "apolo"),
    ("UbiService", "ubiservice.yaml", "ubiops"),
    ("PeakWebapp", "peakwebapp.yaml", "peak"),
];

/// Creates (and status writes of the floor) in flight at once.
const IN_FLIGHT: usize = 32;

/// AppServices per Iguazio tenant. A tenant's app services are one manifest, written whole
/// (shared/platforms/iguazio.md), and the simulator takes request bodies of up to 1 MiB: about 900
/// services. Past this many, AppServices go to further tenants, each a simulator and a Connection of its
/// own (`iguazio-1`, `iguazio-2`, ...), as a platform with that many services would be laid out.
const SERVICES_PER_TENANT: usize = 500;

fn change(kind: &str) -> Value {
    match kind {
        "ApoloApp" => json!({"spec": {"input": {"preset": "cpu-small", "storage_gb": 30}}}),
        _ => json!({"spec": {"description": "changed by the benchmark"}}),
    }
}

struct Options {
    n: usize,
    drift: Duration,
    /// Drift periods the steady state is measured over (`--steady-periods`, default 3): more leave time
    /// to attach a profiler to the operator, whose pid the benchmark prints as each phase begins.
    steady_periods: u32,
    /// The kinds the N resources are spread over (`--kinds UbiService,PeakWebapp`; default all five): to
    /// tell what one kind costs.
    kinds: Vec<String>,
    smoke: bool,
}

fn options() -> Options {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let smoke = !args.iter().any(|a| a == "--bench");
    let n = args.iter().find_map(|a| a.parse().ok()).unwrap_or(if smoke { 10 } else { 1000 });
    let drift = args
        .iter()
        .position(|a| a == "--drift-seconds")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(if smoke { 2 } else { 20 });
    let steady_periods = args
        .iter()
        .position(|a| a == "--steady-periods")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(3u32)
        .max(1);
    let kinds: Vec<String> = args.iter().position(|a| a == "--kinds").and_then(|i| args.get(i + 1)).map_or_else(
        || KINDS.iter().map(|k| k.0.to_string()).collect(),
        |v| v.split(',').map(str::to_string).collect(),
    );
    for kind in &kinds {
        assert!(KINDS.iter().any(|k| k.0 == kind), "--kinds: {kind} is not one of {:?}", KINDS.map(|k| k.0));
    }
    Options { n: n.max(kinds.len()), drift: Duration::from_secs(drift), steady_periods, kinds, smoke }
}

fn main() {
    let options = options();
    tokio::runtime::Runtime::new().expect("a runtime").block_on(run(options));
}

/// What the benchmark counts at a moment.
#[derive(Clone, Default)]
struct Counts {
    platform_reads: u64,
    platform_writes: u64,
    api_reads: u64,
    api_writes: u64,
    lease_calls: u64,
    /// API reads by resource and verb, to tell where the steady state's reads go.
    reads: BTreeMap<String, u64>,
    operator_cpu: f64,
    plane_cpu: f64,
    /// Reconciles the operator reports (`controller_runtime_reconcile_total`), by controller.
    reconciles: BTreeMap<String, u64>,
    /// Drift checks the operator answered by a probe alone (`tether_drift_checks_total{result="unchanged"}`).
    probed: BTreeMap<String, u64>,
    /// Platform calls by platform and simulator route (`peak GET /webapps/...`), to tell where a phase's
    /// calls go.
    routes: BTreeMap<String, u64>,
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            platform_reads: self.platform_reads - o.platform_reads,
            platform_writes: self.platform_writes - o.platform_writes,
            api_reads: self.api_reads.saturating_sub(o.api_reads),
            api_writes: self.api_writes.saturating_sub(o.api_writes),
            lease_calls: self.lease_calls.saturating_sub(o.lease_calls),
            reads: less(&self.reads, &o.reads).filter(|(_, v)| *v > 0).collect(),
            operator_cpu: self.operator_cpu - o.operator_cpu,
            plane_cpu: self.plane_cpu - o.plane_cpu,
            reconciles: less(&self.reconciles, &o.reconciles).collect(),
            routes: less(&self.routes, &o.routes).filter(|(_, v)| *v > 0).collect(),
            probed: less(&self.probed, &o.probed).collect(),
        }
    }
}

/// The Secret and Connection of a further Iguazio tenant's simulator (its connections file names them
/// `iguazio-credentials` and `iguazio`), renamed `iguazio-<tenant>-credentials` and `iguazio-<tenant>`.
fn tenant_connection(docs: &[Value], tenant: usize) -> Vec<Value> {
    let (connection, secret) = (format!("iguazio-{tenant}"), format!("iguazio-{tenant}-credentials"));
    let mut docs = docs.to_vec();
    for doc in &mut docs {
        if doc["kind"] == "Secret" {
            doc["metadata"]["name"] = json!(secret);
        } else {
            doc["metadata"]["name"] = json!(connection);
            for selector in doc["spec"]["credentials"].as_object_mut().into_iter().flat_map(|c| c.values_mut()) {
                selector["name"] = json!(secret);
            }
        }
    }
    docs
}

/// Each count of `later` less the same key's count in `earlier`.
fn less<'a>(
    later: &'a BTreeMap<String, u64>,
    earlier: &'a BTreeMap<String, u64>,
) -> impl Iterator<Item = (String, u64)> + 'a {
    later.iter().map(|(k, v)| (k.clone(), v.saturating_sub(earlier.get(k).copied().unwrap_or(0))))
}

async fn run(options: Options) {
    let Options { n, drift, steady_periods, kinds, smoke } = options;
    let plane = control_plane();
    let ns = TestNamespace::new("bench-operator").await;
    let client = ns.client.clone();
    let sims = common::Sims::start(&ns.name, "all", 0);
    let mut origins: Vec<(&str, String)> =
        KINDS.iter().map(|(_, _, platform)| (*platform, sims.origin(platform))).collect();
    common::kubectl(&["apply", "-n", &ns.name, "-f", sims.connections.to_str().unwrap()]);
    let app_services = if kinds.iter().any(|k| k == "AppService") { n.div_ceil(kinds.len()) } else { 0 };
    let tenants = app_services.div_ceil(SERVICES_PER_TENANT).max(1);
    let mut more_tenants = Vec::new();
    for tenant in 1..tenants {
        let sim = common::Sims::start(&format!("{}-iguazio-{tenant}", ns.name), "iguazio", 0);
        for doc in tenant_connection(&manifests(&sim.connections), tenant) {
            create(&client, &ns.name, &doc).await;
        }
        origins.push(("iguazio", sim.origin("iguazio")));
        more_tenants.push(sim);
    }
    let mut templates = Vec::new();
    for (kind, file, _) in KINDS {
        for doc in manifests(&repo_root().join("examples").join(file)) {
            if doc["kind"] == "Secret" {
                create(&client, &ns.name, &doc).await;
            } else if doc["kind"] == kind && kinds.iter().any(|k| k == kind) {
                templates.push(doc);
            }
        }
    }
    let mut resources = Vec::new();
    for i in 0..n {
        let mut resource = numbered(&templates[i % templates.len()], i / templates.len());
        let tenant = i / templates.len() / SERVICES_PER_TENANT;
        if resource["kind"] == "AppService" && tenant > 0 {
            resource["spec"]["connectionRef"]["name"] = json!(format!("iguazio-{tenant}"));
        }
        resources.push(resource);
    }
    let drift_arg = drift.as_secs().to_string();
    let log = sims.dir.join("operator.log");
    let (metrics, probes) =
        (format!("127.0.0.1:{}", common::free_port()), format!("127.0.0.1:{}", common::free_port()));
    let args = ["run", "--namespace", &ns.name, "--poll-interval-seconds", &drift_arg];
    let operator = common::tether_logging(
        &[&args[..], &["--metrics-addr", &metrics, "--probe-addr", &probes]].concat(),
        &log,
        "warn",
    );
    let pid = operator.0.id();
    let tracker = Tracker::start(&client, &ns.name).await;
    let count = || async { counts(&client, &origins, pid, plane.pid(), &metrics).await };
    // Wait for the operator to be up (its Connections Ready) before the clock starts.
    wait_for(Duration::from_secs(60), "Connections Ready", || async {
        let out = common::kubectl(&["get", "connections", "-n", &ns.name, "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let items = list["items"].as_array().cloned().unwrap_or_default();
        items.len() == 4 + tenants && items.iter().all(is_ready)
    })
    .await;

    // Create.
    let before = count().await;
    println!("creating {n} resources: operator pid {pid}");
    let started = Instant::now();
    let created_at: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    stream::iter(resources.iter().cloned())
        .for_each_concurrent(IN_FLIGHT, |resource| {
            let (client, ns, created_at) = (client.clone(), ns.name.clone(), created_at.clone());
            async move {
                let key = key(&resource);
                create(&client, &ns, &resource).await;
                created_at.lock().unwrap().insert(key, Instant::now());
            }
        })
        .await;
    let deadline = Duration::from_secs(if smoke { 120 } else { 1800 });
    wait_for(deadline, "all Ready", || async { tracker.ready_at(1).len() == n }).await;
    let all_ready = started.elapsed();
    let created = count().await;
    let mut memory = vec![("created", memory_kib(pid))];
    let created_at = created_at.lock().unwrap().clone();
    let mut latencies: Vec<f64> = tracker
        .ready_at(1)
        .iter()
        .filter_map(|(key, at)| Some(at.saturating_duration_since(*created_at.get(key)?).as_secs_f64()))
        .collect();
    latencies.sort_by(f64::total_cmp);
    // The look each resource gets after its last status write.
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Change.
    let changing = count().await;
    println!("all Ready in {:.1} s; changing them", all_ready.as_secs_f64());
    let change_started = Instant::now();
    stream::iter(resources.iter().cloned())
        .for_each_concurrent(IN_FLIGHT, |resource| {
            let client = client.clone();
            let ns = ns.name.clone();
            async move {
                let api = api(&client, &ns, &resource);
                let name = resource["metadata"]["name"].as_str().unwrap().to_string();
                let patch = change(resource["kind"].as_str().unwrap());
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.expect("changed");
            }
        })
        .await;
    wait_for(deadline, "all Ready after the change", || async { tracker.ready_at(2).len() == n }).await;
    let all_changed = change_started.elapsed();
    // The look each resource gets after its last status write, and the platforms' own transitions after
    // a change (Apolo redeploys): a drift period, so that the steady state starts steady.
    tokio::time::sleep(drift).await;
    let changed = count().await;
    memory.push(("changed", memory_kib(pid)));
    // The change's window spans drift checks too: what they cost at the steady rate is taken off below.
    let change_window = change_started.elapsed();

    // Steady state: three drift periods.
    let settled = count().await;
    println!("steady state for {steady_periods} drift periods: operator pid {pid}");
    tokio::time::sleep(drift * steady_periods).await;
    let steady = count().await;
    memory.push(("steady", memory_kib(pid)));

    // Delete.
    let deleting = count().await;
    println!("deleting them");
    let delete_started = Instant::now();
    for (kind, _, _) in KINDS {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns.name, &resource_of(kind));
        // At N = 10000 the API server may drop a delete-collection of 2,000 objects midway (seen once:
        // an incomplete message); deleting the collection again deletes what is left.
        let mut tries = 0;
        while let Err(error) = api.delete_collection(&DeleteParams::default(), &ListParams::default()).await {
            tries += 1;
            assert!(tries < 5, "deleting the {kind}s: {error}");
            eprintln!("deleting the {kind}s again after: {error}");
        }
    }
    wait_for(deadline, "all gone", || async { tracker.live() == 0 }).await;
    let all_gone = delete_started.elapsed();
    let deleted = count().await;
    memory.push(("deleted", memory_kib(pid)));
    // The peak of the whole run: the last phase's peak so far.
    let rss_mib = memory.last().map_or(0, |(_, (peak, _))| *peak) as f64 / 1024.0;
    drop(operator);

    // The floor, in a namespace no operator watches.
    let floor_ns = TestNamespace::new("bench-floor").await;
    let floor_started = Instant::now();
    stream::iter(resources.iter().cloned())
        .for_each_concurrent(IN_FLIGHT, |resource| {
            let (client, ns) = (client.clone(), floor_ns.name.clone());
            async move {
                create(&client, &ns, &resource).await;
                let api = api(&client, &ns, &resource);
                let name = resource["metadata"]["name"].as_str().unwrap();
                let status = json!({"status": {"observedGeneration": 1, "conditions": [
                    {"type": "Ready", "status": "True", "reason": "Available", "message": "",
                     "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]}});
                api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await.expect("status");
            }
        })
        .await;
    let floor = floor_started.elapsed();
    // The control plane's own cost with as many resources and no operator: the baseline its steady
    // figure is read against (kube-controller-manager, the apiserver's own loops, the benchmark's watch).
    // A period to settle first: the floor's creates leave kube-controller-manager and etcd busy a while.
    tokio::time::sleep(drift).await;
    let idle_start = count().await;
    tokio::time::sleep(drift).await;
    let idle = count().await - idle_start;

    let per = |count: u64| count as f64 / n as f64;
    let phase = |c: Counts, bench_writes: u64| {
        json!({
            "platform_calls_per_resource": per(c.platform_reads + c.platform_writes),
            "platform_writes_per_resource": per(c.platform_writes),
            "api_writes_per_resource": per(c.api_writes.saturating_sub(bench_writes)),
            // Every GET and LIST of what Tether reads, the benchmark's own polls among them: the breakdown
            // by verb and resource tells them apart (the benchmark lists its kinds; Tether GETs Secrets).
            "api_reads_by_resource": c.reads.iter().map(|(k, v)| (k.clone(), json!(per(*v)))).collect::<serde_json::Map<String, Value>>(),
            "reconciles_per_resource": per(c.reconciles.values().sum()),
            "reconciles_by_kind": c.reconciles.iter().filter(|(_, v)| **v > 0).map(|(k, v)| (k.clone(), json!(*v))).collect::<serde_json::Map<String, Value>>(),
            "platform_calls_per_resource_by_route":
                c.routes.iter().map(|(k, v)| (k.clone(), json!(per(*v)))).collect::<serde_json::Map<String, Value>>(),
            "operator_cpu_seconds": c.operator_cpu,
            "control_plane_cpu_seconds": c.plane_cpu,
        })
    };
    let steady_counts = steady - settled;
    let change_counts = changed - changing;
    let steady_rate = per(steady_counts.platform_reads + steady_counts.platform_writes) / f64::from(steady_periods);
    let change_above_steady = per(change_counts.platform_reads + change_counts.platform_writes)
        - steady_rate * (change_window.as_secs_f64() / drift.as_secs_f64());
    let percentile = |p: f64| latencies.get(((latencies.len() as f64 - 1.0) * p).round() as usize).copied();
    let report = json!({
        "n": n,
        "drift_period_seconds": drift.as_secs(),
        "kinds": kinds,
        "iguazio_tenants": tenants,
        "steady_periods": steady_periods,
        "all_ready_seconds": all_ready.as_secs_f64(),
        "floor_seconds": floor.as_secs_f64(),
        "ready_to_floor": all_ready.as_secs_f64() / floor.as_secs_f64(),
        "apply_to_ready_p50_seconds": percentile(0.5),
        "apply_to_ready_p99_seconds": percentile(0.99),
        "all_changed_seconds": all_changed.as_secs_f64(),
        "all_gone_seconds": all_gone.as_secs_f64(),
        "create": phase(created - before, 0),
        // The benchmark's own PATCH of each resource is counted by the API server too.
        "change": phase(change_counts, n as u64),
        "change_platform_calls_per_resource_above_steady": change_above_steady,
        "delete": phase(deleted - deleting, 0),
        "steady": {
            "platform_calls_per_resource_per_period": per(steady_counts.platform_reads + steady_counts.platform_writes) / f64::from(steady_periods),
            // Per resource of the platform's own kind: the figure the list-capable platforms are held to.
            "platform_calls_per_resource_per_period_by_platform": KINDS
                .iter()
                .filter(|(kind, _, _)| kinds.iter().any(|k| k == kind))
                .map(|(_, _, platform)| {
                    let calls: u64 = steady_counts.routes.iter().filter(|(route, _)| route.split(' ').next() == Some(*platform)).map(|(_, v)| v).sum();
                    let resources = n.div_ceil(kinds.len()) as f64;
                    (platform.to_string(), json!(calls as f64 / resources / f64::from(steady_periods)))
                })
                .collect::<serde_json::Map<String, Value>>(),
            "platform_calls_per_period_by_route": steady_counts
                .routes
                .iter()
                .map(|(k, v)| (k.clone(), json!(*v as f64 / f64::from(steady_periods))))
                .collect::<serde_json::Map<String, Value>>(),
            "api_reads_per_period": steady_counts.api_reads as f64 / f64::from(steady_periods),
            "api_writes_per_period": steady_counts.api_writes as f64 / f64::from(steady_periods),
            "lease_requests_per_period": steady_counts.lease_calls as f64 / f64::from(steady_periods),
            "api_reads_by_resource": steady_counts.reads,
            "operator_cpu_seconds_per_period": steady_counts.operator_cpu / f64::from(steady_periods),
            "reconciles_per_period": steady_counts
                .reconciles
                .iter()
                .map(|(k, v)| (k.clone(), json!(*v as f64 / f64::from(steady_periods))))
                .collect::<serde_json::Map<String, Value>>(),
            "drift_checks_by_probe_per_period": steady_counts
                .probed
                .iter()
                .map(|(k, v)| (k.clone(), json!(*v as f64 / f64::from(steady_periods))))
                .collect::<serde_json::Map<String, Value>>(),
            "control_plane_cpu_seconds_per_period": steady_counts.plane_cpu / f64::from(steady_periods),
            "control_plane_cpu_seconds_per_period_without_operator": idle.plane_cpu,
        },
        "operator_peak_rss_mib": rss_mib,
        // At the end of each phase, in phase order: the peak so far (VmHWM) and what is resident then
        // (VmRSS), to tell a transient peak from what the operator keeps.
        "operator_memory_mib_by_phase": memory
            .iter()
            .map(|(phase, (peak, resident))| {
                let mib = |kib: &u64| *kib as f64 / 1024.0;
                json!({"phase": phase, "peak": mib(peak), "resident": mib(resident)})
            })
            .collect::<Vec<Value>>(),
    });
    print_table(&report);
    let dir = repo_root().join("target/bench");
    std::fs::create_dir_all(&dir).expect("target/bench");
    let path = dir.join(format!("operator-{n}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).expect("the JSON report");
    println!("written to {}", path.display());
    assert_eq!(steady_counts.api_writes, 0, "API writes in the steady state");
    // Settled resources' drift checks are answered by their probes, not whole reconciles.
    let probed: u64 = steady_counts.probed.values().sum();
    assert!(probed > 0, "no drift check was answered by a probe: {:?}", steady_counts.probed);
    sims.clean_up();
    more_tenants.into_iter().for_each(common::Sims::clean_up);
}

fn print_table(r: &Value) {
    let f = |v: &Value| v.as_f64().map_or_else(|| "-".to_string(), |x| format!("{x:.2}"));
    println!(
        "tether run ({}) against the five simulators, N = {} spread evenly over {} (Iguazio tenants: {}), drift \
         period {} s",
        if cfg!(debug_assertions) { "debug build: a smoke run" } else { "release build" },
        r["n"],
        r["kinds"]
            .as_array()
            .map(|k| k.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
            .unwrap_or_default(),
        r["iguazio_tenants"],
        r["drift_period_seconds"]
    );
    println!(
        "all Ready {} s (floor: raw client creates + status writes {} s, ratio {}); apply→Ready p50 {} s p99 {} s",
        f(&r["all_ready_seconds"]),
        f(&r["floor_seconds"]),
        f(&r["ready_to_floor"]),
        f(&r["apply_to_ready_p50_seconds"]),
        f(&r["apply_to_ready_p99_seconds"])
    );
    println!(
        "{:<8} {:>16} {:>16} {:>12} {:>12} {:>14} {:>14}",
        "phase", "platform calls", "platform writes", "API writes", "reconciles", "operator CPU s", "control CPU s"
    );
    for phase in ["create", "change", "delete"] {
        let p = &r[phase];
        println!(
            "{:<8} {:>16} {:>16} {:>12} {:>12} {:>14} {:>14}",
            phase,
            f(&p["platform_calls_per_resource"]),
            f(&p["platform_writes_per_resource"]),
            f(&p["api_writes_per_resource"]),
            f(&p["reconciles_per_resource"]),
            f(&p["operator_cpu_seconds"]),
            f(&p["control_plane_cpu_seconds"])
        );
    }
    for phase in ["create", "change", "delete"] {
        println!("{phase}: API reads per resource, by verb and resource: {}", r[phase]["api_reads_by_resource"]);
    }
    let s = &r["steady"];
    println!(
        "steady, per drift period: {} platform calls per resource, {} API reads, {} API writes (and {} Lease requests \
         of the election), operator CPU {} s, control plane CPU {} s ({} s with the same resources and no operator)",
        f(&s["platform_calls_per_resource_per_period"]),
        f(&s["api_reads_per_period"]),
        f(&s["api_writes_per_period"]),
        f(&s["lease_requests_per_period"]),
        f(&s["operator_cpu_seconds_per_period"]),
        f(&s["control_plane_cpu_seconds_per_period"]),
        f(&s["control_plane_cpu_seconds_per_period_without_operator"])
    );
    println!(
        "steady platform calls per resource of its kind per drift period, by platform: {}",
        s["platform_calls_per_resource_per_period_by_platform"]
    );
    println!("steady reconciles per drift period, by kind: {}", s["reconciles_per_period"]);
    println!(
        "steady drift checks answered by a probe alone per drift period, by kind: {}",
        s["drift_checks_by_probe_per_period"]
    );
    println!(
        "change, platform calls per resource above the steady rate over its window: {}",
        f(&r["change_platform_calls_per_resource_above_steady"])
    );
    println!(
        "changed in {} s, gone in {} s; operator peak RSS {} MiB",
        f(&r["all_changed_seconds"]),
        f(&r["all_gone_seconds"]),
        f(&r["operator_peak_rss_mib"])
    );
    println!(
        "operator memory at the end of each phase, MiB (peak so far, resident): {}",
        r["operator_memory_mib_by_phase"]
    );
}

/// Every resource's Ready time per generation, from one watch per kind.
struct Tracker {
    state: Arc<Mutex<TrackerState>>,
}

#[derive(Default)]
struct TrackerState {
    /// By `Kind/name`: the first instant it was seen Ready, per generation.
    ready: HashMap<String, BTreeMap<i64, Instant>>,
    live: HashMap<String, ()>,
}

impl Tracker {
    async fn start(client: &kube::Client, namespace: &str) -> Self {
        let state: Arc<Mutex<TrackerState>> = Arc::default();
        for (kind, _, _) in KINDS {
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource_of(kind));
            let state = state.clone();
            tokio::spawn(async move {
                let mut events = watcher(api, watcher::Config::default()).boxed();
                while let Some(event) = events.next().await {
                    let now = Instant::now();
                    let Ok(event) = event else { continue };
                    let mut state = state.lock().unwrap();
                    match event {
                        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => {
                            let key = format!("{kind}/{}", obj.metadata.name.clone().unwrap_or_default());
                            state.live.insert(key.clone(), ());
                            if let Some(generation) = ready_generation(&obj) {
                                state.ready.entry(key).or_default().entry(generation).or_insert(now);
                            }
                        }
                        watcher::Event::Delete(obj) => {
                            state.live.remove(&format!("{kind}/{}", obj.metadata.name.unwrap_or_default()));
                        }
                        watcher::Event::Init | watcher::Event::InitDone => {}
                    }
                }
            });
        }
        Self { state }
    }

    /// The resources Ready at `generation`, with when.
    fn ready_at(&self, generation: i64) -> HashMap<String, Instant> {
        let state = self.state.lock().unwrap();
        state.ready.iter().filter_map(|(k, by)| Some((k.clone(), *by.get(&generation)?))).collect()
    }

    fn live(&self) -> usize {
        self.state.lock().unwrap().live.len()
    }
}

fn key(resource: &Value) -> String {
    format!("{}/{}", resource["kind"].as_str().unwrap(), resource["metadata"]["name"].as_str().unwrap())
}

/// The generation the object is Ready at, if it is Ready.
fn ready_generation(obj: &DynamicObject) -> Option<i64> {
    let generation = obj.metadata.generation?;
    let value = serde_json::to_value(obj).ok()?;
    (is_ready(&value) && value["status"]["observedGeneration"] == generation).then_some(generation)
}

fn is_ready(obj: &Value) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

async fn wait_for<F, Fut>(deadline: Duration, what: &str, done: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < deadline, "not {what} after {deadline:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn resource_of(kind: &str) -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("tether.dev", "v1alpha1", kind))
}

fn api(client: &kube::Client, namespace: &str, resource: &Value) -> Api<DynamicObject> {
    let kind = resource["kind"].as_str().unwrap();
    if kind == "Secret" {
        return Api::namespaced_with(
            client.clone(),
            namespace,
            &ApiResource::erase::<k8s_openapi::api::core::v1::Secret>(&()),
        );
    }
    Api::namespaced_with(client.clone(), namespace, &resource_of(kind))
}

async fn create(client: &kube::Client, namespace: &str, resource: &Value) {
    let object: DynamicObject = serde_json::from_value(resource.clone()).expect("a manifest");
    match api(client, namespace, resource).create(&PostParams::default(), &object).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(e) => panic!("creating {}: {e}", key(resource)),
    }
}

async fn counts(
    client: &kube::Client,
    origins: &[(&str, String)],
    operator: u32,
    plane: Option<u32>,
    operator_metrics: &str,
) -> Counts {
    let mut counts = Counts::default();
    // The operator's own count of reconciles (gone with it, after the delete phase).
    if let Ok(page) = reqwest::get(format!("http://{operator_metrics}/metrics")).await
        && let Ok(text) = page.text().await
    {
        for line in text.lines().filter(|l| l.starts_with("controller_runtime_reconcile_total{")) {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let Some(controller) = labels.split("controller=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            *counts.reconciles.entry(controller.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0) as u64;
        }
        let probed =
            text.lines().filter(|l| l.starts_with("tether_drift_checks_total{") && l.contains("\"unchanged\""));
        for line in probed {
            let Some((labels, value)) = line.rsplit_once(' ') else { continue };
            let Some(controller) = labels.split("controller=\"").nth(1).and_then(|r| r.split('"').next()) else {
                continue;
            };
            *counts.probed.entry(controller.to_string()).or_default() += value.parse::<f64>().unwrap_or(0.0) as u64;
        }
    }
    for (platform, origin) in origins {
        let counters: BTreeMap<String, u64> =
            reqwest::get(format!("{origin}/_sim/counters")).await.expect("counters").json().await.expect("JSON");
        for (route, count) in counters {
            *counts.routes.entry(format!("{platform} {route}")).or_default() += count;
            if route.starts_with("GET ") {
                counts.platform_reads += count;
            } else {
                counts.platform_writes += count;
            }
        }
    }
    let request = http::Request::get("/metrics").body(Vec::new()).unwrap();
    let text = client.request_text(request).await.expect("kube-apiserver /metrics");
    for line in text.lines().filter(|l| l.starts_with("apiserver_request_total{")) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let label = |key: &str| labels.split(&format!("{key}=\"")).nth(1).and_then(|rest| rest.split('"').next());
        let (Some(resource), Some(verb)) = (label("resource"), label("verb")) else { continue };
        if resource.is_empty() {
            // Not an object: /metrics (the benchmark's own scrape), /healthz, /version.
            continue;
        }
        let count = value.parse::<f64>().unwrap_or(0.0) as u64;
        let ours = matches!(
            resource,
            "appservices" | "civisservices" | "apoloapps" | "ubiservices" | "peakwebapps" | "secrets" | "events"
        ) || resource.ends_with("connections");
        match verb {
            // The leader election's renewals and fencing reads, counted apart: they do not grow with N.
            _ if resource == "leases" => counts.lease_calls += count,
            // Tether reads its kinds from its watch only, never by GET: GETs of them are kube-controller-
            // manager's (its garbage collector resolves the owners of the outputs Secrets), listed apart.
            "GET" if KINDS.iter().any(|(kind, _, _)| format!("{}s", kind.to_lowercase()) == resource) => {
                *counts.reads.entry(format!("{verb} {resource} (garbage collector)")).or_default() += count;
            }
            // What Tether reads (kube-apiserver's own controllers list Services, Endpoints and the like).
            "GET" | "LIST" if ours || resource == "namespaces" => {
                counts.api_reads += count;
                *counts.reads.entry(format!("{verb} {resource}")).or_default() += count;
            }
            "PATCH" | "PUT" | "APPLY" if ours => counts.api_writes += count,
            "POST" if matches!(resource, "secrets" | "events") => counts.api_writes += count,
            _ => {}
        }
    }
    counts.operator_cpu = cpu_seconds(&[operator]);
    counts.plane_cpu = plane.map_or(0.0, |pid| cpu_seconds(&descendants(pid)));
    counts
}

/// User + system CPU seconds of the processes (clock ticks of 1/100 s, as Linux reports them).
fn cpu_seconds(pids: &[u32]) -> f64 {
    pids.iter()
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // Fields after the command name, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
            Some(ticks as f64 / 100.0)
        })
        .sum()
}

/// `pid` and every process below it.
fn descendants(pid: u32) -> Vec<u32> {
    let mut parents: HashMap<u32, Vec<u32>> = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let Some(parent) = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok())
        else {
            continue;
        };
        parents.entry(parent).or_default().push(child);
    }
    let mut all = vec![pid];
    let mut i = 0;
    while i < all.len() {
        all.extend(parents.get(&all[i]).cloned().unwrap_or_default());
        i += 1;
    }
    all
}

/// The operator's peak resident memory so far (`VmHWM`) and its resident memory now (`VmRSS`), in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name)?.trim().trim_end_matches(" kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}
