//! Chaos: a driver creates, edits and deletes resources of every kind with every deletionPolicy while the
//! operator process is SIGKILLed at random moments and restarted. At the end, counted on the platforms'
//! side (the simulators' state): no remote object twice, none left for a deleted resource (Orphan kept,
//! Civis Archive archived), and every live resource Ready at its latest generation with its remote fields
//! equal to its spec, within two drift periods after the last restart.
//!
//! `CHAOS_SIZE=ci` (the default, inside `make test`): 100 resources, 10 kills of the one operator.
//! `CHAOS_SIZE=full` (`make chaos`): 500 resources, 50 kills among two replicas with leader election (the
//! leader among them), each restarted at once. The schedule comes from `CHAOS_SEED` (printed; a random one
//! when unset), so a failing run replays with the same seed.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::{Operator, Sims, kubectl, kubectl_with_input, operator};
use serde_json::{Value, json};
use tether_testenv::TestNamespace;

/// A small seeded generator (xorshift64*): the schedule is the seed's, on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

const KINDS: [&str; 5] = ["AppService", "CivisService", "ApoloApp", "UbiService", "PeakWebapp"];
/// The drift period the operators run with (common::operator).
const DRIFT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
struct Resource {
    kind: &'static str,
    name: String,
    policy: &'static str,
    /// The version of the spec last applied: it goes into one remote field per kind.
    version: u64,
    deleted: bool,
    /// Whether its status named a remote object when it was deleted: only then must Orphan keep one
    /// (a resource deleted before Tether created anything leaves nothing to keep).
    had_remote: bool,
}

impl Resource {
    fn plural(&self) -> String {
        format!("{}s", self.kind.to_lowercase())
    }

    fn manifest(&self) -> Value {
        let n = self.version;
        let spec = match self.kind {
            "AppService" => json!({"connectionRef": {"name": "iguazio"}, "name": self.name, "kind": "jupyter",
                "serviceConfig": {"image_name": "jupyter-all"}, "description": format!("v{n}")}),
            "CivisService" => json!({"connectionRef": {"name": "civis"}, "name": self.name, "type": "Custom",
                "dockerImageName": "civisanalytics/streamlit-dashboard", "dockerImageTag": format!("1.{n}")}),
            "ApoloApp" => json!({"connectionRef": {"name": "apolo"}, "cluster": "default", "org": "superorg",
                "project": "test3", "templateName": "postgres", "templateVersion": "v1.0.0",
                "displayName": self.name, "input": {"preset": "cpu-small", "storage_gb": n}}),
            "UbiService" => json!({"connectionRef": {"name": "ubiops"}, "project": "proj", "name": self.name,
                "deployment": "dep-1", "version": "v1", "port": 8000 + n}),
            _ => json!({"connectionRef": {"name": "peak"}, "name": self.name, "imageDetails": {"imageId": 1},
                "title": format!("v{n}")}),
        };
        let mut spec = spec;
        spec["deletionPolicy"] = json!(self.policy);
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": self.kind, "metadata": {"name": self.name}, "spec": spec})
    }
}

fn apply(namespace: &str, resources: &[&Resource]) {
    if resources.is_empty() {
        return;
    }
    let list = json!({"apiVersion": "v1", "kind": "List", "items": resources.iter().map(|r| r.manifest()).collect::<Vec<_>>()});
    kubectl_with_input(&["apply", "-n", namespace, "-f", "-"], &list.to_string());
}

async fn state(sims: &Sims, platform: &str) -> Value {
    let url = format!("{}/_sim/state", sims.origin(platform));
    reqwest::get(url).await.unwrap().json().await.unwrap()
}

