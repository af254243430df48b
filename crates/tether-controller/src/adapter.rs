//! What one kind must say for the generic reconciler to drive it: how to read its frame from the custom
//! resource, and the four verbs (observe, create, update, delete) against its platform. Per-kind code stays
//! the size of a crossplane provider's `external` client.
//!
//! The contract, as crossplane's: `observe` never writes; every verb is idempotent; a `create` that meets
//! an existing object adopts it; `delete` of an absent object is `Ok`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;

use kube::Resource;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tether_api::{ConnectionRef, ManagedStatus, Platform, SecretKeySelector};
use tether_platforms::{Error as PlatformError, Secret};

use crate::connection::Account;

/// A custom resource the reconciler manages: the common frame, read uniformly.
pub trait ManagedResource:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + Debug
    + Serialize
    + DeserializeOwned
    + Send
    + Sync
    + 'static
{
    /// What the status records of the remote object (`status.atProvider`).
    type Observation: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;

    /// The Connection or ClusterConnection to use.
    fn connection_ref(&self) -> &ConnectionRef;
    /// Whether deleting the resource deletes the remote object (false: orphan it).
    fn deletes_remote(&self) -> bool;
    /// Whether Tether may only observe.
    fn observe_only(&self) -> bool;
    /// The current status.
    fn managed_status(&self) -> Option<&ManagedStatus<Self::Observation>>;
    /// The Secret (in the resource's namespace) to write the remote object's outputs to, if any.
    fn outputs_secret(&self) -> Option<&str>;
    /// Secret keys (in the resource's namespace) whose values the spec uses, by the name it gives them;
    /// the reconciler reads them into [`Request::inputs`] and watches them.
    fn secret_inputs(&self) -> Vec<(String, SecretKeySelector)> {
        Vec::new()
    }
    /// The id the annotation `tether.dev/external-id` asks to adopt.
    fn adopt_id(&self) -> Option<&str> {
        self.meta().annotations.as_ref()?.get(EXTERNAL_ID).map(String::as_str)
    }
    /// Whether a reconcile already applied this generation of the spec (`status.appliedGeneration`, which a
    /// later failure does not reset). Adapters use it to act on a spec change only once, e.g. not to
    /// restart a deployment that crashed on its own.
    fn spec_applied(&self) -> bool {
        let generation = self.meta().generation;
        self.managed_status()
            .is_some_and(|s| generation.is_some() && crate::status::applied_generation(s) == generation)
    }
    /// Whether the resource is being deleted and its status says the platform is deleting the remote
    /// object (Tether asked it to, or saw it so): all a reconcile still has to learn is whether it is gone.
    fn delete_requested(&self) -> bool {
        use crate::status::{reasons, types};
        self.meta().deletion_timestamp.is_some()
            && self
                .managed_status()
                .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == types::READY && c.reason == reasons::DELETING))
    }
}

pub use crate::annotations::EXTERNAL_ID;

