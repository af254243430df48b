//! The one reconcile loop every kind shares: deletion (per deletionPolicy, waiting until the platform is
//! done) → paused → connection → finalizer → observe → create or update → status, written only when it
//! changed. The adapter supplies the four verbs; everything else lives here.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate as _, WatchStreamExt as _, watcher};
use kube::{Api, Resource, ResourceExt};
use serde_json::json;
use tether_platforms::Error as PlatformError;

use crate::adapter::{Adapter, Deletion, ManagedResource, Observation, Request};
pub use crate::context::{Config, Context};
use crate::error::{Error, Result};
use crate::lanes::Lane;
use crate::plan::{self, DeleteNext, Next, Pace, Start};
use crate::sources::Sources;
use crate::status::{self, Outcome};
use k8s_openapi::api::core::v1::Secret;

pub use crate::annotations::{FINALIZER, PAUSED, POLL_INTERVAL};
/// The field manager of every write Tether makes.
pub const FIELD_MANAGER: &str = "tether";

/// Runs the controller of one kind, over every namespace or only `namespace`, until `shutdown` resolves,
/// with watches of its own for Connections and Secrets. A process running several kinds shares them:
/// [`run_with`].
pub async fn run<A: Adapter>(
    client: kube::Client,
    namespace: Option<&str>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let sources = Sources::start(client, namespace).await;
    run_with::<A>(sources, namespace, config, shutdown).await;
}

