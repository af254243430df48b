//! The controller's errors: one variant per stage, each with the reason a condition, an Event and a metric
//! label carry, and the retry behaviour that fits it.

use tether_platforms::Error as PlatformError;

/// Why a reconcile stopped short.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Connection, ClusterConnection or credential Secret is missing, not allowed, or incomplete.
    #[error("connection: {0}")]
    Connection(String),
    /// A platform call failed, in the named stage (observe, create, update, delete).
    #[error("{stage}: {source}")]
    Platform {
        /// Which step failed.
        stage: &'static str,
        /// The classified platform error.
        #[source]
        source: PlatformError,
    },
    /// The spec cannot be applied as written (a rule only the platform knows, or a reference).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// Another resource already holds what this one claims (a remote object, an outputs Secret).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The Kubernetes API failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The reconcile panicked (a bug in Tether): caught, so one resource never stops the process.
    #[error("internal error (a bug in Tether, please report it): {0}")]
    Internal(String),
    /// The reconcile ran past its time bound (`--reconcile-timeout`); the platform may be hanging.
    #[error("the reconcile took longer than {0:?} and was abandoned; the platform may be hanging")]
    Timeout(std::time::Duration),
}

impl Error {
    /// Wraps a platform error from `stage`.
    pub fn platform(stage: &'static str) -> impl FnOnce(PlatformError) -> Self {
        move |source| Error::Platform { stage, source }
    }

    /// One PascalCase word for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        use crate::status::reasons::*;
        match self {
            Error::Connection(_) => CONNECTION_NOT_FOUND,
            Error::Platform { source, .. } => match source {
                PlatformError::Unauthorized(_) | PlatformError::Forbidden(_) => UNAUTHORIZED,
                PlatformError::Invalid(_) => INVALID_SPEC,
                PlatformError::Conflict(_) => CONFLICT,
                PlatformError::Throttled { .. } => THROTTLED,
                PlatformError::NotFound(_) | PlatformError::Transient(_) => UNAVAILABLE,
                PlatformError::Platform(_) => PLATFORM_ERROR,
                PlatformError::Decode(_) => INVALID_RESPONSE,
            },
            Error::InvalidSpec(_) => INVALID_SPEC,
            Error::Conflict(_) => CONFLICT,
            Error::Kube(_) => KUBERNETES_ERROR,
            Error::Internal(_) => INTERNAL_ERROR,
            Error::Timeout(_) => TIMEOUT,
        }
    }

    /// Whether Tether needs a human before retrying can help (kstatus's Stalled): the spec, the
    /// credentials or the remote object must be fixed. Decided by variant, never by text. Tether still
    /// looks again at the drift period, and at once when the spec, the Connection or a Secret changes.
    pub fn is_terminal(&self) -> bool {
        match self {
            Error::InvalidSpec(_) | Error::Conflict(_) => true,
            Error::Platform { source, .. } => matches!(
                source,
                PlatformError::Invalid(_)
                    | PlatformError::Conflict(_)
                    | PlatformError::Unauthorized(_)
                    | PlatformError::Forbidden(_)
                    | PlatformError::Platform(_)
            ),
            Error::Connection(_) | Error::Kube(_) | Error::Internal(_) | Error::Timeout(_) => false,
        }
    }
}

/// Result of a controller step.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_needs_a_human_is_terminal_and_the_rest_is_retried() {
        let platform = |source| Error::Platform { stage: "observe", source };
        let cases = [
            (platform(PlatformError::Unauthorized("key".into())), "Unauthorized", true),
            (platform(PlatformError::Forbidden("scope".into())), "Unauthorized", true),
            (platform(PlatformError::Invalid("template".into())), "InvalidSpec", true),
            (platform(PlatformError::Conflict("name".into())), "Conflict", true),
            (platform(PlatformError::Platform("job failed".into())), "PlatformError", true),
            (Error::InvalidSpec("no such Secret".into()), "InvalidSpec", true),
            (platform(PlatformError::Transient("503".into())), "Unavailable", false),
            (platform(PlatformError::NotFound("gone".into())), "Unavailable", false),
            (platform(PlatformError::Throttled { retry_after: None }), "Throttled", false),
            (platform(PlatformError::Decode("garbage".into())), "InvalidResponse", false),
            (Error::Connection("no Connection".into()), "ConnectionNotFound", false),
            (Error::Internal("index out of bounds".into()), "InternalError", false),
            (Error::Timeout(std::time::Duration::from_secs(1)), "Timeout", false),
        ];
        for (error, reason, terminal) in cases {
            assert_eq!((error.reason(), error.is_terminal()), (reason, terminal), "{error}");
        }
    }
}
