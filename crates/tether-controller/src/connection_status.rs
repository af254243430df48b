//! Connections and ClusterConnections have a status too: `Ready` when their credentials are found and the
//! platform accepts them (one cheap authenticated call, [`Adapter::verify`]), checked again every drift
//! period and as soon as the connection or one of its Secrets changes. So a wrong key shows on the
//! Connection itself, not only on the resources that use it.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tether_api::connection::{ClusterConnection, Connection, ConnectionSettings, ConnectionStatus};
use tether_api::{Condition, ConditionStatus, Platform};
use tether_platforms::Error as PlatformError;

use crate::adapter::Adapter;
use crate::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
use crate::connection::{self};
use crate::error::Error;
use crate::reconciler::{Config, FIELD_MANAGER};
use crate::sources::Sources;
use crate::status::{reasons, types};

/// What the status controller needs of a Connection or a ClusterConnection.
pub trait ConnectionObject:
    Resource<DynamicType = ()> + Clone + Debug + Serialize + DeserializeOwned + Send + Sync + 'static
{
    /// Endpoint, credentials and limits.
    fn settings(&self) -> &ConnectionSettings;
    /// Where its credential Secrets are: the Connection's namespace, or (`None`) each selector's own.
    fn secret_namespace(&self) -> Option<String>;
    /// The status as stored.
    fn connection_status(&self) -> Option<&ConnectionStatus>;
    /// The API of this object.
    fn api(&self, client: kube::Client) -> Api<Self>;
    /// The namespaced Connection, whose namespace teardown [`crate::teardown`] guards.
    fn as_connection(&self) -> Option<&Connection> {
        None
    }
}

impl ConnectionObject for Connection {
    fn settings(&self) -> &ConnectionSettings {
        &self.spec.settings
    }
    fn secret_namespace(&self) -> Option<String> {
        self.namespace()
    }
    fn connection_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::namespaced(client, &self.namespace().unwrap_or_default())
    }
    fn as_connection(&self) -> Option<&Connection> {
        Some(self)
    }
}

impl ConnectionObject for ClusterConnection {
    fn settings(&self) -> &ConnectionSettings {
        &self.spec.settings
    }
    fn secret_namespace(&self) -> Option<String> {
        None
    }
    fn connection_status(&self) -> Option<&ConnectionStatus> {
        self.status.as_ref()
    }
    fn api(&self, client: kube::Client) -> Api<Self> {
        Api::all(client)
    }
}

struct Context<K: ConnectionObject> {
    client: kube::Client,
    sources: Arc<Sources>,
    config: Config,
    dependencies: Arc<crate::dependencies::Index<ObjectRef<K>>>,
}

/// Keeps the status of the Connections (of `namespace`, or all, as `sources` covers) until `shutdown`
/// resolves.
pub async fn run_connections(
    sources: Arc<Sources>,
    namespace: Option<&str>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api = match namespace {
        Some(ns) => Api::namespaced(sources.client().clone(), ns),
        None => Api::all(sources.client().clone()),
    };
    run::<Connection>(sources, api, config, shutdown).await;
}

/// Keeps the status of the ClusterConnections until `shutdown` resolves.
pub async fn run_cluster_connections(
    sources: Arc<Sources>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let api = Api::all(sources.client().clone());
    run::<ClusterConnection>(sources, api, config, shutdown).await;
}

async fn run<K: ConnectionObject>(
    sources: Arc<Sources>,
    api: Api<K>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = sources.client().clone();
    let context = Arc::new(Context::<K> { client, sources: sources.clone(), config, dependencies: Arc::default() });
    let (index, everyone) = (context.dependencies.clone(), context.dependencies.clone());
    // A changed credential Secret checks its connections again at once.
    let woken =
        crate::sources::woken(sources.subscribe(), move |changed| index.readers(changed), move || everyone.all());
    // Checked for its spec, metadata and Secrets, not for its own status writes: a status that changes at
    // every check (an outage's messages) would otherwise re-check it at once, in a loop.
    let (reader, trigger) = crate::reconciler::watched(api);
    Controller::for_stream(trigger, reader)
        .reconcile_on(woken)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<K>, |_, _, _| Action::requeue(Duration::from_secs(30)), context)
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "connection status failed");
            }
        })
        .await;
}

