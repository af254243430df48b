//! The one HTTP layer every platform client speaks through: base URL and credentials, timeouts, a
//! per-account rate limit, retries with exponential backoff and full jitter (honouring Retry-After) for
//! requests that are safe to repeat, error classification, and a tracing span per request that never
//! carries the credentials.
//!
//! Nothing a platform answers may crash the process, exhaust its memory or leak a credential: Retry-After
//! is parsed without overflow and capped ([`MAX_RETRY_AFTER`]), answers are read as a stream and refused
//! past [`HttpConfig::max_body_bytes`], and every message taken from an answer has the credentials this
//! layer sends replaced by `***` and is cut to [`MAX_MESSAGE_CHARS`]. Nothing a caller puts in an id may
//! send a request to another route: every path segment built from a value goes through [`segment`].

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::num::NonZeroU32;
use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use reqwest::{Method, StatusCode, header};
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::error::{Error, Result};

/// A credential: shown as `***` in Debug output and logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The credential itself, for building the request that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where and how fast to talk to one platform account.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Base URL every path is appended to.
    pub base_url: url::Url,
    /// Timeout of one attempt, connection included.
    pub timeout: Duration,
    /// Timeout of establishing a connection.
    pub connect_timeout: Duration,
    /// Steady request rate allowed to this account; unlimited when unset.
    pub requests_per_second: Option<NonZeroU32>,
    /// Requests allowed at once (default: 1, no burst above the steady rate).
    pub burst: Option<NonZeroU32>,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff step; each retry doubles it, up to `backoff_cap`, and sleeps a random share of it.
    pub backoff_base: Duration,
    /// Longest backoff step.
    pub backoff_cap: Duration,
    /// Longest Retry-After Tether honours; a longer one fails the request as Throttled instead of blocking.
    pub max_retry_after: Duration,
    /// Largest successful answer read, in bytes (default 8 MiB). A longer one fails the request as
    /// [`Error::Decode`] without reading the rest, and is not retried. Of an error answer only the first
    /// [`MAX_ERROR_BODY_BYTES`] (or this, if smaller) are read: its status classifies it, the rest is dropped.
    pub max_body_bytes: usize,
}

impl HttpConfig {
    /// Defaults: 30 s timeout, 4 attempts, backoff from 200 ms up to 10 s, no rate limit.
    pub fn new(base_url: url::Url) -> Self {
        Self {
            base_url,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            requests_per_second: None,
            burst: None,
            max_attempts: 4,
            backoff_base: Duration::from_millis(200),
            backoff_cap: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            max_body_bytes: 8 << 20,
        }
    }
}

/// How a platform authenticates and words its errors.
#[derive(Clone)]
pub struct Dialect {
    /// Platform name, for spans and metrics.
    pub platform: &'static str,
    /// Headers added to every request (credentials among them).
    pub auth_headers: Vec<(header::HeaderName, Secret)>,
    /// Extracts the human message from an error body.
    pub message: fn(&serde_json::Value) -> Option<String>,
    /// A platform header that says, in seconds, when to retry after a 429 (besides Retry-After).
    pub retry_header: Option<&'static str>,
    /// Values to replace by `***` in every message, besides those derived from `auth_headers` (each
    /// header value; its token after a scheme such as `Bearer `; a Basic credential's decoded
    /// `user:password` and password; a cookie's values): a raw key the headers carry only encoded.
    pub redact: Vec<Secret>,
}

impl fmt::Debug for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dialect").field("platform", &self.platform).finish_non_exhaustive()
    }
}

/// One request: method, the route template (for spans; never the filled-in path), the path, query,
/// JSON body, and whether repeating it is harmless.
#[derive(Debug)]
pub struct Call {
    method: Method,
    route: &'static str,
    path: String,
    query: Vec<(String, String)>,
    /// The JSON body, serialized once: an Iguazio manifest is every service of a tenant, and a copy as a
    /// `serde_json::Value` tree would be several times its size for as long as the call lives.
    body: Option<Vec<u8>>,
    idempotent: bool,
}

impl Call {
    /// A request; GET, PUT, DELETE and HEAD count as safe to repeat, POST and PATCH do not.
    pub fn new(method: Method, route: &'static str, path: impl Into<String>) -> Self {
        let idempotent = matches!(method, Method::GET | Method::PUT | Method::DELETE | Method::HEAD);
        Self { method, route, path: path.into(), query: Vec::new(), body: None, idempotent }
    }

