//! Error types.
//!
//! [`CacheError`] describes why a cache operation failed. The read-through methods of
//! [`Cache`](crate::Cache) never return it: they fall through to the loader. It reaches callers
//! only from explicit operations (`set`, `delete`, `invalidate_tags`, ...), where losing a write or
//! an invalidation silently would be worse than reporting it.
//!
//! [`ConfigError`] is returned when building a [`Cache`](crate::Cache) from a bad configuration; it
//! always names the offending option or environment variable and the expected form.

use std::time::Duration;

/// The cause of an encode, decode or custom backend error, kept as the error's `source()`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a cache operation did not complete.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The backend did not answer within the command deadline.
    #[error("cache backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The circuit breaker is open: the backend failed repeatedly and is not being called.
    #[error("cache backend skipped: circuit breaker open after repeated failures")]
    CircuitOpen,
    /// Caching is disabled (`CACHE_ENABLED=false` or `CacheBuilder::enabled(false)`).
    #[error("caching is disabled")]
    Disabled,
    /// Redis returned an error or the connection failed.
    #[error("redis error: {0}")]
    Redis(redis::RedisError),
    /// The TLS handshake with Redis failed: the server's certificate is not trusted or does not
    /// name the host, or the server refused this client's certificate (or wanted one). Retrying
    /// does not help until the configuration changes; the cache falls through meanwhile.
    #[error("TLS connection to Redis failed: {reason}. {hint}")]
    Tls {
        /// What the TLS layer said, e.g. `invalid peer certificate: UnknownIssuer`.
        reason: String,
        /// What to change.
        hint: &'static str,
    },
    /// Redis refused the credentials (wrong password or ACL user, or none given where one is
    /// required). The password is never part of the message.
    #[error("Redis authentication failed: {reason}. {hint}")]
    Auth {
        /// What Redis said.
        reason: String,
        /// What to change.
        hint: &'static str,
    },
    /// A custom backend reported an error (its cause is the `source()`).
    #[error("cache backend error: {0}")]
    Backend(#[source] BoxError),
    /// The value could not be serialized (the serializer's error is the `source()`).
    #[error("could not encode value for the cache: {0}")]
    Encode(#[source] BoxError),
    /// A stored value could not be read back: corrupt, written by an incompatible version, or
    /// not of the requested type (the deserializer's error is the `source()`).
    #[error("could not decode cached value: {0}")]
    Decode(#[source] BoxError),
    /// The encoded value is larger than the configured maximum entry size; it was not stored.
    #[error("value of {size} bytes exceeds the maximum entry size of {max} bytes; not cached")]
    TooLarge {
        /// Encoded size in bytes.
        size: usize,
        /// Configured maximum in bytes.
        max: usize,
    },
    /// An argument was rejected (for example an operator pattern containing whitespace).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// An invalidation could not be delivered in time. It is **not lost**: it is queued, replayed
    /// as soon as the backend answers, and until then this instance serves no entry it
    /// concerns (see [`crate::durable`]).
    #[error("invalidation queued: the cache backend did not answer in time; it is replayed as soon as it does")]
    Queued,
}

impl CacheError {
    /// The backend did not answer within the deadline.
    pub fn is_timeout(&self) -> bool {
        matches!(self, CacheError::Timeout(_))
    }

    /// The call was skipped because the circuit breaker is open.
    pub fn is_circuit_open(&self) -> bool {
        matches!(self, CacheError::CircuitOpen)
    }

    /// The backend itself failed (connection, server error, timeout, open breaker), as opposed to
    /// a problem with the value or the arguments, or a full Redis ([`is_oom`](Self::is_oom):
    /// the server answered). Only these count towards opening the breaker.
    pub fn is_backend_failure(&self) -> bool {
        match self {
            CacheError::Redis(e) => !is_oom(e),
            CacheError::Timeout(_)
            | CacheError::CircuitOpen
            | CacheError::Backend(_)
            | CacheError::Tls { .. }
            | CacheError::Auth { .. } => true,
            _ => false,
        }
    }

    /// Redis refused a write because it is at `maxmemory` with `noeviction` (`OOM`).
    pub fn is_oom(&self) -> bool {
        matches!(self, CacheError::Redis(e) if is_oom(e))
    }

    /// The TLS handshake with Redis failed ([`CacheError::Tls`]).
    pub fn is_tls(&self) -> bool {
        matches!(self, CacheError::Tls { .. })
    }

    /// Redis refused the credentials ([`CacheError::Auth`]).
    pub fn is_auth(&self) -> bool {
        matches!(self, CacheError::Auth { .. })
    }

    /// An invalidation was queued for replay (not lost); see [`CacheError::Queued`].
    pub fn is_queued(&self) -> bool {
        matches!(self, CacheError::Queued)
    }

    /// A short, stable label for metrics and logs (`timeout`, `circuit_open`, `redis`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            CacheError::Timeout(_) => "timeout",
            CacheError::CircuitOpen => "circuit_open",
            CacheError::Disabled => "disabled",
            CacheError::Redis(_) => "redis",
            CacheError::Tls { .. } => "tls",
            CacheError::Auth { .. } => "auth",
            CacheError::Backend(_) => "backend",
            CacheError::Encode(_) => "encode",
            CacheError::Decode(_) => "decode",
            CacheError::TooLarge { .. } => "too_large",
            CacheError::InvalidArgument(_) => "invalid_argument",
            CacheError::Queued => "queued",
        }
    }
}

