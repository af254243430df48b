//! `tether run`: the operator process. One controller per kind (and per watched namespace), Prometheus
//! metrics, liveness and readiness probes, leader election on a Lease, and a graceful stop on SIGTERM.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use futures::FutureExt as _;
use futures::future::{BoxFuture, Shared};
use prometheus_client::registry::Registry;
use tether_controller::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use tether_controller::{Config, Metrics};

/// Settings of `tether run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, or the in-cluster service account).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
    /// Namespaces to watch, comma-separated (default: all namespaces).
    #[arg(long, env = "TETHER_NAMESPACES", value_delimiter = ',', value_name = "NS")]
    namespace: Vec<String>,
    /// Drift-check period of settled resources, in seconds (jittered ±10 %; a resource can set its own with
    /// the annotation tether.dev/poll-interval).
    #[arg(long, env = "TETHER_POLL_INTERVAL_SECONDS", default_value_t = 600)]
    poll_interval_seconds: u64,
    /// Most reconciles of one kind running at once, in each of two lanes: new, edited, converging or
    /// deleting resources, and periodic drift checks and retries (so changes never wait behind drift checks).
    /// 0: no limit.
    #[arg(long, env = "TETHER_CONCURRENCY", default_value_t = 8)]
    concurrency: u16,
    /// Longest one reconcile may take, in seconds (platform calls, retries and Iguazio job waits included).
    /// One that runs longer is abandoned and reported as Synced=False, Timeout, then retried with backoff,
    /// so a hanging platform holds a worker for at most this long. 0 is refused.
    #[arg(long, env = "TETHER_RECONCILE_TIMEOUT_SECONDS", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    reconcile_timeout_seconds: u64,
    /// Log format: pretty or json.
    #[arg(long, env = "TETHER_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
    log_format: String,
    /// Address of the Prometheus endpoint (/metrics); `off` for none.
    #[arg(long, env = "TETHER_METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: String,
    /// Address of the probes (/healthz, /readyz); `off` for none.
    #[arg(long, env = "TETHER_PROBE_ADDR", default_value = "0.0.0.0:8081")]
    probe_addr: String,
    /// Reconcile only while holding the Lease, so several replicas can run with one active. Needed with
    /// more than one replica (the Helm chart turns it on).
    #[arg(long, env = "TETHER_LEADER_ELECTION", default_value_t = false)]
    leader_election: bool,
    /// Namespace of the Lease (default: the pod's, from $POD_NAMESPACE, else `default`).
    #[arg(long, env = "TETHER_LEADER_ELECTION_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, env = "TETHER_LEADER_ELECTION_LEASE", default_value = "tether-leader")]
    leader_election_lease: String,
    /// How long a leader's Lease holds without renewal: a stopped leader is replaced within about this long.
    #[arg(long, env = "TETHER_LEADER_ELECTION_LEASE_SECONDS", default_value_t = 10)]
    lease_seconds: u64,
    /// Split the resources into this many shards, by a stable hash of namespace/name, each reconciled by
    /// one replica at a time. With leader election every shard has its own Lease (`<lease>-<shard>`): a
    /// replica takes its own shard at once and, one lease period later, any shard no live replica holds,
    /// so a standby takes over the shard of a replica that stops. Without it, a replica serves
    /// --shard-index only.
    #[arg(long, env = "TETHER_SHARDS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(tether_controller::shards::MAX_SHARDS)))]
    shards: u32,
    /// This replica's own shard (default: the ordinal ending $POD_NAME, as a StatefulSet names its pods,
    /// modulo --shards; else a hash of the pod's name).
    #[arg(long, env = "TETHER_SHARD_INDEX")]
    shard_index: Option<u32>,
}

