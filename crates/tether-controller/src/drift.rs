//! Drift checks of settled resources without their reconcile.
//!
//! A settled resource is looked at once per drift period. Running its whole reconcile for that (a task
//! woken by the runtime's queue, its Connection and Secrets resolved, a request built, observe, the plan,
//! a status compared) costs more than reading what it depends on: at steady state nearly every drift check
//! finds nothing changed. So when a reconcile leaves a resource settled and its `observe` said what to read
//! again ([`Probe`]: a listing entry, a status), the resource is *armed* here instead of requeued. One task
//! per kind runs each armed resource's probe at its drift period (jittered), from the listings the drift
//! checks share, and wakes the whole reconcile only when the probe sees a change, fails, or the resource's
//! outputs Secret is no longer the version the reconcile left. Every [`FULL_CHECK_EVERY`]th drift check is
//! a whole reconcile anyway, so nothing a probe overlooks stays unseen for long.
//!
//! The resource's own inputs are not the probe's business: its spec, annotations and deletion, and the
//! Connection and Secrets it reads, wake its reconcile through their watches as before. Any reconcile
//! disarms the resource first; only a reconcile that ends settled with a probe arms it again.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;
use kube::Resource as _;
use kube::runtime::reflector::ObjectRef;
use tokio::time::Instant;

use crate::adapter::{Adapter, Probe};
use crate::sources::Sources;

/// Every this many drift checks of a resource, the whole reconcile runs whatever the probe says.
pub const FULL_CHECK_EVERY: u32 = 10;

/// Probes run at once per kind (the HTTP layer keeps each account's request rate apart).
const PROBES_AT_ONCE: usize = 64;

/// How often the task looks for due drift checks.
const TICK: Duration = Duration::from_secs(1);

type Reference<A> = ObjectRef<<A as Adapter>::Resource>;

/// The armed resources of one kind and when each one's drift check is due.
pub(crate) struct Drift<A: Adapter> {
    state: Mutex<State<A>>,
    wake: mpsc::UnboundedSender<Reference<A>>,
    woken: Mutex<Option<mpsc::UnboundedReceiver<Reference<A>>>>,
}

struct State<A: Adapter> {
    armed: HashMap<Reference<A>, Armed<A>>,
    /// Due time (and an arming number, to keep keys apart) → resource.
    due: BTreeMap<(Instant, u64), Reference<A>>,
    next: u64,
}

/// What a drift check of one resource needs.
struct Armed<A: Adapter> {
    key: (Instant, u64),
    probe: Arc<dyn Probe<A::Client>>,
    client: Arc<A::Client>,
    period: Duration,
    /// The outputs Secret (namespace, name) and the resourceVersion the reconcile left it at.
    outputs: Option<(String, String, Option<String>)>,
    /// Drift checks answered by the probe alone since the last whole reconcile.
    checks: u32,
}

/// What the arming reconcile leaves for the drift checks.
pub(crate) struct Arming<A: Adapter> {
    pub probe: Box<dyn Probe<A::Client>>,
    pub client: Arc<A::Client>,
    /// The resource's drift period.
    pub period: Duration,
    /// The outputs Secret (namespace, name) and its resourceVersion as the reconcile left it.
    pub outputs: Option<(String, String, Option<String>)>,
}

/// How a drift check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checked {
    /// The probe saw nothing changed: the resource stays armed.
    Unchanged,
    /// The whole reconcile was woken (a change, a failure, the outputs Secret, or its turn).
    Woken,
    /// The resource was disarmed meanwhile, or belongs to a shard this process no longer holds.
    Dropped,
}

impl<A: Adapter> Default for Drift<A> {
    fn default() -> Self {
        let (wake, woken) = mpsc::unbounded();
        Self {
            state: Mutex::new(State { armed: HashMap::new(), due: BTreeMap::new(), next: 0 }),
            wake,
            woken: Mutex::new(Some(woken)),
        }
    }
}

