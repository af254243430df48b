//! The shared HTTP layer, and each client through it, against answers no simulator gives: a tiny axum
//! server of the test's own on 127.0.0.1:0 sends Retry-After values that used to panic, answers of 64 MiB,
//! error messages of 1 MiB and error messages echoing the credential; and the rate limit of an account
//! shared by every client built for it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use serde_json::{Value, json};
use tether_platforms::http::{MAX_MESSAGE_CHARS, MAX_RETRY_AFTER};
use tether_platforms::{Call, Dialect, Error, Http, HttpConfig, Secret};

/// Serves `router` on a free port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

fn message(body: &Value) -> Option<String> {
    body.get("error").and_then(Value::as_str).map(str::to_string)
}

fn http(url: &str, token: &str, configure: impl FnOnce(&mut HttpConfig)) -> Arc<Http> {
    let mut config = HttpConfig::new(url.parse().unwrap());
    config.backoff_base = Duration::from_millis(1);
    config.backoff_cap = Duration::from_millis(5);
    configure(&mut config);
    let dialect = Dialect {
        platform: "test",
        auth_headers: vec![(header::AUTHORIZATION, Secret::new(format!("Token {token}")))],
        message,
        retry_header: None,
        redact: Vec::new(),
    };
    Http::new(config, dialect).unwrap()
}

fn get_call(route: &'static str) -> Call {
    Call::new(reqwest::Method::GET, route, route.trim_start_matches('/'))
}

// === 1. Retry-After ===

/// 429 with `Retry-After: <v>` (the query parameter `v`), counting attempts.
async fn throttling_server() -> (String, Arc<AtomicUsize>) {
    let attempts = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/throttle",
            get(|State(n): State<Arc<AtomicUsize>>, Query(q): Query<HashMap<String, String>>| async move {
                n.fetch_add(1, Ordering::SeqCst);
                let mut response = (StatusCode::TOO_MANY_REQUESTS, r#"{"error": "slow down"}"#).into_response();
                response.headers_mut().insert("retry-after", q["v"].parse().unwrap());
                response
            }),
        )
        .with_state(attempts.clone());
    (serve(router).await, attempts)
}

#[tokio::test]
async fn retry_after_values_that_used_to_panic_fail_the_call_as_throttled_for_a_day_at_most() {
    let (url, attempts) = throttling_server().await;
    for value in ["99999999999999999999", "18446744073709551616.5", "inf", "1e400", "Wed, 21 Oct 2099 07:28:00 GMT"] {
        // Each value on an account of its own: a Retry-After holds the whole account.
        let h = http(&url, &format!("k-{value}"), |c| c.max_attempts = 3);
        attempts.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = h.empty(get_call("/throttle").query("v", value)).await;
        assert!(
            matches!(outcome, Err(Error::Throttled { retry_after: Some(wait) }) if wait == MAX_RETRY_AFTER),
            "{value:?} gave {outcome:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{value:?}: a wait over max_retry_after is not slept");
        assert!(started.elapsed() < Duration::from_secs(2), "{value:?} took {:?}", started.elapsed());
        // The account now waits an hour (the longest it is held): the next call is refused as Throttled
        // without a request.
        let again = h.empty(get_call("/throttle").query("v", value)).await;
        assert!(matches!(again, Err(Error::Throttled { retry_after: Some(w) }) if w > Duration::from_secs(3500)));
        assert_eq!(attempts.load(Ordering::SeqCst), 1, "{value:?}: nothing sent before the Retry-After");
    }
}

#[tokio::test]
async fn retry_after_values_that_mean_nothing_are_ignored_and_the_backoff_applies() {
    let (url, attempts) = throttling_server().await;
    let h = http(&url, "k", |c| c.max_attempts = 3);
    for value in ["-1", "-inf", "NaN", "soon", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        attempts.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = h.empty(get_call("/throttle").query("v", value)).await;
        assert!(
            matches!(outcome, Err(Error::Throttled { retry_after: None | Some(Duration::ZERO) })),
            "{value:?} gave {outcome:?}"
        );
        assert_eq!(attempts.load(Ordering::SeqCst), 3, "{value:?}: retried with the backoff");
        assert!(started.elapsed() < Duration::from_secs(2), "{value:?} took {:?}", started.elapsed());
    }
}

