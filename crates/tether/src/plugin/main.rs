//! `kubectl tether`: day-2 views of Tether resources from kubectl, with the platform's side of the story
//! (its state, logs, events and revisions) read with the user's own RBAC and credentials.
//!
//! Installed as `kubectl-tether` on the PATH, kubectl runs it for `kubectl tether ...`. It reads the
//! current kubeconfig context like kubectl (`--context`, `-n`, `-A`, `--as`), and reaches a platform with
//! the credentials of the resource's Connection Secret, read as the user: a user who may not read that
//! Secret is told which one. It never writes to a platform: the only write is `rollback`, which sets
//! `spec.rollbackToRevision` for the operator to apply.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod cluster;
mod diff;
mod events;
mod kinds;
mod logs;
mod output;
mod revisions;
mod status;
mod trace;

use kinds::with_adapter;

/// Day 2 with Tether from kubectl: status, trace, logs, events, revisions, rollback and diff of the
/// resources Tether keeps on Iguazio, Civis, Apolo, UbiOps and Peak.
///
/// Resources are named KIND/NAME with the kind's name, plural or short name: appservice (igz),
/// civisservice (civis), apoloapp (apolo), ubiservice (ubi), peakwebapp (peak).
#[derive(Parser, Debug)]
#[command(name = "kubectl-tether", bin_name = "kubectl tether", version)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// The flags every command takes, as kubectl takes them.
#[derive(clap::Args, Debug, Clone)]
pub struct Global {
    /// The namespace (default: the kubeconfig context's namespace, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// All namespaces (status).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig context to use (default: the current one).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Act as this user or ServiceAccount (system:serviceaccount:NS:NAME), as `kubectl --as`.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Act with this group too, as `kubectl --as-group` (repeatable).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
    /// Output format: json or yaml (machine-readable), wide (more columns).
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<OutputFormat>,
}

/// `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Json,
    Yaml,
    Wide,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Every Tether resource with Ready, Synced, reason, state on the platform, age and message, grouped by
    /// kind, failures first (-A: all namespaces).
    Status,
    /// The chain a resource depends on, each link with its health: the resource, its Connection or
    /// ClusterConnection, the credential Secret(s), the remote object (id, state, URL, read live) and the
    /// outputs Secret. Secret values are never shown.
    Trace {
        /// KIND/NAME, e.g. civisservice/reports, or KIND NAME.
        resource: String,
        /// The name, when the kind is given alone.
        name: Option<String>,
    },
    /// The platform's logs of the remote object: CivisService (the current deployment's log) and ApoloApp
    /// (the app's log stream). -f follows until Ctrl-C or until the platform ends the stream.
    Logs(logs::LogsArgs),
    /// The resource's Kubernetes Events merged in time order with the platform's own: Apolo app events,
    /// Civis deployments, Iguazio manifest jobs.
    Events {
        /// KIND/NAME, e.g. apoloapp/notebook, or KIND NAME.
        resource: String,
        /// The name, when the kind is given alone.
        name: Option<String>,
    },
    /// The configuration revisions of an ApoloApp's app, the current one and the pinned one marked.
    Revisions {
        /// apoloapp/NAME, or apoloapp NAME.
        resource: String,
        /// The name, when the kind is given alone.
        name: Option<String>,
    },
    /// Roll an ApoloApp back to revision N through the resource: sets spec.rollbackToRevision (the
    /// operator applies it, and keeps the app there until the field is removed), then waits until the
    /// resource is Ready at the new generation, printing its progress.
    Rollback(revisions::RollbackArgs),
    /// What Tether would change on the platform: for the live resource (KIND/NAME) or for a manifest not
    /// applied yet (-f FILE, `-` for stdin): a create with its fields, or each field to update with its
    /// value now and the value Tether would send. Computed by the operator's own adapter code with reads
    /// only; nothing is written anywhere.
    Diff {
        /// KIND/NAME, e.g. ubiservice/scoring, or KIND NAME.
        resource: Option<String>,
        /// The name, when the kind is given alone.
        name: Option<String>,
        /// A manifest (YAML or JSON, several documents allowed; non-Tether documents are skipped).
        #[arg(short = 'f', long = "filename", value_name = "FILE", conflicts_with = "resource")]
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let result = match runtime {
        Ok(runtime) => runtime.block_on(run(cli)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let global = cli.global;
    let cluster = cluster::Cluster::connect(&global).await?;
    let target = |resource: &str, name: &Option<String>| kinds::target(resource, name.as_deref());
    match &cli.command {
        Command::Status => status::run(&cluster, &global).await,
        Command::Trace { resource, name } => {
            let (kind, name) = target(resource, name)?;
            with_adapter!(kind, A => trace::run::<A>(&cluster, &global, kind, &name).await)
        }
        Command::Logs(args) => {
            let (kind, name) = target(&args.resource, &args.name)?;
            logs::run(&cluster, args, kind, &name).await
        }
        Command::Events { resource, name } => {
            let (kind, name) = target(resource, name)?;
            events::run(&cluster, &global, kind, &name).await
        }
        Command::Revisions { resource, name } => {
            let (kind, name) = target(resource, name)?;
            revisions::revisions(&cluster, &global, kind, &name).await
        }
        Command::Rollback(args) => {
            let (kind, name) = target(&args.resource, &args.name)?;
            revisions::rollback(&cluster, args, kind, &name).await
        }
        Command::Diff { file: Some(file), .. } => diff::file(&cluster, &global, file).await,
        Command::Diff { resource: Some(resource), name, file: None } => {
            let (kind, name) = target(resource, name)?;
            with_adapter!(kind, A => diff::live::<A>(&cluster, &global, kind, &name).await)
        }
        Command::Diff { resource: None, .. } => {
            anyhow::bail!("give the resource (diff KIND/NAME) or a manifest (diff -f FILE)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
        let cli =
            Cli::try_parse_from(["kubectl-tether", "logs", "civis/x", "-f", "--since", "10m", "-n", "team"]).unwrap();
        assert_eq!(cli.global.namespace.as_deref(), Some("team"));
        assert!(matches!(cli.command, Command::Logs(ref a) if a.follow));
        let cli = Cli::try_parse_from(["kubectl-tether", "status", "-A", "-o", "json"]).unwrap();
        assert!(cli.global.all_namespaces && cli.global.output == Some(OutputFormat::Json));
    }
}