    /// Adds a query parameter (repeat the call for a repeated key).
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_string(), value.to_string()));
        self
    }

    /// Sets the JSON body.
    pub fn json(mut self, body: &impl serde::Serialize) -> Result<Self> {
        self.body = Some(serde_json::to_vec(body).map_err(|e| Error::Invalid(format!("request body: {e}")))?);
        Ok(self)
    }

    /// Declares the request safe to repeat even though its method is not (e.g. a POST that only reads).
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }

    /// Declares the request unsafe to repeat even though its method is (e.g. a PUT that starts a job).
    pub fn not_idempotent(mut self) -> Self {
        self.idempotent = false;
        self
    }
}

/// The HTTP layer of one platform account, shared by every client of that account (the rate limit is
/// per account).
#[derive(Debug)]
pub struct Http {
    client: reqwest::Client,
    config: HttpConfig,
    dialect: Dialect,
    /// Shared by every `Http` of the same account in this process (see [`shared_limiter`]).
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    /// The account's Retry-After: no request before this instant, whichever client or resource sends it.
    not_before: Gate,
    /// What [`Http::clean`] replaces by `***`, longest first.
    redactions: Vec<Secret>,
    /// The account as a number, stable within this process and meaningless outside it (see [`SENT`]).
    account_tag: u64,
}

/// The process's reqwest client for these timeouts, built once: building one loads and parses the
/// system's CA bundle (milliseconds of CPU), and a Connection's check or a rotated key builds an `Http`
/// again. Shared, its pool of keep-alive connections (kept per host) serves every account on a host.
fn shared_client(timeout: Duration, connect_timeout: Duration) -> Result<reqwest::Client> {
    static CLIENTS: LazyLock<Mutex<HashMap<(Duration, Duration), reqwest::Client>>> = LazyLock::new(Default::default);
    let mut clients = CLIENTS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(client) = clients.get(&(timeout, connect_timeout)) {
        return Ok(client.clone());
    }
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(connect_timeout)
        .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Transient(format!("HTTP client: {e}")))?;
    clients.insert((timeout, connect_timeout), client.clone());
    Ok(client)
}

/// The tracing target of one event per request, at the instant it leaves (after the Retry-After gate and
/// the rate limit): `account` and `sent_us` (microseconds since the Unix epoch). Off unless asked for
/// (`RUST_LOG=tether::sent=trace`); the fault-storm test reads it to prove each account's rate from the
/// sending side, where the limit is kept.
pub const SENT: &str = "tether::sent";

impl Http {
    /// Builds the layer; fails only if the TLS backend cannot start. Every `Http` of the same account
    /// (platform, base URL and credential headers) in the process shares one rate limit, so rebuilding a
    /// client does not give the account a fresh budget.
    pub fn new(config: HttpConfig, dialect: Dialect) -> Result<Arc<Self>> {
        let client = shared_client(config.timeout, config.connect_timeout)?;
        let account = AccountKey::new(&config, &dialect);
        let limiter = config.requests_per_second.map(|rate| {
            let quota = Quota::per_second(rate).allow_burst(config.burst.unwrap_or(NonZeroU32::MIN));
            shared_limiter(account.clone(), quota)
        });
        let account_tag = PROCESS_KEY.hash_one(&account);
        let not_before = shared_gate(account);
        let redactions = redactions(&dialect);
        Ok(Arc::new(Self { client, config, dialect, limiter, not_before, redactions, account_tag }))
    }

    /// `text` fit for an error message: every credential this layer sends (and every value the dialect
    /// asks to redact) replaced by `***`, then cut to [`MAX_MESSAGE_CHARS`] characters. Clients pass every
    /// text a platform chose (a state message, a job result) through this before it becomes an [`Error`].
    pub fn clean(&self, text: &str) -> String {
        let mut text = std::borrow::Cow::Borrowed(text);
        for secret in &self.redactions {
            if text.contains(secret.expose()) {
                text = text.replace(secret.expose(), "***").into();
            }
        }
        truncate(&text, MAX_MESSAGE_CHARS)
    }

    /// The base URL the requests go to.
    pub fn endpoint(&self) -> &url::Url {
        &self.config.base_url
    }