async fn reconcile<K: ConnectionObject>(conn: Arc<K>, ctx: Arc<Context<K>>) -> Result<Action, Error> {
    if let Some(shards) = &ctx.config.shards
        && !shards.holds(&conn.namespace().unwrap_or_default(), &conn.name_any())
    {
        // Another replica's; a periodic look finds it when this process holds its shard.
        return Ok(Action::requeue(ctx.config.poll_interval));
    }
    let recheck = match conn.as_connection() {
        Some(connection) => crate::teardown::guard(connection, &ctx.client, &ctx.sources).await?,
        None => None,
    };
    let settings = conn.settings();
    let identity = format!("{}/{}", K::kind(&()), conn.name_any());
    let mut dependencies = Vec::new();
    let account =
        connection::account(&ctx.sources, settings, conn.secret_namespace().as_deref(), &identity, &mut dependencies)
            .await;
    ctx.dependencies.set(&crate::memory::key(conn.as_ref()), dependencies);
    // A connection whose last check failed is checked with one attempt: the check's own period spaces
    // the retries (during an outage, four attempts per check would be most of the traffic).
    let failing = conn
        .connection_status()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == types::READY && c.status != ConditionStatus::True));
    let attempts = if failing { 1 } else { u32::MAX };
    let verdict = match account {
        Ok(account) => tether_platforms::http::with_attempts(attempts, verify(settings.platform, &account))
            .await
            .map_err(Error::platform("verify")),
        Err(e) => Err(e),
    };
    let (ready, reason, message, terminal) = match &verdict {
        Ok(()) => (true, reasons::AVAILABLE, format!("{:?} accepts the credentials", settings.platform), false),
        Err(e) => (false, e.reason(), e.to_string(), e.is_terminal()),
    };
    write_status(conn.as_ref(), &ctx.client, Verdict { ready, reason, message, terminal }).await?;
    // Checked again every drift period; a failing one sooner, as the platform or a Secret may recover.
    let period = ctx.config.poll_interval;
    let next = if ready { period } else { period.min(Duration::from_secs(60)) };
    Ok(Action::requeue(recheck.map_or(next, |soon| soon.min(next))))
}

async fn verify(platform: Platform, account: &connection::Account) -> Result<(), PlatformError> {
    match platform {
        Platform::Iguazio => Iguazio::verify(&Iguazio::connect(account)?).await,
        Platform::Civis => Civis::verify(&Civis::connect(account)?).await,
        Platform::Apolo => Apolo::verify(&Apolo::connect(account)?).await,
        Platform::Ubiops => UbiOps::verify(&UbiOps::connect(account)?).await,
        Platform::Peak => Peak::verify(&Peak::connect(account)?).await,
    }
}

/// What the last check found.
struct Verdict {
    ready: bool,
    reason: &'static str,
    message: String,
    /// A human must fix the credentials or the Connection (kstatus Stalled); else still trying (Reconciling).
    terminal: bool,
}

/// Server-side applies Ready, Reconciling and Stalled (so kstatus and Argo CD read a wrong key as a failure,
/// not as done), unless the stored conditions already say the same.
async fn write_status<K: ConnectionObject>(conn: &K, client: &kube::Client, verdict: Verdict) -> Result<(), Error> {
    let generation = conn.meta().generation;
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let Verdict { ready, reason, message, terminal } = verdict;
    let (settled, empty) = (reasons::RECONCILE_SUCCESS, String::new());
    let wanted = [
        (types::READY, ready, reason, message.clone()),
        (types::RECONCILING, !ready && !terminal, if ready || terminal { settled } else { reason }, empty.clone()),
        (types::STALLED, terminal, if terminal { reason } else { settled }, if terminal { message } else { empty }),
    ];
    let stored = conn.connection_status().map(|s| s.conditions.as_slice()).unwrap_or_default();
    let conditions: Vec<Condition> = wanted
        .into_iter()
        .map(|(type_, holds, reason, message)| {
            let status = if holds { ConditionStatus::True } else { ConditionStatus::False };
            let previous = stored.iter().find(|c| c.type_ == type_);
            let since =
                previous.filter(|c| c.status == status).map_or_else(|| now.clone(), |c| c.last_transition_time.clone());
            Condition {
                type_: type_.into(),
                status,
                reason: reason.into(),
                message,
                last_transition_time: since,
                observed_generation: generation,
            }
        })
        .collect();
    let unchanged = conn.connection_status().is_some_and(|s| s.observed_generation == generation)
        && conditions.len() == stored.len()
        && conditions.iter().all(|c| stored.contains(c));
    if unchanged {
        return Ok(());
    }
    let patch = json!({
        "apiVersion": K::api_version(&()), "kind": K::kind(&()),
        "status": {"conditions": conditions, "observedGeneration": generation},
    });
    conn.api(client.clone())
        .patch_status(&conn.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch))
        .await?;
    Ok(())
}
