//! The metagraph read from a Subtensor node with subxt: one
//! `SubnetInfoRuntimeApi.get_selective_metagraph` call at the current finalized block.
//!
//! The client is rebuilt after any failure (subxt's default client does not reconnect),
//! every call is bounded by a timeout, and a fresh per-block client is taken on every
//! fetch so a runtime upgrade (new metadata) is picked up without a restart.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use scale_decode::DecodeAsType;
use subxt::backend::LegacyBackend;
use subxt::rpcs::RpcClient;
use subxt::utils::AccountId32;
use subxt::{OnlineClient, SubstrateConfig};

use super::{Metagraph, MetagraphDocument, MetagraphError, MetagraphSource, Neuron};
use crate::auth::encode_ss58;

/// `SelectiveMetagraph` field indexes: netuid, block, hotkeys, coldkeys,
/// validator_permit, alpha_stake.
pub const SELECTED_FIELDS: [u16; 6] = [0, 7, 52, 53, 57, 67];

/// The websocket endpoint of a network name: `finney`, `test`, `local`, or a `ws(s)://` URL.
pub fn network_endpoint(network: &str) -> Option<String> {
    match network {
        "finney" => Some("wss://entrypoint-finney.opentensor.ai:443".into()),
        "test" => Some("wss://test.finney.opentensor.ai:443".into()),
        "local" => Some("ws://127.0.0.1:9944".into()),
        url if url.starts_with("ws://") || url.starts_with("wss://") => Some(url.to_owned()),
        _ => None,
    }
}

/// The fields of `SelectiveMetagraph` this service reads; others are skipped by name.
#[derive(Debug, Clone, DecodeAsType)]
pub struct SelectiveMetagraphView {
    /// The subnet (filled because index 0 is requested).
    pub netuid: u16,
    /// The block the call executed at.
    pub block: Option<u64>,
    /// Hotkey per uid.
    pub hotkeys: Option<Vec<AccountId32>>,
    /// Coldkey per uid.
    pub coldkeys: Option<Vec<AccountId32>>,
    /// Validator permit per uid.
    pub validator_permit: Option<Vec<bool>>,
    /// Inherited alpha stake per uid, in rao (1e-9 alpha).
    pub alpha_stake: Option<Vec<u64>>,
}

/// Alpha stake as the Python SDK computes it: `float32(raw / 1e9)`.
pub fn alpha_from_rao(raw: u64) -> f64 {
    f64::from((raw as f64 / 1e9) as f32)
}

impl SelectiveMetagraphView {
    /// Turns the chain's answer into a metagraph, checking the vectors line up.
    pub fn into_metagraph(self, expected_netuid: u16) -> Result<Metagraph, MetagraphError> {
        let malformed = |what: &str| MetagraphError::Malformed(what.to_owned());
        let hotkeys = self.hotkeys.ok_or_else(|| malformed("hotkeys missing"))?;
        let coldkeys = self.coldkeys.ok_or_else(|| malformed("coldkeys missing"))?;
        let permits = self
            .validator_permit
            .ok_or_else(|| malformed("validator_permit missing"))?;
        let stakes = self
            .alpha_stake
            .ok_or_else(|| malformed("alpha_stake missing"))?;
        let n = hotkeys.len();
        if coldkeys.len() != n || permits.len() != n || stakes.len() != n {
            return Err(MetagraphError::Malformed(format!(
                "vector lengths differ: hotkeys {n}, coldkeys {}, validator_permit {}, alpha_stake {}",
                coldkeys.len(),
                permits.len(),
                stakes.len()
            )));
        }
        if self.netuid != expected_netuid {
            return Err(MetagraphError::WrongSubnet {
                expected: expected_netuid,
                found: self.netuid,
            });
        }
        let neurons = hotkeys
            .iter()
            .zip(&coldkeys)
            .zip(permits.iter().zip(&stakes))
            .enumerate()
            .map(|(uid, ((hk, ck), (&permit, &raw)))| Neuron {
                uid: uid as u16,
                hotkey: encode_ss58(&hk.0),
                coldkey: encode_ss58(&ck.0),
                validator_permit: permit,
                alpha_stake: alpha_from_rao(raw),
            })
            .collect();
        Ok(Metagraph::from_document(MetagraphDocument {
            netuid: self.netuid,
            block: self.block.unwrap_or(0),
            neurons,
            synced_at: None,
        }))
    }
}

/// Decodes the SCALE answer of `get_selective_metagraph` against `metadata` (what subxt
/// does inside a runtime-API call), then builds the metagraph.
pub fn decode_selective(
    metadata: &subxt::Metadata,
    bytes: &[u8],
    netuid: u16,
) -> Result<Metagraph, MetagraphError> {
    let output_ty = metadata
        .runtime_api_trait_by_name("SubnetInfoRuntimeApi")
        .and_then(|t| t.method_by_name("get_selective_metagraph"))
        .map(|m| m.output_ty())
        .ok_or_else(|| {
            MetagraphError::Malformed("metadata has no get_selective_metagraph".into())
        })?;
    let view = <Option<SelectiveMetagraphView> as DecodeAsType>::decode_as_type(
        &mut &bytes[..],
        output_ty,
        metadata.types(),
    )
    .map_err(|e| MetagraphError::Malformed(e.to_string()))?;
    view.ok_or(MetagraphError::NoSuchSubnet(netuid))?
        .into_metagraph(netuid)
}