    /// The platform this layer talks to.
    pub fn platform(&self) -> &'static str {
        self.dialect.platform
    }

    /// Sends the call (with retries) and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let bytes = self.send(call).await?;
        // serde's message quotes the offending value, which the platform chose.
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(self.clean(&e.to_string())))
    }

    /// Sends the call (with retries) and ignores the answer's body.
    pub async fn empty(&self, call: Call) -> Result<()> {
        self.send(call).await.map(drop)
    }

    /// Sends the call, retrying what is safe to retry, and returns the body of a 2xx answer.
    pub async fn send(&self, call: Call) -> Result<Vec<u8>> {
        self.send_full(call).await.map(|(_, body)| body)
    }

    /// As [`Http::send`], with the answer's headers (for the rare call whose result is a header, such as
    /// a session cookie).
    pub async fn send_full(&self, call: Call) -> Result<(header::HeaderMap, Vec<u8>)> {
        let span = tracing::debug_span!(
            "platform_request",
            platform = self.dialect.platform,
            method = %call.method,
            route = call.route,
            status = tracing::field::Empty,
            attempts = tracing::field::Empty,
            latency_ms = tracing::field::Empty,
        );
        async {
            let started = Instant::now();
            let mut attempt = 0;
            let configured = self.config.max_attempts;
            let max_attempts = ATTEMPTS.try_with(|n| (*n).min(configured)).unwrap_or(configured).max(1);
            loop {
                attempt += 1;
                // The account's Retry-After first, then its rate budget, and the Retry-After again: one
                // may have arrived (for another call) while this one waited for the budget.
                loop {
                    self.wait_for_retry_after()?;
                    let gate = *self.not_before.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Some(until) = gate.filter(|until| *until > Instant::now()) {
                        tokio::time::sleep_until(until.into()).await;
                    }
                    if let Some(limiter) = &self.limiter {
                        limiter.until_ready().await;
                    }
                    let gate = *self.not_before.lock().unwrap_or_else(PoisonError::into_inner);
                    if gate.is_none_or(|until| until <= Instant::now()) {
                        break;
                    }
                }
                let attempt_started = Instant::now();
                tracing::trace!(target: SENT, account = self.account_tag, sent_us = unix_micros(), "request sent");
                let outcome = self.attempt(&call).await;
                let code = match &outcome {
                    Ok((status, _, _)) => Some(status.as_u16()),
                    Err(failure) => failure.status.map(|s| s.as_u16()),
                };
                crate::metrics::attempt(
                    self.dialect.platform,
                    call.method.as_str(),
                    call.route,
                    code,
                    attempt_started.elapsed(),
                );
                let span = tracing::Span::current();
                span.record("attempts", attempt);
                span.record("latency_ms", started.elapsed().as_millis() as u64);
                let (error, wait) = match outcome {
                    Ok((status, headers, body)) => {
                        span.record("status", status.as_u16());
                        return Ok((headers, body));
                    }
                    Err(Failure { error, retry_after, retry, status }) => {
                        if let Some(status) = status {
                            span.record("status", status.as_u16());
                        }
                        if let Some(wait) = retry_after {
                            self.hold_off(wait);
                        }
                        let safe = match retry {
                            Retry::Always => true,
                            Retry::IfIdempotent => call.idempotent,
                            Retry::Never => false,
                        };
                        if !safe || attempt >= max_attempts {
                            crate::metrics::failure(self.dialect.platform, &error);
                            return Err(error);
                        }
                        match retry_after {
                            Some(wait) if wait > self.config.max_retry_after => {
                                crate::metrics::failure(self.dialect.platform, &error);
                                return Err(error);
                            }
                            Some(wait) => (error, wait.max(self.backoff(attempt) / 4)),
                            None => (error, self.backoff(attempt)),
                        }
                    }
                };
                tracing::debug!(%error, attempt, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
            }
        }
        .instrument(span)
        .await
    }

    /// Fails as Throttled, without a request, while the account's Retry-After is further away than this
    /// layer waits within one call; a nearer one is waited for by the caller.
    fn wait_for_retry_after(&self) -> Result<()> {
        let gate = *self.not_before.lock().unwrap_or_else(PoisonError::into_inner);
        let remaining = gate.map(|until| until.saturating_duration_since(Instant::now())).unwrap_or_default();
        if remaining > self.config.max_retry_after {
            return Err(Error::Throttled { retry_after: Some(remaining) });
        }
        Ok(())
    }

    /// The platform asked the account to wait `wait` (a Retry-After): no request of the account leaves
    /// before then, across calls, clients and resources, for at most [`MAX_ACCOUNT_HOLD`].
    fn hold_off(&self, wait: Duration) {
        let now = Instant::now();
        let until = now.checked_add(wait.min(MAX_ACCOUNT_HOLD)).unwrap_or(now);
        let mut gate = self.not_before.lock().unwrap_or_else(PoisonError::into_inner);
        if gate.is_none_or(|current| current < until) {
            *gate = Some(until);
        }
    }

    /// Full jitter: a random duration up to base × 2^(attempt-1), capped. Exact integer arithmetic: no
    /// configuration (even `Duration::MAX`) can make it overflow.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.config.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        let nanos = fastrand::u128(0..=ceiling.min(self.config.backoff_cap).as_nanos());
        // At most the ceiling's nanoseconds, so the seconds fit in a u64.
        Duration::new(u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX), (nanos % 1_000_000_000) as u32)
    }

    async fn attempt(&self, call: &Call) -> std::result::Result<(StatusCode, header::HeaderMap, Vec<u8>), Failure> {
        let mut url = self.url(&call.path).map_err(|e| Failure::fatal(Error::Invalid(e)))?;
        if !call.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&call.query);
        }
        let mut request = self.client.request(call.method.clone(), url);
        for (name, value) in &self.dialect.auth_headers {
            let mut value = header::HeaderValue::from_str(value.expose())
                .map_err(|_| Failure::fatal(Error::Unauthorized("credential is not a valid header value".into())))?;
            value.set_sensitive(true);
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.header(header::CONTENT_TYPE, "application/json").body(body.clone());
        }
        let response = request.send().await.map_err(|e| Failure {
            error: Error::Transient(describe(&e)),
            retry_after: None,
            // A connection that never opened carried nothing: safe to retry whatever the method. Any
            // other failure may have reached the platform.
            retry: if e.is_connect() { Retry::Always } else { Retry::IfIdempotent },
            status: None,
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let retry_after = self.retry_after(&headers);
        let limit = if status.is_success() {
            self.config.max_body_bytes
        } else {
            self.config.max_body_bytes.min(MAX_ERROR_BODY_BYTES)
        };
        let (body, complete) = read_body(response, limit).await.map_err(|e| Failure {
            error: Error::Transient(format!("reading the answer: {}", describe(&e))),
            retry_after: None,
            retry: Retry::IfIdempotent,
            status: Some(status),
        })?;
        if status.is_success() {
            if !complete {
                // The same request would get the same answer: refused, not retried.
                let error = Error::Decode(format!(
                    "the platform's answer exceeds {limit} bytes (the connection's max_body_bytes); refused"
                ));
                return Err(Failure { error, retry_after: None, retry: Retry::Never, status: Some(status) });
            }
            return Ok((status, headers, body));
        }
        let message = if complete {
            serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| (self.dialect.message)(&v))
        } else {
            None
        };
        let message = match message {
            Some(message) => self.clean(&message),
            None => self.clean(&self.raw_text(&body, complete)),
        };
        let error = Error::from_status(status, message, retry_after);
        // A 429 means the platform did not act on the request; a 5xx may come after it did.
        let retry = match &error {
            Error::Throttled { .. } => Retry::Always,
            Error::Transient(_) => Retry::IfIdempotent,
            _ => Retry::Never,
        };
        Err(Failure { error, retry_after, retry, status: Some(status) })
    }

    fn url(&self, path: &str) -> std::result::Result<url::Url, String> {
        let base = self.config.base_url.as_str().trim_end_matches('/');
        url::Url::parse(&format!("{base}/{}", path.trim_start_matches('/'))).map_err(|e| format!("bad URL: {e}"))
    }

    /// The start of an error answer as text. When only its start was read, the last bytes that could
    /// hold the start of a credential (cut before its end, so it would not be recognised) are dropped.
    fn raw_text(&self, body: &[u8], complete: bool) -> String {
        let text = String::from_utf8_lossy(body);
        if complete {
            return text.into_owned();
        }
        let longest = self.redactions.first().map_or(0, |s| s.expose().chars().count());
        let keep = text.chars().count().saturating_sub(longest);
        text.chars().take(keep).collect()
    }

    fn retry_after(&self, headers: &header::HeaderMap) -> Option<Duration> {
        let wait = |name: &str| parse_retry_after(headers.get(name)?.to_str().ok()?, SystemTime::now());
        wait("retry-after").or_else(|| self.dialect.retry_header.and_then(wait))
    }
}

