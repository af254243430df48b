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
    /// The Kubernetes API failed.
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
}

impl Error {
    /// Wraps a platform error from `stage`.
    pub fn platform(stage: &'static str) -> impl FnOnce(PlatformError) -> Self {
        move |source| Error::Platform { stage, source }
    }

    /// One PascalCase word for conditions, Events and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Connection(_) => "ConnectionNotFound",
            Error::Platform { source, .. } => match source {
                PlatformError::Unauthorized(_) | PlatformError::Forbidden(_) => "Unauthorized",
                PlatformError::Invalid(_) => "InvalidSpec",
                PlatformError::Conflict(_) => "Conflict",
                PlatformError::Throttled { .. } => "Throttled",
                PlatformError::NotFound(_) | PlatformError::Transient(_) => "Unavailable",
                PlatformError::Platform(_) | PlatformError::Decode(_) => "PlatformError",
            },
            Error::InvalidSpec(_) => "InvalidSpec",
            Error::Kube(_) => "KubernetesError",
        }
    }

    /// Whether Tether gives up until the spec (or the credentials) change: kstatus's Stalled.
    pub fn is_terminal(&self) -> bool {
        matches!(self.reason(), "InvalidSpec" | "Conflict")
    }
}

/// Result of a controller step.
pub type Result<T, E = Error> = std::result::Result<T, E>;
