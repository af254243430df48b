//! The pure helpers of `tether_platforms::http` on arbitrary text: `segment` (every client builds every
//! non-constant path segment through it), `Http::clean` (every platform text that goes into an error),
//! and `Error::from_status` with its `reason`, `is_retryable` and message; and the controller's
//! `status::bounded_message`, the same cut for conditions.
//!
//! `segment`: an accepted value is percent-encoded to RFC 3986 unreserved characters and `%XX` only, and
//! decodes back to itself; neither the value nor its percent-decoding may be empty, `.`, `..`, or hold a
//! `/`, `\` or control character. `clean`: no credential survives, and the text is cut to
//! `MAX_MESSAGE_CHARS` characters plus `…`.
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, COOKIE};
use tether_controller::status::{MAX_MESSAGE_CHARS as STATUS_MAX_CHARS, bounded_message};
use tether_fuzz::text;
use tether_platforms::http::{MAX_MESSAGE_CHARS, segment, too_many_pages};
use tether_platforms::{Dialect, Error, Http, HttpConfig, Secret};

/// Credentials in each form the layer redacts: a Basic header (and its decoded `user:password`), a cookie
/// holding a JSON-quoted key, and a raw key the headers carry only encoded.
const KEY: &str = "k3y\"wïth/quote";
const PASSWORD: &str = "pässw0rd";

static HTTP: LazyLock<Arc<Http>> = LazyLock::new(|| {
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("admin:{PASSWORD}"));
    let quoted = serde_json::to_string(KEY).unwrap();
    let dialect = Dialect {
        platform: "fuzz",
        auth_headers: vec![
            (COOKIE, Secret::new(format!(r#"session=j:{{"sid": {quoted}}}"#))),
            (AUTHORIZATION, Secret::new(format!("Basic {basic}"))),
        ],
        message: |_| None,
        retry_header: None,
        redact: vec![Secret::new(KEY)],
    };
    Http::new(HttpConfig::new("http://127.0.0.1:1/".parse().unwrap()), dialect).expect("the HTTP layer starts")
});

/// What must never survive `clean`: the key, raw and as it appears inside a JSON string, the password,
/// the Basic token and its decoded `user:password`.
static SECRETS: LazyLock<Vec<String>> = LazyLock::new(|| {
    use base64::Engine as _;
    let quoted = serde_json::to_string(KEY).unwrap();
    let pair = format!("admin:{PASSWORD}");
    let basic = base64::engine::general_purpose::STANDARD.encode(&pair);
    vec![KEY.into(), quoted[1..quoted.len() - 1].into(), PASSWORD.into(), pair, basic]
});

fuzz_target!(|data: &[u8]| {
    let value = text(data);
    check_segment(&value);

    let cleaned = HTTP.clean(&value);
    for secret in SECRETS.iter() {
        assert!(!cleaned.contains(secret.as_str()), "clean({value:?}) kept the credential {secret:?}: {cleaned:?}");
    }
    let chars = cleaned.chars().count();
    assert!(chars <= MAX_MESSAGE_CHARS + 1, "clean gave {chars} characters");

    if let [hi, lo, rest @ ..] = data
        && let Ok(status) = StatusCode::from_u16(u16::from_be_bytes([*hi, *lo]) % 1000)
    {
        let error = Error::from_status(status, text(rest).into_owned(), None);
        let _ = (error.reason(), error.is_retryable(), error.to_string());
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(error.is_retryable());
        }
    }
    let _ = too_many_pages(&value).to_string();

    // The same cut for condition messages and Event notes (tether_controller::status).
    let bounded = bounded_message(value.clone().into_owned());
    if value.chars().count() <= STATUS_MAX_CHARS {
        assert_eq!(bounded, value, "bounded_message changed a short message");
    } else {
        assert_eq!(bounded.chars().count(), STATUS_MAX_CHARS + 1, "bounded_message gave the wrong length");
        assert!(bounded.ends_with('…') && value.starts_with(bounded.trim_end_matches('…')));
    }
});

fn check_segment(value: &str) {
    match segment("fuzzed value", value) {
        Ok(encoded) => {
            assert!(
                encoded.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b)),
                "segment({value:?}) = {encoded:?} keeps a reserved character"
            );
            let decoded = percent_decode(&encoded);
            assert_eq!(
                decoded.as_deref(),
                Some(value.as_bytes()),
                "segment({value:?}) = {encoded:?} is not {value:?} encoded"
            );
            for form in [value.to_string(), String::from_utf8_lossy(&percent_decode_lossy(value)).into_owned()] {
                assert!(!form.is_empty() && form != "." && form != "..", "segment accepted {value:?}");
                assert!(!form.contains(['/', '\\']), "segment accepted {value:?}, a slash once decoded");
                assert!(!form.chars().any(char::is_control), "segment accepted {value:?}, a control character");
            }
        }
        Err(e) => {
            assert!(matches!(e, Error::Invalid(_)), "segment failed with {e:?}");
            let _ = e.to_string();
        }
    }
}

/// Strict percent-decoding: `None` if a `%` is not followed by two hex digits.
fn percent_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(hex_byte(bytes.get(i + 1..i + 3)?)?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// What a server or proxy may decode before routing: each `%` and two hex digits, anything else as it is.
fn percent_decode_lossy(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes.get(i + 1..i + 3).and_then(hex_byte) {
            Some(byte) if bytes[i] == b'%' => {
                out.push(byte);
                i += 3;
            }
            _ => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    out
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let digit = |b: u8| (b as char).to_digit(16);
    match pair {
        [hi, lo] => Some((digit(*hi)? * 16 + digit(*lo)?) as u8),
        _ => None,
    }
}
