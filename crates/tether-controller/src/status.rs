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

/// Condition reasons that are not error reasons.
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
}

/// What a reconcile found and did, in the words the conditions use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// Ready: status, reason, message.
    pub ready: (bool, &'static str, String),
    /// Synced: `Ok` when the spec was applied, else the reason and message.
    pub synced: Result<(), (&'static str, String)>,
    /// Still converging (creating, updating, waiting for the platform).
    pub converging: bool,
    /// Gave up until the spec changes.
    pub stalled: bool,
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
        message,
        last_transition_time: now.clone(),
        observed_generation: generation,
    }
}

/// The next status: `current` updated with `outcome`, the remote object's id and observation.
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
    let progress_reason = if outcome.converging { ready_reason } else { reasons::RECONCILE_SUCCESS };
    let stalled_reason = if outcome.stalled { synced_reason } else { reasons::RECONCILE_SUCCESS };
    let mut conditions = vec![
        condition(types::READY, ready, ready_reason, ready_message, generation, &now),
        condition(types::SYNCED, synced, synced_reason, synced_message.clone(), generation, &now),
        condition(types::RECONCILING, outcome.converging, progress_reason, String::new(), generation, &now),
        condition(
            types::STALLED,
            outcome.stalled,
            stalled_reason,
            if outcome.stalled { synced_message } else { String::new() },
            generation,
            &now,
        ),
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
        Outcome { ready: (true, reasons::AVAILABLE, String::new()), synced: Ok(()), converging: false, stalled: false }
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
        let get = |s: &ManagedStatus<String>, t: &str| s.conditions.iter().find(|c| c.type_ == t).cloned().unwrap();
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
            stalled: true,
        };
        let status = next::<String>(None, Some(3), &outcome, None, None, at(5));
        let stalled = status.conditions.iter().find(|c| c.type_ == types::STALLED).unwrap();
        assert_eq!((stalled.status, stalled.reason.as_str()), (ConditionStatus::True, "InvalidSpec"));
        assert_eq!(stalled.message, "deployment 'x' not found");
    }
}
