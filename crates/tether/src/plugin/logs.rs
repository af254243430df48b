//! `kubectl tether logs KIND/NAME`: the platform's logs of the remote object. CivisService: the current
//! deployment's log lines (polled while following); ApoloApp: the app's WebSocket log stream. With `-f`
//! it follows until Ctrl-C, or until the platform ends the stream (Apolo closes it; the Civis deployment
//! terminates), and exits 0 either way.

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Map, Value};
use tether_controller::adapters::{apolo::Apolo, civis::Civis};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest as _};

use crate::cluster::{self, Cluster};
use crate::events::external_id;
use crate::kinds::Kind;

/// What `logs` was asked for.
#[derive(clap::Args, Debug, Clone)]
pub struct LogsArgs {
    /// The resource: KIND/NAME (e.g. civisservice/reports, apoloapp/notebook), or KIND NAME.
    pub resource: String,
    /// The name, when the kind is given alone.
    pub name: Option<String>,
    /// Keep streaming new lines until Ctrl-C or until the platform ends the stream.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only lines newer than this: a duration back from now (10m, 2h, 1h30m) or an RFC 3339 time.
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// Only the last N lines of what is there now (then, with -f, every new one).
    #[arg(long, value_name = "N")]
    pub tail: Option<usize>,
    /// Prefix each line with its time, as the platform records it.
    #[arg(long)]
    pub timestamps: bool,
}

/// How often a followed Civis deployment is asked for new lines.
const POLL: Duration = Duration::from_secs(2);

pub async fn run(cluster: &Cluster, args: &LogsArgs, kind: Kind, name: &str) -> anyhow::Result<()> {
    let since = args.since.as_deref().map(crate::output::since).transpose()?;
    match kind {
        Kind::CivisService => civis(cluster, args, name, since).await,
        Kind::ApoloApp => apolo(cluster, args, name, since).await,
        other => anyhow::bail!(
            "{} has no log API, so there are no logs of {} {name} to show; `kubectl tether events {}/{name}` and \
             `kubectl tether trace {}/{name}` show what the platform reports",
            other.platform_name(),
            other.name(),
            other.name().to_ascii_lowercase(),
            other.name().to_ascii_lowercase()
        ),
    }
}

async fn civis(cluster: &Cluster, args: &LogsArgs, name: &str, since: Option<Timestamp>) -> anyhow::Result<()> {
    let cr: tether_api::CivisService = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let id: i64 =
        external_id(&cr)?.parse().map_err(|_| anyhow::anyhow!("status.externalId is not a Civis service id"))?;
    let client = cluster::platform_client::<Civis>(&cluster.client, &cr).await?;
    let service = client.get(id).await.map_err(|e| anyhow::anyhow!("Civis service {id}: {e}"))?;
    let deployment = service.current_deployment.as_ref().map(|d| d.deployment_id).ok_or_else(|| {
        anyhow::anyhow!("Civis service {id} has no deployment, so no logs (spec.deployed: {})", cr.spec.deployed)
    })?;
    let mut start_at = since.map(|t| t.to_string());
    let mut printed: HashSet<(String, String)> = HashSet::new();
    let mut first = true;
    let mut stdout = std::io::stdout().lock();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let lines = client
            .logs_since(id, deployment, start_at.as_deref(), None)
            .await
            .map_err(|e| anyhow::anyhow!("logs of Civis deployment {deployment}: {e}"))?;
        let mut fresh: Vec<&Map<String, Value>> =
            lines.iter().filter(|l| printed.insert((text(l, "createdAt"), text(l, "message")))).collect();
        if first && let Some(n) = args.tail {
            fresh = fresh.split_off(fresh.len().saturating_sub(n));
        }
        first = false;
        for line in fresh {
            let message = text(line, "message");
            if args.timestamps {
                writeln!(stdout, "{} {message}", text(line, "createdAt"))?;
            } else {
                writeln!(stdout, "{message}")?;
            }
            start_at = Some(text(line, "createdAt")).filter(|s| !s.is_empty()).or(start_at);
        }
        stdout.flush()?;
        if !args.follow {
            return Ok(());
        }
        let state = client
            .deployment(id, deployment)
            .await
            .map_err(|e| anyhow::anyhow!("Civis deployment {deployment}: {e}"))?;
        if state.state == "terminated" {
            let why = state.state_message.map(|m| format!(": {m}")).unwrap_or_default();
            eprintln!("deployment {deployment} terminated{why}; the log ends here");
            return Ok(());
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            () = tokio::time::sleep(POLL) => {}
        }
    }
}