/// A [`MetagraphSource`] backed by a Subtensor node.
pub struct ChainSource {
    url: String,
    netuid: u16,
    timeout: Duration,
    client: ArcSwapOption<OnlineClient<SubstrateConfig>>,
}

impl std::fmt::Debug for ChainSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainSource")
            .field("url", &crate::redact::url(&self.url))
            .field("netuid", &self.netuid)
            .field("connected", &self.client.load().is_some())
            .finish()
    }
}

fn chain_err(context: &str, err: impl std::fmt::Display) -> MetagraphError {
    MetagraphError::Chain(format!("{context}: {err}"))
}

impl ChainSource {
    /// A source for subnet `netuid` at `url`; each RPC step is bounded by `timeout`.
    pub fn new(url: impl Into<String>, netuid: u16, timeout: Duration) -> Self {
        Self {
            url: url.into(),
            netuid,
            timeout,
            client: ArcSwapOption::empty(),
        }
    }

    /// The node's URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn bounded<T, E: std::fmt::Display>(
        &self,
        context: &str,
        fut: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, MetagraphError> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(match chain_err(context, e) {
                // Client libraries echo the URL they were given: never its secrets.
                MetagraphError::Chain(msg) => {
                    MetagraphError::Chain(crate::redact::scrub(&msg, &self.url))
                }
                other => other,
            }),
            Err(_) => Err(MetagraphError::Timeout(format!(
                "{context} took longer than {:?}",
                self.timeout
            ))),
        }
    }

    async fn connect(&self) -> Result<Arc<OnlineClient<SubstrateConfig>>, MetagraphError> {
        if let Some(client) = self.client.load_full() {
            return Ok(client);
        }
        let rpc = if self.url.starts_with("wss://") {
            self.bounded("connect", RpcClient::from_url(&self.url))
                .await?
        } else {
            self.bounded("connect", RpcClient::from_insecure_url(&self.url))
                .await?
        };
        let backend = LegacyBackend::<SubstrateConfig>::builder().build(rpc);
        let client = Arc::new(
            self.bounded(
                "build client",
                OnlineClient::from_backend(Arc::new(backend)),
            )
            .await?,
        );
        self.client.store(Some(Arc::clone(&client)));
        Ok(client)
    }

    async fn fetch_once(&self) -> Result<Metagraph, MetagraphError> {
        let client = self.connect().await?;
        let at = self
            .bounded("read the finalized block", client.at_current_block())
            .await?;
        let call = subxt::dynamic::runtime_api_call::<_, Option<SelectiveMetagraphView>>(
            "SubnetInfoRuntimeApi",
            "get_selective_metagraph",
            (self.netuid, SELECTED_FIELDS.to_vec()),
        );
        let view = self
            .bounded("get_selective_metagraph", at.runtime_apis().call(call))
            .await?
            .ok_or(MetagraphError::NoSuchSubnet(self.netuid))?;
        view.into_metagraph(self.netuid)
    }
}

impl MetagraphSource for ChainSource {
    fn describe(&self) -> String {
        format!("chain:{}", crate::redact::url(&self.url))
    }

    async fn fetch(&self) -> Result<Option<Metagraph>, MetagraphError> {
        match self.fetch_once().await {
            Ok(graph) => Ok(Some(graph)),
            Err(err) => {
                // Rebuild the client next time: a dropped websocket never recovers.
                if !matches!(err, MetagraphError::NoSuchSubnet(_)) {
                    self.client.store(None);
                }
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_float32_boundary() {
        let is_validator = |raw: u64| alpha_from_rao(raw).trunc() > 20_000.0;
        assert!(!is_validator(20_000_000_000_000));
        assert!(!is_validator(20_000_999_023_437));
        assert!(is_validator(20_000_999_023_438));
        assert!(is_validator(20_000_999_999_999));
        assert!(is_validator(20_001_000_000_000));
    }

    #[test]
    fn endpoints() {
        assert_eq!(
            network_endpoint("finney").as_deref(),
            Some("wss://entrypoint-finney.opentensor.ai:443")
        );
        assert_eq!(
            network_endpoint("test").as_deref(),
            Some("wss://test.finney.opentensor.ai:443")
        );
        assert_eq!(
            network_endpoint("local").as_deref(),
            Some("ws://127.0.0.1:9944")
        );
        assert_eq!(
            network_endpoint("ws://10.0.0.1:9944").as_deref(),
            Some("ws://10.0.0.1:9944")
        );
        assert_eq!(network_endpoint("mainnet"), None);
    }
}
