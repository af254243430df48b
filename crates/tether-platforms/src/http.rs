//! The one HTTP layer every platform client speaks through: base URL and credentials, timeouts, a
//! per-account rate limit, retries with exponential backoff and full jitter (honouring Retry-After) for
//! requests that are safe to repeat, error classification, and a tracing span per request that never
//! carries the credentials.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
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
    /// Requests allowed at once above the steady rate (default: the rate itself).
    pub burst: Option<NonZeroU32>,
    /// Attempts per request, the first included.
    pub max_attempts: u32,
    /// First backoff step; each retry doubles it, up to `backoff_cap`, and sleeps a random share of it.
    pub backoff_base: Duration,
    /// Longest backoff step.
    pub backoff_cap: Duration,
    /// Longest Retry-After Tether honours; a longer one fails the request as Throttled instead of blocking.
    pub max_retry_after: Duration,
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
    body: Option<serde_json::Value>,
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
        self.body = Some(serde_json::to_value(body).map_err(|e| Error::Invalid(format!("request body: {e}")))?);
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
    limiter: Option<DefaultDirectRateLimiter>,
}

impl Http {
    /// Builds the layer; fails only if the TLS backend cannot start.
    pub fn new(config: HttpConfig, dialect: Dialect) -> Result<Arc<Self>> {
        let client = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("tether/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Transient(format!("HTTP client: {e}")))?;
        let limiter = config.requests_per_second.map(|rate| {
            RateLimiter::direct(Quota::per_second(rate).allow_burst(config.burst.unwrap_or(NonZeroU32::MIN)))
        });
        Ok(Arc::new(Self { client, config, dialect, limiter }))
    }

    /// The platform this layer talks to.
    pub fn platform(&self) -> &'static str {
        self.dialect.platform
    }

    /// Sends the call (with retries) and decodes a JSON answer.
    pub async fn json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        let bytes = self.send(call).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Decode(e.to_string()))
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
            loop {
                attempt += 1;
                if let Some(limiter) = &self.limiter {
                    limiter.until_ready().await;
                }
                let attempt_started = Instant::now();
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
                        let safe = match retry {
                            Retry::Always => true,
                            Retry::IfIdempotent => call.idempotent,
                            Retry::Never => false,
                        };
                        if !safe || attempt >= self.config.max_attempts {
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

    /// Full jitter: a random duration up to base × 2^(attempt-1), capped.
    fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.config.backoff_base.saturating_mul(1 << attempt.saturating_sub(1).min(16));
        ceiling.min(self.config.backoff_cap).mul_f64(fastrand::f64())
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
            request = request.json(body);
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
        let body = response.bytes().await.map_err(|e| Failure {
            error: Error::Transient(format!("reading the answer: {}", describe(&e))),
            retry_after: None,
            retry: Retry::IfIdempotent,
            status: Some(status),
        })?;
        if status.is_success() {
            return Ok((status, headers, body.to_vec()));
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| (self.dialect.message)(&v))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(500).collect());
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

    fn retry_after(&self, headers: &header::HeaderMap) -> Option<Duration> {
        let seconds = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
        seconds("retry-after")
            .or_else(|| self.dialect.retry_header.and_then(seconds))
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
    }
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
        let dialect = Dialect { platform: "test", auth_headers: Vec::new(), message: |_| None, retry_header: None };
        Http::new(config, dialect).unwrap()
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
