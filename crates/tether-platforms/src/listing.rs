//! One listing of an account's objects, shared by the drift checks of all of them.
//!
//! Polling each object on its own costs a request (or four) per object per drift period; at 10,000
//! objects and a ten-minute period that is past what a SaaS rate limit allows. A [`Listing`] keeps the
//! last paginated LIST of an account (or of one scope of it) and answers a drift check from it when it
//! is young enough, so one LIST per drift period serves every object of the account.
//!
//! It never answers with a state older than what Tether already saw or did: an object written through
//! the client, or read on its own, is [`touch`](Listing::touch)ed, and the listing answers for it again
//! only once a LIST begun after that has been taken. A platform whose list entries carry only a summary
//! keeps, per object, what it read in detail with the marker of the entry it read it for (its update
//! time, state, version: [`Listing::detail`]); an entry that still has that marker needs no detail read.
//!
//! A crash-safe create first looks for an object an earlier attempt may have made, by the ownership marker
//! it carries. Listing the whole account for each create costs O(N²) requests when N resources are created
//! at once; [`Listing::since`] lets every such search share one listing, as long as that listing began
//! after anything else could have made the object (the caller says when: this process took the resource)
//! and after this process's own last attempt for that marker ([`Listing::attempted`]), so that a create
//! whose answer was lost is always searched for in a listing taken after it.
//!
//! A settled resource's drift check need not run its whole reconcile: it compares a [`digest`] of the
//! object as its last observe read it with the object's entry in a young enough listing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::Result;

/// The last listing of one account (or scope), what was read in detail since, and when each object was
/// last written or read on its own.
pub struct Listing<T, D = ()> {
    last: tokio::sync::Mutex<Option<Snapshot<T>>>,
    touched: Mutex<HashMap<String, Instant>>,
    details: Mutex<HashMap<String, (String, D)>>,
    /// When this process last tried to create the object carrying each ownership marker, until a listing
    /// begun later makes it moot.
    attempts: Mutex<HashMap<String, Instant>>,
}

struct Snapshot<T> {
    began: Instant,
    items: Arc<HashMap<String, T>>,
}

impl<T, D> Default for Listing<T, D> {
    fn default() -> Self {
        Self {
            last: Default::default(),
            touched: Default::default(),
            details: Default::default(),
            attempts: Default::default(),
        }
    }
}

impl<T, D> std::fmt::Debug for Listing<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing").finish_non_exhaustive()
    }
}

/// A digest of a listed object, as serialised: two entries with the same digest show the same state.
pub fn digest(value: &impl serde::Serialize) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_vec(value).unwrap_or_default().hash(&mut hasher);
    hasher.finish()
}

/// Whether `entry` (an object's entry in a listing, if it has one) still shows the object whose
/// [`digest`] was `read`: what a drift check's probe asks of a listing.
pub fn shows(entry: Option<impl serde::Serialize>, read: u64) -> bool {
    entry.is_some_and(|entry| digest(&entry) == read)
}