/// The longest wait a Retry-After (or a platform's own header) can ask for: a longer one, an infinite one
/// (`inf`, `1e400`) or a date further away counts as this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Longest a Retry-After holds a whole account (the reconciler looks again after at most as long): a
/// platform's header, however large, never silences an account for longer.
pub const MAX_ACCOUNT_HOLD: Duration = Duration::from_secs(60 * 60);

/// Most characters of a platform's text that go into an error message (then `…`).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// Most pages a client reads of one list: a platform whose list never ends (or that ignores the page
/// asked for) fails the call as [`Error::Decode`] instead of growing memory without bound.
pub const MAX_PAGES: u64 = 1000;

/// The error of a list still going after [`MAX_PAGES`] pages.
fn unix_micros() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

pub fn too_many_pages(what: &str) -> Error {
    Error::Decode(format!("the platform's list of {what} did not end after {MAX_PAGES} pages; refused"))
}

/// Most bytes read of an error answer (only its message is used, and that is cut to [`MAX_MESSAGE_CHARS`]).
pub const MAX_ERROR_BODY_BYTES: usize = 2 << 20;

/// A Retry-After value: seconds (fractions allowed; negative or NaN ignored) or an HTTP-date (a date past
/// is no wait), capped at [`MAX_RETRY_AFTER`]. Never panics.
fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        if seconds.is_nan() || seconds < 0.0 {
            return None;
        }
        let capped = seconds.min(MAX_RETRY_AFTER.as_secs_f64());
        return Some(Duration::try_from_secs_f64(capped).unwrap_or(MAX_RETRY_AFTER));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(MAX_RETRY_AFTER))
}