/// [`run`] reading Connections, ClusterConnections and Secrets from `sources` (which cover `namespace`).
pub async fn run_with<A: Adapter>(
    sources: Arc<Sources>,
    namespace: Option<&str>,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = sources.client().clone();
    let api: Api<A::Resource> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let context = Context::<A>::new(sources.clone(), config);
    // A fixed Secret or a Connection that appears reconciles the resources that read it, without waiting
    // for their backoff.
    let (index, lanes) = (context.dependencies.clone(), context.lanes.clone());
    let everyone = context.dependencies.clone();
    let woken = crate::sources::woken(
        sources.subscribe(),
        move |dependency| {
            let woken = index.readers(dependency);
            lanes.wake(&woken);
            woken
        },
        move || everyone.all(),
    );
    let (reader, trigger) = watched(api);
    let taken_over = taken_over(context.config.shards.clone(), reader.clone());
    // Settled resources' drift checks: a probe each, the reconcile only for what changed.
    let drifted = context.drift.woken();
    tokio::spawn(context.drift.clone().run(sources.clone(), context.config.clone()));
    // No limit in the runtime: the lanes limit changes and drift checks apart.
    Controller::for_stream(trigger, reader)
        .with_config(kube::runtime::controller::Config::default().concurrency(0))
        .reconcile_on(woken)
        .reconcile_on(taken_over)
        .reconcile_on(drifted)
        .graceful_shutdown_on(shutdown)
        .run(reconcile::<A>, error_policy::<A>, context.clone())
        .for_each(move |result| {
            match result {
                // Deleted without Tether's finalizer: its scheduled look found it gone.
                Err(controller::Error::ObjectNotFound(gone)) => context.forget(&typed::<A::Resource>(&gone)),
                Err(error) => tracing::debug!(%error, "reconcile failed"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
}

/// The resources of each shard this process comes to hold, once it holds it: their earlier events were
/// left to the replica that held it then.
fn taken_over<K>(
    shards: Option<Arc<crate::shards::Shards>>,
    store: kube::runtime::reflector::Store<K>,
) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let Some(shards) = shards else { return futures::stream::empty().left_stream() };
    let held = shards.subscribe();
    futures::stream::unfold((held, 0u64, shards, store), |(mut held, before, shards, store)| async move {
        held.changed().await.ok()?;
        let now = *held.borrow_and_update();
        let gained = now & !before;
        let woken: Vec<ObjectRef<K>> = store
            .state()
            .iter()
            .filter(|o| gained & (1 << shards.shard_of(&o.namespace().unwrap_or_default(), &o.name_any())) != 0)
            .map(|o| crate::memory::key(o.as_ref()))
            .collect();
        Some((futures::stream::iter(woken), (held, now, shards, store)))
    })
    .flatten()
    .right_stream()
}

/// The objects of `api`: a store of them (it sees every write) and the stream of those to reconcile. An
/// object is reconciled for what a human or GitOps tool changes (spec, annotations, labels, finalizers,
/// deletion), not for a status write, Tether's own included: a failure's status write must not re-run the
/// reconcile at once past its backoff or Retry-After, and a successful one must not cost a second round
/// of platform calls. Used by the managed kinds and the Connections' status alike.
pub(crate) fn watched<K>(
    api: Api<K>,
) -> (
    kube::runtime::reflector::Store<K>,
    impl futures::Stream<Item = std::result::Result<K, watcher::Error>> + Send + 'static,
)
where
    K: Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let events = watcher(api, watcher::Config::default()).default_backoff().modify(crate::sources::prune);
    let trigger = kube::runtime::reflector(writer, events)
        .applied_objects()
        .predicate_filter(kube::runtime::predicates::generation.combine(changes), Default::default());
    (reader, trigger)
}

/// A digest of what, besides the spec's generation, asks for a reconcile: annotations (pause, restart,
/// redeploy, adopt, poll interval), labels, finalizers and the deletion mark.
fn changes<K: Resource>(object: &K) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let meta = object.meta();
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    (&meta.annotations, &meta.labels, &meta.finalizers, meta.deletion_timestamp.as_ref().map(|t| t.0))
        .hash(&mut digest);
    Some(digest.finish())
}

/// The reference the runtime reports, as the kind's own.
pub(crate) fn typed<K: Resource<DynamicType = ()>>(reference: &ObjectRef<DynamicObject>) -> ObjectRef<K> {
    let typed = ObjectRef::new(&reference.name);
    match &reference.namespace {
        Some(namespace) => typed.within(namespace),
        None => typed,
    }
}

/// Reconciles one resource. Failures are written into its status before they are returned, so the
/// error policy only decides when to look again.
pub async fn reconcile<A: Adapter>(cr: Arc<A::Resource>, ctx: Arc<Context<A>>) -> Result<Action> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "reconcile",
        kind = %A::Resource::kind(&()),
        ns = %cr.namespace().unwrap_or_default(),
        name = %cr.name_any(),
        lane = tracing::field::Empty,
    );
    let reference = crate::memory::key(cr.as_ref());
    if let Some(shards) = &ctx.config.shards
        && !shards.holds(&cr.namespace().unwrap_or_default(), &cr.name_any())
    {
        // Another replica's shard; reconciled here once this process holds it (see `run_with`).
        return Ok(Action::await_change());
    }
    match ctx.own_writes.freshness(&cr) {
        crate::own_writes::Freshness::Stale => {
            // Its watch event is on the way (a spec, metadata or finalizer write reconciles it again; a
            // status write only updates the store): look again soon.
            // An armed resource stays armed: the look after its own status write catches up finds it
            // `Ours` and settled.
            tracing::debug!(parent: &span, "the cache has not caught up with Tether's own write yet");
            return Ok(Action::requeue(ctx.config.converge_interval));
        }
        // The object is what Tether's last write made (the watch event of its own finalizer write, say),
        // and the reconcile that wrote it left the resource settled and armed: nothing asks for another
        // look, and its drift checks go on.
        crate::own_writes::Freshness::Ours
            if ctx.drift.is_armed(&reference)
                && !ctx.memory.read(&reference, |entry| entry.is_some_and(|e| e.woken)) =>
        {
            tracing::debug!(parent: &span, "Tether's own write: settled, nothing to do");
            return Ok(Action::await_change());
        }
        _ => {}
    }
    // This reconcile decides when the next look comes: a drift check armed earlier must not add one.
    ctx.drift.disarm(&reference);
    let lane = ctx.lanes.lane(&cr, settled(cr.as_ref()));
    span.record("lane", lane.as_str());
    if let Some(metrics) = &ctx.config.metrics {
        metrics.queued(&ctx.controller, reference.to_string());
    }
    let _worker = ctx.lanes.enter(lane, &connection_key(cr.as_ref())).await;
    ctx.lanes.reconciled(&cr);
    let timer = ctx.config.metrics.as_ref().map(|m| m.start(&ctx.controller, reference.to_string()));
    // After a failure the backoff spaces the retries: one attempt per call, not the HTTP layer's four, so
    // an outage costs one request per resource per backoff step.
    let failed_before = ctx.memory.read(&reference, |entry| entry.is_some_and(|e| e.failures > 0));
    let attempts = if failed_before { 1 } else { u32::MAX };
    // Boxed, here and below: a reconcile waiting for a worker of its lane holds only a pointer to what it
    // will run, not the whole of it (with thousands of resources due at once, most of them wait).
    let work = tether_platforms::http::with_attempts(attempts, Box::pin(step::<A>(&cr, &ctx, lane)));
    let result = bounded(work, ctx.config.reconcile_timeout).instrument(span).await;
    let result = match result {
        Ok(Step::Done(requeue)) => Ok(requeue),
        Ok(Step::Report(outcome, external_id, at_provider, requeue)) => {
            Box::pin(write_status::<A>(&cr, &ctx, &outcome, external_id, at_provider)).await.map(|()| requeue)
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(requeue) => {
            ctx.memory.update_existing(&reference, |entry| entry.failures = 0);
            if let Some(timer) = timer {
                timer.finish(Ok(requeue));
            }
            Ok(requeue.map_or_else(Action::await_change, Action::requeue))
        }
        Err(error) => {
            // A step that armed the drift checks and then failed (its status write, say) is retried in
            // full: an armed resource's next look could otherwise skip it as Tether's own write.
            ctx.drift.disarm(&reference);
            Box::pin(report_failure::<A>(&cr, &ctx, &error)).await;
            let retry = retry_delay::<A>(&cr, &error, &ctx);
            ctx.memory.update(&reference, |entry| entry.retry = Some(retry));
            if let Some(timer) = timer {
                timer.finish(Err((error.reason(), retry)));
            }
            Err(error)
        }
    }
}

