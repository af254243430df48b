//! Resolving a resource's `connectionRef` into an account: the endpoint, the request budget, and the
//! credential values read from their Secrets. Credentials never leave this module except inside
//! [`tether_platforms::Secret`], which does not print them.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::time::Duration;

use tether_api::connection::{ConnectionSettings, Credentials};
use tether_api::{ConnectionKind, ConnectionRef, Platform, SecretKeySelector};
use tether_platforms::{HttpConfig, Secret};

use crate::error::{Error, Result};
use crate::sources::Sources;

/// A platform account, ready for a client.
#[derive(Clone, Debug)]
pub struct Account {
    /// HTTP settings (endpoint, timeout, rate limit).
    pub http: HttpConfig,
    /// Credential values by name (`username`, `accessKey`, `apiKey`, `token`).
    pub credentials: BTreeMap<&'static str, Secret>,
    /// The connection it was read from (`Connection/<namespace>/<name>` or `ClusterConnection/<name>`): the
    /// key of its client in a cache, which holds one client per connection.
    pub connection: String,
    /// A digest of the settings and credential values: a cached client built from another digest is
    /// stale. Status and metadata writes to the Connection or its Secrets leave it as it is.
    pub fingerprint: u64,
}

impl Account {
    /// A credential the platform needs.
    pub fn credential(&self, name: &str) -> std::result::Result<&Secret, tether_platforms::Error> {
        self.credentials
            .get(name)
            .ok_or_else(|| tether_platforms::Error::Unauthorized(format!("the connection has no {name} credential")))
    }
}

/// An object a resource's account is read from: a change to it (a fixed key, a Connection created late)
/// reconciles the resource again at once.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Dependency {
    /// A namespaced Connection.
    Connection {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
    /// A ClusterConnection.
    ClusterConnection {
        /// Its name.
        name: String,
    },
    /// A credential Secret.
    Secret {
        /// Its namespace.
        namespace: String,
        /// Its name.
        name: String,
    },
}

/// Finds the connection `reference` names for a resource in `namespace`, checks it is for `platform` and
/// allowed here, and reads its credentials. Every object it reads, or looks for and misses, is pushed to
/// `dependencies`, also when it fails.
pub async fn resolve(
    sources: &Sources,
    namespace: &str,
    reference: &ConnectionRef,
    platform: Platform,
    dependencies: &mut Vec<Dependency>,
) -> Result<Account> {
    let (settings, secret_namespace, identity) = match reference.kind.unwrap_or_default() {
        ConnectionKind::Connection => {
            dependencies
                .push(Dependency::Connection { namespace: namespace.to_string(), name: reference.name.clone() });
            let conn = sources
                .connection(namespace, &reference.name)
                .ok_or_else(|| Error::Connection(format!("Connection {namespace}/{} not found", reference.name)))?;
            (conn.spec.settings.clone(), Some(namespace.to_string()), identity(namespace, reference))
        }
        ConnectionKind::ClusterConnection => {
            dependencies.push(Dependency::ClusterConnection { name: reference.name.clone() });
            let conn = sources
                .cluster_connection(&reference.name)
                .ok_or_else(|| Error::Connection(format!("ClusterConnection {} not found", reference.name)))?;
            let allowed = conn.spec.allowed_namespaces.iter().any(|n| n == "*" || n == namespace);
            if !allowed {
                return Err(Error::Connection(format!(
                    "ClusterConnection {} does not allow namespace {namespace} (spec.allowedNamespaces)",
                    reference.name
                )));
            }
            (conn.spec.settings.clone(), None, identity(namespace, reference))
        }
    };
    if settings.platform != platform {
        return Err(Error::Connection(format!(
            "connection {} is for platform {:?}, this resource needs {platform:?}",
            reference.name, settings.platform
        )));
    }
    account(sources, &settings, secret_namespace.as_deref(), &identity, dependencies).await
}

/// How a resource in `namespace` names the connection `reference` points at, as [`Account::connection`].
pub fn identity(namespace: &str, reference: &ConnectionRef) -> String {
    match reference.kind.unwrap_or_default() {
        ConnectionKind::Connection => format!("Connection/{namespace}/{}", reference.name),
        ConnectionKind::ClusterConnection => format!("ClusterConnection/{}", reference.name),
    }
}