/// Reads at most `limit` bytes of the body as it streams in (never more in memory); `false` when the answer
/// was longer and the rest was left unread. A Content-Length over the limit is believed without reading.
async fn read_body(mut response: reqwest::Response, limit: usize) -> reqwest::Result<(Vec<u8>, bool)> {
    let announced = response.content_length().map(|n| usize::try_from(n).unwrap_or(usize::MAX));
    if announced.is_some_and(|n| n > limit) {
        return Ok((Vec::new(), false));
    }
    let mut body = Vec::with_capacity(announced.unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, false));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, true))
}

/// `text` cut to `max` characters (on a character boundary), with `…` when something was cut.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// The values [`Http::clean`] redacts: each credential header value and the parts of it a platform might
/// echo, the dialect's extra values, and each of them as it appears inside a JSON string; longest first.
fn redactions(dialect: &Dialect) -> Vec<Secret> {
    use base64::Engine as _;
    let mut values: Vec<String> = Vec::new();
    for (name, value) in &dialect.auth_headers {
        let value = value.expose().trim();
        values.push(value.to_string());
        if let Some((scheme, token)) = value.split_once(' ') {
            let token = token.trim();
            values.push(token.to_string());
            if scheme.eq_ignore_ascii_case("basic")
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token)
                && let Ok(decoded) = String::from_utf8(decoded)
            {
                if let Some((_, password)) = decoded.split_once(':') {
                    values.push(password.to_string());
                }
                values.push(decoded);
            }
        }
        if name == header::COOKIE {
            for cookie in value.split(';') {
                if let Some((_, v)) = cookie.split_once('=') {
                    values.push(v.trim().to_string());
                }
            }
        }
    }
    values.extend(dialect.redact.iter().map(|s| s.expose().to_string()));
    let escaped: Vec<String> = values
        .iter()
        .filter_map(|v| serde_json::to_string(v).ok())
        .map(|quoted| quoted[1..quoted.len() - 1].to_string())
        .collect();
    values.extend(escaped);
    values.retain(|v| !v.is_empty());
    values.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    values.dedup();
    values.into_iter().map(Secret::new).collect()
}

/// Characters kept as they are in a path segment: RFC 3986's unreserved ones. Everything else is
/// percent-encoded.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// `value` as one path segment, percent-encoded; refused ([`Error::Invalid`], naming it as a `what`) when it
/// could leave its place in the path: empty, `.` or `..`, with a `/` or `\` or a control character, or
/// any of those once percent-decoded (`%2e%2e`, `a%2Fb`), as a server or proxy may decode before routing.
/// Every client builds every path segment that is not a constant through this.
pub fn segment(what: &str, value: &str) -> Result<String> {
    fn unsafe_because(value: &str) -> Option<&'static str> {
        if value.is_empty() {
            Some("it is empty")
        } else if value == "." || value == ".." {
            Some("it is a relative path segment")
        } else if value.contains(['/', '\\']) {
            Some("it contains a slash")
        } else if value.chars().any(char::is_control) {
            Some("it contains a control character")
        } else {
            None
        }
    }
    let decoded = percent_decode_str(value).decode_utf8_lossy();
    let why = match (unsafe_because(value), unsafe_because(&decoded)) {
        (Some(why), _) => why.to_string(),
        (None, Some(why)) => format!("once percent-decoded, {why}"),
        (None, None) => return Ok(utf8_percent_encode(value, SEGMENT).to_string()),
    };
    Err(Error::Invalid(format!("{:?} is not a valid {what}: {why}", truncate(value, 64))))
}

