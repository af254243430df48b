//! What the loop decides, apart from doing it: pure functions from the resource and what `observe` found to
//! the next verb or the outcome to record. [`crate::reconciler`] does the I/O around them (Kubernetes
//! writes, platform calls, Events); the table test below drives every branch with a fake adapter, without
//! an API server, as crossplane-runtime's `ExternalClientFns` tests do.

use std::time::Duration;

use kube::ResourceExt;
use tether_platforms::Error as PlatformError;

use crate::adapter::{EXTERNAL_ID, ManagedResource, Observation, Readiness};
use crate::error::Error;
use crate::reconciler::{FINALIZER, PAUSED, POLL_INTERVAL};
use crate::status::{Outcome, reasons, types};

/// When to look again after an outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Pace {
    /// Soon: the platform is still converging (the converge interval).
    Converge,
    /// At the resource's drift period (jittered).
    Settled,
}

/// The first decision, before any remote call.
#[derive(Debug, PartialEq)]
pub(crate) enum Start {
    /// Deleting: what to do about the remote object.
    Delete(Deletion),
    /// Paused: record this, call nothing.
    Paused(Outcome),
    /// The spec (an annotation) cannot be used as written.
    Refuse(String),
    /// Resolve the connection, ensure the finalizer, observe.
    Observe,
}

/// What a deletion does.
#[derive(Debug, PartialEq)]
pub(crate) enum Deletion {
    /// Tether's finalizer is not there: nothing to do.
    Done,
    /// Paused: the finalizer holds and nothing is called until the annotation goes.
    HoldPaused(Outcome),
    /// Orphan or ObserveOnly: release the finalizer without a remote call.
    Release,
    /// Observe, delete what is there, wait until gone, then release.
    DeleteRemote,
}

/// After `observe`, in the normal (not deleting) path.
#[derive(Debug, PartialEq)]
pub(crate) enum Next<O> {
    /// Nothing is there: create it.
    Create,
    /// It differs from the spec: update it.
    Update { external_id: String, at_provider: O },
    /// Record this outcome.
    Report { outcome: Outcome, external_id: Option<String>, at_provider: Option<O>, pace: Pace },
    /// The spec cannot be applied: fail with InvalidSpec.
    Refuse(String),
}

/// After the deletion's `observe`.
#[derive(Debug, PartialEq)]
pub(crate) enum DeleteNext {
    /// Delete the remote object with this id.
    Delete(String),
    /// Nothing to delete; release the finalizer (with a Warning Event's note, if any).
    Release(Option<String>),
}

/// The first decision.
pub(crate) fn start<K: ManagedResource>(cr: &K) -> Start {
    let paused = cr.annotations().get(PAUSED).is_some_and(|v| v == "true");
    if cr.meta().deletion_timestamp.is_some() {
        return Start::Delete(match () {
            _ if !cr.finalizers().iter().any(|f| f == FINALIZER) => Deletion::Done,
            _ if !cr.deletes_remote() || cr.observe_only() => Deletion::Release,
            // Releasing the finalizer without the remote delete would leak the remote object.
            _ if paused => Deletion::HoldPaused(paused_outcome(
                cr,
                format!("deletion waits: annotation {PAUSED} is \"true\", so the remote object is not deleted yet"),
            )),
            _ => Deletion::DeleteRemote,
        });
    }
    if paused {
        // Not applied: an edit made while paused stays pending (Reconciling=True) until unpaused.
        return Start::Paused(paused_outcome(cr, format!("annotation {PAUSED} is \"true\": no remote calls")));
    }
    if let Some(value) = cr.annotations().get(POLL_INTERVAL)
        && let Err(why) = parse_duration(value)
    {
        let shown: String = value.chars().take(40).collect();
        return Start::Refuse(format!("annotation {POLL_INTERVAL}: {shown:?} {why}"));
    }
    Start::Observe
}

