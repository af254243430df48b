//! The status a reconcile leads to, computed purely from what it found and did: conditions keep their
//! lastTransitionTime unless their status flips, and lastSyncTime moves only when something else changed,
//! so a reconcile that changes nothing produces the status already stored (and no write).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tether_api::{Condition, ConditionStatus, ManagedStatus};

/// Condition types.
pub mod types {
    /// The remote object is usable.
    pub const READY: &str = "Ready";
    /// The last reconcile applied the spec.
    pub const SYNCED: &str = "Synced";
    /// kstatus: Tether is still converging.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: Tether gave up until the spec changes.
    pub const STALLED: &str = "Stalled";
}

/// Condition reasons, each a PascalCase word; the error reasons are [`crate::Error::reason`]'s words.
/// docs/conditions.md and deploy/argocd/health.lua list the same words.
pub mod reasons {
    /// The remote object is usable.
    pub const AVAILABLE: &str = "Available";
    /// The remote object is being created.
    pub const CREATING: &str = "Creating";
    /// The remote object is being changed.
    pub const UPDATING: &str = "Updating";
    /// The remote object is being deleted.
    pub const DELETING: &str = "Deleting";
    /// The remote object exists but is not usable.
    pub const UNAVAILABLE: &str = "Unavailable";
    /// ObserveOnly and the remote object does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// The spec was applied.
    pub const RECONCILE_SUCCESS: &str = "ReconcileSuccess";
    /// `tether.dev/paused` stops all remote calls.
    pub const PAUSED: &str = "Paused";

    // Failures. Terminal ones (Stalled=True, a human must act) are marked.
    /// The Connection, ClusterConnection or one of its credential Secrets is missing or not allowed.
    pub const CONNECTION_NOT_FOUND: &str = "ConnectionNotFound";
    /// Terminal: the platform refuses the credentials (401) or their permissions (403).
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// Terminal: the spec cannot be applied as written (refused by the platform, or names something that
    /// does not exist: a template, version, image, Secret, external id).
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// Terminal: the remote object conflicts with another one.
    pub const CONFLICT: &str = "Conflict";
    /// The platform asked to slow down; retried after its Retry-After.
    pub const THROTTLED: &str = "Throttled";
    /// Terminal: the remote object failed on the platform (a failed job, deployment, build or state).
    pub const PLATFORM_ERROR: &str = "PlatformError";
    /// The platform answered something that does not parse; retried with backoff.
    pub const INVALID_RESPONSE: &str = "InvalidResponse";
    /// The Kubernetes API failed; retried with backoff.
    pub const KUBERNETES_ERROR: &str = "KubernetesError";
    /// A reconcile panicked (a bug in Tether), caught and retried with backoff.
    pub const INTERNAL_ERROR: &str = "InternalError";
    /// A reconcile ran past its time bound (a hanging platform); retried with backoff.
    pub const TIMEOUT: &str = "Timeout";
}

/// What a reconcile found and did, in the words the conditions use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Ready: status, reason, message. True means the remote object serves (perhaps an older generation).
    pub ready: (bool, &'static str, String),
    /// Synced: `Ok` when this reconcile went through, else the reason and message.
    pub synced: Result<(), (&'static str, String)>,
    /// Still converging on the platform (creating, updating, waiting for the remote object).
    pub converging: bool,
    /// Tether needs a human (a spec, Secret or platform-side fix): the reason and message of Stalled=True.
    pub stalled: Option<(&'static str, String)>,
    /// This reconcile applied the current generation to the remote object (or, ObserveOnly, observed it).
    pub applied: bool,
}

/// Longest condition message or Event note, in characters: a platform's megabyte of error text must not
/// push the object past the API server's size limit (and lose every condition with it).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// `message` cut to [`MAX_MESSAGE_CHARS`], on a character boundary, marked with "…" when cut.
pub fn bounded_message(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &message[..end]),
        None => message,
    }
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: if status { ConditionStatus::True } else { ConditionStatus::False },
        reason: reason.into(),
        message: bounded_message(message),
        last_transition_time: now.clone(),
        observed_generation: generation,
    }
}

/// The newest generation applied to the remote object. Statuses written before `appliedGeneration`
/// existed say it with Synced=True.
pub fn applied_generation<A>(status: &ManagedStatus<A>) -> Option<i64> {
    status.applied_generation.or_else(|| {
        let synced = status.conditions.iter().find(|c| c.type_ == types::SYNCED)?;
        (synced.status == ConditionStatus::True).then_some(synced.observed_generation).flatten()
    })
}

