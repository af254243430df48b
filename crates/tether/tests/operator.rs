//! The `tether` binary as an operator: `tether sim` and `tether run` as processes against the real
//! control plane, every example of examples/ applied with kubectl, `kubectl wait` and `kubectl get tether`
//! as an admin uses them, and a `kill -9` of the operator while it creates, with the answers of the first
//! Civis and Apolo creates lost on the way: after a restart, each example has exactly one remote object.

mod common;

use std::time::{Duration, Instant};

use common::{EXAMPLES, Operator, Sims, kubectl, operator, sample_sum};
use serde_json::{Value, json};
use tether_testenv::TestNamespace;

async fn sim_json(origin: &str, path: &str) -> Value {
    reqwest::get(format!("{origin}{path}")).await.unwrap().json().await.unwrap()
}

#[tokio::test]
async fn every_example_becomes_ready_once_even_across_a_kill_9() {
    let ns = TestNamespace::new("operator").await;
    let sims = Sims::start(&ns.name, "all", 300);
    let dir = sims.dir.clone();
    let (civis, apolo) = (sims.origin("civis"), sims.origin("apolo"));

    // The first create of each marker-found kind is carried out, but its answer is lost.
    let http = reqwest::Client::new();
    for (origin, route) in
        [(&civis, "/services"), (&apolo, "/apis/apps/v1/cluster/{cluster}/org/{org}/project/{project}/instances")]
    {
        let fault = json!({"method": "POST", "route": route, "malformedBody": true, "times": 1});
        let answer = http.post(format!("{origin}/_sim/faults")).json(&fault).send().await.unwrap();
        assert!(answer.status().is_success(), "{route}: {}", answer.text().await.unwrap());
    }

    sims.apply(&ns.name, "examples");

    let first = operator(&ns.name, &[], dir.join("operator-1.log"));
    // Let it get into its creates, then kill it without a chance to clean up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    drop(first.process);
    let second = operator(&ns.name, &[], dir.join("operator-2.log"));

    let mut wait = vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=120s"];
    wait.extend(EXAMPLES);
    kubectl(&wait);

    // Exactly one remote object per example, whatever the kill and the lost answers did.
    let services = sim_json(&civis, "/_sim/state").await["services"].as_array().cloned().unwrap();
    assert_eq!(services.len(), 1, "Civis services: {services:?}");
    let apps = sim_json(&apolo, "/_sim/state").await["apps"].as_array().cloned().unwrap();
    assert_eq!(apps.len(), 1, "Apolo apps: {apps:?}");

    // `kubectl get tether` shows every kind with its columns filled.
    let out = kubectl(&["get", "tether", "-n", &ns.name, "--no-headers"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    let all: Vec<Vec<&str>> = table.lines().map(|l| l.split_whitespace().collect::<Vec<_>>()).collect();
    // Each Connection says the platform accepts its credentials: NAME PLATFORM ENDPOINT READY AGE.
    let connections: Vec<&Vec<&str>> = all.iter().filter(|row| row[0].starts_with("connection.tether.dev/")).collect();
    assert_eq!(connections.len(), 5, "{table}");
    assert!(connections.iter().all(|row| row[3] == "True"), "{table}");
    let rows: Vec<&Vec<&str>> = all.iter().filter(|row| !row[0].contains("connection.tether.dev/")).collect();
    assert_eq!(rows.len(), 5, "{table}");
    for row in &rows {
        // NAME READY SYNCED STATE EXTERNAL-ID AGE
        assert_eq!(row.len(), 6, "a column is empty: {table}");
        assert_eq!((row[1], row[2]), ("True", "True"), "{table}");
    }
    // The lost answers did happen: the first operator, or the second, saw them.
    let logs = [&first.log, &second.log].map(|f| std::fs::read_to_string(f).unwrap_or_default());
    let lost = logs.iter().map(|l| l.matches("undecodable response").count()).sum::<usize>();
    assert!(lost >= 2, "expected the two lost create answers in the logs, saw {lost}");

    // The probes answer, and /metrics carries controller-runtime's names and the platform metrics.
    assert_eq!(reqwest::get(format!("{}/healthz", second.probes)).await.unwrap().status(), 200);
    assert_eq!(reqwest::get(format!("{}/readyz", second.probes)).await.unwrap().status(), 200);
    let page = reqwest::get(&second.metrics).await.unwrap().text().await.unwrap();
    for name in [
        "controller_runtime_reconcile_total",
        "controller_runtime_reconcile_time_seconds_count",
        "controller_runtime_active_workers",
        "tether_platform_requests_total",
        "tether_platform_request_duration_seconds_count",
    ] {
        let value = sample_sum(&page, name).unwrap_or_else(|| panic!("{name} missing from /metrics:\n{page}"));
        assert!(value > 0.0 || name == "controller_runtime_active_workers", "{name} = {value}");
    }
    assert!(sample_sum(&page, "workqueue_depth").is_some(), "workqueue_depth missing:\n{page}");
    // A refused call is counted as a reconcile error and as a platform error of its class.
    let ubiops = sims.origin("ubiops");
    // The call every UbiService drift check makes on its own (the service itself comes from the listing).
    // Twice: the drift check's probe meets the first refusal and wakes the reconcile, which meets the
    // second and reports it.
    let fault = json!({"method": "GET", "route": "/v2.1/projects/{project_name}/services/{service_name}/status",
                       "status": 401, "times": 2});
    http.post(format!("{ubiops}/_sim/faults")).json(&fault).send().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = reqwest::get(&second.metrics).await.unwrap().text().await.unwrap();
        let errors = sample_sum(&page, "controller_runtime_reconcile_errors_total").unwrap_or(0.0);
        let unauthorized = page
            .lines()
            .any(|l| l.starts_with("tether_platform_errors_total{") && l.contains(r#"class="Unauthorized""#));
        if errors > 0.0 && unauthorized {
            break;
        }
        assert!(Instant::now() < deadline, "the refused call was not counted:\n{page}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // No credential and no minted token reaches a log, at the debug level the operators ran with.
    let secrets: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(ns.client.clone(), &ns.name);
    let mut values = Vec::new();
    for secret in secrets.list(&Default::default()).await.unwrap() {
        for (key, value) in secret.data.unwrap_or_default() {
            let value = String::from_utf8_lossy(&value.0).into_owned();
            // Short values ("tok") would match ordinary words; URLs and ids are not secret.
            if value.len() >= 6 && !value.starts_with("http") && (key != "url" && key != "endpoint") {
                values.push((secret.metadata.name.clone().unwrap_or_default(), key, value));
            }
        }
    }
    assert!(values.iter().any(|(_, key, _)| key.starts_with("token-")), "the Civis token is among them: {values:?}");
    let logs = [&first.log, &second.log].map(|f| std::fs::read_to_string(f).unwrap_or_default());
    for (secret, key, value) in &values {
        assert!(!logs.iter().any(|log| log.contains(value.as_str())), "{secret}/{key} is in an operator log");
    }
    sims.clean_up();
}

#[tokio::test]
async fn two_replicas_one_leader_and_a_takeover_after_kill_9() {
    let ns = TestNamespace::new("leader").await;
    let sims = Sims::start(&ns.name, "ubiops", 100);
    let dir = sims.dir.clone();
    sims.apply(&ns.name, "examples/ubiservice.yaml");

    let lease = format!("tether-{}", ns.name);
    let election = ["--leader-election", "--leader-election-namespace", &ns.name, "--leader-election-lease", &lease];
    let a = operator(&ns.name, &election, dir.join("a.log"));
    let b = operator(&ns.name, &election, dir.join("b.log"));
    kubectl(&["wait", "-n", &ns.name, "--for=condition=Ready", "ubiservice/scoring-api", "--timeout=60s"]);

    // One leads and reconciles; the other is ready, waits, and reconciles nothing.
    let leads = |op: &Operator| std::fs::read_to_string(&op.log).unwrap_or_default().contains("leading: starting");
    let (leader, standby) = if leads(&a) { (a, b) } else { (b, a) };
    assert!(leads(&leader) && !leads(&standby), "exactly one leader");
    assert_eq!(reqwest::get(format!("{}/readyz", standby.probes)).await.unwrap().status(), 200);
    let reconciles = |page: &str| sample_sum(page, "controller_runtime_reconcile_total").unwrap_or(0.0);
    let standby_page = reqwest::get(&standby.metrics).await.unwrap().text().await.unwrap();
    let leader_page = reqwest::get(&leader.metrics).await.unwrap().text().await.unwrap();
    assert!(reconciles(&leader_page) > 0.0);
    assert_eq!(reconciles(&standby_page), 0.0, "the standby reconciled");

    // kill -9 the leader: the standby takes over within the Lease's 10 s and applies a change.
    let killed = Instant::now();
    drop(leader.process);
    kubectl(&["patch", "-n", &ns.name, "ubiservice/scoring-api", "--type=merge", "-p", r#"{"spec":{"port":9090}}"#]);
    while !leads(&standby) {
        assert!(killed.elapsed() < Duration::from_secs(15), "no takeover within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    let generation = "jsonpath={.status.observedGeneration}=2";
    kubectl(&["wait", "-n", &ns.name, &format!("--for={generation}"), "ubiservice/scoring-api", "--timeout=30s"]);
    eprintln!(
        "takeover after kill -9: {:.1} s; change applied after {:.1} s",
        takeover.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    sims.clean_up();
}

/// Three replicas, three shards: each resource is created by exactly one replica, and when one is killed,
/// another takes its shard over within 15 s and serves its resources.
#[tokio::test]
async fn three_shards_one_writer_each_and_a_takeover_after_kill_9() {
    use tether_controller::shards::Shards;
    let ns = TestNamespace::new("shards").await;
    let sims = Sims::start(&ns.name, "ubiops", 100);
    let dir = sims.dir.clone();
    sims.apply(&ns.name, "examples/ubiservice.yaml");
    let service = |name: &str| {
        json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService", "metadata": {"name": name},
               "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": name,
                        "deployment": "dep-1", "version": "v1", "port": 8080}})
    };
    let apply = |names: &[String]| {
        let list =
            json!({"apiVersion": "v1", "kind": "List", "items": names.iter().map(|n| service(n)).collect::<Vec<_>>()});
        common::kubectl_with_input(&["apply", "-n", &ns.name, "-f", "-"], &list.to_string());
    };
    let names: Vec<String> = (0..30).map(|i| format!("svc-{i}")).collect();
    apply(&names);

    let lease = format!("tether-{}", ns.name);
    let replica = |index: u32| {
        let index = index.to_string();
        let args = [
            "--leader-election",
            "--leader-election-namespace",
            &ns.name,
            "--leader-election-lease",
            &lease,
            "--lease-seconds",
            "4",
            "--shards",
            "3",
            "--shard-index",
            &index,
        ];
        operator(&ns.name, &args, dir.join(format!("replica-{index}.log")))
    };
    let replicas: Vec<Operator> = (0..3).map(replica).collect();
    let mut wait =
        vec!["wait", "-n", ns.name.as_str(), "--for=condition=Ready", "--timeout=90s", "ubiservice", "--all"];
    kubectl(&wait);

    // Each resource was created by exactly one replica, the one holding its shard; none twice remotely.
    let logs = |replicas: &[Operator]| -> Vec<String> {
        replicas.iter().map(|r| std::fs::read_to_string(&r.log).unwrap_or_default()).collect()
    };
    let shards = Shards::new(3);
    let created_by = |log: &str, name: &str| {
        log.lines().any(|l| l.contains(&format!("name={name} ")) && l.contains("created the remote object"))
    };
    let texts = logs(&replicas);
    for name in names.iter().chain(std::iter::once(&"scoring-api".to_string())) {
        let by: Vec<usize> = (0..3).filter(|i| created_by(&texts[*i], name)).collect();
        assert_eq!(by, [shards.shard_of(&ns.name, name) as usize], "{name} created by replicas {by:?}");
    }
    let state: Value = sim_json(&sims.origin("ubiops"), "/_sim/state").await;
    let remote = state["projects"]["proj"]["services"].as_array().unwrap().len();
    assert_eq!(remote, 31, "one remote service per resource");

    // kill -9 the replica of shard 0: another takes the shard over and creates its new resources.
    let mut replicas = replicas;
    let killed = Instant::now();
    drop(replicas.remove(0).process);
    let late: Vec<String> =
        (100..400).map(|i| format!("svc-{i}")).filter(|n| shards.shard_of(&ns.name, n) == 0).take(3).collect();
    apply(&late);
    let taken = |texts: &[String]| {
        texts.iter().any(|t| t.lines().any(|l| l.contains("holding the shard") && l.contains("shard=0")))
    };
    while !taken(&logs(&replicas)) {
        assert!(killed.elapsed() < Duration::from_secs(15), "shard 0 not taken over within 15 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let takeover = killed.elapsed();
    wait.truncate(5);
    let late_refs: Vec<String> = late.iter().map(|n| format!("ubiservice/{n}")).collect();
    wait.extend(late_refs.iter().map(String::as_str));
    kubectl(&wait);
    eprintln!(
        "shard 0 taken over {:.1} s after kill -9; its new resources Ready after {:.1} s",
        takeover.as_secs_f64(),
        killed.elapsed().as_secs_f64()
    );
    sims.clean_up();
}

/// A TCP proxy to the API server that can be cut: after `cut`, nothing goes through and nothing is
/// refused either (connections are held open, requests hang), the worst kind of partition.
struct Partition {
    cut: std::sync::Arc<tokio::sync::Notify>,
    severed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    port: u16,
}

impl Partition {
    async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = std::sync::Arc::new(tokio::sync::Notify::new());
        let severed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (c, s) = (cut.clone(), severed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                let (cut, severed, upstream) = (c.clone(), s.clone(), upstream.clone());
                tokio::spawn(async move {
                    if severed.load(std::sync::atomic::Ordering::SeqCst) {
                        return std::future::pending::<()>().await;
                    }
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&upstream).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        () = cut.notified() => {
                            // Held open, never answered.
                            let _held = (inbound, outbound);
                            std::future::pending::<()>().await
                        }
                    }
                });
            }
        });
        Partition { cut, severed, port }
    }

    fn sever(&self) {
        self.severed.store(true, std::sync::atomic::Ordering::SeqCst);
        self.cut.notify_waiters();
    }
}

/// The leader cut off from the API server (its requests hang, they do not fail) steps down on its own
/// before its Lease expires: it has stopped before the standby starts, so two replicas never act at once.
/// (Several threads: the proxy must go on forwarding while kubectl blocks one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 3)]
async fn a_leader_cut_off_from_the_api_server_stops_before_the_standby_leads() {
    let ns = TestNamespace::new("partition").await;
    let sims = Sims::start(&ns.name, "ubiops", 100);
    let dir = sims.dir.clone();
    sims.apply(&ns.name, "examples/ubiservice.yaml");

    // The leader reaches the API server through the proxy.
    let kubeconfig = std::fs::read_to_string(tether_testenv::control_plane().kubeconfig()).unwrap();
    let mut config: Value = serde_yaml_ng::from_str(&kubeconfig).unwrap();
    let server = config["clusters"][0]["cluster"]["server"].as_str().unwrap().to_string();
    let upstream = server.trim_start_matches("https://").trim_end_matches('/').to_string();
    let partition = Partition::start(upstream.clone()).await;
    config["clusters"][0]["cluster"]["server"] = json!(format!("https://127.0.0.1:{}", partition.port));
    let proxied = dir.join("proxied.kubeconfig");
    std::fs::write(&proxied, serde_yaml_ng::to_string(&config).unwrap()).unwrap();

    let lease = format!("tether-{}", ns.name);
    let election = [
        "--leader-election",
        "--leader-election-namespace",
        &ns.name,
        "--leader-election-lease",
        &lease,
        "--lease-seconds",
        "6",
    ];
    let mut leader_args = election.to_vec();
    leader_args.extend(["--kubeconfig", proxied.to_str().unwrap()]);
    let mut leader = operator(&ns.name, &leader_args, dir.join("leader.log"));
    let leads = |op: &Operator| std::fs::read_to_string(&op.log).unwrap_or_default().contains("leading: starting");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !leads(&leader) {
        assert!(Instant::now() < deadline, "the first replica never led");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let standby = operator(&ns.name, &election, dir.join("standby.log"));
    kubectl(&["wait", "-n", &ns.name, "--for=condition=Ready", "ubiservice/scoring-api", "--timeout=60s"]);

    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(leader.process.0.try_wait().unwrap().is_none(), "the leader stopped before the cut");
    assert!(!leads(&standby), "the standby leads before the cut");
    let cut = Instant::now();
    partition.sever();
    let (mut stopped, mut took_over) = (None, None);
    while took_over.is_none() || stopped.is_none() {
        if stopped.is_none() && leader.process.0.try_wait().unwrap().is_some() {
            stopped = Some(cut.elapsed());
        }
        if took_over.is_none() && leads(&standby) {
            took_over = Some(cut.elapsed());
        }
        assert!(cut.elapsed() < Duration::from_secs(30), "stopped {stopped:?}, took over {took_over:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (stopped, took_over) = (stopped.unwrap(), took_over.unwrap());
    eprintln!(
        "cut off: the leader stopped after {:.1} s, the standby led after {:.1} s (Lease 6 s)",
        stopped.as_secs_f64(),
        took_over.as_secs_f64()
    );
    assert!(stopped < took_over, "the standby led at {took_over:?}, before the cut-off leader stopped at {stopped:?}");
    let log = std::fs::read_to_string(&leader.log).unwrap();
    assert!(log.contains("stepping down") || log.contains("lost the Lease"), "the leader said why it stopped");
    sims.clean_up();
}
