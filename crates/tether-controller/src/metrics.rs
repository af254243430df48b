//! Reconcile metrics with controller-runtime's names and labels, so the dashboards and alerts written for
//! Go operators work unchanged (`controller` is the kind, e.g. `ubiservice`):
//!
//! - `controller_runtime_reconcile_total{controller, result}`: result `success`, `requeue_after` or `error`;
//! - `controller_runtime_reconcile_errors_total{controller}`;
//! - `controller_runtime_reconcile_time_seconds{controller}` (histogram);
//! - `controller_runtime_active_workers{controller}`: reconciles running now;
//! - `workqueue_depth{name}`: resources whose next reconcile is due but has not started: waiting for a
//!   worker of their lane, or past the due time Tether asked for (kube-runtime keeps its queue private);
//! - `tether_reconcile_failures_total{controller, reason}`: failures by condition reason;
//! - `tether_drift_checks_total{controller, result}`: drift checks of settled resources that ran their
//!   probe instead of a reconcile ([`crate::drift`]): result `unchanged`, `woken` (the reconcile runs) or
//!   `dropped`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    controller: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ControllerLabels {
    controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    controller: String,
    reason: &'static str,
}

/// The reconcile metrics of every controller of the process.
#[derive(Debug)]
pub struct Metrics {
    reconciles: Family<ResultLabels, Counter>,
    errors: Family<ControllerLabels, Counter>,
    time: Family<ControllerLabels, Histogram>,
    active: Family<ControllerLabels, Gauge>,
    depth: Family<QueueLabels, Gauge>,
    failures: Family<ReasonLabels, Counter>,
    drift_checks: Family<ResultLabels, Counter>,
    /// Per controller: when each resource's next reconcile is due.
    due: Mutex<HashMap<String, HashMap<String, Instant>>>,
}

impl Metrics {
    /// Creates the metrics and registers them into `registry`.
    pub fn register(registry: &mut Registry) -> Arc<Self> {
        let metrics = Self {
            reconciles: Family::default(),
            errors: Family::default(),
            time: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.005, 2.0, 14))),
            active: Family::default(),
            depth: Family::default(),
            failures: Family::default(),
            drift_checks: Family::default(),
            due: Mutex::default(),
        };
        registry.register("controller_runtime_reconcile", "Reconciles, by result", metrics.reconciles.clone());
        registry.register("controller_runtime_reconcile_errors", "Reconciles that failed", metrics.errors.clone());
        registry.register("controller_runtime_reconcile_time_seconds", "Time per reconcile", metrics.time.clone());
        registry.register("controller_runtime_active_workers", "Reconciles running now", metrics.active.clone());
        registry.register("workqueue_depth", "Resources whose reconcile is due but not started", metrics.depth.clone());
        registry.register(
            "tether_reconcile_failures",
            "Failed reconciles, by condition reason",
            metrics.failures.clone(),
        );
        registry.register(
            "tether_drift_checks",
            "Drift checks of settled resources answered by their probe, by result",
            metrics.drift_checks.clone(),
        );
        Arc::new(metrics)
    }

    /// A drift check of `controller` ended so.
    pub(crate) fn drift_checked(&self, controller: &str, checked: crate::drift::Checked) {
        let result = match checked {
            crate::drift::Checked::Unchanged => "unchanged",
            crate::drift::Checked::Woken => "woken",
            crate::drift::Checked::Dropped => "dropped",
        };
        self.drift_checks.get_or_create(&ResultLabels { controller: controller.to_string(), result }).inc();
    }

    /// A reconcile of `object` starts; the returned guard records its end.
    pub(crate) fn start(self: &Arc<Self>, controller: &str, object: String) -> ReconcileTimer {
        let labels = ControllerLabels { controller: controller.to_string() };
        self.active.get_or_create(&labels).inc();
        if let Some(due) = self.due.lock().unwrap_or_else(|p| p.into_inner()).get_mut(controller) {
            due.remove(&object);
        }
        ReconcileTimer { metrics: self.clone(), controller: controller.to_string(), object, started: Instant::now() }
    }

    /// A reconcile of `object` is waiting for a worker.
    pub(crate) fn queued(&self, controller: &str, object: String) {
        let mut due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let first = !due.contains_key(controller);
        due.entry(controller.to_string()).or_default().insert(object, Instant::now());
        drop(due);
        if first {
            // The controller's gauge exists from its first reconcile on; `tick` keeps it current.
            self.refresh_depth(controller);
        }
    }

    /// `object` is gone: nothing of it is due any more.
    pub(crate) fn forget(&self, controller: &str, object: &str) {
        if let Some(due) = self.due.lock().unwrap_or_else(|p| p.into_inner()).get_mut(controller) {
            due.remove(object);
        }
    }

    fn refresh_depth(&self, controller: &str) {
        let now = Instant::now();
        let due = self.due.lock().unwrap_or_else(|p| p.into_inner());
        let waiting = due.get(controller).map_or(0, |d| d.values().filter(|at| **at <= now).count());
        self.depth.get_or_create(&QueueLabels { name: controller.to_string() }).set(waiting as i64);
    }

    /// Brings every `workqueue_depth` up to date: called once a second, not per reconcile, as counting
    /// takes a pass over the kind's resources (a reconcile per resource and period would make that
    /// quadratic).
    pub fn tick(&self) {
        let controllers: Vec<String> = self.due.lock().unwrap_or_else(|p| p.into_inner()).keys().cloned().collect();
        for controller in controllers {
            self.refresh_depth(&controller);
        }
    }
}