/// Runs the operator until SIGTERM or SIGINT (or, with leader election, until the Lease is lost).
#[tokio::main]
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(&args.log_format);
    let client = client(&args).await?;
    // Fail fast, with a hint, when the CRDs are not installed.
    let probe: kube::Api<tether_api::UbiService> = kube::Api::all(client.clone());
    probe.list(&kube::api::ListParams::default().limit(1)).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot list UbiServices ({e}); are the CRDs installed? tether crds | kubectl apply --server-side -f -"
        )
    })?;

    let mut registry = Registry::default();
    let metrics = Metrics::register(&mut registry);
    tether_platforms::metrics::register(&mut registry);
    let registry = Arc::new(registry);
    let ready = Arc::new(AtomicBool::new(false));
    let stop = shutdown_signal().boxed().shared();
    serve(&args.metrics_addr, metrics_router(registry), "metrics").await?;
    serve(&args.probe_addr, probe_router(ready.clone()), "probes").await?;
    tokio::spawn({
        let metrics = metrics.clone();
        async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                metrics.tick();
            }
        }
    });

    let mut config = Config {
        poll_interval: Duration::from_secs(args.poll_interval_seconds.max(1)),
        concurrency: args.concurrency,
        reconcile_timeout: Duration::from_secs(args.reconcile_timeout_seconds),
        metrics: Some(metrics),
        ..Default::default()
    };
    let namespaces: Vec<Option<String>> =
        if args.namespace.is_empty() { vec![None] } else { args.namespace.iter().cloned().map(Some).collect() };
    tracing::info!(namespaces = ?args.namespace, leader_election = args.leader_election, "tether running");

    if args.shards > 1 {
        let shards = Arc::new(tether_controller::shards::Shards::new(args.shards));
        config.shards = Some(shards.clone());
        // A Deployment's pods have no ordinal: their names spread them over the shards instead.
        let spread = || shards.shard_of("", &election_identity(&args).0);
        let own = args.shard_index.or_else(ordinal).unwrap_or_else(spread) % args.shards;
        if !args.leader_election {
            tracing::info!(shard = own, shards = args.shards, "serving one shard");
            shards.hold(own);
            ready.store(true, Ordering::Relaxed);
            controllers(client, &namespaces, config, stop).await;
            return Ok(());
        }
        return sharded(&args, client, &namespaces, config, shards, own, ready, stop).await;
    }

    if !args.leader_election {
        ready.store(true, Ordering::Relaxed);
        controllers(client, &namespaces, config, stop).await;
        return Ok(());
    }

    let (identity, namespace) = election_identity(&args);
    let lease_seconds = args.lease_seconds.max(MIN_LEASE_SECONDS);
    let client_of_election = election_client(&args).await?;
    let name = args.leader_election_lease.clone();
    let election = Election::new(&client_of_election, &namespace, name, &identity, lease_seconds).await?;
    let (mut leading, election) = elect(election);
    // A standby replica is ready: it serves probes and takes over when the leader goes.
    ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, lease = %args.leader_election_lease, %namespace, "waiting to lead");
    loop {
        if *leading.borrow_and_update() {
            break;
        }
        tokio::select! {
            changed = leading.changed() => changed.map_err(|_| anyhow::anyhow!("leader election stopped"))?,
            () = stop.clone() => return Ok(()),
        }
    }
    tracing::info!(%identity, "leading: starting the controllers");
    let lost = {
        let mut leading = leading.clone();
        async move {
            while *leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    break;
                }
            }
        }
    };
    let lost = lost.shared();
    let until = futures::future::select(stop.clone(), lost.clone()).map(|_| ()).boxed().shared();
    // Once the Lease is lost, in-flight reconciles get one second, not their graceful end (a reconcile may
    // run for minutes): a standby may already be acting, and two writers must not overlap.
    let abandon = lost.clone().then(|()| tokio::time::sleep(LOST_LEASE_GRACE));
    tokio::select! {
        () = controllers(client, &namespaces, config, until) => {}
        () = abandon => {}
    }
    if lost.now_or_never().is_some() {
        anyhow::bail!("lost the Lease {}: stopping so that a single replica reconciles", args.leader_election_lease);
    }
    // Dropping the receiver releases the Lease, so a standby takes over at once.
    drop(leading);
    let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
    Ok(())
}

/// The ordinal a StatefulSet ends its pod names with (`tether-2`: 2).
fn ordinal() -> Option<u32> {
    std::env::var("POD_NAME").ok()?.rsplit('-').next()?.parse().ok()
}

/// The Lease namespace and this replica's identity in it.
fn election_identity(args: &RunArgs) -> (String, String) {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
    let namespace = args
        .leader_election_namespace
        .clone()
        .or_else(|| std::env::var("POD_NAMESPACE").ok())
        .unwrap_or_else(|| "default".into());
    (identity, namespace)
}