#[tokio::test]
async fn a_huge_ubiops_rate_limit_reset_is_capped_too() {
    let router = Router::new().fallback(|| async {
        let mut response = (StatusCode::TOO_MANY_REQUESTS, r#"{"error": "Too many requests"}"#).into_response();
        response.headers_mut().insert("x-ratelimit-reset", "99999999999999999999".parse().unwrap());
        response
    });
    let url = serve(router).await;
    let c = tether_platforms::ubiops::Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new("t")).unwrap();
    let outcome = c.ping().await;
    assert!(matches!(outcome, Err(Error::Throttled { retry_after: Some(w) }) if w == MAX_RETRY_AFTER), "{outcome:?}");
}

// === 2. Bounded answers ===

const MIB: usize = 1 << 20;

/// `/big` (with Content-Length), `/chunked` (without) and `/error` (500, without): 64 MiB of `x`, made
/// one MiB at a time as the client reads; counts the MiB made and the requests.
#[derive(Clone, Default)]
struct Big {
    made: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
}

fn stream_of(big: &Big) -> Body {
    let chunk = Bytes::from(vec![b'x'; MIB]);
    let made = big.made.clone();
    big.requests.fetch_add(1, Ordering::SeqCst);
    Body::from_stream(futures::stream::iter((0..64).map(move |_| {
        made.fetch_add(1, Ordering::SeqCst);
        Ok::<_, std::io::Error>(chunk.clone())
    })))
}

async fn big_server() -> (String, Big) {
    let big = Big::default();
    let router = Router::new()
        .route(
            "/big",
            get(|State(big): State<Big>| async move {
                let mut response = Response::new(stream_of(&big));
                response.headers_mut().insert(header::CONTENT_LENGTH, (64 * MIB).into());
                response
            }),
        )
        .route("/chunked", get(|State(big): State<Big>| async move { Response::new(stream_of(&big)) }))
        .route(
            "/error",
            get(|State(big): State<Big>| async move {
                let mut response = Response::new(stream_of(&big));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                response
            }),
        )
        .with_state(big.clone());
    (serve(router).await, big)
}

#[tokio::test]
async fn an_answer_over_max_body_bytes_is_refused_quickly_without_reading_it_and_not_retried() {
    let (url, big) = big_server().await;
    let h = http(&url, "k", |c| c.max_body_bytes = MIB);
    for route in ["/big", "/chunked"] {
        big.made.store(0, Ordering::SeqCst);
        big.requests.store(0, Ordering::SeqCst);
        let started = Instant::now();
        let outcome = h.send(get_call(route)).await;
        assert!(
            matches!(&outcome, Err(Error::Decode(m)) if m.contains("exceeds 1048576 bytes") && m.contains("refused")),
            "{route}: {outcome:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5), "{route} took {:?}", started.elapsed());
        assert_eq!(big.requests.load(Ordering::SeqCst), 1, "{route}: a too-big answer is not asked for again");
        // What the server made beyond the first MiB sits in socket buffers at most, never all 64 MiB.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let made = big.made.load(Ordering::SeqCst);
        assert!(made < 32, "{route}: the server had to make {made} MiB");
    }
    // Under the limit, the same server's answer is read whole.
    let roomy = http(&url, "k2", |c| c.max_body_bytes = 64 * MIB);
    assert_eq!(roomy.send(get_call("/chunked")).await.unwrap().len(), 64 * MIB);
}

#[tokio::test]
async fn a_gigantic_error_answer_keeps_its_class_with_a_short_message() {
    let (url, big) = big_server().await;
    let h = http(&url, "k", |c| c.max_attempts = 2);
    let started = Instant::now();
    let outcome = h.send(get_call("/error")).await;
    let Err(Error::Transient(m)) = outcome else { panic!("{outcome:?}") };
    assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 40, "{} chars", m.chars().count());
    assert!(m.ends_with('…'));
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    assert_eq!(big.requests.load(Ordering::SeqCst), 2, "a 5xx of a GET is still retried");
}

// === 3. Bounded, redacted messages ===