fn paused_outcome<K: ManagedResource>(cr: &K, message: String) -> Outcome {
    Outcome {
        ready: previous_ready(cr),
        synced: Err((reasons::PAUSED, message)),
        converging: false,
        stalled: None,
        applied: false,
    }
}

/// Ready as stored, if it was True: a pause or a failure does not stop the remote object serving.
fn kept_ready<K: ManagedResource>(cr: &K) -> Option<(bool, &'static str, String)> {
    let ready = cr.managed_status()?.conditions.iter().find(|c| c.type_ == types::READY)?;
    (ready.status == tether_api::ConditionStatus::True).then(|| (true, reasons::AVAILABLE, ready.message.clone()))
}

fn previous_ready<K: ManagedResource>(cr: &K) -> (bool, &'static str, String) {
    kept_ready(cr).unwrap_or_else(|| (false, reasons::PAUSED, "paused before the remote object was ready".into()))
}

fn not_ready(reason: &'static str, message: String, converging: bool, applied: bool) -> Outcome {
    Outcome { ready: (false, reason, message), synced: Ok(()), converging, stalled: None, applied }
}

/// After `observe` found `observed`.
pub(crate) fn after_observe<K: ManagedResource>(cr: &K, observed: Observation<K::Observation>) -> Next<K::Observation> {
    match observed {
        Observation::Absent if cr.observe_only() => {
            let message = "ObserveOnly: no remote object matches this resource".to_string();
            let outcome = not_ready(reasons::NOT_FOUND, message, false, false);
            Next::Report { outcome, external_id: None, at_provider: None, pace: Pace::Settled }
        }
        Observation::Absent if cr.adopt_id().is_some() => {
            let id = cr.adopt_id().unwrap_or_default();
            Next::Refuse(format!(
                "annotation {EXTERNAL_ID} names {id}, which the platform does not have; Tether adopts, it does not create"
            ))
        }
        Observation::Absent => Next::Create,
        Observation::Present { external_id, up_to_date: false, at_provider, .. } if !cr.observe_only() => {
            Next::Update { external_id, at_provider }
        }
        // Up to date (or ObserveOnly, which applies nothing): this generation is applied.
        Observation::Present { external_id, ready, at_provider, .. } => {
            let (external_id, at_provider) = (Some(external_id), Some(at_provider));
            let (outcome, pace) = match (&ready, ready.not_ready()) {
                (_, None) => {
                    let ready = (true, reasons::AVAILABLE, String::new());
                    (Outcome { ready, synced: Ok(()), converging: false, stalled: None, applied: true }, Pace::Settled)
                }
                // Failed on the platform: a human must look (Stalled); Tether checks again each drift period.
                (Readiness::Failed(_), Some((reason, message))) => {
                    let stalled = Some((reason, message.to_string()));
                    (Outcome { stalled, ..not_ready(reason, message.to_string(), false, true) }, Pace::Settled)
                }
                (_, Some((reason, message))) => (not_ready(reason, message.to_string(), true, true), Pace::Converge),
            };
            Next::Report { outcome, external_id, at_provider, pace }
        }
    }
}

/// After a successful create.
pub(crate) fn created() -> (Outcome, Pace) {
    (not_ready(reasons::CREATING, "creating the remote object".into(), true, true), Pace::Converge)
}

/// After a successful update.
pub(crate) fn updated() -> (Outcome, Pace) {
    (not_ready(reasons::UPDATING, "applying the spec to the remote object".into(), true, true), Pace::Converge)
}

/// While the platform is still deleting (looked at again at the converge interval).
pub(crate) fn deleting() -> Outcome {
    not_ready(reasons::DELETING, "waiting for the platform to delete the remote object".into(), true, false)
}