fn is_oom(e: &redis::RedisError) -> bool {
    e.code() == Some("OOM")
}

/// Hints of the TLS and authentication errors.
const HINT_UNTRUSTED: &str = "The server's certificate is not signed by a CA this client trusts \
     (the Mozilla roots, or the CA given): give the server's CA with \
     CacheBuilder::redis_tls_ca_file / redis_tls_ca_pem or REDIS_TLS_CA_FILE";
const HINT_NAME: &str = "The server's certificate does not name the host of the URL: connect by a \
     host name or address the certificate holds";
const HINT_CERT: &str =
    "The server's certificate was refused (expired, not yet valid, revoked or malformed)";
const HINT_CLIENT_CERT_REQUIRED: &str = "The server requires a client certificate (mutual TLS): \
     give one with CacheBuilder::redis_tls_client_cert_files / redis_tls_client_cert_pem or \
     REDIS_TLS_CERT_FILE and REDIS_TLS_KEY_FILE";
const HINT_CLIENT_CERT_REFUSED: &str = "The server refused this client's certificate: it is not \
     signed by a CA the server trusts (its tls-ca-cert-file), or has expired";
const HINT_TLS: &str = "Check that the server speaks TLS on this port and that its certificate \
     and this client's TLS settings match";
const HINT_AUTH: &str = "Check the user and password of the Redis URL \
     (redis://user:password@host), or CacheBuilder::redis_username / redis_password";