/// Answers every request with `status` and a body naming `raw` and every credential it was sent (each
/// header, the token after its scheme, a Basic credential decoded, the request body), in every
/// platform's message field.
async fn echo_server(status: StatusCode, raw: &'static str, json: bool) -> String {
    let router = Router::new().fallback(move |headers: HeaderMap, body: Bytes| async move {
        let mut said = vec![format!("bad key {raw}")];
        for name in [header::AUTHORIZATION, header::COOKIE] {
            for value in headers.get_all(&name) {
                let value = value.to_str().unwrap().to_string();
                if let Some((_, token)) = value.split_once(' ') {
                    said.push(format!("token {token}"));
                    if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(token) {
                        said.push(format!("decoded {}", String::from_utf8_lossy(&decoded)));
                    }
                }
                said.push(format!("{name}: {value}"));
            }
        }
        said.push(format!("body {}", String::from_utf8_lossy(&body)));
        let said = said.join("; ");
        let text = if json {
            json!({"error": said, "errorDescription": said, "message": said, "detail": said,
                   "errors": [{"status": status.as_u16(), "detail": said}]})
            .to_string()
        } else {
            said
        };
        (status, text)
    });
    serve(router).await
}

/// The credential must not appear in `outcome`'s message, whole or in part; `***` does.
fn assert_redacted(platform: &str, outcome: Result<impl std::fmt::Debug, Error>, secrets: &[&str]) {
    let error = outcome.expect_err(platform);
    assert!(matches!(error, Error::Unauthorized(_)), "{platform}: {error:?}");
    let text = error.to_string();
    assert!(text.contains("***"), "{platform}: {text}");
    for secret in secrets {
        assert!(!text.contains(secret), "{platform} leaked {secret:?}: {text}");
    }
}

const KEY: &str = "s3cr3t-KEY-9f8e7d";

#[tokio::test]
async fn a_platform_echoing_the_credential_in_its_401_never_puts_it_into_the_error() {
    use tether_platforms::{apolo, civis, iguazio, peak, ubiops};
    let url = echo_server(StatusCode::UNAUTHORIZED, KEY, true).await;
    let config = || HttpConfig::new(url.parse().unwrap());
    let key = Secret::new(KEY);
    let basic_civis = base64::engine::general_purpose::STANDARD.encode(format!("{KEY}:"));
    assert_redacted("civis", civis::Client::new(config(), &key).unwrap().get(1).await, &[KEY, &basic_civis]);
    let apolo = apolo::Client::new(config(), &key, "default", "org", "proj").unwrap();
    assert_redacted("apolo", apolo.get("app-1").await, &[KEY]);
    assert_redacted("ubiops", ubiops::Client::new(config(), &key).unwrap().ping().await, &[KEY]);
    let prefixed = Secret::new(format!("Token {KEY}"));
    assert_redacted("ubiops with prefix", ubiops::Client::new(config(), &prefixed).unwrap().ping().await, &[KEY]);
    assert_redacted("peak", peak::Client::new(config(), &key).unwrap().tenant_metadata().await, &[KEY]);
    let basic_iguazio = base64::engine::general_purpose::STANDARD.encode(format!("admin:{KEY}"));
    let iguazio = iguazio::Client::new(config(), "admin", &key).unwrap();
    assert_redacted("iguazio", iguazio.verify().await, &[KEY, &basic_iguazio]);
    assert_redacted("iguazio login", iguazio::Client::login(config(), "admin", &key).await.map(drop), &[KEY]);
}

#[tokio::test]
async fn a_credential_in_a_raw_error_body_is_redacted_too() {
    let url = echo_server(StatusCode::UNAUTHORIZED, KEY, false).await;
    let c = tether_platforms::peak::Client::new(HttpConfig::new(url.parse().unwrap()), &Secret::new(KEY)).unwrap();
    assert_redacted("peak, plain-text body", c.tenant_metadata().await, &[KEY]);
}

#[tokio::test]
async fn a_one_mib_error_message_is_cut() {
    let router = Router::new().fallback(|| async {
        let message = format!("bad key {KEY} {}", "x".repeat(MIB));
        (StatusCode::BAD_REQUEST, json!({"error": message}).to_string())
    });
    let url = serve(router).await;
    let outcome = http(&url, KEY, |_| {}).empty(get_call("/anything")).await;
    let Err(Error::Invalid(m)) = outcome else { panic!("{outcome:?}") };
    assert!(m.starts_with("bad key *** xxx"), "the message is the platform's, redacted: {}", &m[..40]);
    assert_eq!(m.chars().count(), MAX_MESSAGE_CHARS + 1);
    assert!(m.ends_with('…'));
}