/// After the deletion's `observe`.
pub(crate) fn after_delete_observe<O>(
    observed: Result<Observation<O>, PlatformError>,
) -> Result<DeleteNext, PlatformError> {
    match observed {
        Ok(Observation::Present { external_id, .. }) => Ok(DeleteNext::Delete(external_id)),
        Ok(Observation::Absent) => Ok(DeleteNext::Release(None)),
        // The identity itself is refused (an id that is no id, e.g. a path in tether.dev/external-id): no
        // remote object can have it, so there is nothing to delete, and a DELETE is never sent.
        Err(PlatformError::Invalid(why)) => Ok(DeleteNext::Release(Some(format!(
            "nothing deleted: the platform cannot hold an object under this identity ({why})"
        )))),
        Err(e) => Err(e),
    }
}

/// The outcome a failure leads to: Ready kept if it was True (the remote object still serves), Synced
/// False with the reason, Stalled when a human must act.
pub(crate) fn failed<K: ManagedResource>(cr: &K, error: &Error) -> Outcome {
    let ready = kept_ready(cr).unwrap_or_else(|| (false, error.reason(), error.to_string()));
    Outcome {
        ready,
        synced: Err((error.reason(), error.to_string())),
        converging: false,
        stalled: error.is_terminal().then(|| (error.reason(), error.to_string())),
        applied: false,
    }
}

/// The shortest and longest drift-check period an annotation may ask for.
pub(crate) const POLL_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(7 * 24 * 3600));

/// `90s`, `5m`, `1h` (or plain seconds), from 1 s to 7 days; checked arithmetic, so no value can overflow.
pub(crate) fn parse_duration(text: &str) -> Result<Duration, &'static str> {
    const RULE: &str = "is not a duration such as 90s, 5m or 1h between 1s and 7 days";
    let text = text.trim();
    let (number, unit) = text.find(|c: char| !c.is_ascii_digit()).map_or((text, ""), |i| text.split_at(i));
    let n: u64 = number.parse().map_err(|_| RULE)?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return Err(RULE),
    };
    let period = Duration::from_secs(n.checked_mul(scale).ok_or(RULE)?);
    if period < POLL_INTERVAL_RANGE.0 || period > POLL_INTERVAL_RANGE.1 {
        return Err(RULE);
    }
    Ok(period)
}

#[cfg(test)]
mod tests {
    //! The loop's decisions, table-driven, with a fake adapter whose verbs are closures (crossplane's
    //! `ExternalClientFns`). `drive` runs the decisions in the order the reconciler does and records which
    //! verbs were called; each case names the item of the hostile-input and GitOps issues it guards.

    use std::sync::Mutex;

    use serde_json::json;
    use tether_api::UbiService;
    use tether_api::ubiops::UbiServiceObservation;

    use super::*;
    use crate::status;