impl<T: Clone, D: Clone> Listing<T, D> {
    /// `id` was just written or read on its own: the listing does not answer for it until one begun
    /// after now.
    pub fn touch(&self, id: &str) {
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_string(), Instant::now());
    }

    /// `id` is gone: forgets what was kept of it.
    pub fn forget(&self, id: &str) {
        self.touch(id);
        self.details.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
    }

    /// The entry of `id` in a listing begun at most `max_age` before this call (taking one with `list`
    /// when the last is older; concurrent callers share it), or `None` when the listing cannot answer for
    /// it: `max_age` is zero (not a drift check), the object was touched after the listing began, or the
    /// listing does not have it (the caller reads it on its own and finds out why).
    pub async fn entry<F, Fut>(&self, id: &str, max_age: Duration, list: F) -> Result<Option<T>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>>>,
    {
        if max_age.is_zero() {
            return Ok(None);
        }
        // A `max_age` too long to go back by counts as forever.
        let not_before = Instant::now().checked_sub(max_age);
        let (began, items) = self.begun_after(not_before, list).await?;
        let touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied();
        if touched.is_some_and(|at| at >= began) {
            return Ok(None);
        }
        Ok(items.get(id).cloned())
    }

    /// The listing a reconcile that is not a drift check may read `id` in (its entry, or that it has
    /// none): one begun at most `max_age` before this call and after `id` was last touched (written or
    /// read on its own). That is the last listing when it qualifies, or else a new one (concurrent callers
    /// share it) when at least as many objects were touched since the last one began as that one took
    /// `pages(items)` pages to list: then one listing costs no more than reading each of them on its own,
    /// which is how the objects a mass write left in progress are polled. `None`: read `id` on its own.
    pub async fn fresh<F, Fut>(
        &self,
        id: &str,
        max_age: Duration,
        pages: impl Fn(usize) -> usize,
        list: F,
    ) -> Result<Option<Arc<HashMap<String, T>>>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>>>,
    {
        if max_age.is_zero() {
            return Ok(None);
        }
        let not_before = Instant::now().checked_sub(max_age);
        let mut last = self.last.lock().await;
        let (waiting, touched_at) = {
            let touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            (touched.len(), touched.get(id).copied())
        };
        if let Some(snapshot) = last.as_ref()
            && not_before.is_none_or(|at| snapshot.began >= at)
            && touched_at.is_none_or(|at| at < snapshot.began)
        {
            return Ok(Some(snapshot.items.clone()));
        }
        if waiting < last.as_ref().map_or(1, |snapshot| pages(snapshot.items.len()).max(1)) {
            return Ok(None);
        }
        Ok(Some(self.take(&mut last, list).await?.1))
    }

    /// The objects that `carry` the ownership `marker`, as of a listing begun after `not_before` and after
    /// this process's last create attempt for it (taking one with `list` when the last began earlier;
    /// concurrent callers share it): where an object carrying `marker` is listed if it exists, when
    /// nothing but this process (by an attempt [`attempted`](Self::attempted)) can have made it since
    /// `not_before`. An object that carries it and was written or read on its own after that listing
    /// began (deleted since, perhaps) is answered from a new listing instead.
    pub async fn since<F, Fut>(
        &self,
        marker: &str,
        not_before: Instant,
        list: F,
        carries: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>>>,
    {
        let attempt = self.attempts.lock().unwrap_or_else(PoisonError::into_inner).get(marker).copied();
        let mut not_before = attempt.map_or(not_before, |at| at.max(not_before));
        // A second listing begun after the touch answers, unless the object is touched again meanwhile;
        // the third answers in any case (as fresh as a search can be).
        for pass in 1..=3 {
            let (began, items) = self.begun_after(Some(not_before), &list).await?;
            let ours: Vec<(&String, &T)> = items.iter().filter(|(_, item)| carries(item)).collect();
            let touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            let stale = ours.iter().any(|(id, _)| touched.get(*id).is_some_and(|at| *at >= began));
            drop(touched);
            if !stale || pass == 3 {
                return Ok(ours.into_iter().map(|(_, item)| item.clone()).collect());
            }
            not_before = Instant::now();
        }
        unreachable!("the third pass answers")
    }

    /// This process has just tried (and succeeded, failed, or lost the answer) to create the object
    /// carrying `marker`: a search for it through [`since`](Self::since) takes a listing begun after now.
    pub fn attempted(&self, marker: &str) {
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner).insert(marker.to_string(), Instant::now());
    }

    /// Marks an attempt for `marker` when dropped: after the create's answer, its failure, or its
    /// cancellation (a reconcile past its time bound), whichever comes.
    pub fn attempting<'a>(&'a self, marker: &'a str) -> impl Drop + 'a {
        struct Attempt<'a, T: Clone, D: Clone>(&'a Listing<T, D>, &'a str);
        impl<T: Clone, D: Clone> Drop for Attempt<'_, T, D> {
            fn drop(&mut self) {
                self.0.attempted(self.1);
            }
        }
        Attempt(self, marker)
    }

    /// The last listing if it began at or after `not_before` (`None`: any will do), else a new one.
    async fn begun_after<F, Fut>(
        &self,
        not_before: Option<Instant>,
        list: F,
    ) -> Result<(Instant, Arc<HashMap<String, T>>)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>>>,
    {
        let mut last = self.last.lock().await;
        if let Some(snapshot) = last.as_ref()
            && not_before.is_none_or(|at| snapshot.began >= at)
        {
            return Ok((snapshot.began, snapshot.items.clone()));
        }
        self.take(&mut last, list).await
    }

    /// Takes a new listing with `list`, under the lock of the last one.
    async fn take<F, Fut>(&self, last: &mut Option<Snapshot<T>>, list: F) -> Result<(Instant, Arc<HashMap<String, T>>)>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<(String, T)>>>,
    {
        let began = Instant::now();
        let items: HashMap<String, T> = list().await?.into_iter().collect();
        self.touched.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, at| *at >= began);
        self.details.lock().unwrap_or_else(PoisonError::into_inner).retain(|id, _| items.contains_key(id));
        self.attempts.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, at| *at >= began);
        let items = Arc::new(items);
        *last = Some(Snapshot { began, items: items.clone() });
        Ok((began, items))
    }

    /// What was read in detail of `id` for an entry with this `marker`, if the entry still has it.
    pub fn detail(&self, id: &str, marker: &str) -> Option<D> {
        let details = self.details.lock().unwrap_or_else(PoisonError::into_inner);
        details.get(id).filter(|(kept, _)| kept == marker).map(|(_, detail)| detail.clone())
    }

    /// Keeps what was read in detail of `id` for an entry with this `marker`.
    pub fn keep_detail(&self, id: &str, marker: String, detail: D) {
        self.details.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_string(), (marker, detail));
    }
}