/// Runs the controllers over the shards this replica holds: its own shard's Lease at once, every other
/// one after a lease period (so each replica first gets its own), each held until the process stops.
/// Losing any Lease stops the process within [`LOST_LEASE_GRACE`], as a single leader does.
#[allow(clippy::too_many_arguments)]
async fn sharded(
    args: &RunArgs,
    client: kube::Client,
    namespaces: &[Option<String>],
    config: Config,
    shards: Arc<tether_controller::shards::Shards>,
    own: u32,
    ready: Arc<AtomicBool>,
    stop: Shared<BoxFuture<'static, ()>>,
) -> anyhow::Result<()> {
    let (identity, namespace) = election_identity(args);
    let lease_seconds = args.lease_seconds.max(MIN_LEASE_SECONDS);
    let (lost_tx, mut lost_rx) = tokio::sync::mpsc::unbounded_channel::<u32>();
    let election = election_client(args).await?;
    let mut elections = Vec::new();
    for shard in 0..shards.count() {
        let name = format!("{}-{shard}", args.leader_election_lease);
        let contest = Election::new(&election, &namespace, name.clone(), &identity, lease_seconds).await?;
        let (shards, lost_tx) = (shards.clone(), lost_tx.clone());
        let stop = stop.clone();
        elections.push(tokio::spawn(async move {
            if shard != own {
                // The replica whose own shard it is gets a lease period to take it first.
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(lease_seconds)) => {}
                    () = stop.clone() => return,
                }
            }
            let (mut leading, election) = elect(contest);
            let held = async {
                while !*leading.borrow_and_update() {
                    if leading.changed().await.is_err() {
                        return false;
                    }
                }
                tracing::info!(shard, lease = %name, "holding the shard");
                shards.hold(shard);
                while *leading.borrow_and_update() {
                    if leading.changed().await.is_err() {
                        break;
                    }
                }
                true
            };
            let lost = tokio::select! {
                lost = held => lost,
                // A graceful stop: the Lease is released below, so a standby takes the shard at once.
                () = stop => false,
            };
            if lost {
                let _ = lost_tx.send(shard);
            }
            drop(leading);
            let _ = tokio::time::timeout(Duration::from_secs(5), election).await;
        }));
    }
    ready.store(true, Ordering::Relaxed);
    tracing::info!(%identity, own, shards = shards.count(), "contending for the shards");
    let lost = async move { lost_rx.recv().await }.boxed().shared();
    let until = futures::future::select(stop.clone(), lost.clone()).map(|_| ()).boxed().shared();
    let abandon = lost.clone().then(|_| tokio::time::sleep(LOST_LEASE_GRACE));
    tokio::select! {
        () = controllers(client, namespaces, config, until) => {}
        () = abandon => {}
    }
    if let Some(Some(shard)) = lost.now_or_never() {
        anyhow::bail!("lost the Lease of shard {shard}: stopping so that a single replica reconciles it");
    }
    // Stopped: each election releases its Lease (see above), so standbys take the shards at once.
    for election in elections {
        let _ = tokio::time::timeout(Duration::from_secs(6), election).await;
    }
    Ok(())
}

/// One Lease to contend for.
struct Election {
    manager: kube_lease_manager::LeaseManager,
    /// The Leases of its namespace, read through the election client.
    api: kube::Api<k8s_openapi::api::coordination::v1::Lease>,
    name: String,
    identity: String,
    lease_seconds: u64,
}

impl Election {
    /// The Lease `namespace/name` for this replica (`identity`), through the election client.
    async fn new(
        client: &kube::Client,
        namespace: &str,
        name: String,
        identity: &str,
        lease_seconds: u64,
    ) -> anyhow::Result<Self> {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &name)
            .with_namespace(namespace)
            .with_identity(identity)
            .with_duration(lease_seconds)
            .with_grace(renew_margin(lease_seconds))
            .build()
            .await
            .map_err(|e| anyhow::anyhow!("leader election on Lease {namespace}/{name}: {e}"))?;
        let api = kube::Api::namespaced(client.clone(), namespace);
        Ok(Self { manager, api, name, identity: identity.to_string(), lease_seconds })
    }
}

