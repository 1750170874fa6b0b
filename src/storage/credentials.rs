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
}

impl CredentialSource {
    /// Fixed credentials (e.g. from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`).
    pub fn fixed(credentials: Credentials) -> Self {
        Self {
            provider: None,
            current: Arc::new(ArcSwapOption::from_pointee(credentials)),
        }
    }

    /// Credentials from a provider such as the AWS default chain.
    pub fn from_provider(provider: SharedCredentialsProvider) -> Self {
        Self {
            provider: Some(provider),
            current: Arc::new(ArcSwapOption::empty()),
        }
    }

    /// The provider behind this source, for building SDK clients with the same identity.
    pub fn provider(&self) -> SharedCredentialsProvider {
        match &self.provider {
            Some(p) => p.clone(),
            None => {
                let creds = self
                    .current
                    .load_full()
                    .map(|c| (*c).clone())
                    .unwrap_or_else(|| Credentials::new("", "", None, None, "none"));
                SharedCredentialsProvider::new(creds)
            }
        }
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
            (None, None) => return Err(CredentialError::Unavailable("none configured".into())),
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