/// The pools a resource's reconciles take their workers from: those of its Connection or ClusterConnection.
fn connection_key<K: ManagedResource>(cr: &K) -> String {
    let reference = cr.connection_ref();
    match reference.kind.unwrap_or_default() {
        tether_api::ConnectionKind::Connection => {
            format!("{}/{}", cr.namespace().unwrap_or_default(), reference.name)
        }
        tether_api::ConnectionKind::ClusterConnection => format!("cluster/{}", reference.name),
    }
}

/// Runs one reconcile's step under the time bound, with a panic caught as [`Error::Internal`]: one
/// resource (a hostile value, a bug) never stops the process or holds a worker for ever.
async fn bounded<T>(step: impl Future<Output = Result<T>>, limit: Duration) -> Result<T> {
    use futures::FutureExt;
    let caught = std::panic::AssertUnwindSafe(step).catch_unwind();
    match tokio::time::timeout(limit, caught).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            tracing::error!(panic = %what, "the reconcile panicked; reported on the resource and retried");
            Err(Error::Internal(what.chars().take(500).collect()))
        }
        Err(_) => Err(Error::Timeout(limit)),
    }
}

/// Whether the status says this generation was reconciled and nothing is converging. A retry after a
/// failure counts as settled: it takes the drift lane.
fn settled<K: ManagedResource>(cr: &K) -> bool {
    cr.managed_status().is_some_and(|s| {
        s.observed_generation == cr.meta().generation
            && !s
                .conditions
                .iter()
                .any(|c| c.type_ == status::types::RECONCILING && c.status == tether_api::ConditionStatus::True)
    })
}

