//! One error type for every platform, classifying each failure so callers can pick a condition reason and
//! a retry policy without knowing which platform answered.

use std::time::Duration;

/// What went wrong talking to a platform.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// The object does not exist (HTTP 404).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request conflicts with the object's state or a uniqueness rule (HTTP 409).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The platform rejected the request as invalid (HTTP 400/422), with its message.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The credentials are missing, wrong or expired (HTTP 401).
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// The credentials are valid but lack permission (HTTP 403).
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The platform asked us to slow down (HTTP 429) and retries ran out.
    #[error("throttled by the platform{}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Throttled {
        /// How long the platform asked to wait, when it said.
        retry_after: Option<Duration>,
    },
    /// A failure that may pass by itself: 5xx, timeout, connection error.
    #[error("transient failure: {0}")]
    Transient(String),
    /// The platform reports the remote object itself as failed (a failed job, deployment or state).
    #[error("platform failure: {0}")]
    Platform(String),
    /// A response body that does not parse as the documented shape.
    #[error("undecodable response: {0}")]
    Decode(String),
}

impl Error {
    /// Classifies an HTTP error status with the platform's message.
    pub fn from_status(status: reqwest::StatusCode, message: String, retry_after: Option<Duration>) -> Self {
        match status.as_u16() {
            400 | 422 => Error::Invalid(message),
            401 => Error::Unauthorized(message),
            403 => Error::Forbidden(message),
            404 | 410 => Error::NotFound(message),
            409 | 412 => Error::Conflict(message),
            429 => Error::Throttled { retry_after },
            _ if status.is_server_error() => Error::Transient(format!("{status}: {message}")),
            _ => Error::Invalid(format!("{status}: {message}")),
        }
    }

    /// Whether repeating the same request later may succeed without anyone changing anything.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Throttled { .. } | Error::Transient(_))
    }

    /// A PascalCase reason for conditions and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::NotFound(_) => "NotFound",
            Error::Conflict(_) => "Conflict",
            Error::Invalid(_) => "InvalidSpec",
            Error::Unauthorized(_) | Error::Forbidden(_) => "Unauthorized",
            Error::Throttled { .. } => "Throttled",
            Error::Transient(_) => "Unavailable",
            Error::Platform(_) => "PlatformError",
            Error::Decode(_) => "PlatformError",
        }
    }
}

/// Result of a platform call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::StatusCode;

    #[test]
    fn every_status_class_maps_to_its_error_and_retry_rule() {
        let cases = [
            (400, "Invalid", false),
            (422, "Invalid", false),
            (401, "Unauthorized", false),
            (403, "Forbidden", false),
            (404, "NotFound", false),
            (409, "Conflict", false),
            (429, "Throttled", true),
            (500, "Transient", true),
            (502, "Transient", true),
            (503, "Transient", true),
            (418, "Invalid", false),
        ];
        for (code, kind, retryable) in cases {
            let error = Error::from_status(StatusCode::from_u16(code).unwrap(), "m".into(), None);
            let name = format!("{error:?}");
            assert!(name.starts_with(kind), "{code} gave {name}");
            assert_eq!(error.is_retryable(), retryable, "{code}");
        }
    }

    #[test]
    fn throttled_says_how_long_to_wait() {
        let error = Error::from_status(StatusCode::TOO_MANY_REQUESTS, String::new(), Some(Duration::from_secs(7)));
        assert_eq!(error.to_string(), "throttled by the platform (retry after 7s)");
        assert_eq!(error.reason(), "Throttled");
    }
}