/// How long before its Lease expires a holder that could not renew it stops acting: past the grace its
/// in-flight reconciles get ([`LOST_LEASE_GRACE`]), so it has stopped before a standby may take over.
const FENCE: Duration = Duration::from_millis(2500);

/// Contends for the Lease until the receiver is dropped (then releases it): `true` while this process
/// holds it. The manager renews the Lease but, after an API error, keeps retrying and saying `true`; a
/// holder cut off from the API server (requests that hang) must not go on acting past the Lease. So the
/// holder also reads the Lease every few hundred milliseconds and keeps the instant it is valid until
/// (its renewTime + duration); [`FENCE`] before that, without a newer renewal seen, it steps down.
fn elect(election: Election) -> (tokio::sync::watch::Receiver<bool>, tokio::task::JoinHandle<()>) {
    use std::time::SystemTime;
    let Election { manager, api, name, identity, lease_seconds } = election;
    let lease = Duration::from_secs(lease_seconds);
    let valid_until = Arc::new(std::sync::Mutex::new(None::<SystemTime>));
    let holding = Arc::new(AtomicBool::new(false));
    let refresher = {
        let (valid_until, holding) = (valid_until.clone(), holding.clone());
        let period = (lease / 12).max(Duration::from_millis(250));
        tokio::spawn(async move {
            loop {
                if !holding.load(Ordering::Relaxed) {
                    // Only a holder reads its Lease: standbys (and shards held elsewhere) cost nothing.
                    tokio::time::sleep(period).await;
                    continue;
                }
                if let Ok(Ok(object)) = tokio::time::timeout(period * 2, api.get(&name)).await {
                    let spec = object.spec.unwrap_or_default();
                    if spec.holder_identity.as_deref() == Some(identity.as_str())
                        && let Some(renewed) = spec.renew_time
                    {
                        let until = SystemTime::from(renewed.0) + lease;
                        let mut valid = valid_until.lock().unwrap_or_else(|p| p.into_inner());
                        *valid = Some(valid.map_or(until, |v| v.max(until)));
                    }
                }
                tokio::time::sleep(period).await;
            }
        })
    };
    let (sender, receiver) = tokio::sync::watch::channel(false);
    let is_holding = holding;
    let task = tokio::spawn(async move {
        let mut check = tokio::time::interval((lease / 12).max(Duration::from_millis(250)));
        let mut changed = Box::pin(manager.changed());
        loop {
            tokio::select! {
                biased;
                () = sender.closed() => {
                    refresher.abort();
                    let _ = manager.release().await;
                    return;
                }
                result = &mut changed => {
                    match result {
                        Ok(holding) => {
                            if holding && !*sender.borrow() {
                                // Just acquired: valid for a lease from about now.
                                *valid_until.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now() + lease);
                            }
                            is_holding.store(holding, Ordering::Relaxed);
                            let _ = sender.send(holding);
                        }
                        Err(error) => {
                            tracing::debug!(%error, "leader election");
                            tokio::time::sleep(Duration::from_millis(200)).await;
                        }
                    }
                    changed = Box::pin(manager.changed());
                }
                _ = check.tick() => {
                    let until = *valid_until.lock().unwrap_or_else(|p| p.into_inner());
                    if *sender.borrow() && until.is_some_and(|v| SystemTime::now() + FENCE >= v) {
                        tracing::warn!("the Lease was not renewed in time (cut off from the API server?): stepping down");
                        refresher.abort();
                        let _ = sender.send(false);
                        return;
                    }
                }
            }
        }
    });
    (receiver, task)
}

/// How long before its Lease expires the holder renews it: two thirds of the lease, so that between a
/// renewal and [`FENCE`] there is time to see it (the holder reads its Lease every twelfth of the lease),
/// and a renewal that fails leaves the process time to stop before the Lease can be taken.
fn renew_margin(lease_seconds: u64) -> u64 {
    (lease_seconds * 2 / 3).max(1)
}

/// The shortest Lease: a holder renews it half a lease before it expires and steps down [`FENCE`] before.
const MIN_LEASE_SECONDS: u64 = 6;

/// How long in-flight reconciles may go on after the Lease is lost, before the process stops anyway.
const LOST_LEASE_GRACE: Duration = Duration::from_secs(1);