/// Records a failure in the resource's status (and an Event when the reason is new).
async fn report_failure<A: Adapter>(cr: &A::Resource, ctx: &Context<A>, error: &Error) {
    tracing::warn!(%error, reason = error.reason(), "reconcile failed");
    let synced_before = cr
        .managed_status()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == status::types::SYNCED))
        .map(|c| c.reason.clone());
    if synced_before.as_deref() != Some(error.reason()) {
        ctx.event(cr, true, error.reason(), "Reconcile", error.to_string()).await;
    }
    let outcome = plan::failed(cr, error);
    if !matches!(error, Error::Kube(_))
        && let Err(write) = write_status::<A>(cr, ctx, &outcome, None, None).await
    {
        tracing::warn!(error = %write, "could not record the failure in status");
    }
}

/// Looks again when [`reconcile`] decided on its failure.
pub fn error_policy<A: Adapter>(cr: Arc<A::Resource>, error: &Error, ctx: Arc<Context<A>>) -> Action {
    let reference = crate::memory::key(cr.as_ref());
    let decided = ctx.memory.update_existing(&reference, |entry| entry.retry.take()).flatten();
    Action::requeue(decided.unwrap_or_else(|| retry_delay::<A>(&cr, error, &ctx)))
}

/// When to look again after a failure: at the platform's Retry-After when throttled, at the drift period
/// when only a spec change can help, else after a per-object exponential backoff (reset by a success).
fn retry_delay<A: Adapter>(cr: &A::Resource, error: &Error, ctx: &Context<A>) -> Duration {
    if let Error::Platform { source: PlatformError::Throttled { retry_after: Some(wait) }, .. } = error {
        // Honoured, up to an hour: a platform cannot put a resource to sleep for days.
        return (*wait).min(Duration::from_secs(3600));
    }
    if error.is_terminal() {
        return jitter(poll_interval(cr, &ctx.config));
    }
    let count = ctx.memory.update(&crate::memory::key(cr), |entry| {
        entry.failures = entry.failures.saturating_add(1);
        entry.failures
    });
    jitter(ctx.config.backoff.saturating_mul(1 << (count - 1).min(16)).min(ctx.config.max_backoff))
}

/// For a platform whose create and update answer with the object as it now is
/// ([`Adapter::WRITES_ANSWER_THE_OBJECT`]), or a write the adapter says the platform completed at once
/// ([`Request::done_at_once`]): observes once more (from that answer, or with a read), and when the object
/// is then up to date returns the loop's next step for it (a report), so a write the platform completes at
/// once costs one status write instead of two and no second reconcile. `None`: report the write as in
/// progress (the next look comes at the converge interval).
async fn settled_at_once<A: Adapter>(
    client: &A::Client,
    cr: &Request<'_, A::Resource>,
    ctx: &Context<A>,
) -> Result<Option<Next<<A::Resource as ManagedResource>::Observation>>> {
    if !A::WRITES_ANSWER_THE_OBJECT && !cr.is_done_at_once() {
        return Ok(None);
    }
    let Ok(observed @ Observation::Present { up_to_date: true, .. }) = A::observe(client, cr).await else {
        return Ok(None);
    };
    if let (Observation::Present { outputs, .. }, Some(secret)) = (&observed, cr.outputs_secret()) {
        write_outputs(cr, ctx, secret, outputs.clone()).await?;
    }
    Ok(Some(plan::after_observe(&**cr, observed)))
}

/// When to look again: after this long, or (`None`) only when something changes.
type Requeue = Option<Duration>;

enum Step<O> {
    /// Nothing to record (deleted, or the finalizer just released).
    Done(Requeue),
    /// Record this outcome, then requeue.
    Report(Outcome, Option<String>, Option<O>, Requeue),
}

type StepResult<A> = Result<Step<<<A as Adapter>::Resource as ManagedResource>::Observation>>;