/// A detail kept as its compact JSON text, decoded again on use: a parsed object (its maps, strings and
/// `Value` trees) takes several times the room of its text, and a detail is kept for every object of
/// an account while it is read only when its entry's marker still holds.
pub struct Compact<T> {
    json: Arc<[u8]>,
    of: std::marker::PhantomData<fn() -> T>,
}

impl<T> std::fmt::Debug for Compact<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Compact({} bytes)", self.json.len())
    }
}

impl<T> Clone for Compact<T> {
    fn clone(&self) -> Self {
        Self { json: self.json.clone(), of: std::marker::PhantomData }
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Compact<T> {
    /// `value` as kept.
    pub fn of(value: &T) -> Self {
        Self { json: serde_json::to_vec(value).unwrap_or_default().into(), of: std::marker::PhantomData }
    }

    /// The value kept (`None` only if it does not decode as it was encoded: then the caller reads again).
    pub fn get(&self) -> Option<T> {
        serde_json::from_slice(&self.json).ok()
    }
}

/// A listing entry kept as its [`Compact`] text, with the one field a search over the whole listing
/// compares (a name, an ownership marker's carrier) beside it, so that search decodes no entry. A listing
/// holds one entry per object of the account, and a decoded entry (every field in a map) takes several
/// times the room of its text; the one entry a caller asks for is decoded then.
pub struct Keyed<T> {
    key: Box<str>,
    entry: Compact<T>,
}

impl<T> Clone for Keyed<T> {
    fn clone(&self) -> Self {
        Self { key: self.key.clone(), entry: self.entry.clone() }
    }
}

impl<T> std::fmt::Debug for Keyed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyed").field("key", &self.key).field("entry", &self.entry).finish()
    }
}

impl<T: serde::Serialize + serde::de::DeserializeOwned> Keyed<T> {
    /// `entry` as kept, with its `key`.
    pub fn of(key: &str, entry: &T) -> Self {
        Self { key: key.into(), entry: Compact::of(entry) }
    }

    /// The field kept beside the entry.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The entry (`None` only if its kept text does not decode: then the caller reads it on its own).
    pub fn get(&self) -> Option<T> {
        self.entry.get()
    }
}

/// One [`Listing`] per scope of an account (an Apolo project, a UbiOps project), made when first used.
pub struct Scoped<T, D = ()>(Mutex<HashMap<String, Arc<Listing<T, D>>>>);