/// Records the end of one reconcile.
pub(crate) struct ReconcileTimer {
    metrics: Arc<Metrics>,
    controller: String,
    object: String,
    started: Instant,
}

impl ReconcileTimer {
    /// The reconcile ended: `Ok(requeue)` or the failure's reason and its retry delay.
    pub(crate) fn finish(self, outcome: Result<Option<Duration>, (&'static str, Duration)>) {
        let m = &self.metrics;
        let labels = ControllerLabels { controller: self.controller.clone() };
        m.time.get_or_create(&labels).observe(self.started.elapsed().as_secs_f64());
        m.active.get_or_create(&labels).dec();
        let (result, next) = match outcome {
            Ok(None) => ("success", None),
            Ok(Some(after)) => ("requeue_after", Some(after)),
            Err((reason, after)) => {
                m.errors.get_or_create(&labels).inc();
                m.failures.get_or_create(&ReasonLabels { controller: self.controller.clone(), reason }).inc();
                ("error", Some(after))
            }
        };
        m.reconciles.get_or_create(&ResultLabels { controller: self.controller.clone(), result }).inc();
        if let Some(after) = next {
            let mut due = m.due.lock().unwrap_or_else(|p| p.into_inner());
            due.entry(self.controller.clone())
                .or_default()
                .insert(self.object, Instant::now().checked_add(after).unwrap_or_else(far_future));
        }
    }
}

/// A due time as far ahead as the clock allows (a requeue delay no clock can add stays "not yet").
fn far_future() -> Instant {
    let now = Instant::now();
    (0..64).rev().find_map(|shift| now.checked_add(Duration::from_secs(1 << shift))).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::encoding::text::encode;

    fn depth(registry: &Registry) -> String {
        let mut text = String::new();
        encode(&mut text, registry).unwrap();
        text.lines().find(|l| l.starts_with("workqueue_depth{")).unwrap_or_default().to_string()
    }

    #[test]
    fn the_depth_counts_waiting_and_overdue_resources_until_they_start_or_are_gone() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.queued("ubiservice", "team/a".into());
        metrics.queued("ubiservice", "team/b".into());
        metrics.tick();
        assert_eq!(depth(&registry), r#"workqueue_depth{name="ubiservice"} 2"#);
        metrics.start("ubiservice", "team/a".into()).finish(Ok(Some(Duration::ZERO)));
        metrics.tick();
        assert_eq!(depth(&registry), r#"workqueue_depth{name="ubiservice"} 2"#, "a is due again at once");
        metrics.start("ubiservice", "team/a".into()).finish(Ok(Some(Duration::from_secs(600))));
        metrics.tick();
        assert_eq!(depth(&registry), r#"workqueue_depth{name="ubiservice"} 1"#, "a is due in ten minutes");
        metrics.forget("ubiservice", "team/b");
        metrics.tick();
        assert_eq!(depth(&registry), r#"workqueue_depth{name="ubiservice"} 0"#, "b was deleted while waiting");
    }
}
