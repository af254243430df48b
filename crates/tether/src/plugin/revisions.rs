//! `kubectl tether revisions apoloapp/NAME` and `kubectl tether rollback apoloapp/NAME --to N`. The
//! rollback goes through the resource: it sets `spec.rollbackToRevision`, so the operator stays the only
//! writer of the platform, and waits until the resource is Ready at the new generation.

use std::time::{Duration, Instant};

use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::Serialize;
use tether_api::ApoloApp;
use tether_controller::adapters::apolo::Apolo;

use crate::Global;
use crate::cluster::{self, Cluster};
use crate::events::external_id;
use crate::kinds::Kind;
use crate::output::{parse_time, structured, table};
use crate::status::condition;

fn only_apolo(kind: Kind) -> anyhow::Result<()> {
    anyhow::ensure!(
        kind == Kind::ApoloApp,
        "{} keeps no configuration revisions; revisions and rollback are for ApoloApp (apoloapp/NAME)",
        kind.name()
    );
    Ok(())
}

/// One revision, as `-o json|yaml` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub revision: i64,
    pub current: bool,
    /// Whether `spec.rollbackToRevision` pins the app to it.
    pub pinned: bool,
    pub created_at: String,
    pub end_at: Option<String>,
    pub creator: String,
    pub comment: Option<String>,
}

async fn rows(cluster: &Cluster, cr: &ApoloApp) -> anyhow::Result<Vec<Row>> {
    let id = external_id(cr)?;
    let client = cluster::platform_client::<Apolo>(&cluster.client, cr).await?;
    let scoped = client.with_scope(&cr.spec.cluster, &cr.spec.org, &cr.spec.project);
    let revisions = scoped.revisions(&id).await.map_err(|e| anyhow::anyhow!("revisions of Apolo app {id}: {e}"))?;
    let mut rows: Vec<Row> = revisions
        .into_iter()
        .map(|r| Row {
            current: r.end_at.is_none(),
            pinned: cr.spec.rollback_to_revision.map(i64::from) == Some(r.revision_number),
            revision: r.revision_number,
            created_at: r.created_at,
            end_at: r.end_at,
            creator: r.creator,
            comment: r.comment,
        })
        .collect();
    rows.sort_by_key(|r| r.revision);
    Ok(rows)
}

pub async fn revisions(cluster: &Cluster, global: &Global, kind: Kind, name: &str) -> anyhow::Result<()> {
    only_apolo(kind)?;
    let cr: ApoloApp = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let rows = rows(cluster, &cr).await?;
    if let Some(text) = structured(global.output, &rows)? {
        print!("{text}");
        return Ok(());
    }
    let when =
        |t: &str| parse_time(t).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()).unwrap_or_else(|| t.to_string());
    let lines: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mark = match (r.current, r.pinned) {
                (true, true) => "current, pinned",
                (true, false) => "current",
                (false, true) => "pinned",
                (false, false) => "",
            };
            vec![
                r.revision.to_string(),
                mark.to_string(),
                when(&r.created_at),
                r.creator.clone(),
                r.comment.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print!("{}", table(&["REVISION", "STATUS", "CREATED", "CREATOR", "COMMENT"], &lines));
    if let Some(pin) = cr.spec.rollback_to_revision {
        println!(
            "\nspec.rollbackToRevision pins the configuration to revision {pin}; remove it to follow spec.input again."
        );
    }
    Ok(())
}

/// What `rollback` was asked for.
#[derive(clap::Args, Debug, Clone)]
pub struct RollbackArgs {
    /// The resource: apoloapp/NAME, or apoloapp NAME.
    pub resource: String,
    /// The name, when the kind is given alone.
    pub name: Option<String>,
    /// The revision to go back to (see `kubectl tether revisions`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    pub to: i32,
    /// How long to wait for the resource to be Ready at the new generation, in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub timeout: u64,
    /// Set the field and return without waiting.
    #[arg(long)]
    pub no_wait: bool,
}

pub async fn rollback(cluster: &Cluster, args: &RollbackArgs, kind: Kind, name: &str) -> anyhow::Result<()> {
    only_apolo(kind)?;
    let cr: ApoloApp = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let what = format!("ApoloApp {}/{name}", cluster.namespace);
    // Checked first when the user may read the platform: a missing revision is refused here, not stalled.
    match rows(cluster, &cr).await {
        Ok(rows) => {
            let known: Vec<String> = rows.iter().map(|r| r.revision.to_string()).collect();
            anyhow::ensure!(
                rows.iter().any(|r| r.revision == i64::from(args.to)),
                "the app of {what} has no revision {}; it has {}",
                args.to,
                known.join(", ")
            );
        }
        Err(e) => {
            eprintln!("revision {} not checked on Apolo ({e:#}); Tether will report it if it is missing", args.to)
        }
    }
    let api: Api<ApoloApp> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let patch = serde_json::json!({"spec": {"rollbackToRevision": args.to}});
    let patched = api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|e| cluster::explain(e, &format!("{what} (patch spec.rollbackToRevision)")))?;
    let generation = patched.metadata.generation.unwrap_or_default();
    eprintln!("{what}: spec.rollbackToRevision set to {} (generation {generation}); Tether applies it", args.to);
    if args.no_wait {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut last = String::new();
    loop {
        let now = api.get(name).await.map_err(|e| cluster::explain(e, &what))?;
        let json = serde_json::to_value(&now)?;
        let observed = now.status.as_ref().and_then(|s| s.observed_generation).unwrap_or_default();
        let ready = condition(&json, "Ready");
        let synced = condition(&json, "Synced");
        let applied = now.status.as_ref().and_then(|s| s.at_provider.as_ref()).and_then(|a| a.applied_rollback);
        let line = format!(
            "generation {observed}/{generation}: Ready={} Synced={} {}",
            ready.as_ref().map_or("Unknown".into(), |r| format!("{} ({})", r.0, r.1)),
            synced.as_ref().map_or("Unknown".into(), |s| format!("{} ({})", s.0, s.1)),
            ready.as_ref().filter(|r| r.0 != "True").map(|r| r.2.clone()).unwrap_or_default()
        );
        if line != last {
            eprintln!("  {}", line.trim_end());
            last = line;
        }
        let at_generation = observed >= generation;
        if at_generation && ready.as_ref().is_some_and(|r| r.0 == "True") && applied == Some(args.to) {
            let revision = now.status.as_ref().and_then(|s| s.at_provider.as_ref()).and_then(|a| a.current_revision);
            println!(
                "{what} is Ready at generation {generation}: rolled back to revision {}{}",
                args.to,
                revision.map(|r| format!(" (now running as revision {r})")).unwrap_or_default()
            );
            return Ok(());
        }
        if at_generation && condition(&json, "Stalled").is_some_and(|s| s.0 == "True") {
            anyhow::bail!("{what} stalled: {}", synced.map(|s| s.2).unwrap_or_default());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} is not Ready at generation {generation} after {} s: {}",
            args.timeout,
            last.trim_end()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