/// The next status: `current` updated with `outcome`, the remote object's id and observation.
///
/// The rules GitOps tools rely on (docs/gitops.md): `observedGeneration` is the generation this reconcile
/// saw; while that generation is not applied and Tether still retries, `Reconciling=True`; when Tether
/// needs a human, `Stalled=True`; a `Ready=True` kept from an older generation carries that generation as
/// its `observedGeneration`, so `kubectl wait --for=condition=Ready` never returns for an unapplied spec.
pub fn next<A: Clone + PartialEq>(
    current: Option<&ManagedStatus<A>>,
    generation: Option<i64>,
    outcome: &Outcome,
    external_id: Option<String>,
    at_provider: Option<A>,
    now: Time,
) -> ManagedStatus<A> {
    let (ready, ready_reason, ready_message) = outcome.ready.clone();
    let (synced, synced_reason, synced_message) = match &outcome.synced {
        Ok(()) => (true, reasons::RECONCILE_SUCCESS, String::new()),
        Err((reason, message)) => (false, *reason, message.clone()),
    };
    let applied_generation = if outcome.applied { generation } else { current.and_then(applied_generation::<A>) };
    let pending = generation.is_some() && applied_generation < generation;
    let reconciling = outcome.stalled.is_none() && (outcome.converging || pending);
    let (progress_reason, progress_message) = match () {
        _ if !reconciling => (reasons::RECONCILE_SUCCESS, String::new()),
        _ if outcome.converging => (ready_reason, ready_message.clone()),
        _ if !synced => (synced_reason, synced_message.clone()),
        _ => (ready_reason, ready_message.clone()),
    };
    let progress_message = match (pending, generation) {
        (true, Some(g)) if progress_message.is_empty() => format!("generation {g} is not applied yet"),
        (true, Some(g)) => format!("generation {g} is not applied yet: {progress_message}"),
        _ => progress_message,
    };
    let (stalled_reason, stalled_message) =
        outcome.stalled.clone().unwrap_or((reasons::RECONCILE_SUCCESS, String::new()));
    // Ready=True describes the remote object as it serves: of the generation last applied.
    let ready_generation = if ready && pending { applied_generation } else { generation };
    let mut conditions = vec![
        condition(types::READY, ready, ready_reason, ready_message, ready_generation, &now),
        condition(types::SYNCED, synced, synced_reason, synced_message, generation, &now),
        condition(types::RECONCILING, reconciling, progress_reason, progress_message, generation, &now),
        condition(types::STALLED, outcome.stalled.is_some(), stalled_reason, stalled_message, generation, &now),
    ];
    for c in &mut conditions {
        let previous = current.and_then(|s| s.conditions.iter().find(|p| p.type_ == c.type_));
        if let Some(previous) = previous.filter(|p| p.status == c.status) {
            c.last_transition_time = previous.last_transition_time.clone();
        }
    }
    let mut status = ManagedStatus {
        conditions,
        observed_generation: generation,
        applied_generation,
        external_id: external_id.or_else(|| current.and_then(|s| s.external_id.clone())),
        at_provider: at_provider.or_else(|| current.and_then(|s| s.at_provider.clone())),
        last_sync_time: current.and_then(|s| s.last_sync_time.clone()),
    };
    if current != Some(&status) {
        status.last_sync_time = Some(now);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).unwrap())
    }

    fn available() -> Outcome {
        Outcome {
            ready: (true, reasons::AVAILABLE, String::new()),
            synced: Ok(()),
            converging: false,
            stalled: None,
            applied: true,
        }
    }

    fn get(s: &ManagedStatus<String>, t: &str) -> Condition {
        s.conditions.iter().find(|c| c.type_ == t).cloned().unwrap()
    }

    /// A failure as the reconciler reports it: Ready kept, nothing applied.
    fn failed(reason: &'static str, stalled: bool) -> Outcome {
        Outcome {
            ready: (true, reasons::AVAILABLE, String::new()),
            synced: Err((reason, format!("{reason} says so"))),
            converging: false,
            stalled: stalled.then(|| (reason, format!("{reason} says so"))),
            applied: false,
        }
    }

    #[test]
    fn a_megabyte_message_is_cut_to_a_bounded_condition() {
        let huge = "é".repeat(1 << 20);
        let status = next::<String>(None, Some(1), &failed("Unavailable", false), None, None, at(1));
        assert!(status.conditions.iter().all(|c| c.message.chars().count() <= MAX_MESSAGE_CHARS + 1));
        let cut = bounded_message(huge);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(bounded_message("short".into()), "short");
        let outcome = Outcome { synced: Err(("Unavailable", "x".repeat(3 << 20))), ..failed("Unavailable", false) };
        let status = next::<String>(None, Some(1), &outcome, None, None, at(1));
        assert!(serde_json::to_string(&status).unwrap().len() < 16 * 1024, "the whole status stays small");
    }

    #[test]
    fn the_same_outcome_twice_gives_the_same_status_so_nothing_is_written() {
        let first = next::<String>(None, Some(1), &available(), Some("id".into()), Some("ready".into()), at(10));
        let second = next(Some(&first), Some(1), &available(), None, Some("ready".into()), at(20));
        assert_eq!(first, second, "times must not move when nothing changed");
    }

    #[test]
    fn a_flip_moves_only_that_conditions_transition_time_and_the_sync_time() {
        let first = next::<String>(None, Some(1), &available(), Some("id".into()), None, at(10));
        let creating =
            Outcome { ready: (false, reasons::UPDATING, "redeploying".into()), converging: true, ..available() };
        let second = next(Some(&first), Some(2), &creating, None, None, at(20));
        assert_eq!(get(&second, types::READY).last_transition_time, at(20));
        assert_eq!(get(&second, types::SYNCED).last_transition_time, at(10));
        assert_eq!(get(&second, types::RECONCILING).status, ConditionStatus::True);
        assert_eq!(second.last_sync_time, Some(at(20)));
        assert!(second.conditions.iter().all(|c| c.observed_generation == Some(2)));
        assert_eq!(second.external_id.as_deref(), Some("id"), "the id stays once known");
    }

    #[test]
    fn a_terminal_failure_is_stalled_with_the_failure_reason() {
        let outcome = Outcome {
            ready: (false, reasons::UNAVAILABLE, String::new()),
            synced: Err(("InvalidSpec", "deployment 'x' not found".into())),
            converging: false,
            stalled: Some(("InvalidSpec", "deployment 'x' not found".into())),
            applied: false,
        };
        let status = next::<String>(None, Some(3), &outcome, None, None, at(5));
        let stalled = get(&status, types::STALLED);
        assert_eq!((stalled.status, stalled.reason.as_str()), (ConditionStatus::True, "InvalidSpec"));
        assert_eq!(stalled.message, "deployment 'x' not found");
        assert_eq!(get(&status, types::RECONCILING).status, ConditionStatus::False, "stalled is not reconciling");
    }

    #[test]
    fn an_edit_that_fails_to_apply_keeps_ready_at_the_old_generation_and_reconciles() {
        let ready = next::<String>(None, Some(1), &available(), Some("id".into()), None, at(10));
        let retrying = next(Some(&ready), Some(2), &failed("Unavailable", false), None, None, at(20));
        let ready_condition = get(&retrying, types::READY);
        assert_eq!(ready_condition.status, ConditionStatus::True, "the old generation still serves");
        assert_eq!(ready_condition.observed_generation, Some(1), "kubectl wait must not see generation 2 Ready");
        assert_eq!(retrying.observed_generation, Some(2));
        assert_eq!(retrying.applied_generation, Some(1));
        let reconciling = get(&retrying, types::RECONCILING);
        assert_eq!((reconciling.status, reconciling.reason.as_str()), (ConditionStatus::True, "Unavailable"));
        assert!(reconciling.message.starts_with("generation 2 is not applied yet"), "{}", reconciling.message);

        let stalled = next(Some(&ready), Some(2), &failed("Unauthorized", true), None, None, at(20));
        assert_eq!(get(&stalled, types::STALLED).status, ConditionStatus::True);
        assert_eq!(get(&stalled, types::RECONCILING).status, ConditionStatus::False);
        assert_eq!(get(&stalled, types::READY).observed_generation, Some(1));

        // Applied at last: everything at generation 2 again.
        let done = next(Some(&retrying), Some(2), &available(), None, None, at(30));
        assert!(done.conditions.iter().all(|c| c.observed_generation == Some(2)));
        assert_eq!(get(&done, types::RECONCILING).status, ConditionStatus::False);
        assert_eq!(done.applied_generation, Some(2));
    }

    #[test]
    fn a_transient_failure_of_an_applied_generation_is_not_reconciling() {
        let ready = next::<String>(None, Some(1), &available(), Some("id".into()), None, at(10));
        let blip = next(Some(&ready), Some(1), &failed("Unavailable", false), None, None, at(20));
        assert_eq!(get(&blip, types::RECONCILING).status, ConditionStatus::False);
        assert_eq!(get(&blip, types::SYNCED).status, ConditionStatus::False);
        assert_eq!(blip.applied_generation, Some(1), "a failure never forgets what was applied");
    }

    #[test]
    fn statuses_from_before_applied_generation_read_it_from_synced() {
        let mut old = next::<String>(None, Some(4), &available(), None, None, at(10));
        old.applied_generation = None;
        assert_eq!(applied_generation(&old), Some(4));
        let paused = Outcome {
            ready: (true, reasons::AVAILABLE, String::new()),
            synced: Err((reasons::PAUSED, "paused".into())),
            applied: false,
            ..available()
        };
        let still = next(Some(&old), Some(4), &paused, None, None, at(20));
        assert_eq!(get(&still, types::RECONCILING).status, ConditionStatus::False, "nothing pending");
        let edited = next(Some(&still), Some(5), &paused, None, None, at(30));
        let reconciling = get(&edited, types::RECONCILING);
        assert_eq!((reconciling.status, reconciling.reason.as_str()), (ConditionStatus::True, reasons::PAUSED));
    }
}
