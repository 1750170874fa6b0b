//! Signing keys kept in AWS Secrets Manager (`AWS_CREDENTIALS_SECRET_ID`): a JSON secret
//! `{"AWS_ACCESS_KEY_ID": "...", "AWS_SECRET_ACCESS_KEY": "..."}` (optionally
//! `AWS_SESSION_TOKEN`), read at start and re-read periodically so a rotation takes effect
//! without a restart.

use std::time::Duration;

use aws_credential_types::Credentials;
use serde::Deserialize;
use tokio::task::JoinHandle;

use super::CredentialSource;

/// The secret could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or could not be reached.
    #[error("cannot read secret {id}: {reason}")]
    Read {
        /// The secret id.
        id: String,
        /// Why.
        reason: String,
    },
    /// The secret is not the expected JSON.
    #[error("secret {id} is not JSON with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY ({reason})")]
    Malformed {
        /// The secret id.
        id: String,
        /// Why (never the value).
        reason: String,
    },
}

#[derive(Deserialize)]
struct SecretKeys {
    #[serde(rename = "AWS_ACCESS_KEY_ID")]
    access_key_id: String,
    #[serde(rename = "AWS_SECRET_ACCESS_KEY")]
    secret_access_key: String,
    #[serde(rename = "AWS_SESSION_TOKEN", default)]
    session_token: Option<String>,
}

/// Says what is wrong with the secret's JSON without quoting any of it.
fn describe_json_error(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Data => {
            let msg = e.to_string();
            if msg.starts_with("missing field") {
                msg.split(" at line")
                    .next()
                    .unwrap_or("missing field")
                    .to_owned()
            } else {
                "a field has the wrong type".to_owned()
            }
        }
        _ => "not valid JSON".to_owned(),
    }
}

/// Reads signing credentials from one secret.
#[derive(Debug, Clone)]
pub struct SecretCredentials {
    client: aws_sdk_secretsmanager::Client,
    id: String,
}

impl SecretCredentials {
    /// Reads secret `id` with `client`.
    pub fn new(client: aws_sdk_secretsmanager::Client, id: impl Into<String>) -> Self {
        Self {
            client,
            id: id.into(),
        }
    }

    /// Fetches and parses the secret, bounded by `timeout`.
    pub async fn fetch(&self, timeout: Duration) -> Result<Credentials, SecretError> {
        let read = |reason: String| SecretError::Read {
            id: self.id.clone(),
            reason,
        };
        let out = tokio::time::timeout(
            timeout,
            self.client.get_secret_value().secret_id(&self.id).send(),
        )
        .await
        .map_err(|_| read(format!("no answer within {timeout:?}")))?
        .map_err(|e| {
            read(match e.as_service_error() {
                Some(service) => service.to_string(),
                None => aws_sdk_secretsmanager::error::DisplayErrorContext(&e).to_string(),
            })
        })?;
        let text = out.secret_string().ok_or_else(|| SecretError::Malformed {
            id: self.id.clone(),
            reason: "no SecretString".into(),
        })?;
        let keys: SecretKeys = serde_json::from_str(text).map_err(|e| SecretError::Malformed {
            id: self.id.clone(),
            reason: describe_json_error(&e),
        })?;
        if keys.access_key_id.is_empty() || keys.secret_access_key.is_empty() {
            return Err(SecretError::Malformed {
                id: self.id.clone(),
                reason: "empty key".into(),
            });
        }
        Ok(Credentials::new(
            keys.access_key_id,
            keys.secret_access_key,
            keys.session_token,
            None,
            "secrets-manager",
        ))
    }

    /// Re-reads the secret every `every` into `source`; a failure keeps the current keys.
    pub fn spawn_refresh(self, source: CredentialSource, every: Duration) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                match self.fetch(Duration::from_secs(30)).await {
                    Ok(creds) => {
                        let rotated = source
                            .cached()
                            .is_none_or(|c| c.access_key_id() != creds.access_key_id());
                        if rotated {
                            tracing::info!(secret = %self.id, "signing credentials rotated");
                        }
                        source.replace(creds);
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot refresh signing credentials; keeping the current ones");
                    }
                }
            }
        })
    }
}