/// Remote objects by resource name, as `(live, archived, the versioned field)`, per kind.
async fn remote(sims: &Sims) -> BTreeMap<(&'static str, String), Vec<(bool, Value)>> {
    let mut out: BTreeMap<(&'static str, String), Vec<(bool, Value)>> = BTreeMap::new();
    let iguazio = state(sims, "iguazio").await;
    for entry in iguazio["manifest"]["attributes"]["app_services"].as_array().into_iter().flatten() {
        let name = entry["spec"]["name"].as_str().unwrap_or_default().to_string();
        out.entry(("AppService", name)).or_default().push((true, entry["spec"]["description"].clone()));
    }
    let civis = state(sims, "civis").await;
    for service in civis["services"].as_array().into_iter().flatten() {
        let name = service["name"].as_str().unwrap_or_default().to_string();
        let live = service["archived"] != true;
        out.entry(("CivisService", name)).or_default().push((live, service["dockerImageTag"].clone()));
    }
    let apolo = state(sims, "apolo").await;
    for app in apolo["apps"].as_array().into_iter().flatten().filter(|a| a["state"] != "uninstalled") {
        // The display name is the spec's, then Tether's ownership marker.
        let shown = app["display_name"].as_str().unwrap_or_default();
        let name = shown.split(' ').next().unwrap_or_default().to_string();
        out.entry(("ApoloApp", name)).or_default().push((true, app["input"]["storage_gb"].clone()));
    }
    let ubiops = state(sims, "ubiops").await;
    for service in ubiops["projects"]["proj"]["services"].as_array().into_iter().flatten() {
        let name = service["name"].as_str().unwrap_or_default().to_string();
        out.entry(("UbiService", name)).or_default().push((true, service["port"].clone()));
    }
    let peak = state(sims, "peak").await;
    for webapp in peak["webapps"].as_array().into_iter().flatten().filter(|w| w["status"] != "DELETING") {
        let name = webapp["name"].as_str().unwrap_or_default().to_string();
        out.entry(("PeakWebapp", name)).or_default().push((true, webapp["title"].clone()));
    }
    out
}

/// The versioned remote field a resource at `version` must show.
fn expected(kind: &str, version: u64) -> Value {
    match kind {
        "AppService" | "PeakWebapp" => json!(format!("v{version}")),
        "CivisService" => json!(format!("1.{version}")),
        "ApoloApp" => json!(version),
        _ => json!(8000 + version),
    }
}

/// What is wrong with the world, from the resources' and the platforms' side; empty when all is well.
async fn problems(ns: &str, sims: &Sims, resources: &[Resource]) -> Vec<String> {
    let mut wrong = Vec::new();
    let mut live: BTreeMap<String, Value> = BTreeMap::new();
    for kind in KINDS {
        let out = kubectl(&["get", &format!("{}s", kind.to_lowercase()), "-n", ns, "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        for item in list["items"].as_array().into_iter().flatten() {
            live.insert(format!("{kind}/{}", item["metadata"]["name"].as_str().unwrap()), item.clone());
        }
    }
    let remote = remote(sims).await;
    for r in resources {
        let key = format!("{}/{}", r.kind, r.name);
        let objects = remote.get(&(r.kind, r.name.clone())).cloned().unwrap_or_default();
        let live_remote: Vec<&(bool, Value)> = objects.iter().filter(|(live, _)| *live).collect();
        if objects.len() > 1 {
            wrong.push(format!("{key}: {} remote objects (duplicate): {objects:?}", objects.len()));
        }
        if r.deleted {
            if let Some(object) = live.get(&key) {
                let synced = object["status"]["conditions"]
                    .as_array()
                    .and_then(|c| c.iter().find(|c| c["type"] == "Synced"))
                    .map(|c| format!("{} {}", c["reason"], c["message"]));
                wrong.push(format!(
                    "{key}: deleted, still in the cluster (external id {}, synced {synced:?})",
                    object["status"]["externalId"]
                ));
            }
            let kept = !live_remote.is_empty();
            match (r.policy, kept) {
                ("Orphan", false) if r.had_remote => {
                    wrong.push(format!("{key}: Orphan, but the remote object is gone"))
                }
                ("Delete" | "Archive", true) => {
                    wrong.push(format!("{key}: {}, but the remote object is live", r.policy))
                }
                _ => {}
            }
            if r.kind == "CivisService" && r.policy == "Archive" && objects.is_empty() {
                wrong.push(format!("{key}: Archive, but nothing archived"));
            }
            continue;
        }
        let Some(object) = live.get(&key) else {
            wrong.push(format!("{key}: missing from the cluster"));
            continue;
        };
        let ready = object["status"]["conditions"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
        if !ready || object["status"]["observedGeneration"] != object["metadata"]["generation"] {
            let synced = object["status"]["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Synced"))
                .cloned();
            wrong.push(format!("{key}: not Ready at its generation: {synced:?}"));
        }
        match live_remote.as_slice() {
            [(_, field)] if *field == expected(r.kind, r.version) => {}
            [(_, field)] => {
                wrong.push(format!("{key}: remote shows {field}, spec says {}", expected(r.kind, r.version)))
            }
            [] => wrong.push(format!("{key}: no remote object")),
            _ => {}
        }
    }
    wrong
}

#[tokio::test]
async fn chaos_kills_never_duplicate_leak_or_lose_a_change() {
    let full = std::env::var("CHAOS_SIZE").is_ok_and(|s| s == "full");
    let (count, kills) = if full { (500, 50) } else { (100, 10) };
    let seed: u64 = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!(
        "chaos: CHAOS_SEED={seed} CHAOS_SIZE={} ({count} resources, {kills} kills)",
        if full { "full" } else { "ci" }
    );
    let mut rng = Rng(seed);

    let ns = TestNamespace::new("chaos").await;
    let sims = Sims::start(&ns.name, "all", 100);
    let dir = sims.dir.clone();
    kubectl(&["apply", "-n", &ns.name, "-f", sims.connections.to_str().unwrap()]);

    let mut resources: Vec<Resource> = (0..count)
        .map(|i| {
            let kind = KINDS[i % KINDS.len()];
            let policies: &[&'static str] =
                if kind == "CivisService" { &["Delete", "Orphan", "Archive"] } else { &["Delete", "Orphan"] };
            let policy = policies[rng.below(policies.len() as u64) as usize];
            let name = format!("c{i}-{}", kind.to_lowercase());
            Resource { kind, name, policy, version: 1, deleted: false, had_remote: false }
        })
        .collect();

    // The schedule: creates in batches, then edits and deletes, with the kills spread among the steps.
    let steps = 20;
    let mut kill_at: Vec<u64> = (0..kills).map(|_| rng.below(steps)).collect();
    kill_at.sort_unstable();
    // The full run keeps two replicas with leader election, and a kill may hit the leader or the standby.
    let lease = format!("tether-{}", ns.name);
    let election = [
        "--leader-election",
        "--leader-election-namespace",
        &ns.name,
        "--leader-election-lease",
        &lease,
        "--lease-seconds",
        "4",
    ];
    let args: &[&str] = if full { &election } else { &[] };
    let replicas = if full { 2 } else { 1 };
    let mut running: Vec<Operator> =
        (0..replicas).map(|i| operator(&ns.name, args, dir.join(format!("operator-0-{i}.log")))).collect();
    let mut restarts = 0;
    let started = Instant::now();
    for step in 0..steps {
        match step {
            // Creates: a fifth of the resources at each of the first five steps.
            0..=4 => {
                let batch: Vec<&Resource> = resources.iter().skip(step as usize * count / 5).take(count / 5).collect();
                apply(&ns.name, &batch);
            }
            // Edits and deletes of random resources.
            _ => {
                let mut edited = Vec::new();
                for _ in 0..count / 10 {
                    let i = rng.below(count as u64) as usize;
                    if resources[i].deleted {
                        continue;
                    }
                    if rng.below(4) == 0 {
                        resources[i].deleted = true;
                        let r = &resources[i];
                        let what = format!("{}/{}", r.plural(), r.name);
                        let id = kubectl(&["get", "-n", &ns.name, &what, "-o", "jsonpath={.status.externalId}"]);
                        resources[i].had_remote = !id.stdout.is_empty();
                        kubectl(&["delete", "-n", &ns.name, &what, "--wait=false"]);
                    } else {
                        resources[i].version += 1;
                        edited.push(i);
                    }
                }
                // One apply per edited resource still live (an edit and then a delete in the same step is a
                // delete: applying it again would create a new resource of that name).
                edited.sort_unstable();
                edited.dedup();
                let batch: Vec<&Resource> = edited.iter().map(|i| &resources[*i]).filter(|r| !r.deleted).collect();
                apply(&ns.name, &batch);
            }
        }
        tokio::time::sleep(Duration::from_millis(300 + rng.below(700))).await;
        for _ in kill_at.iter().filter(|at| **at == step) {
            // SIGKILL at a random moment of the step's work, then a new process.
            tokio::time::sleep(Duration::from_millis(rng.below(1000))).await;
            let victim = rng.below(running.len() as u64) as usize;
            drop(running.remove(victim));
            restarts += 1;
            running.push(operator(&ns.name, args, dir.join(format!("operator-{restarts}.log"))));
        }
    }
    let last_restart = Instant::now();
    eprintln!("chaos: driver done after {:.1} s, {restarts} kills", started.elapsed().as_secs_f64());

    // Converged within two drift periods after the last restart (plus the time to work through them).
    let deadline = last_restart + DRIFT * 2 + Duration::from_secs(count as u64 / 4);
    let mut wrong;
    loop {
        wrong = problems(&ns.name, &sims, &resources).await;
        if wrong.is_empty() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let converged = last_restart.elapsed();
    let deleted = resources.iter().filter(|r| r.deleted).count();
    eprintln!(
        "chaos: seed {seed}: {count} resources ({deleted} deleted), {restarts} kills, {} problems, converged {:.1} s \
         after the last restart",
        wrong.len(),
        converged.as_secs_f64()
    );
    assert!(wrong.is_empty(), "CHAOS_SEED={seed}: {} problems:\n{}", wrong.len(), wrong.join("\n"));
    drop(running);
    sims.clean_up();
}