/// The answer of looking up an id to adopt: `None` when the platform does not have it (the reconciler
/// then refuses to create one; a delete is done).
pub fn adopted<T>(found: Result<T, PlatformError>) -> Result<Option<T>, PlatformError> {
    match found {
        Ok(object) => Ok(Some(object)),
        Err(PlatformError::NotFound(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

/// One resource as the verbs see it: the custom resource (by `Deref`), the Secret values its spec refers
/// to, the outputs Secret as it stands, and outputs a verb learns only once (a token's value), which the
/// reconciler adds to the outputs Secret after the call.
pub struct Request<'a, R> {
    cr: &'a R,
    /// The values of [`ManagedResource::secret_inputs`], by name.
    pub inputs: BTreeMap<String, Secret>,
    /// The data of the outputs Secret when the reconcile began (empty without one), as text.
    pub outputs: BTreeMap<String, String>,
    /// The outputs Secret as read when the reconcile began (`None`: absent or not asked for): the one read
    /// the reconcile makes of it, with its bytes as stored.
    /// Tether's own writes of it during the reconcile replace it, so a later write merges with them.
    pub(crate) outputs_secret: Mutex<Option<k8s_openapi::api::core::v1::Secret>>,
    /// How old a read of platform state that many resources share (an Iguazio tenant's manifest) may be for
    /// this reconcile: zero unless it is a drift check.
    pub shared_read_age: std::time::Duration,
    /// How old a shared listing may be for a read that is not a drift check (a spec change, a delete, a
    /// poll of a write in progress): the converge interval. Such a read uses a listing begun after Tether
    /// last wrote or read the object, and takes a new one only when it costs no more than reading each
    /// object waiting on it (`tether_platforms::listing::Listing::fresh`); zero: never.
    pub fresh_read_age: std::time::Duration,
    /// Since when this process alone can have created the resource's remote object (it started, or took
    /// the resource's shard, plus [`crate::context::TAKEOVER_MARGIN`]): a search for an object an earlier
    /// create may have made needs a listing begun after it, no fresher. `now` unless the reconciler knows
    /// better.
    pub held_since: tokio::time::Instant,
    published: Mutex<BTreeMap<String, String>>,
    warnings: Mutex<Vec<(&'static str, String)>>,
    /// What `observe` read of the remote object, for `update` or `delete` in the same reconcile.
    observed: Mutex<Option<Box<dyn std::any::Any + Send>>>,
    /// Set by a `create` or `update` whose write the platform completes at once ([`Request::done_at_once`]).
    done_at_once: std::sync::atomic::AtomicBool,
    /// What `observe` says a drift check must read again to tell a change ([`Request::probe`]): a
    /// `Box<dyn Probe<C>>` for the adapter's client type `C`.
    probe: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl<'a, R> Request<'a, R> {
    /// A request for `cr` with its inputs and current outputs.
    pub fn new(cr: &'a R, inputs: BTreeMap<String, Secret>, outputs: BTreeMap<String, String>) -> Self {
        let shared_read_age = std::time::Duration::ZERO;
        Self {
            cr,
            inputs,
            outputs,
            outputs_secret: Mutex::default(),
            shared_read_age,
            fresh_read_age: std::time::Duration::ZERO,
            held_since: tokio::time::Instant::now(),
            published: Mutex::default(),
            warnings: Mutex::default(),
            observed: Mutex::default(),
            done_at_once: Default::default(),
            probe: Mutex::default(),
        }
    }

    /// Said by a `create` or `update` whose write the platform completes at once (Peak: a title or
    /// description change, which redeploys nothing): the reconciler observes again at once and reports the
    /// result in one status write, instead of reporting the write in progress and looking again later.
    /// [`Adapter::WRITES_ANSWER_THE_OBJECT`] says the same of every write of a platform.
    pub fn done_at_once(&self) {
        self.done_at_once.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Whether [`done_at_once`](Self::done_at_once) was said.
    pub(crate) fn is_done_at_once(&self) -> bool {
        self.done_at_once.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Said by an `observe` that knows what to read again to tell whether anything it read changed (see
    /// [`Probe`]). When the reconcile then leaves the resource settled, its drift checks run the probe
    /// alone, and the whole reconcile only when the probe sees a change. An observe that reads something
    /// the probe does not cover must not say it.
    pub fn probe<C: 'static>(&self, probe: impl Probe<C>) {
        let probe: Box<dyn Probe<C>> = Box::new(probe);
        *self.probe.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(probe));
    }

    /// What [`probe`](Self::probe) said last, for a client of type `C`: taken.
    pub(crate) fn take_probe<C: 'static>(&self) -> Option<Box<dyn Probe<C>>> {
        let said = self.probe.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        said.downcast::<Box<dyn Probe<C>>>().ok().map(|b| *b)
    }

    /// Keeps what `observe` just read of the remote object, so that an `update` or `delete` of the same
    /// reconcile acts on it instead of reading it again (crossplane passes the observation the same way).
    pub fn remember<T: std::any::Any + Send>(&self, remote: T) {
        *self.observed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Box::new(remote));
    }

    /// What [`remember`](Self::remember) kept, if it is a `T`: taken, so it serves one verb.
    pub fn recall<T: std::any::Any + Send>(&self) -> Option<T> {
        let kept = self.observed.lock().unwrap_or_else(|p| p.into_inner()).take()?;
        kept.downcast::<T>().ok().map(|b| *b)
    }

    /// Something a human should know that does not stop the reconcile (e.g. several remote objects carry
    /// this resource's marker): published as a Warning Event on the resource.
    pub fn warn(&self, reason: &'static str, message: impl Into<String>) {
        self.warnings.lock().unwrap_or_else(|p| p.into_inner()).push((reason, message.into()));
    }

    /// Takes the warnings.
    pub fn take_warnings(&self) -> Vec<(&'static str, String)> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Adds an output the platform shows only now; it is written to the outputs Secret after this call.
    pub fn publish(&self, key: impl Into<String>, value: impl Into<String>) {
        self.published.lock().unwrap_or_else(|p| p.into_inner()).insert(key.into(), value.into());
    }

    /// Takes what the verbs published.
    pub fn take_published(&self) -> BTreeMap<String, String> {
        std::mem::take(&mut *self.published.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl<R> std::ops::Deref for Request<'_, R> {
    type Target = R;

    fn deref(&self) -> &R {
        self.cr
    }
}

/// What `observe` found.
#[derive(Clone, Debug, PartialEq)]
pub enum Observation<O> {
    /// No remote object for this resource.
    Absent,
    /// The remote object this resource is bound to.
    Present {
        /// The platform's id of it.
        external_id: String,
        /// Whether it matches the spec.
        up_to_date: bool,
        /// Whether it is usable, and if not, why.
        ready: Readiness,
        /// What the status records of it.
        at_provider: O,
        /// Endpoints, URLs and other outputs for the `writeOutputsTo` Secret, by key.
        outputs: std::collections::BTreeMap<String, String>,
    },
}

/// Whether the remote object serves, in the loop's words: each state maps to one Ready reason, and only
/// [`Readiness::Failed`] means the platform gave up on it (Stalled, Degraded in Argo CD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// It serves.
    Ready,
    /// The platform is creating it.
    Creating(String),
    /// The platform is applying a change to it.
    Updating(String),
    /// The platform is deleting it.
    Deleting(String),
    /// It exists but does not serve yet (starting, scaling, degraded); Tether keeps watching.
    Unavailable(String),
    /// It failed on the platform (a failed job, build, deployment or state): a human must look.
    Failed(String),
}

impl Readiness {
    /// The Ready condition's reason and message, `None` when ready.
    pub fn not_ready(&self) -> Option<(&'static str, &str)> {
        use crate::status::reasons;
        Some(match self {
            Readiness::Ready => return None,
            Readiness::Creating(m) => (reasons::CREATING, m),
            Readiness::Updating(m) => (reasons::UPDATING, m),
            Readiness::Deleting(m) => (reasons::DELETING, m),
            Readiness::Unavailable(m) => (reasons::UNAVAILABLE, m),
            Readiness::Failed(m) => (reasons::PLATFORM_ERROR, m),
        })
    }
}

/// What a drift check of a settled resource reads again instead of its whole reconcile: an `observe`
/// gives one ([`Request::probe`]) covering everything it read (a listing entry, a status), and while
/// [`unchanged`](Probe::unchanged) says so, nothing in the resource's status or the platform would
/// change. Its own Kubernetes inputs (spec, Connection, Secrets) are watched apart.
pub trait Probe<C>: Send + Sync + 'static {
    /// Whether what the observe read is still the same, read now (from listings begun at most `max_age`
    /// ago, shared with other drift checks). `false` or an error runs the whole reconcile.
    fn unchanged<'a>(
        &'a self,
        client: &'a C,
        max_age: std::time::Duration,
    ) -> futures::future::BoxFuture<'a, Result<bool, PlatformError>>;
}

/// How a delete went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletion {
    /// The remote object is gone.
    Gone,
    /// The platform is still tearing it down.
    InProgress,
}

/// The four verbs of one kind against its platform.
pub trait Adapter: Send + Sync + 'static {
    /// The custom resource kind.
    type Resource: ManagedResource;
    /// The platform client.
    type Client: Send + Sync + 'static;

    /// The platform this kind lives on; a Connection of another platform is refused.
    const PLATFORM: Platform;

    /// Whether `create` and `update` get the object as it now is in the platform's answer and
    /// [`Request::remember`] it, so that an `observe` right after reads it from there: the reconciler then
    /// observes at once and a write the platform completes at once is reported in one status write.
    const WRITES_ANSWER_THE_OBJECT: bool = false;

    /// Builds a client for an account.
    fn connect(account: &Account) -> Result<Self::Client, PlatformError>;

    /// One cheap authenticated call: whether the platform answers and accepts the account's credentials.
    fn verify(client: &Self::Client) -> impl Future<Output = Result<(), PlatformError>> + Send;

    /// Finds the remote object (by the recorded id, else by the natural key) and compares it with the spec.
    fn observe(
        client: &Self::Client,
        cr: &Request<'_, Self::Resource>,
    ) -> impl Future<Output = Result<Observation<<Self::Resource as ManagedResource>::Observation>, PlatformError>> + Send;

    /// Creates the remote object; returns its id.
    fn create(
        client: &Self::Client,
        cr: &Request<'_, Self::Resource>,
    ) -> impl Future<Output = Result<String, PlatformError>> + Send;

    /// Changes the remote object to match the spec.
    fn update(
        client: &Self::Client,
        cr: &Request<'_, Self::Resource>,
        external_id: &str,
    ) -> impl Future<Output = Result<(), PlatformError>> + Send;

    /// Deletes the remote object (absent is `Gone`).
    fn delete(
        client: &Self::Client,
        cr: &Request<'_, Self::Resource>,
        external_id: &str,
    ) -> impl Future<Output = Result<Deletion, PlatformError>> + Send;
}

#[cfg(test)]
mod remembered {
    use super::Request;

    #[test]
    fn what_observe_read_serves_one_verb_of_its_own_type() {
        let request = Request::new(&(), Default::default(), Default::default());
        assert_eq!(request.recall::<String>(), None, "nothing kept");
        request.remember(String::from("the service as observed"));
        assert_eq!(request.recall::<u32>(), None, "another type is not it");
        request.remember(String::from("the service as observed"));
        assert_eq!(request.recall::<String>().as_deref(), Some("the service as observed"));
        assert_eq!(request.recall::<String>(), None, "taken: a second verb reads the platform again");
    }
}
