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
}

struct Snapshot<T> {
    began: Instant,
    items: Arc<HashMap<String, T>>,
}

impl<T, D> Default for Listing<T, D> {
    fn default() -> Self {
        Self { last: Default::default(), touched: Default::default(), details: Default::default() }
    }
}

impl<T, D> std::fmt::Debug for Listing<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listing").finish_non_exhaustive()
    }
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
        let asked = Instant::now();
        let mut last = self.last.lock().await;
        // A `max_age` too long to add counts as forever.
        let fresh = last.as_ref().is_some_and(|s| s.began.checked_add(max_age).is_none_or(|until| until >= asked));
        if !fresh {
            let began = Instant::now();
            let items: HashMap<String, T> = list().await?.into_iter().collect();
            self.touched.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, at| *at >= began);
            self.details.lock().unwrap_or_else(PoisonError::into_inner).retain(|id, _| items.contains_key(id));
            *last = Some(Snapshot { began, items: Arc::new(items) });
        }
        let Some(snapshot) = last.as_ref() else { return Ok(None) };
        let touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner).get(id).copied();
        if touched.is_some_and(|at| at >= snapshot.began) {
            return Ok(None);
        }
        Ok(snapshot.items.get(id).cloned())
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