/// The key of every hash that stands for a credential: drawn once per process, so a hash is stable within
/// it and useless outside it.
static PROCESS_KEY: LazyLock<RandomState> = LazyLock::new(RandomState::new);

/// Which account a rate limit belongs to: the platform, the base URL and a keyed hash of the credential
/// headers (the credential itself is never kept).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
struct AccountKey {
    platform: &'static str,
    base_url: String,
    credential: u64,
}

impl AccountKey {
    fn new(config: &HttpConfig, dialect: &Dialect) -> Self {
        let mut hasher = PROCESS_KEY.build_hasher();
        for (name, value) in &dialect.auth_headers {
            name.as_str().hash(&mut hasher);
            value.expose().hash(&mut hasher);
        }
        Self { platform: dialect.platform, base_url: config.base_url.to_string(), credential: hasher.finish() }
    }
}

tokio::task_local! {
    /// Most attempts per call for the calls made inside [`with_attempts`] (never more than configured).
    static ATTEMPTS: u32;
}

/// Runs `future` with at most `attempts` attempts per call (at least one, at most the configured number). The reconciler runs a resource
/// whose last reconcile failed with one: its backoff already spaces the retries, and repeating each read
/// four times during an outage would only multiply the traffic.
pub async fn with_attempts<F: std::future::Future>(attempts: u32, future: F) -> F::Output {
    ATTEMPTS.scope(attempts.max(1), future).await
}

/// Every account's Retry-After gate, while an `Http` holds it or its Retry-After lasts (a client rebuilt
/// after the last one was dropped still waits).
static GATES: LazyLock<Mutex<HashMap<AccountKey, Gate>>> = LazyLock::new(Mutex::default);

/// The instant before which the account sends nothing.
type Gate = Arc<Mutex<Option<Instant>>>;

fn shared_gate(key: AccountKey) -> Gate {
    let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
    let now = Instant::now();
    gates.retain(|_, gate| {
        Arc::strong_count(gate) > 1 || gate.lock().unwrap_or_else(PoisonError::into_inner).is_some_and(|u| u > now)
    });
    gates.entry(key).or_default().clone()
}

/// Every live rate limiter, by account, with the quota it was built for.
type Limiters = HashMap<AccountKey, (Quota, Weak<DefaultDirectRateLimiter>)>;

static LIMITERS: LazyLock<Mutex<Limiters>> = LazyLock::new(Mutex::default);

/// The account's limiter while any `Http` holds it: the same quota shares it; a changed quota gets a new
/// one (layers still holding the old one keep it until they are dropped).
fn shared_limiter(key: AccountKey, quota: Quota) -> Arc<DefaultDirectRateLimiter> {
    let mut limiters = LIMITERS.lock().unwrap_or_else(PoisonError::into_inner);
    limiters.retain(|_, (_, limiter)| limiter.strong_count() > 0);
    if let Some((current, limiter)) = limiters.get(&key)
        && *current == quota
        && let Some(limiter) = limiter.upgrade()
    {
        return limiter;
    }
    let limiter = Arc::new(RateLimiter::direct(quota));
    limiters.insert(key, (quota, Arc::downgrade(&limiter)));
    limiter
}

struct Failure {
    error: Error,
    retry_after: Option<Duration>,
    retry: Retry,
    status: Option<StatusCode>,
}

/// When a failed attempt may be repeated.
enum Retry {
    /// Whatever the method: the platform cannot have acted on it.
    Always,
    /// Only if the call is safe to repeat.
    IfIdempotent,
    /// Never: repeating cannot change the answer.
    Never,
}

impl Failure {
    fn fatal(error: Error) -> Self {
        Self { error, retry_after: None, retry: Retry::Never, status: None }
    }
}