#[tokio::test]
async fn an_undecodable_answer_does_not_quote_the_platform_at_length() {
    let router = Router::new().fallback(|| async { json!({"n": "y".repeat(MIB)}).to_string() });
    let url = serve(router).await;
    let outcome = http(&url, KEY, |_| {}).json::<HashMap<String, i64>>(get_call("/anything")).await;
    let Err(Error::Decode(m)) = outcome else { panic!("{outcome:?}") };
    assert!(m.chars().count() <= MAX_MESSAGE_CHARS + 1, "{} chars", m.chars().count());
}

// === 5. The rate budget of an account ===

#[tokio::test]
async fn every_client_of_an_account_shares_its_rate_limit_and_another_account_has_its_own() {
    let served = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .fallback(|State(n): State<Arc<AtomicUsize>>| async move {
            n.fetch_add(1, Ordering::SeqCst);
            "{}"
        })
        .with_state(served.clone());
    let url = serve(router).await;
    let limited = |token: &str| {
        http(&url, token, |c| {
            c.requests_per_second = NonZeroU32::new(10);
            c.burst = NonZeroU32::new(1);
        })
    };
    // The operator rebuilds a client on every Connection or Secret change while calls are in flight.
    let (first, rebuilt, other) = (limited("account-a"), limited("account-a"), limited("account-b"));
    let shared = async {
        let started = Instant::now();
        let calls = (0..40).map(|i| {
            let h = if i % 2 == 0 { first.clone() } else { rebuilt.clone() };
            async move { h.empty(get_call("/shared")).await }
        });
        for outcome in futures::future::join_all(calls).await {
            outcome.unwrap();
        }
        started.elapsed()
    };
    let own = async {
        let started = Instant::now();
        for outcome in futures::future::join_all((0..10).map(|_| other.empty(get_call("/own")))).await {
            outcome.unwrap();
        }
        started.elapsed()
    };
    let (shared, own) = tokio::join!(shared, own);
    let rate = 40.0 / shared.as_secs_f64();
    assert!(rate <= 11.0, "two clients of one account made {rate:.1} requests/s against a limit of 10");
    assert!(own < Duration::from_secs(2), "the other account waited {own:?}: it has a budget of its own");
    assert_eq!(served.load(Ordering::SeqCst), 50);
}

// === Lists that never end ===

#[tokio::test]
async fn a_list_that_never_ends_is_refused_after_max_pages() {
    use tether_platforms::http::MAX_PAGES;
    let pages = Arc::new(AtomicUsize::new(0));
    let router = Router::new()
        .route(
            "/webapps/api/v1/webapps/",
            get(|State(n): State<Arc<AtomicUsize>>| async move {
                n.fetch_add(1, Ordering::SeqCst);
                let webapp = json!({"id": "w", "name": "w", "status": "AVAILABLE"});
                axum::Json(json!({"webapps": [webapp], "webappsCount": u64::MAX, "pageCount": u64::MAX}))
            }),
        )
        .route(
            "/services",
            get(|State(n): State<Arc<AtomicUsize>>| async move {
                n.fetch_add(1, Ordering::SeqCst);
                // A full page each time (a short one is the last).
                axum::Json(json!(vec![json!({"id": 1, "name": "same page again"}); 50]))
            }),
        )
        .with_state(pages.clone());
    let url = serve(router).await;
    let config = || HttpConfig::new(url.parse().unwrap());
    let peak = tether_platforms::peak::Client::new(config(), &Secret::new("k")).unwrap();
    let outcome = peak.list_all(&[], None).await;
    assert!(matches!(&outcome, Err(Error::Decode(m)) if m.contains("did not end after 1000 pages")), "{outcome:?}");
    assert_eq!(pages.swap(0, Ordering::SeqCst) as u64, MAX_PAGES);
    let civis = tether_platforms::civis::Client::new(config(), &Secret::new("k")).unwrap();
    let outcome = civis.list_all(&Default::default()).await;
    assert!(matches!(&outcome, Err(Error::Decode(m)) if m.contains("did not end after 1000 pages")), "{outcome:?}");
    assert_eq!(pages.load(Ordering::SeqCst) as u64, MAX_PAGES);
}