/// The account of one connection's settings: its HTTP settings and credentials read from their Secrets
/// (in `secret_namespace` for a Connection; a ClusterConnection's selectors name theirs). `identity` names
/// the connection ([`Account::connection`]).
pub async fn account(
    sources: &Sources,
    settings: &ConnectionSettings,
    secret_namespace: Option<&str>,
    identity: &str,
    dependencies: &mut Vec<Dependency>,
) -> Result<Account> {
    use std::hash::{Hash, Hasher};
    let credentials = read_credentials(sources, &settings.credentials, secret_namespace, dependencies).await?;
    // In memory only, never shown: a digest to compare, not a way back to the values.
    let mut digest = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(settings).unwrap_or_default().hash(&mut digest);
    for (name, value) in &credentials {
        (name, value.expose()).hash(&mut digest);
    }
    let fingerprint = digest.finish();
    Ok(Account { http: http_config(settings)?, credentials, connection: identity.to_string(), fingerprint })
}

fn http_config(settings: &ConnectionSettings) -> Result<HttpConfig> {
    let url = settings
        .endpoint
        .parse()
        .map_err(|e| Error::Connection(format!("endpoint {:?} is not a URL: {e}", settings.endpoint)))?;
    let mut config = HttpConfig::new(url);
    if let Some(seconds) = settings.timeout_seconds.and_then(|s| u64::try_from(s).ok()) {
        config.timeout = Duration::from_secs(seconds);
    }
    config.requests_per_second =
        settings.requests_per_second.and_then(|r| u32::try_from(r).ok()).and_then(NonZeroU32::new);
    config.burst = settings.burst.and_then(|b| u32::try_from(b).ok()).and_then(NonZeroU32::new);
    Ok(config)
}

/// Reads every credential the connection names.
async fn read_credentials(
    sources: &Sources,
    credentials: &Credentials,
    connection_namespace: Option<&str>,
    dependencies: &mut Vec<Dependency>,
) -> Result<BTreeMap<&'static str, Secret>> {
    let wanted: [(&'static str, &Option<SecretKeySelector>); 4] = [
        ("username", &credentials.username),
        ("accessKey", &credentials.access_key),
        ("apiKey", &credentials.api_key),
        ("token", &credentials.token),
    ];
    let mut values = BTreeMap::new();
    for (name, selector) in wanted {
        let Some(selector) = selector else { continue };
        let namespace = connection_namespace
            .or(selector.namespace.as_deref())
            .ok_or_else(|| Error::Connection(format!("credential {name} names no Secret namespace")))?;
        let value = read_key(sources, namespace, selector, dependencies).await.map_err(Error::Connection)?;
        values.insert(name, Secret::new(value.trim().to_string()));
    }
    Ok(values)
}

/// Reads the Secret values a spec refers to (e.g. environment variables from Secrets), in the resource's
/// namespace, by the name the spec gives each; every Secret read is pushed to `dependencies`.
pub async fn read_values(
    sources: &Sources,
    namespace: &str,
    selectors: &[(String, SecretKeySelector)],
    dependencies: &mut Vec<Dependency>,
) -> Result<BTreeMap<String, Secret>> {
    let mut values = BTreeMap::new();
    for (name, selector) in selectors {
        let value = read_key(sources, namespace, selector, dependencies).await.map_err(Error::InvalidSpec)?;
        values.insert(name.clone(), Secret::new(value));
    }
    Ok(values)
}

/// One key of one Secret; a missing Secret or key is a message.
async fn read_key(
    sources: &Sources,
    namespace: &str,
    selector: &SecretKeySelector,
    dependencies: &mut Vec<Dependency>,
) -> std::result::Result<String, String> {
    dependencies.push(Dependency::Secret { namespace: namespace.to_string(), name: selector.name.clone() });
    let secret = sources
        .secret(namespace, &selector.name)
        .await
        .map_err(|e| format!("reading Secret {namespace}/{}: {e}", selector.name))?
        .ok_or_else(|| format!("Secret {namespace}/{} not found", selector.name))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&selector.key))
        .ok_or_else(|| format!("Secret {namespace}/{} has no key {:?}", selector.name, selector.key))?;
    String::from_utf8(bytes.0.clone())
        .map_err(|_| format!("Secret {namespace}/{} key {:?} is not UTF-8", selector.name, selector.key))
}