fn text(line: &Map<String, Value>, key: &str) -> String {
    line.get(key).and_then(Value::as_str).unwrap_or_default().to_string()
}

async fn apolo(cluster: &Cluster, args: &LogsArgs, name: &str, since: Option<Timestamp>) -> anyhow::Result<()> {
    let cr: tether_api::ApoloApp = cluster::get(&cluster.client, &cluster.namespace, name).await?;
    let id = external_id(&cr)?;
    let (account, display) = cluster::account(&cluster.client, &cr).await?;
    let client = <Apolo as tether_controller::adapter::Adapter>::connect(&account)
        .map_err(|e| anyhow::anyhow!("{display}: {e}"))?;
    let mut url = client
        .log_stream_url(&cr.spec.cluster, &id)
        .await
        .map_err(|e| anyhow::anyhow!("Apolo log stream of app {id}: {e}"))?;
    {
        let mut query = url.query_pairs_mut();
        if let Some(since) = since {
            query.append_pair("since", &since.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string());
        }
        if args.timestamps {
            query.append_pair("timestamps", "true");
        }
    }
    if url.query() == Some("") {
        url.set_query(None);
    }
    let token = account.credential("token").map_err(|e| anyhow::anyhow!("{display}: {e}"))?;
    let mut request = url.as_str().into_client_request()?;
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {}", token.expose())
            .parse()
            .map_err(|_| anyhow::anyhow!("the token is not a valid header value"))?,
    );
    let (mut socket, _) = match tokio_tungstenite::connect_async(request).await {
        Ok(connected) => connected,
        Err(tungstenite::Error::Http(response)) => {
            let why = response.headers().get("x-error").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            anyhow::bail!("Apolo refused the log stream of app {id}: HTTP {} {why}", response.status());
        }
        Err(e) => anyhow::bail!("Apolo log stream of app {id}: {e}"),
    };
    // With --tail, the lines there now (those that come before the stream ends, or falls quiet for a
    // moment) are kept and the last N shown; with -f, every later line then follows.
    let mut kept: Option<Vec<String>> = args.tail.map(|_| Vec::new());
    let mut stdout = std::io::stdout().lock();
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    let show_kept = |kept: &mut Option<Vec<String>>, out: &mut std::io::StdoutLock<'_>| -> std::io::Result<()> {
        if let (Some(lines), Some(n)) = (kept.take(), args.tail) {
            for line in &lines[lines.len().saturating_sub(n)..] {
                writeln!(out, "{line}")?;
            }
            out.flush()?;
        }
        Ok(())
    };
    loop {
        let quiet = match (args.follow, kept.is_some()) {
            (false, _) => Duration::from_secs(5),
            (true, true) => Duration::from_secs(1),
            (true, false) => Duration::from_secs(365 * 86400),
        };
        let message = tokio::select! {
            _ = &mut ctrl_c => { let _ = socket.close(None).await; break; }
            () = tokio::time::sleep(quiet) => {
                if args.follow {
                    show_kept(&mut kept, &mut stdout)?;
                    continue;
                }
                break;
            }
            message = socket.next() => message,
        };
        match message {
            None | Some(Ok(tungstenite::Message::Close(_))) => break,
            Some(Ok(tungstenite::Message::Binary(bytes))) => {
                let chunk = String::from_utf8_lossy(&bytes).into_owned();
                match kept.as_mut() {
                    Some(lines) => lines.extend(chunk.lines().map(str::to_string)),
                    None => {
                        write!(stdout, "{chunk}")?;
                        stdout.flush()?;
                    }
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => anyhow::bail!("the Apolo log stream of app {id} broke: {e}"),
        }
    }
    show_kept(&mut kept, &mut stdout)?;
    stdout.flush()?;
    Ok(())
}