impl<A: Adapter> Drift<A> {
    fn lock(&self) -> MutexGuard<'_, State<A>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The resources whose whole reconcile a drift check woke: taken once, by the controller.
    pub fn woken(&self) -> impl futures::Stream<Item = Reference<A>> + Send + 'static {
        let taken = self.woken.lock().unwrap_or_else(|p| p.into_inner()).take();
        match taken {
            Some(woken) => woken.left_stream(),
            None => futures::stream::empty().right_stream(),
        }
    }

    /// Arms `reference`: its next drift check runs the probe at its (jittered) period from now.
    pub fn arm(&self, reference: Reference<A>, arming: Arming<A>) {
        let mut state = self.lock();
        let key = (Instant::now() + crate::reconciler::jitter(arming.period), state.next);
        state.next += 1;
        let armed = Armed {
            key,
            probe: Arc::from(arming.probe),
            client: arming.client,
            period: arming.period,
            outputs: arming.outputs,
            checks: 0,
        };
        if let Some(before) = state.armed.insert(reference.clone(), armed) {
            state.due.remove(&before.key);
        }
        state.due.insert(key, reference);
    }

    /// Disarms `reference` (a reconcile of it begins, or it is gone); returns whether it was armed.
    pub fn disarm(&self, reference: &Reference<A>) -> bool {
        let mut state = self.lock();
        let Some(armed) = state.armed.remove(reference) else { return false };
        state.due.remove(&armed.key);
        true
    }

    /// Whether `reference` is armed.
    pub fn is_armed(&self, reference: &Reference<A>) -> bool {
        self.lock().armed.contains_key(reference)
    }

    /// How many resources are armed.
    #[cfg(test)]
    pub fn armed(&self) -> usize {
        self.lock().armed.len()
    }

    /// Runs the drift checks as they come due, until the controller stops listening. Up to
    /// [`PROBES_AT_ONCE`] run at once; a slow one holds only its own place.
    pub async fn run(self: Arc<Self>, sources: Arc<Sources>, config: crate::context::Config) {
        let controller = A::Resource::kind(&()).to_lowercase();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut running = futures::stream::FuturesUnordered::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if self.wake.is_closed() {
                        return;
                    }
                    let room = PROBES_AT_ONCE.saturating_sub(running.len());
                    for reference in self.take_due(Instant::now(), room) {
                        let (drift, config) = (&self, &config);
                        let watched = |namespace: &str, name: &str| sources.watched_version(namespace, name);
                        running.push(async move { drift.check(&reference, &watched, config).await });
                    }
                }
                Some(checked) = running.next(), if !running.is_empty() => {
                    if let Some(metrics) = &config.metrics {
                        metrics.drift_checked(&controller, checked);
                    }
                }
            }
        }
    }

    /// Up to `most` resources whose drift check is due by `now`, soonest first, taken off the due list
    /// (they stay armed).
    fn take_due(&self, now: Instant, most: usize) -> Vec<Reference<A>> {
        let mut state = self.lock();
        let mut due = Vec::new();
        while due.len() < most
            && let Some(entry) = state.due.first_entry()
            && entry.key().0 <= now
        {
            due.push(entry.remove());
        }
        due
    }

    /// One drift check of `reference`; `watched` tells a Secret's resourceVersion as its watch saw it
    /// ([`Sources::watched_version`]).
    async fn check(
        &self,
        reference: &Reference<A>,
        watched: &(dyn Fn(&str, &str) -> Option<Option<String>> + Sync),
        config: &crate::context::Config,
    ) -> Checked {
        let held = config
            .shards
            .as_ref()
            .is_none_or(|shards| shards.holds(reference.namespace.as_deref().unwrap_or_default(), &reference.name));
        let found = {
            let state = self.lock();
            state
                .armed
                .get(reference)
                .map(|a| (a.key, a.probe.clone(), a.client.clone(), a.period, a.outputs.clone(), a.checks))
        };
        let Some((key, probe, client, period, outputs, checks)) = found.filter(|_| held) else {
            self.disarm(reference);
            return Checked::Dropped;
        };
        let outputs_moved = outputs
            .is_some_and(|(namespace, name, version)| watched(&namespace, &name).is_none_or(|seen| seen != version));
        let unchanged = !outputs_moved
            && checks + 1 < FULL_CHECK_EVERY
            && matches!(
                tokio::time::timeout(config.reconcile_timeout, probe.unchanged(&client, period / 2)).await,
                Ok(Ok(true))
            );
        let mut state = self.lock();
        // Disarmed, or armed again by a reconcile, while the probe ran: that reconcile decides.
        if state.armed.get(reference).is_none_or(|a| a.key != key) {
            return Checked::Dropped;
        }
        if unchanged {
            let key = (Instant::now() + crate::reconciler::jitter(period), state.next);
            state.next += 1;
            let armed = state.armed.get_mut(reference).expect("looked up under the same lock");
            armed.key = key;
            armed.checks += 1;
            state.due.insert(key, reference.clone());
            return Checked::Unchanged;
        }
        state.armed.remove(reference);
        drop(state);
        tracing::debug!(kind = %A::Resource::kind(&()), resource = %reference, "a drift check saw a change");
        let _ = self.wake.unbounded_send(reference.clone());
        Checked::Woken
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use futures::future::BoxFuture;
    use tether_platforms::Error as PlatformError;
    use tether_platforms::peak::Client;

    use super::*;
    use crate::adapters::peak::Peak;

    /// A probe whose answers the test sets: unchanged, changed, or failing; it counts its runs.
    #[derive(Clone, Default)]
    struct Scripted(Arc<(AtomicU32, AtomicU32)>);

    const UNCHANGED: u32 = 0;
    const CHANGED: u32 = 1;
    const FAILS: u32 = 2;

    impl Scripted {
        fn answer(&self, answer: u32) {
            self.0.0.store(answer, Ordering::SeqCst);
        }
        fn runs(&self) -> u32 {
            self.0.1.load(Ordering::SeqCst)
        }
    }

    impl Probe<Client> for Scripted {
        fn unchanged<'a>(&'a self, _: &'a Client, _: Duration) -> BoxFuture<'a, Result<bool, PlatformError>> {
            self.0.1.fetch_add(1, Ordering::SeqCst);
            let answer = self.0.0.load(Ordering::SeqCst);
            Box::pin(async move {
                match answer {
                    UNCHANGED => Ok(true),
                    CHANGED => Ok(false),
                    _ => Err(PlatformError::Transient("down".into())),
                }
            })
        }
    }

    fn client() -> Arc<Client> {
        let config = tether_platforms::http::HttpConfig::new("http://127.0.0.1:9/".parse().unwrap());
        Arc::new(Client::new(config, &tether_platforms::Secret::new("key")).unwrap())
    }

    const PERIOD: Duration = Duration::from_secs(60);

    fn arming(probe: &Scripted, outputs: Option<&str>) -> Arming<Peak> {
        Arming {
            probe: Box::new(probe.clone()),
            client: client(),
            period: PERIOD,
            outputs: outputs.map(|v| ("ns".into(), "out".into(), Some(v.into()))),
        }
    }

    fn resource(name: &str) -> Reference<Peak> {
        ObjectRef::new(name).within("ns")
    }

    /// The drift checks due after `elapsed`, as the task runs them; the outputs Secret is at `version`.
    async fn checks_after(drift: &Drift<Peak>, elapsed: Duration, version: &str) -> Vec<(String, Checked)> {
        tokio::time::advance(elapsed).await;
        let config = crate::context::Config::default();
        let watched = |_: &str, _: &str| Some(Some(version.to_string()));
        let mut checked = Vec::new();
        for reference in drift.take_due(Instant::now(), usize::MAX) {
            checked.push((reference.name.clone(), drift.check(&reference, &watched, &config).await));
        }
        checked
    }

    #[tokio::test(start_paused = true)]
    async fn a_drift_check_runs_the_probe_at_the_period_and_wakes_the_reconcile_only_for_a_change() {
        let drift = Drift::<Peak>::default();
        let mut woken = drift.woken();
        let (a, b) = (Scripted::default(), Scripted::default());
        drift.arm(resource("a"), arming(&a, Some("1")));
        drift.arm(resource("b"), arming(&b, Some("1")));
        assert!(checks_after(&drift, PERIOD / 2, "1").await.is_empty(), "not due before the (jittered) period");
        let checked = checks_after(&drift, PERIOD * 6 / 10, "1").await;
        assert_eq!(checked.len(), 2, "both due within the period ±10 %");
        assert!(checked.iter().all(|(_, c)| *c == Checked::Unchanged), "{checked:?}");
        assert_eq!((a.runs(), b.runs()), (1, 1));
        assert_eq!(drift.armed(), 2, "still armed");

        b.answer(CHANGED);
        let mut checked = checks_after(&drift, PERIOD * 12 / 10, "1").await;
        checked.sort_by(|x, y| x.0.cmp(&y.0));
        assert_eq!(checked, vec![("a".into(), Checked::Unchanged), ("b".into(), Checked::Woken)]);
        assert_eq!(woken.next().await, Some(resource("b")), "the change wakes b's reconcile");
        assert_eq!(drift.armed(), 1, "b is disarmed until its reconcile arms it again");

        a.answer(FAILS);
        let checked = checks_after(&drift, PERIOD * 12 / 10, "1").await;
        assert_eq!(checked, vec![("a".into(), Checked::Woken)], "a failing probe: the reconcile reports it");
        assert_eq!(woken.next().await, Some(resource("a")));
        assert_eq!(drift.armed(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_outputs_secret_moving_or_the_nth_check_runs_the_whole_reconcile() {
        let drift = Drift::<Peak>::default();
        let mut woken = drift.woken();
        let probe = Scripted::default();
        drift.arm(resource("a"), arming(&probe, Some("1")));
        let checked = checks_after(&drift, PERIOD * 12 / 10, "2").await;
        assert_eq!(checked, vec![("a".into(), Checked::Woken)], "someone changed or deleted the outputs Secret");
        assert_eq!(probe.runs(), 0, "the probe is not asked");
        assert_eq!(woken.next().await, Some(resource("a")));

        drift.arm(resource("a"), arming(&probe, None));
        for check in 1..FULL_CHECK_EVERY {
            let checked = checks_after(&drift, PERIOD * 12 / 10, "2").await;
            assert_eq!(checked, vec![("a".into(), Checked::Unchanged)], "check {check}");
        }
        let checked = checks_after(&drift, PERIOD * 12 / 10, "2").await;
        assert_eq!(checked, vec![("a".into(), Checked::Woken)], "every {FULL_CHECK_EVERY}th check is whole");
        assert_eq!(probe.runs(), FULL_CHECK_EVERY - 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disarmed_or_rearmed_resource_is_left_to_its_reconcile() {
        let drift = Drift::<Peak>::default();
        let probe = Scripted::default();
        probe.answer(CHANGED);
        drift.arm(resource("a"), arming(&probe, None));
        assert!(drift.disarm(&resource("a")));
        assert!(!drift.disarm(&resource("a")), "once");
        assert!(checks_after(&drift, PERIOD * 2, "1").await.is_empty(), "a reconcile began: no drift check");
        drift.arm(resource("a"), arming(&probe, None));
        drift.arm(resource("a"), arming(&probe, None));
        let checked = checks_after(&drift, PERIOD * 12 / 10, "1").await;
        assert_eq!(checked, vec![("a".into(), Checked::Woken)], "armed twice, checked once");
        // A resource whose reconcile begins while its probe runs: the reconcile decides.
        drift.arm(resource("b"), arming(&probe, None));
        tokio::time::advance(PERIOD * 12 / 10).await;
        let due = drift.take_due(Instant::now(), usize::MAX);
        assert_eq!(due, vec![resource("b")]);
        drift.disarm(&resource("b"));
        let config = crate::context::Config::default();
        let checked = drift.check(&resource("b"), &|_: &str, _: &str| Some(None), &config).await;
        assert_eq!(checked, Checked::Dropped);
        assert_eq!(drift.armed(), 0);
    }
}
