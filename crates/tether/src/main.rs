//! The `tether` command: one binary for every role of the operator.

use std::io::Write;

use clap::{Parser, Subcommand};

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
    }
    Ok(())
}