impl From<redis::RedisError> for CacheError {
    /// Classifies TLS handshake and authentication failures ([`CacheError::Tls`],
    /// [`CacheError::Auth`]); any other error stays [`CacheError::Redis`].
    fn from(e: redis::RedisError) -> CacheError {
        // The cluster client reports a failure to reach every seed as an I/O error whose detail
        // is the text of the last node's error (`Failed to create initial connections - Io:
        // Password authentication failed - AuthenticationFailed`): classified by that text.
        let wrapped = (e.kind() == redis::ErrorKind::Io).then(|| e.detail().unwrap_or_default());
        let wrapped_auth = wrapped.is_some_and(|d| {
            d.contains("AuthenticationFailed") || d.contains("NOAUTH") || d.contains("WRONGPASS")
        });
        if e.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(e.code(), Some("NOAUTH" | "WRONGPASS"))
            || wrapped_auth
        {
            let noauth = e.code() == Some("NOAUTH")
                || (wrapped_auth && wrapped.is_some_and(|d| d.contains("NOAUTH")));
            let reason = if noauth {
                "the server requires a password and none was given".to_owned()
            } else {
                "the server rejected the user or password (AUTH)".to_owned()
            };
            return CacheError::Auth {
                reason,
                hint: HINT_AUTH,
            };
        }
        if e.kind() == redis::ErrorKind::Io || e.kind() == redis::ErrorKind::Client {
            // The TLS layer's errors reach us as text inside an I/O error (`rustls::Error`'s
            // `Display`): `invalid peer certificate: UnknownIssuer`, `received fatal alert:
            // CertificateRequired`, ...
            let text = e.to_string();
            let hint = if text.contains("invalid peer certificate") {
                if text.contains("UnknownIssuer") || text.contains("BadSignature") {
                    Some(HINT_UNTRUSTED)
                } else if text.contains("NotValidForName") {
                    Some(HINT_NAME)
                } else {
                    Some(HINT_CERT)
                }
            } else if text.contains("received fatal alert") {
                if text.contains("CertificateRequired") || text.contains("HandshakeFailure") {
                    Some(HINT_CLIENT_CERT_REQUIRED)
                } else if text.contains("UnknownCA")
                    || text.contains("BadCertificate")
                    || text.contains("CertificateExpired")
                    || text.contains("AccessDenied")
                {
                    Some(HINT_CLIENT_CERT_REFUSED)
                } else {
                    Some(HINT_TLS)
                }
            } else if text.contains("peer is incompatible")
                || text.contains("peer misbehaved")
                || text.contains("corrupt message")
                || text.contains("InvalidContentType")
            {
                Some(HINT_TLS)
            } else {
                None
            };
            if let Some(hint) = hint {
                return CacheError::Tls { reason: text, hint };
            }
        }
        CacheError::Redis(e)
    }
}

/// A configuration value was missing or malformed.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// An environment variable held a value that could not be parsed.
    #[error("environment variable {variable}={value:?} is invalid: expected {expected}")]
    InvalidEnv {
        /// The variable's name, e.g. `CACHE_DEFAULT_TTL`.
        variable: &'static str,
        /// The value found.
        value: String,
        /// The expected form, e.g. `a duration like "90s", "5m", "24h" or a number of seconds`.
        expected: &'static str,
    },
    /// A file named by an environment variable (a TLS certificate or key) could not be read or
    /// holds no usable PEM. The message names the problem; it never quotes the file, and never
    /// names the path of a private key.
    #[error("environment variable {variable} names an unusable file: {message}")]
    InvalidEnvFile {
        /// The variable's name, e.g. `REDIS_TLS_CA_FILE`.
        variable: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A builder option held an invalid value.
    #[error("invalid cache option `{option}`: {message}")]
    InvalidOption {
        /// The builder method or option, e.g. `namespace`.
        option: &'static str,
        /// What is wrong and what is expected.
        message: String,
    },
}

impl ConfigError {
    /// The environment variable or builder option at fault.
    pub fn source_name(&self) -> &'static str {
        match self {
            ConfigError::InvalidEnv { variable, .. }
            | ConfigError::InvalidEnvFile { variable, .. } => variable,
            ConfigError::InvalidOption { option, .. } => option,
        }
    }
}

/// Result alias for explicit cache operations.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_connection_failures_are_classified_by_the_nodes_error() {
        let wrapped = |detail: &str| {
            CacheError::from(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Failed to create initial connections",
                detail.to_owned(),
            )))
        };
        let auth = wrapped("Password authentication failed - AuthenticationFailed");
        assert!(auth.is_auth(), "{auth:?}");
        assert!(
            auth.to_string().contains("rejected the user or password"),
            "{auth}"
        );
        let noauth = wrapped("NOAUTH: Authentication required.");
        assert!(noauth.is_auth(), "{noauth:?}");
        assert!(
            noauth.to_string().contains("requires a password"),
            "{noauth}"
        );
        let tls = wrapped("invalid peer certificate: UnknownIssuer");
        assert!(tls.is_tls(), "{tls:?}");
        let refused = wrapped("Connection refused (os error 111)");
        assert!(!refused.is_auth() && !refused.is_tls(), "{refused:?}");
    }
}