async fn step<A: Adapter>(cr: &A::Resource, ctx: &Context<A>, lane: Lane) -> StepResult<A> {
    let pace = |pace: Pace| match pace {
        Pace::Converge => Some(ctx.config.converge_interval),
        Pace::Settled => Some(jitter(poll_interval(cr, &ctx.config))),
    };
    match plan::start(cr) {
        Start::Delete(deletion) => return ensure_absent::<A>(cr, ctx, deletion).await,
        Start::Paused(outcome) => return Ok(Step::Report(outcome, None, None, pace(Pace::Settled))),
        Start::Refuse(why) => return Err(Error::InvalidSpec(why)),
        Start::Observe => {}
    }
    let client = ctx.platform_client(cr).await?;
    if !cr.observe_only() {
        ensure_finalizer(cr, ctx).await?;
    }
    let mut request = ctx.request(cr).await?;
    if lane == Lane::Drift {
        // A drift check may answer from a listing (or an Iguazio tenant's manifest) taken up to half a drift
        // period ago: one listing per account serves a period's drift checks, and drift is still seen
        // within one and a half periods.
        request.shared_read_age = poll_interval(cr, &ctx.config) / 2;
    }
    let cr = &request;
    let observed = A::observe(&client, cr).await.map_err(Error::platform("observe"))?;
    for (reason, note) in cr.take_warnings() {
        ctx.event(cr, true, reason, "Observe", note).await;
    }
    if let (Observation::Present { outputs, .. }, Some(secret)) = (&observed, cr.outputs_secret()) {
        write_outputs(cr, ctx, secret, outputs.clone()).await?;
    }
    // Settled, with a probe from the last observe: the drift checks run the probe, and this reconcile only
    // if it sees a change (see `crate::drift`).
    let then = |next: Pace| match (next, cr.take_probe::<A::Client>()) {
        (Pace::Settled, Some(probe)) => {
            let outputs = cr.outputs_secret().map(|name| {
                let stored = cr.outputs_secret.lock().unwrap_or_else(|p| p.into_inner());
                let version = stored.as_ref().and_then(|s| s.metadata.resource_version.clone());
                (cr.namespace().unwrap_or_default(), name.to_string(), version)
            });
            let period = poll_interval(&**cr, &ctx.config);
            ctx.drift.arm(
                crate::memory::key(&**cr),
                crate::drift::Arming { probe, client: client.clone(), period, outputs },
            );
            None
        }
        _ => pace(next),
    };
    Ok(match plan::after_observe(&**cr, observed) {
        Next::Create => {
            // What the observe before a write said to probe is moot: the observe after it says anew.
            drop(cr.take_probe::<A::Client>());
            let id = A::create(&client, cr).await.map_err(Error::platform("create"));
            publish_outputs(cr, ctx).await?;
            let id = id?;
            tracing::info!(external_id = %id, "created the remote object");
            ctx.event(cr, false, "Created", "Create", format!("created {id} on {:?}", A::PLATFORM)).await;
            if let Some(Next::Report { outcome, external_id, at_provider, pace: next }) =
                settled_at_once::<A>(&client, cr, ctx).await?
            {
                return Ok(Step::Report(outcome, external_id.or(Some(id)), at_provider, then(next)));
            }
            let (outcome, next) = plan::created();
            Step::Report(outcome, Some(id), None, pace(next))
        }
        Next::Update { external_id, at_provider } => {
            drop(cr.take_probe::<A::Client>());
            let updated = A::update(&client, cr, &external_id).await.map_err(Error::platform("update"));
            publish_outputs(cr, ctx).await?;
            updated?;
            tracing::info!(%external_id, "updated the remote object");
            ctx.event(cr, false, "Updated", "Update", format!("applied the spec to {external_id}")).await;
            if let Some(Next::Report { outcome, external_id: observed, at_provider, pace: next }) =
                settled_at_once::<A>(&client, cr, ctx).await?
            {
                return Ok(Step::Report(outcome, observed.or(Some(external_id)), at_provider, then(next)));
            }
            let (outcome, next) = plan::updated();
            Step::Report(outcome, Some(external_id), Some(at_provider), pace(next))
        }
        Next::Report { outcome, external_id, at_provider, pace: next } => {
            Step::Report(outcome, external_id, at_provider, then(next))
        }
        Next::Refuse(why) => return Err(Error::InvalidSpec(why)),
    })
}