impl<T, D> Default for Scoped<T, D> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<T, D> std::fmt::Debug for Scoped<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scoped").finish_non_exhaustive()
    }
}

impl<T, D> Scoped<T, D> {
    /// The listing of `scope`.
    pub fn of(&self, scope: &str) -> Arc<Listing<T, D>> {
        let mut listings = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        listings.entry(scope.to_string()).or_insert_with(|| Arc::new(Listing::default())).clone()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn lister(calls: &AtomicUsize, value: u32) -> impl Future<Output = Result<Vec<(String, u32)>>> + '_ {
        calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(vec![("a".to_string(), value), ("b".to_string(), value)]) }
    }

    #[test]
    fn a_compact_detail_decodes_to_what_was_kept_every_field_included() {
        let ubiops: crate::ubiops::Service = serde_json::from_value(serde_json::json!({
            "id": "u-1", "name": "api", "deployment": "d", "version": null, "port": 8080,
            "time_updated": "2026-01-01T00:00:00Z", "labels": {"team": "a"}, "authentication_required": true,
        }))
        .unwrap();
        assert_eq!(Compact::of(&ubiops).get(), Some(ubiops));
        let civis: crate::civis::Service = serde_json::from_value(serde_json::json!({
            "id": 7, "name": "app", "archived": "false", "updatedAt": "2026-01-01T00:00:00Z",
            "currentDeployment": {"deploymentId": 3, "state": "running", "cpu": 1000}, "memory": 512,
        }))
        .unwrap();
        assert_eq!(Compact::of(&civis).get(), Some(civis));
    }

    #[tokio::test(start_paused = true)]
    async fn one_listing_serves_every_drift_check_within_its_age() {
        let listing: Listing<u32> = Listing::default();
        let calls = AtomicUsize::new(0);
        let age = Duration::from_secs(10);
        assert_eq!(listing.entry("a", Duration::ZERO, || lister(&calls, 1)).await.unwrap(), None, "not a drift check");
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(listing.entry("a", age, || lister(&calls, 1)).await.unwrap(), Some(1));
        assert_eq!(listing.entry("b", age, || lister(&calls, 2)).await.unwrap(), Some(1), "shared");
        assert_eq!(listing.entry("c", age, || lister(&calls, 2)).await.unwrap(), None, "not listed");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(listing.entry("a", age, || lister(&calls, 2)).await.unwrap(), Some(2), "too old: listed again");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_written_or_read_since_the_listing_is_not_answered_from_it() {
        let listing: Listing<u32> = Listing::default();
        let calls = AtomicUsize::new(0);
        let age = Duration::from_secs(10);
        assert_eq!(listing.entry("a", age, || lister(&calls, 1)).await.unwrap(), Some(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        listing.touch("a");
        assert_eq!(listing.entry("a", age, || lister(&calls, 2)).await.unwrap(), None, "written after it");
        assert_eq!(listing.entry("b", age, || lister(&calls, 2)).await.unwrap(), Some(1), "the others still are");
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(listing.entry("a", age, || lister(&calls, 3)).await.unwrap(), Some(3), "a newer listing is");
    }

    #[tokio::test(start_paused = true)]
    async fn a_search_by_marker_shares_a_listing_begun_after_the_resource_was_taken_and_its_last_attempt() {
        let listing: Listing<u32> = Listing::default();
        let calls = AtomicUsize::new(0);
        let taken = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        let any = |_: &u32| true;
        assert_eq!(listing.since("m1", taken, || lister(&calls, 1), any).await.unwrap(), vec![1, 1]);
        assert!(listing.since("m1", taken, || lister(&calls, 1), |v| *v == 9).await.unwrap().is_empty());
        listing.since("m2", taken, || lister(&calls, 2), any).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1, "one listing for every search after the resource was taken");
        tokio::time::advance(Duration::from_secs(1)).await;
        let retaken = Instant::now();
        assert_eq!(listing.since("m2", retaken, || lister(&calls, 3), any).await.unwrap(), vec![3, 3]);
        assert_eq!(calls.load(Ordering::SeqCst), 2, "taken (a shard acquired) after that listing: a new one");
        tokio::time::advance(Duration::from_secs(1)).await;
        listing.attempted("m1");
        tokio::time::advance(Duration::from_secs(1)).await;
        listing.since("m2", taken, || lister(&calls, 4), any).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "another marker's attempt does not matter");
        assert_eq!(listing.since("m1", taken, || lister(&calls, 5), any).await.unwrap(), vec![5, 5]);
        assert_eq!(calls.load(Ordering::SeqCst), 3, "after its own attempt (a lost answer): a listing begun later");
        listing.since("m1", taken, || lister(&calls, 6), any).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3, "which then serves");
        // An object that carries the marker and was read on its own since (found deleted, say): the
        // listing's entry for it is older than what Tether knows, so a new listing answers.
        tokio::time::advance(Duration::from_secs(1)).await;
        listing.touch("a");
        assert!(listing.since("m1", taken, || lister(&calls, 7), |_| false).await.unwrap().is_empty());
        assert_eq!(calls.load(Ordering::SeqCst), 3, "only a touched object that carries the marker counts");
        assert_eq!(listing.since("m1", taken, || lister(&calls, 7), any).await.unwrap(), vec![7, 7]);
        assert_eq!(calls.load(Ordering::SeqCst), 4, "listed again for the touched object");
        // A drift check's age is counted from now, whatever searches did.
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(listing.entry("a", Duration::from_secs(2), || lister(&calls, 7)).await.unwrap(), Some(7));
    }

    #[tokio::test(start_paused = true)]
    async fn objects_left_in_progress_are_polled_by_one_listing_once_it_costs_no_more_than_reading_each() {
        let listing: Listing<u32> = Listing::default();
        let calls = AtomicUsize::new(0);
        let age = Duration::from_secs(2);
        let two_pages = |_: usize| 2;
        let fresh = |id: &'static str, value: u32| {
            let (listing, calls) = (&listing, &calls);
            async move { listing.fresh(id, age, two_pages, || lister(calls, value)).await.unwrap() }
        };
        assert!(listing.fresh("a", Duration::ZERO, two_pages, || lister(&calls, 1)).await.unwrap().is_none());
        assert!(fresh("a", 1).await.is_none(), "nothing touched, nothing listed: no listing is worth taking");
        listing.touch("a");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(fresh("a", 1).await.map(|items| items["a"]), Some(1), "no listing yet: one costs a page");
        assert_eq!(fresh("b", 2).await.map(|items| items["b"]), Some(1), "young enough: shared");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        listing.touch("a");
        assert!(fresh("a", 2).await.is_none(), "written since, alone: reading it costs less than two pages");
        assert_eq!(fresh("b", 2).await.map(|items| items["b"]), Some(1), "the others are still answered");
        listing.touch("b");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(fresh("a", 3).await.map(|items| items["a"]), Some(3), "two waiting: a new listing");
        assert_eq!(fresh("b", 3).await.map(|items| items["b"]), Some(3), "which serves both");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::advance(Duration::from_secs(3)).await;
        assert!(fresh("b", 4).await.is_none(), "too old, and nothing waits");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn digests_tell_states_apart() {
        assert_eq!(digest(&("a", 1)), digest(&("a", 1)));
        assert_ne!(digest(&("a", 1)), digest(&("a", 2)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_detail_serves_while_its_entry_keeps_the_marker_and_the_object_is_listed() {
        let listing: Listing<u32, &str> = Listing::default();
        let calls = AtomicUsize::new(0);
        listing.keep_detail("a", "t1".into(), "detail of a");
        listing.keep_detail("z", "t1".into(), "detail of z");
        assert_eq!(listing.detail("a", "t1"), Some("detail of a"));
        assert_eq!(listing.detail("a", "t2"), None, "the entry changed");
        listing.entry("a", Duration::from_secs(1), || lister(&calls, 1)).await.unwrap();
        assert_eq!(listing.detail("a", "t1"), Some("detail of a"));
        assert_eq!(listing.detail("z", "t1"), None, "no longer listed: dropped");
        listing.forget("a");
        assert_eq!(listing.detail("a", "t1"), None, "forgotten");
    }
}