/// Every kind's controller and the Connections' status, for every watched namespace, until `stop`.
async fn controllers(
    client: kube::Client,
    namespaces: &[Option<String>],
    config: Config,
    stop: Shared<BoxFuture<'static, ()>>,
) {
    use tether_controller::connection_status::{run_cluster_connections, run_connections};
    use tether_controller::reconciler::run_with;
    use tether_controller::sources::Sources;
    // Each controller is a task of its own: joined in one future, every wake-up of any of them (a
    // requeue, a watch event, an answer) would poll all of them.
    let mut all = tokio::task::JoinSet::new();
    let mut cluster_wide = None;
    for ns in namespaces {
        // One watch of Connections, ClusterConnections and Secrets per namespace for every kind.
        let sources = Sources::start(client.clone(), ns.as_deref()).await;
        cluster_wide.get_or_insert_with(|| sources.clone());
        let (s, n, c, st) = (sources.clone(), ns.clone(), config.clone(), stop.clone());
        all.spawn(async move { run_connections(s, n.as_deref(), c, st).await });
        macro_rules! kind {
            ($adapter:ty) => {{
                let (s, n, c, st) = (sources.clone(), ns.clone(), config.clone(), stop.clone());
                all.spawn(async move { run_with::<$adapter>(s, n.as_deref(), c, st).await });
            }};
        }
        kind!(Iguazio);
        kind!(Civis);
        kind!(Apolo);
        kind!(UbiOps);
        kind!(Peak);
    }
    // ClusterConnections name Secrets in any namespace: their status needs watches of every namespace.
    let cluster_wide = match cluster_wide {
        Some(sources) if namespaces == [None] => sources,
        _ => Sources::start(client.clone(), None).await,
    };
    let (c, st) = (config.clone(), stop.clone());
    all.spawn(async move { run_cluster_connections(cluster_wide, c, st).await });
    while let Some(ended) = all.join_next().await {
        // A controller that panicked takes the process down, as it did when they ran in one future: a
        // restarted pod beats a replica that silently stopped reconciling a kind.
        if let Err(error) = ended
            && error.is_panic()
        {
            std::panic::resume_unwind(error.into_panic());
        }
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    Ok(kube::Client::try_from(kube_config(args).await?)?)
}

/// The client of leader election: its requests are short, so they time out within a quarter of the
/// lease. A leader cut off from the API server (requests that hang rather than fail) then sees its renewal
/// fail and stops before its Lease can expire and a standby take over.
async fn election_client(args: &RunArgs) -> anyhow::Result<kube::Client> {
    let mut config = kube_config(args).await?;
    let timeout = Duration::from_millis(args.lease_seconds.max(MIN_LEASE_SECONDS) * 1000 / 4);
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Ok(kube::Client::try_from(config)?)
}

async fn kube_config(args: &RunArgs) -> anyhow::Result<kube::Config> {
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow::anyhow!("reading kubeconfig {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| anyhow::anyhow!("no Kubernetes API to talk to (set KUBECONFIG or run in a cluster): {e}"))?,
    };
    Ok(config)
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "tether".into())
}

/// Binds `addr` (unless `off`) and serves `router` in the background; a bind failure stops the start.
async fn serve(addr: &str, router: Router, what: &'static str) -> anyhow::Result<()> {
    if addr == "off" {
        return Ok(());
    }
    let addr: SocketAddr = addr.parse().map_err(|e| anyhow::anyhow!("--{what} address {addr:?}: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| anyhow::anyhow!("{what} on {addr}: {e}"))?;
    tracing::info!(addr = %listener.local_addr()?, "serving {what}");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "the {what} server stopped");
        }
    });
    Ok(())
}

fn metrics_router(registry: Arc<Registry>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                match prometheus_client::encoding::text::encode(&mut text, &registry) {
                    Ok(()) => (
                        StatusCode::OK,
                        [("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                        text,
                    ),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, [("content-type", "text/plain")], e.to_string()),
                }
            }
        }),
    )
}

fn probe_router(ready: Arc<AtomicBool>) -> Router {
    Router::new().route("/healthz", get(|| async { "ok" })).route(
        "/readyz",
        get(move || {
            let ready = ready.clone();
            async move {
                if ready.load(Ordering::Relaxed) {
                    (StatusCode::OK, "ready")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "starting")
                }
            }
        }),
    )
}