/// Deleting: per deletionPolicy, delete the remote object and wait until it is gone, then release the
/// finalizer.
async fn ensure_absent<A: Adapter>(cr: &A::Resource, ctx: &Context<A>, deletion: plan::Deletion) -> StepResult<A> {
    match deletion {
        plan::Deletion::Done => return Ok(Step::Done(None)),
        plan::Deletion::HoldPaused(outcome) => return Ok(Step::Report(outcome, None, None, None)),
        plan::Deletion::Release => {}
        plan::Deletion::DeleteRemote => {
            let client = ctx.platform_client(cr).await.map_err(|e| match e {
                Error::Connection(why) => Error::Connection(format!(
                    "{why}: the remote object cannot be deleted without it. Restore it, or let the remote object \
                     go with deletionPolicy: Orphan (or by removing the finalizer {FINALIZER})"
                )),
                other => other,
            })?;
            let request = ctx.request(cr).await?;
            let cr = &request;
            match plan::after_delete_observe(A::observe(&client, cr).await).map_err(Error::platform("observe"))? {
                DeleteNext::Delete(external_id) => {
                    let deletion = A::delete(&client, cr, &external_id).await.map_err(Error::platform("delete"))?;
                    if deletion == Deletion::InProgress {
                        let converge = Some(ctx.config.converge_interval);
                        return Ok(Step::Report(plan::deleting(), Some(external_id), None, converge));
                    }
                    tracing::info!(%external_id, "deleted the remote object");
                    ctx.event(cr, false, "Deleted", "Delete", format!("deleted {external_id}")).await;
                }
                DeleteNext::Release(Some(note)) => ctx.event(cr, true, "NothingToDelete", "Delete", note).await,
                DeleteNext::Release(None) => {}
            }
        }
    }
    let remaining: Vec<String> = cr.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
    patch_finalizers(cr, ctx, remaining).await?;
    ctx.forget(&crate::memory::key(cr));
    Ok(Step::Done(None))
}

async fn ensure_finalizer<A: Adapter>(cr: &A::Resource, ctx: &Context<A>) -> Result<()> {
    if cr.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(());
    }
    let mut finalizers = cr.finalizers().to_vec();
    finalizers.push(FINALIZER.into());
    patch_finalizers(cr, ctx, finalizers).await
}

/// A merge patch of the finalizer list, conditional on the resourceVersion we read: a concurrent change
/// makes it fail with a conflict, and the next reconcile sees the fresh list.
async fn patch_finalizers<K: ManagedResource>(
    cr: &K,
    ctx: &Context<impl Adapter<Resource = K>>,
    finalizers: Vec<String>,
) -> Result<()> {
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let patch = json!({"metadata": {"finalizers": finalizers, "resourceVersion": cr.resource_version()}});
    let written = api.patch(&cr.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
    ctx.own_writes.record(cr, written.resource_version());
    Ok(())
}

/// Adds what the verbs published (values the platform shows once) to the outputs Secret.
async fn publish_outputs<K: ManagedResource>(
    cr: &Request<'_, K>,
    ctx: &Context<impl Adapter<Resource = K>>,
) -> Result<()> {
    let published = cr.take_published();
    match cr.outputs_secret() {
        Some(secret) if !published.is_empty() => write_outputs(cr, ctx, secret, published).await,
        _ => Ok(()),
    }
}

/// Server-side applies the outputs Secret, owned by the resource (so it goes with it), unless it already
/// holds these values and the owner reference. Keys already in the Secret and not in `outputs` are kept as
/// stored, bytes and all: a token's value, shown once by its platform, must survive the observations that
/// cannot see it. The Secret read is the one [`Context::request`] made. A Secret another resource owns is
/// refused with Conflict naming that owner: two writers would take turns and consumers would read the
/// wrong endpoint.
async fn write_outputs<K: ManagedResource>(
    cr: &Request<'_, K>,
    ctx: &Context<impl Adapter<Resource = K>>,
    name: &str,
    outputs: std::collections::BTreeMap<String, String>,
) -> Result<()> {
    use k8s_openapi::ByteString;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let owner = cr.controller_owner_ref(&()).ok_or_else(|| Error::InvalidSpec("resource without a uid".into()))?;
    let mut data: std::collections::BTreeMap<String, ByteString> = Default::default();
    let stored = cr.outputs_secret.lock().unwrap_or_else(|p| p.into_inner()).clone();
    if let Some(existing) = &stored {
        let mut owners = existing.metadata.owner_references.iter().flatten();
        if let Some(other) = owners.find(|o| o.controller == Some(true) && o.uid != owner.uid) {
            return Err(Error::Conflict(format!(
                "Secret {name} (writeOutputsTo) is already filled by {} {}: choose another writeOutputsTo",
                other.kind, other.name
            )));
        }
        let owned = existing.metadata.owner_references.iter().flatten().any(|o| o.uid == owner.uid);
        if !owned
            && existing.metadata.managed_fields.iter().flatten().all(|m| m.manager.as_deref() != Some(FIELD_MANAGER))
        {
            return Err(Error::InvalidSpec(format!(
                "Secret {name} exists and is not Tether's: choose another writeOutputsTo"
            )));
        }
        data = existing.data.clone().unwrap_or_default();
        let unchanged = outputs.iter().all(|(k, v)| data.get(k).is_some_and(|stored| stored.0 == v.as_bytes()));
        if owned && unchanged {
            return Ok(());
        }
    }
    data.extend(outputs.into_iter().map(|(k, v)| (k, ByteString(v.into_bytes()))));
    let secret = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "ownerReferences": [owner]},
        "type": "Opaque",
        "data": data,
    });
    let written = api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&secret)).await?;
    ctx.sources.wrote(&written);
    *cr.outputs_secret.lock().unwrap_or_else(|p| p.into_inner()) = Some(written);
    Ok(())
}