/// A transport error in words, without the URL's query (which some platforms fill with identifiers).
fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "broken answer"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() { kind.to_string() } else { format!("{kind}: {detail}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(base: Duration, cap: Duration) -> Arc<Http> {
        let mut config = HttpConfig::new("http://127.0.0.1:1/".parse().unwrap());
        config.backoff_base = base;
        config.backoff_cap = cap;
        let dialect = Dialect {
            platform: "test",
            auth_headers: Vec::new(),
            message: |_| None,
            retry_header: None,
            redact: vec![],
        };
        Http::new(config, dialect).unwrap()
    }

    fn dialect(headers: &[(header::HeaderName, &str)], redact: &[&str]) -> Dialect {
        Dialect {
            platform: "test",
            auth_headers: headers.iter().map(|(n, v)| (n.clone(), Secret::new(*v))).collect(),
            message: |_| None,
            retry_header: None,
            redact: redact.iter().map(|v| Secret::new(*v)).collect(),
        }
    }

    #[test]
    fn backoff_never_overflows_whatever_the_configuration() {
        let h = http(Duration::MAX, Duration::MAX);
        for attempt in [0, 1, 2, 17, 64, u32::MAX] {
            assert!(h.backoff(attempt) <= Duration::MAX);
        }
        let h = http(Duration::from_nanos(1), Duration::ZERO);
        assert_eq!(h.backoff(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_parsed_without_panicking_and_capped() {
        let now = SystemTime::now();
        let day = Some(MAX_RETRY_AFTER);
        let cases = [
            ("7", Some(Duration::from_secs(7))),
            (" 1.5 ", Some(Duration::from_millis(1500))),
            ("0", Some(Duration::ZERO)),
            ("99999999999999999999", day),
            ("18446744073709551616", day),
            ("inf", day),
            ("Infinity", day),
            ("1e400", day),
            ("-1", None),
            ("-inf", None),
            ("NaN", None),
            ("", None),
            ("soon", None),
            ("Wed, 21 Oct 2099 07:28:00 GMT", day),
            ("Wed, 21 Oct 2015 07:28:00 GMT", Some(Duration::ZERO)),
        ];
        for (value, wanted) in cases {
            assert_eq!(parse_retry_after(value, now), wanted, "{value:?}");
        }
        let soon = httpdate::fmt_http_date(now + Duration::from_secs(30));
        let wait = parse_retry_after(&soon, now).unwrap();
        assert!(wait > Duration::from_secs(28) && wait <= Duration::from_secs(30), "{soon}: {wait:?}");
    }

    #[test]
    fn segments_are_escaped_and_paths_out_of_place_refused() {
        for (value, escaped) in [
            ("svc-1", "svc-1"),
            ("704285b2-aab1-4b0a-b8ff-bfbeb37f89e4", "704285b2-aab1-4b0a-b8ff-bfbeb37f89e4"),
            ("v1.1.0", "v1.1.0"),
            ("a b", "a%20b"),
            ("a?b#c", "a%3Fb%23c"),
            ("100%", "100%25"),
            ("...", "..."),
            ("%252e%252e", "%25252e%25252e"),
            ("é", "%C3%A9"),
        ] {
            assert_eq!(segment("id", value).unwrap(), escaped, "{value:?}");
        }
        for value in
            ["", ".", "..", "../x", "x/../y", "a/b", "/", "a\\b", "%2e%2e", "%2E.", "a%2Fb", "a%5cb", "a\nb", "a%00b"]
        {
            match segment("Peak webapp id", value) {
                Err(Error::Invalid(m)) => assert!(m.contains("is not a valid Peak webapp id"), "{m}"),
                other => panic!("{value:?} gave {other:?}"),
            }
        }
        let long = "/".repeat(10_000);
        assert!(segment("id", &long).unwrap_err().to_string().len() < 200, "the value shown is cut");
    }

    #[test]
    fn every_credential_form_is_redacted_and_messages_are_cut() {
        use base64::Engine as _;
        let basic = base64::engine::general_purpose::STANDARD.encode("admin:k3y-in-basic");
        let h = Http::new(
            HttpConfig::new("http://127.0.0.1:1/".parse().unwrap()),
            dialect(
                &[
                    (header::AUTHORIZATION, &format!("Basic {basic}")),
                    (header::COOKIE, "session=c00kie-key; other=v4lue"),
                    (header::HeaderName::from_static("x-api-key"), "Bearer t0ken"),
                ],
                &["raw-extra", "quote\"d"],
            ),
        )
        .unwrap();
        let text = format!(
            "Basic {basic} | {basic} | admin:k3y-in-basic | k3y-in-basic | c00kie-key | v4lue | t0ken | \
             Bearer t0ken | raw-extra | {} ",
            serde_json::to_string("quote\"d").unwrap()
        );
        let cleaned = h.clean(&text);
        for secret in [basic.as_str(), "k3y-in-basic", "c00kie-key", "v4lue", "t0ken", "raw-extra", "quote"] {
            assert!(!cleaned.contains(secret), "{secret} in {cleaned}");
        }
        assert_eq!(cleaned.matches("***").count(), 10, "{cleaned}");
        assert!(!format!("{h:?}").contains("t0ken"), "Debug shows no credential");

        let long = "é".repeat(5000);
        let cut = h.clean(&long);
        assert_eq!(cut.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(cut.ends_with('…'));
        assert_eq!(h.clean("short"), "short");
    }

    #[test]
    fn an_error_body_cut_short_drops_what_could_be_a_partial_credential() {
        let h = Http::new(
            HttpConfig::new("http://127.0.0.1:1/".parse().unwrap()),
            dialect(&[(header::AUTHORIZATION, "Token abcdefghij")], &[]),
        )
        .unwrap();
        let text = h.raw_text(b"error: abcde", false);
        assert!(!text.contains("abcde"), "{text}");
        assert_eq!(h.raw_text(b"error: abcdefghij", true), "error: abcdefghij");
    }

    #[test]
    fn one_limiter_per_account_and_quota() {
        let base = "http://127.0.0.1:1/shared-limiter-test/";
        let build = |token: &str, rate: u32| {
            let mut config = HttpConfig::new(base.parse().unwrap());
            config.requests_per_second = NonZeroU32::new(rate);
            Http::new(config, dialect(&[(header::AUTHORIZATION, token)], &[])).unwrap()
        };
        let a = build("Token one", 10);
        let b = build("Token one", 10);
        let other = build("Token two", 10);
        let limiter = |h: &Http| h.limiter.clone().unwrap();
        assert!(Arc::ptr_eq(&limiter(&a), &limiter(&b)), "a rebuild with the same quota shares");
        assert!(!Arc::ptr_eq(&limiter(&a), &limiter(&other)), "another credential has its own budget");
        let faster = build("Token one", 20);
        assert!(!Arc::ptr_eq(&limiter(&a), &limiter(&faster)), "a changed quota gets a new limiter");
        let after = build("Token one", 20);
        assert!(Arc::ptr_eq(&limiter(&faster), &limiter(&after)));
        let key = AccountKey::new(&a.config, &a.dialect);
        assert!(!format!("{key:?}").contains("one"), "the key holds no credential");
        drop((a, b, other, faster, after));
        let limiters = LIMITERS.lock().unwrap();
        let ours = limiters.iter().filter(|(k, _)| k.base_url == base);
        assert!(ours.into_iter().all(|(_, (_, l))| l.strong_count() == 0), "nothing keeps a dropped limiter");
    }

    #[test]
    fn backoff_is_full_jitter_under_a_doubling_ceiling_and_the_cap() {
        let h = http(Duration::from_millis(100), Duration::from_millis(1000));
        for attempt in 1..=8 {
            let ceiling = Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_millis(1000));
            let draws: Vec<Duration> = (0..200).map(|_| h.backoff(attempt)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling), "attempt {attempt} exceeded {ceiling:?}");
            assert!(draws.iter().any(|d| *d < ceiling / 2), "attempt {attempt}: no jitter below half");
        }
    }

    #[test]
    fn paths_join_the_base_with_exactly_one_slash() {
        let h = http(Duration::ZERO, Duration::ZERO);
        assert_eq!(h.url("/a/b").unwrap().as_str(), "http://127.0.0.1:1/a/b");
        assert_eq!(h.url("a/b").unwrap().as_str(), "http://127.0.0.1:1/a/b");
    }

    #[test]
    fn calls_know_which_methods_are_safe_to_repeat() {
        assert!(Call::new(Method::GET, "/", "").idempotent);
        assert!(Call::new(Method::PUT, "/", "").idempotent);
        assert!(!Call::new(Method::POST, "/", "").idempotent);
        assert!(!Call::new(Method::PATCH, "/", "").idempotent);
        assert!(!Call::new(Method::PUT, "/", "").not_idempotent().idempotent);
    }
}