    fn condition<'a>(
        status: &'a tether_api::ManagedStatus<UbiServiceObservation>,
        t: &str,
    ) -> &'a tether_api::Condition {
        status.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    type Obs = Observation<UbiServiceObservation>;

    /// The fake external client: what each verb answers.
    struct Fns {
        observe: Box<dyn Fn() -> Result<Obs, PlatformError>>,
        create: Box<dyn Fn() -> Result<String, PlatformError>>,
        update: Box<dyn Fn() -> Result<(), PlatformError>>,
        delete: Box<dyn Fn() -> Result<(), PlatformError>>,
        calls: Mutex<Vec<&'static str>>,
    }

    impl Default for Fns {
        fn default() -> Self {
            Self {
                observe: Box::new(|| Ok(Observation::Absent)),
                create: Box::new(|| Ok("new-id".into())),
                update: Box::new(|| Ok(())),
                delete: Box::new(|| Ok(())),
                calls: Mutex::default(),
            }
        }
    }

    impl Fns {
        fn call(&self, verb: &'static str) {
            self.calls.lock().unwrap().push(verb);
        }
    }

    /// What one reconcile decided.
    #[derive(Debug, PartialEq)]
    enum Result_ {
        /// Recorded this outcome.
        Outcome(Outcome),
        /// Failed with this reason (terminal or not).
        Failed(&'static str, bool, String),
        /// Released the finalizer (with a Warning note, if any).
        Released(Option<String>),
        /// Nothing to do.
        Done,
    }

    /// The reconcile's decisions, in the reconciler's order, against the fake.
    fn drive(cr: &UbiService, fns: &Fns) -> Result_ {
        let fail = |e: Error| Result_::Failed(e.reason(), e.is_terminal(), e.to_string());
        match start(cr) {
            Start::Delete(Deletion::Done) => Result_::Done,
            Start::Delete(Deletion::Release) => Result_::Released(None),
            Start::Delete(Deletion::HoldPaused(outcome)) | Start::Paused(outcome) => Result_::Outcome(outcome),
            Start::Delete(Deletion::DeleteRemote) => {
                fns.call("observe");
                match after_delete_observe((fns.observe)()) {
                    Ok(DeleteNext::Delete(_)) => {
                        fns.call("delete");
                        match (fns.delete)() {
                            Ok(()) => Result_::Released(None),
                            Err(e) => fail(Error::platform("delete")(e)),
                        }
                    }
                    Ok(DeleteNext::Release(note)) => Result_::Released(note),
                    Err(e) => fail(Error::platform("observe")(e)),
                }
            }
            Start::Refuse(why) => fail(Error::InvalidSpec(why)),
            Start::Observe => {
                fns.call("observe");
                let observed = match (fns.observe)() {
                    Ok(o) => o,
                    Err(e) => return fail(Error::platform("observe")(e)),
                };
                match after_observe(cr, observed) {
                    Next::Create => {
                        fns.call("create");
                        match (fns.create)() {
                            Ok(_) => Result_::Outcome(created().0),
                            Err(e) => fail(Error::platform("create")(e)),
                        }
                    }
                    Next::Update { .. } => {
                        fns.call("update");
                        match (fns.update)() {
                            Ok(()) => Result_::Outcome(updated().0),
                            Err(e) => fail(Error::platform("update")(e)),
                        }
                    }
                    Next::Report { outcome, .. } => Result_::Outcome(outcome),
                    Next::Refuse(why) => fail(Error::InvalidSpec(why)),
                }
            }
        }
    }

    fn service(patch: serde_json::Value) -> UbiService {
        let mut base = json!({
            "apiVersion": "tether.dev/v1alpha1", "kind": "UbiService",
            "metadata": {"name": "scoring", "namespace": "team", "uid": "u1", "generation": 2,
                         "finalizers": [FINALIZER]},
            "spec": {"connectionRef": {"name": "ubiops"}, "project": "proj", "name": "scoring",
                     "deployment": "dep-1", "port": 8080},
            "status": {"observedGeneration": 1, "appliedGeneration": 1, "conditions": [
                {"type": "Ready", "status": "True", "reason": "Available", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1}]},
        });
        merge(&mut base, patch);
        serde_json::from_value(base).unwrap()
    }

    /// RFC 7386: `patch` merged into `base`.
    fn merge(base: &mut serde_json::Value, patch: serde_json::Value) {
        match (base, patch) {
            (serde_json::Value::Object(base), serde_json::Value::Object(patch)) => {
                for (k, v) in patch {
                    merge(base.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (base, patch) => *base = patch,
        }
    }

    fn present(up_to_date: bool, ready: Readiness) -> Obs {
        Observation::Present {
            external_id: "id-1".into(),
            up_to_date,
            ready,
            at_provider: UbiServiceObservation::default(),
            outputs: Default::default(),
        }
    }

    struct Case {
        name: &'static str,
        cr: UbiService,
        fns: Fns,
        calls: &'static [&'static str],
        check: fn(&Result_) -> bool,
    }

    fn outcome(r: &Result_) -> Option<&Outcome> {
        match r {
            Result_::Outcome(o) => Some(o),
            _ => None,
        }
    }

    #[test]
    fn the_loop_decides_every_case_as_the_issues_ask() {
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}});
        let paused = json!({"metadata": {"annotations": {PAUSED: "true"}}});
        let cases = vec![
            Case {
                name: "absent: create",
                cr: service(json!({})),
                fns: Fns::default(),
                calls: &["observe", "create"],
                check: |r| outcome(r).is_some_and(|o| o.applied && o.converging),
            },
            Case {
                name: "absent with an adopt id: refused as InvalidSpec, nothing created",
                cr: service(json!({"metadata": {"annotations": {EXTERNAL_ID: "gone"}}})),
                fns: Fns::default(),
                calls: &["observe"],
                check: |r| matches!(r, Result_::Failed("InvalidSpec", true, _)),
            },
            Case {
                name: "absent under ObserveOnly: NotFound, never created, waiting",
                cr: service(json!({"spec": {"managementPolicy": "ObserveOnly"}})),
                fns: Fns::default(),
                calls: &["observe"],
                check: |r| outcome(r).is_some_and(|o| o.ready.1 == reasons::NOT_FOUND && !o.applied),
            },
            Case {
                name: "present and different: update",
                cr: service(json!({})),
                fns: Fns { observe: Box::new(|| Ok(present(false, Readiness::Ready))), ..Fns::default() },
                calls: &["observe", "update"],
                check: |r| outcome(r).is_some_and(|o| o.applied),
            },
            Case {
                name: "present and different under ObserveOnly: reported, never written",
                cr: service(json!({"spec": {"managementPolicy": "ObserveOnly"}})),
                fns: Fns { observe: Box::new(|| Ok(present(false, Readiness::Ready))), ..Fns::default() },
                calls: &["observe"],
                check: |r| outcome(r).is_some_and(|o| o.ready.0),
            },
            Case {
                name: "failed on the platform: Stalled with the platform's words, not converging",
                cr: service(json!({})),
                fns: Fns {
                    observe: Box::new(|| Ok(present(true, Readiness::Failed("version v1 is failed".into())))),
                    ..Fns::default()
                },
                calls: &["observe"],
                check: |r| {
                    outcome(r).is_some_and(|o| {
                        o.stalled == Some((reasons::PLATFORM_ERROR, "version v1 is failed".into())) && !o.converging
                    })
                },
            },
            Case {
                name: "starting: converging, not stalled",
                cr: service(json!({})),
                fns: Fns {
                    observe: Box::new(|| Ok(present(true, Readiness::Unavailable("starting".into())))),
                    ..Fns::default()
                },
                calls: &["observe"],
                check: |r| outcome(r).is_some_and(|o| o.converging && o.stalled.is_none()),
            },
            Case {
                name: "wrong credentials: terminal (Stalled), not retried in a storm",
                cr: service(json!({})),
                fns: Fns { observe: Box::new(|| Err(PlatformError::Unauthorized("bad key".into()))), ..Fns::default() },
                calls: &["observe"],
                check: |r| matches!(r, Result_::Failed("Unauthorized", true, _)),
            },
            Case {
                name: "platform unreachable: retried",
                cr: service(json!({})),
                fns: Fns { observe: Box::new(|| Err(PlatformError::Transient("503".into()))), ..Fns::default() },
                calls: &["observe"],
                check: |r| matches!(r, Result_::Failed("Unavailable", false, _)),
            },
            Case {
                name: "a poll interval that would overflow: InvalidSpec before any call",
                cr: service(json!({"metadata": {"annotations": {POLL_INTERVAL: "18446744073709551615s"}}})),
                fns: Fns::default(),
                calls: &[],
                check: |r| matches!(r, Result_::Failed("InvalidSpec", true, m) if m.contains("between 1s and 7 days")),
            },
            Case {
                name: "paused: no call, Ready kept, the edit pending",
                cr: service(paused.clone()),
                fns: Fns::default(),
                calls: &[],
                check: |r| outcome(r).is_some_and(|o| o.ready.0 && !o.applied && o.synced.is_err()),
            },
            Case {
                name: "deleting while paused: the finalizer holds, no call",
                cr: service(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                                                "annotations": {PAUSED: "true"}}})),
                fns: Fns::default(),
                calls: &[],
                check: |r| outcome(r).is_some_and(|o| o.synced.as_ref().is_err_and(|(r, _)| *r == reasons::PAUSED)),
            },
            Case {
                name: "deleting with Delete: observe, delete, release",
                cr: service(deleting.clone()),
                fns: Fns { observe: Box::new(|| Ok(present(true, Readiness::Ready))), ..Fns::default() },
                calls: &["observe", "delete"],
                check: |r| *r == Result_::Released(None),
            },
            Case {
                name: "deleting with Orphan: released without a call",
                cr: service(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"},
                                   "spec": {"deletionPolicy": "Orphan"}})),
                fns: Fns::default(),
                calls: &[],
                check: |r| *r == Result_::Released(None),
            },
            Case {
                name: "deleting an identity the platform refuses (a path as id): nothing sent, released",
                cr: service(deleting.clone()),
                fns: Fns {
                    observe: Box::new(|| Err(PlatformError::Invalid("\"x/../y\" is not a valid id".into()))),
                    ..Fns::default()
                },
                calls: &["observe"],
                check: |r| matches!(r, Result_::Released(Some(note)) if note.contains("nothing deleted")),
            },
            Case {
                name: "deleting, the platform refusing the delete: the finalizer holds (retried)",
                cr: service(deleting),
                fns: Fns {
                    observe: Box::new(|| Ok(present(true, Readiness::Ready))),
                    delete: Box::new(|| Err(PlatformError::Transient("500".into()))),
                    ..Fns::default()
                },
                calls: &["observe", "delete"],
                check: |r| matches!(r, Result_::Failed("Unavailable", false, _)),
            },
            Case {
                name: "deleted without Tether's finalizer: nothing to do",
                cr: service(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": []}})),
                fns: Fns::default(),
                calls: &[],
                check: |r| *r == Result_::Done,
            },
        ];
        let mut wrong = Vec::new();
        for case in cases {
            let result = drive(&case.cr, &case.fns);
            let calls = case.fns.calls.lock().unwrap().clone();
            if calls != case.calls || !(case.check)(&result) {
                wrong.push(format!("{}: calls {calls:?} (wanted {:?}), result {result:?}", case.name, case.calls));
            }
        }
        assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    }

    /// The status each outcome leads to keeps the GitOps promises: a failure after Ready never claims the
    /// new generation (Ready keeps generation 1), a transient failure never lowers appliedGeneration, so an
    /// adapter acting "once per spec" (Civis restarts) does not act again after it.
    #[test]
    fn failures_never_claim_or_forget_an_applied_generation() {
        let cr = service(json!({}));
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        for error in [
            Error::platform("observe")(PlatformError::Transient("503".into())),
            Error::platform("update")(PlatformError::Unauthorized("key".into())),
            Error::Timeout(Duration::from_secs(300)),
            Error::Internal("a bug".into()),
        ] {
            let next = status::next(cr.managed_status(), Some(2), &failed(&cr, &error), None, None, now.clone());
            let ready = condition(&next, types::READY);
            assert_eq!(
                (ready.status, ready.observed_generation),
                (tether_api::ConditionStatus::True, Some(1)),
                "{error}"
            );
            assert_eq!(next.applied_generation, Some(1), "{error}");
            let (reconciling, stalled) = (condition(&next, types::RECONCILING), condition(&next, types::STALLED));
            assert_ne!(reconciling.status, stalled.status, "{error}: exactly one of Reconciling and Stalled");
        }
        // Applied at generation 2 once, a later transient failure keeps it applied.
        let applied = status::next(cr.managed_status(), Some(2), &updated().0, None, None, now.clone());
        let mut again = cr.clone();
        again.status = Some(applied);
        let transient = Error::platform("observe")(PlatformError::Transient("503".into()));
        let after = status::next(again.managed_status(), Some(2), &failed(&again, &transient), None, None, now);
        again.status = Some(after);
        assert!(again.spec_applied(), "one transient failure must not make the spec unapplied");
    }
}