/// Server-side applies the status the outcome leads to, unless it is the status already stored.
async fn write_status<A: Adapter>(
    cr: &A::Resource,
    ctx: &Context<A>,
    outcome: &Outcome,
    external_id: Option<String>,
    at_provider: Option<<A::Resource as ManagedResource>::Observation>,
) -> Result<()> {
    let current = cr.managed_status();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let next = status::next(current, cr.meta().generation, outcome, external_id, at_provider, now);
    if current == Some(&next) {
        return Ok(());
    }
    let api: Api<A::Resource> = Api::namespaced(ctx.client.clone(), &cr.namespace().unwrap_or_default());
    let patch = json!({
        "apiVersion": A::Resource::api_version(&()),
        "kind": A::Resource::kind(&()),
        "status": next,
    });
    let written =
        api.patch_status(&cr.name_any(), &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(&patch)).await?;
    ctx.own_writes.record(cr, written.resource_version());
    Ok(())
}

/// The resource's drift-check period: its annotation when valid, else the configured one.
fn poll_interval<K: ManagedResource>(cr: &K, config: &Config) -> Duration {
    cr.annotations().get(POLL_INTERVAL).and_then(|v| plan::parse_duration(v).ok()).unwrap_or(config.poll_interval)
}

/// ±10 %, so resources created together do not poll together.
pub(crate) fn jitter(period: Duration) -> Duration {
    period.mul_f64(0.9 + 0.2 * fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::parse_duration;

    /// What triggers a reconcile: a spec, annotation, label, finalizer or deletion change does; a status
    /// write (Tether's own after a failure, above all) does not.
    #[test]
    fn a_status_write_does_not_trigger_a_reconcile() {
        use kube::runtime::Predicate as _;
        let trigger = kube::runtime::predicates::generation.combine(changes);
        let service = |patch: serde_json::Value| -> tether_api::UbiService {
            let mut base = json!({"apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
                "metadata": {"name": "s", "namespace": "ns", "generation": 1, "resourceVersion": "1"},
                "spec": {"connectionRef": {"name": "c"}, "project": "p", "name": "s", "deployment": "d", "port": 1}});
            if let (Some(base), Some(patch)) = (base.as_object_mut(), patch.as_object()) {
                for (k, v) in patch {
                    base.insert(k.clone(), v.clone());
                }
            }
            serde_json::from_value(base).unwrap()
        };
        let at_rest = trigger.hash_property(&service(json!({})));
        let meta = |extra: serde_json::Value| {
            let mut meta = json!({"name": "s", "namespace": "ns", "generation": 1, "resourceVersion": "2"});
            for (k, v) in extra.as_object().unwrap() {
                meta[k] = v.clone();
            }
            json!({ "metadata": meta })
        };
        let failed = json!({"metadata": {"name": "s", "namespace": "ns", "generation": 1, "resourceVersion": "2"},
            "status": {"observedGeneration": 1, "conditions": [{"type": "Synced", "status": "False",
                "reason": "Unavailable", "message": "503", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        assert_eq!(trigger.hash_property(&service(failed)), at_rest, "a status write");
        for (what, patch) in [
            ("a spec change", meta(json!({"generation": 2}))),
            ("an annotation", meta(json!({"annotations": {PAUSED: "true"}}))),
            ("a label", meta(json!({"labels": {"team": "a"}}))),
            ("a finalizer", meta(json!({"finalizers": [FINALIZER]}))),
            ("a deletion", meta(json!({"deletionTimestamp": "2026-01-01T00:00:00Z"}))),
        ] {
            assert_ne!(trigger.hash_property(&service(patch)), at_rest, "{what}");
        }
    }

    #[test]
    fn poll_interval_annotations_parse() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        for bad in ["0s", "soon", "", "1d", "-5s", "169h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn huge_poll_intervals_are_refused_not_overflowed() {
        for huge in ["10000000000000000000s", "18446744073709551615s", "999999999999999999m", "99999999999999999999h"] {
            assert!(parse_duration(huge).is_err(), "{huge}");
        }
        // The largest accepted period still jitters and schedules without overflow.
        let longest = parse_duration("168h").unwrap();
        let jittered = jitter(longest);
        assert!(std::time::Instant::now().checked_add(jittered).is_some());
    }

    #[tokio::test]
    async fn a_panicking_step_becomes_an_internal_error_and_a_hanging_one_a_timeout() {
        let panics = bounded::<()>(async { panic!("boom {}", 1) }, Duration::from_secs(1)).await;
        assert!(matches!(&panics, Err(Error::Internal(m)) if m == "boom 1"), "{panics:?}");
        let hangs = bounded::<()>(std::future::pending(), Duration::from_millis(20)).await;
        assert!(matches!(hangs, Err(Error::Timeout(_))), "{hangs:?}");
        assert!(matches!(bounded(async { Ok(7) }, Duration::from_secs(1)).await, Ok(7)));
    }

    /// What each waiting reconcile holds: thousands wait for a worker at once after a restart or a mass
    /// apply, so the future must stay small (the step and the status writes are boxed).
    #[test]
    fn a_reconcile_waiting_for_a_worker_is_small() {
        use crate::adapters::{apolo::Apolo, civis::Civis, iguazio::Iguazio, peak::Peak, ubiops::UbiOps};
        fn size<A: Adapter, F: Future>(_: fn(Arc<A::Resource>, Arc<Context<A>>) -> F) -> usize {
            std::mem::size_of::<F>()
        }
        let sizes = [
            ("AppService", size::<Iguazio, _>(reconcile::<Iguazio>)),
            ("CivisService", size::<Civis, _>(reconcile::<Civis>)),
            ("ApoloApp", size::<Apolo, _>(reconcile::<Apolo>)),
            ("UbiService", size::<UbiOps, _>(reconcile::<UbiOps>)),
            ("PeakWebapp", size::<Peak, _>(reconcile::<Peak>)),
        ];
        for (kind, bytes) in sizes {
            assert!(bytes < 4096, "{kind}: a waiting reconcile holds {bytes} bytes");
        }
    }

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let d = jitter(Duration::from_secs(100));
            assert!(d >= Duration::from_secs(90) && d <= Duration::from_secs(110), "{d:?}");
        }
    }
}
