//! The AWS credentials that sign presigned requests: fixed keys from the environment, or
//! the AWS default credential chain (refreshed before they expire).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use aws_credential_types::Credentials;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};

/// Refresh credentials this long before they expire.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Bound on one call to the credential chain.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);

static SHORTENED_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// The lifetime a presigned URL or policy can really have: `wanted`, shortened when the
/// signing credentials expire sooner (a signature dies with its credentials). Logs a
/// warning the first time it shortens.
pub fn fit_lifetime(credentials: &Credentials, wanted: Duration, now: SystemTime) -> Duration {
    let Some(left) = credentials
        .expiry()
        .map(|exp| exp.duration_since(now).unwrap_or_default())
    else {
        return wanted;
    };
    if left >= wanted {
        return wanted;
    }
    if !SHORTENED_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed) {
        tracing::warn!(
            wanted_secs = wanted.as_secs(),
            granted_secs = left.as_secs(),
            "signing credentials expire before the requested lifetime; shortening presigned lifetimes (use long-lived keys, e.g. from Secrets Manager)"
        );
    }
    // Whole seconds, at least one.
    Duration::from_secs(left.as_secs().max(1))
}

/// No usable signing credentials.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// The credential chain returned an error or nothing.
    #[error("no AWS credentials available: {0}")]
    Unavailable(String),
    /// The credentials we have are past their expiry.
    #[error("AWS credentials expired")]
    Expired,
}

/// Supplies current signing credentials.
#[derive(Debug, Clone)]
pub struct CredentialSource {
    provider: Option<SharedCredentialsProvider>,
    current: Arc<ArcSwapOption<Credentials>>,
    kind: &'static str,
}

/// Serves whatever credentials a [`CredentialSource`] currently holds (so SDK clients
/// follow a rotation).
#[derive(Debug, Clone)]
struct CurrentCredentials(Arc<ArcSwapOption<Credentials>>);

impl ProvideCredentials for CurrentCredentials {
    fn provide_credentials<'a>(
        &'a self,
    ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let result = self.0.load_full().map(|c| (*c).clone()).ok_or_else(|| {
            aws_credential_types::provider::error::CredentialsError::not_loaded(
                "no credentials yet",
            )
        });
        aws_credential_types::provider::future::ProvideCredentials::ready(result)
    }
}

impl CredentialSource {
    /// Fixed credentials (e.g. from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
    pub fn fixed(credentials: Credentials) -> Self {
        Self {
            provider: None,
            current: Arc::new(ArcSwapOption::from_pointee(credentials)),
            kind: "environment",
        }
    }

    /// Credentials replaced from outside (e.g. read from Secrets Manager and refreshed).
    pub fn managed(kind: &'static str, initial: Credentials) -> Self {
        Self {
            provider: None,
            current: Arc::new(ArcSwapOption::from_pointee(initial)),
            kind,
        }
    }

    /// Credentials replaced from outside that are not loaded yet: signing fails with
    /// [`CredentialError::Unavailable`] until the first [`CredentialSource::replace`].
    pub fn managed_pending(kind: &'static str) -> Self {
        Self {
            provider: None,
            current: Arc::new(ArcSwapOption::empty()),
            kind,
        }
    }

    /// Replaces the current credentials (a rotation).
    pub fn replace(&self, credentials: Credentials) {
        self.current.store(Some(Arc::new(credentials)));
    }

    /// Credentials from a provider such as the AWS default chain.
    pub fn from_provider(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider: Some(provider),
            current: Arc::new(ArcSwapOption::empty()),
            kind: "default-chain",
        }
    }

    /// The provider behind this source, for building SDK clients with the same identity.
    pub fn provider(&self) -> SharedCredentialsProvider {
        match &self.provider {
            Some(p) => p.clone(),
            None => SharedCredentialsProvider::new(CurrentCredentials(Arc::clone(&self.current))),
        }
    }

    /// Where the credentials come from: `environment`, `secrets-manager` or `default-chain`.
    pub fn source_name(&self) -> &'static str {
        self.kind
    }

    /// The cached credentials, if any, without refreshing.
    pub fn cached(&self) -> Option<Arc<Credentials>> {
        self.current.load_full()
    }

    /// Current credentials, refreshed from the provider when missing or about to expire.
    pub async fn get(&self) -> Result<Arc<Credentials>, CredentialError> {
        let cached = self.current.load_full();
        let fresh_enough = |c: &Credentials| {
            c.expiry()
                .is_none_or(|exp| exp > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        };
        match (&cached, &self.provider) {
            (Some(c), _) if fresh_enough(c) => return Ok(Arc::clone(c)),
            (Some(c), None) => {
                return if c.expiry().is_some_and(|exp| exp <= SystemTime::now()) {
                    Err(CredentialError::Expired)
                } else {
                    Ok(Arc::clone(c))
                };
            }
            (None, None) => return Err(CredentialError::Unavailable("not loaded yet".into())),
            (_, Some(_)) => {}
        }
        match self.refresh().await {
            Ok(c) => Ok(c),
            // Keep signing with still-valid credentials when a refresh fails.
            Err(err) => match cached {
                Some(c) if c.expiry().is_none_or(|exp| exp > SystemTime::now()) => {
                    tracing::warn!(error = %err, "credential refresh failed; using cached credentials");
                    Ok(c)
                }
                _ => Err(err),
            },
        }
    }

    async fn refresh(&self) -> Result<Arc<Credentials>, CredentialError> {
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| CredentialError::Unavailable("no provider".into()))?;
        let creds = tokio::time::timeout(PROVIDER_TIMEOUT, provider.provide_credentials())
            .await
            .map_err(|_| CredentialError::Unavailable("credential provider timed out".into()))?
            .map_err(|e| CredentialError::Unavailable(e.to_string()))?;
        let creds = Arc::new(creds);
        self.current.store(Some(Arc::clone(&creds)));
        Ok(creds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_fit_the_credentials() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = Duration::from_secs(86_400);
        let forever = Credentials::new("a", "b", None, None, "t");
        assert_eq!(fit_lifetime(&forever, day, now), day);
        let hour_left = Credentials::new(
            "a",
            "b",
            Some("tok".into()),
            Some(now + Duration::from_secs(3600)),
            "t",
        );
        assert_eq!(
            fit_lifetime(&hour_left, day, now),
            Duration::from_secs(3600)
        );
        assert_eq!(
            fit_lifetime(&hour_left, Duration::from_secs(60), now),
            Duration::from_secs(60)
        );
        let expired = Credentials::new("a", "b", None, Some(now - Duration::from_secs(5)), "t");
        assert_eq!(fit_lifetime(&expired, day, now), Duration::from_secs(1));
    }
}
