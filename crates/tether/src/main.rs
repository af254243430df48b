//! The `tether` command: one binary for every role of the operator.

use std::io::Write;

use clap::{Parser, Subcommand};

mod operator;

/// jemalloc instead of glibc's malloc: the operator allocates and frees small objects from several threads
/// (answers, statuses, watch events). Measured one after the other with `cargo bench -p tether --bench
/// operator` (N = 2000 and 10000, see docs/operations.md): jemalloc's peak RSS matches glibc's (a third
/// below mimalloc's, which this replaced) at the lowest operator CPU of the three, and with its background
/// thread it gives memory back once resources are deleted, which glibc does not.
/// Off (`--no-default-features`) for heap profilers, which see only glibc's malloc.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Tether keeps application services on remote ML/data platforms (Iguazio, Civis, Apolo, UbiOps, Peak)
/// in the state declared by Kubernetes custom resources of group tether.dev.
#[derive(Parser, Debug)]
#[command(name = "tether", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print every Tether CustomResourceDefinition as one YAML stream, e.g.
    /// `tether crds | kubectl apply --server-side -f -`.
    Crds {
        /// Write one file per CRD (`<name>.yaml`) into this directory instead, as crds/ holds them:
        /// `tether crds --out-dir crds`.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<std::path::PathBuf>,
    },
    /// Run simulators of the platform APIs on loopback, each on its own port, until interrupted.
    ///
    /// The endpoints file is JSON keyed by platform, each with `url`, `credentials` (named as the vendor
    /// SDK names them) and `seeded` (fixtures a client must reference). Control API of each simulator:
    /// `<origin>/_sim/{counters,faults,reset,state,seed,fail}`.
    Sim(SimArgs),
    /// Run the operator: reconcile the Tether resources of the cluster (kubeconfig from $KUBECONFIG or
    /// in-cluster) until SIGTERM or SIGINT: AppService, CivisService, ApoloApp, UbiService and PeakWebapp.
    Run(operator::RunArgs),
}

#[derive(clap::Args, Debug)]
struct SimArgs {
    /// Platforms to simulate: `all` or a comma-separated list (available: iguazio, civis, apolo, ubiops, peak).
    #[arg(long, default_value = "all", value_delimiter = ',')]
    platforms: Vec<String>,
    /// Write the endpoints (URLs, credentials, seeded fixtures) to this JSON file.
    #[arg(long, value_name = "FILE")]
    endpoints_file: Option<std::path::PathBuf>,
    /// Write Kubernetes manifests pointing at the simulators to this file: per platform a Secret
    /// `<platform>-credentials` and a Connection `<platform>`, the names examples/ uses. Apply them after
    /// examples/ and the examples run against the simulators.
    #[arg(long, value_name = "FILE")]
    connections_file: Option<std::path::PathBuf>,
    /// Delay of asynchronous platform transitions, in milliseconds (0 for benchmarks).
    #[arg(long, default_value_t = 300)]
    delay_ms: u64,
    /// Address to listen on. Port 0 gives each simulator a free port; another port P gives the platforms
    /// P, P+1, ... in the order of --platforms (`all`: iguazio, civis, apolo, ubiops, peak).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: std::net::SocketAddr,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Crds { out_dir: None } => {
            let yaml = tether_api::crds_yaml()?;
            std::io::stdout().lock().write_all(yaml.as_bytes())?;
        }
        Command::Crds { out_dir: Some(dir) } => {
            std::fs::create_dir_all(&dir)?;
            for (file, yaml) in tether_api::crd_files()? {
                std::fs::write(dir.join(file), yaml)?;
            }
        }
        Command::Sim(args) => run_sim(args)?,
        Command::Run(args) => operator::run(args)?,
    }
    Ok(())
}

/// Writes through a temporary file, so a reader waiting for the file never sees half of it.
fn write_atomically(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[tokio::main]
async fn run_sim(args: SimArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let platforms: Vec<&str> = if args.platforms.iter().any(|p| p == "all") {
        tether_sim::PLATFORMS.to_vec()
    } else {
        args.platforms.iter().map(String::as_str).collect()
    };
    let options = tether_sim::SimOptions { delay: std::time::Duration::from_millis(args.delay_ms) };
    let mut endpoints = serde_json::Map::new();
    let mut running = std::collections::BTreeMap::new();
    for (index, platform) in platforms.into_iter().enumerate() {
        let mut addr = args.listen;
        if addr.port() != 0 {
            let port = u16::try_from(usize::from(addr.port()) + index)
                .map_err(|_| anyhow::anyhow!("--listen port {} leaves no room for {platform}", args.listen.port()))?;
            addr.set_port(port);
        }
        let endpoint = tether_sim::spawn(platform, addr, options)
            .await
            .map_err(|e| anyhow::anyhow!("starting the {platform} simulator on {addr}: {e}"))?;
        eprintln!("{platform}: {}", endpoint.url);
        endpoints.insert(platform.to_string(), serde_json::to_value(&endpoint)?);
        running.insert(platform.to_string(), endpoint);
    }
    if let Some(path) = &args.connections_file {
        write_atomically(path, &tether_sim::connections_manifest(&running))?;
        eprintln!("connections written to {}", path.display());
    }
    let json = serde_json::to_string_pretty(&endpoints)?;
    match &args.endpoints_file {
        Some(path) => {
            write_atomically(path, &json)?;
            eprintln!("endpoints written to {}", path.display());
        }
        None => println!("{json}"),
    }
    tokio::signal::ctrl_c().await?;
    Ok(())
}
