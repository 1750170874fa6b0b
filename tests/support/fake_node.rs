//! A fake Subtensor JSON-RPC websocket node: serves the real finney metadata and answers
//! `SubnetInfoRuntimeApi_get_selective_metagraph` with neurons from the test, encoded
//! against that metadata's own types. Only the legacy RPC methods subxt's
//! `LegacyBackend` uses are implemented.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jsonrpsee::server::{RpcModule, Server, ServerHandle};
use jsonrpsee::types::ErrorObjectOwned;
use parity_scale_codec::Encode;
use scale_info::{PortableRegistry, TypeDef, TypeDefPrimitive};
use serde_json::{Value as Json, json};
use subxt::Metadata;
use subxt::ext::codec::Decode;
use subxt::ext::scale_value::{Composite, Value, ValueDef};

/// The metadata file served by the node (spec_version 365).
pub fn metadata_bytes() -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/subtensor-finney-metadata.scale",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

/// One uid as the chain stores it.
#[derive(Debug, Clone)]
pub struct FakeNeuron {
    pub hotkey: [u8; 32],
    pub coldkey: [u8; 32],
    pub validator_permit: bool,
    /// Alpha stake in rao (1e-9 alpha).
    pub alpha_raw: u64,
}

/// How the node answers the metagraph call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Correctly.
    Normal,
    /// With bytes that do not decode.
    Garbage,
    /// Never.
    Hang,
}

/// What the node serves; change it while the node runs.
#[derive(Debug, Clone)]
pub struct Chain {
    pub netuid: u16,
    pub block: u64,
    pub spec_version: u32,
    pub neurons: Vec<FakeNeuron>,
    pub mode: Mode,
}

struct Ctx {
    chain: Arc<Mutex<Chain>>,
    metadata: Metadata,
    metadata_bytes: Vec<u8>,
    calls: Arc<Mutex<Vec<String>>>,
}

/// A running fake node.
pub struct FakeNode {
    /// `ws://127.0.0.1:{port}`.
    pub url: String,
    pub addr: SocketAddr,
    pub chain: Arc<Mutex<Chain>>,
    /// `state_call` names received, in order.
    pub calls: Arc<Mutex<Vec<String>>>,
    handle: Option<ServerHandle>,
}

fn rpc_err(msg: impl Into<String>) -> ErrorObjectOwned {
    ErrorObjectOwned::owned(-32000, msg.into(), None::<()>)
}

fn hash_of(block: u64) -> String {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&block.to_le_bytes());
    h[31] = 0xab;
    format!("0x{}", hex::encode(h))
}

/// A "zero" value of type `id`: empty sequences, `None`-like first variants, zeros.
fn zero(types: &PortableRegistry, id: u32) -> Value {
    let ty = types.resolve(id).unwrap_or_else(|| panic!("type {id}"));
    match &ty.type_def {
        TypeDef::Composite(c) => {
            if c.fields.iter().all(|f| f.name.is_some()) && !c.fields.is_empty() {
                Value::named_composite(
                    c.fields
                        .iter()
                        .map(|f| (f.name.clone().unwrap_or_default(), zero(types, f.ty.id))),
                )
            } else {
                Value::unnamed_composite(c.fields.iter().map(|f| zero(types, f.ty.id)))
            }
        }
        TypeDef::Variant(v) => {
            let first = v
                .variants
                .iter()
                .min_by_key(|v| v.index)
                .expect("a variant");
            Value::unnamed_variant(
                first.name.clone(),
                first.fields.iter().map(|f| zero(types, f.ty.id)),
            )
        }
        TypeDef::Sequence(_) => Value::unnamed_composite(Vec::new()),
        TypeDef::Array(a) => {
            Value::unnamed_composite((0..a.len).map(|_| zero(types, a.type_param.id)))
        }
        TypeDef::Tuple(t) => Value::unnamed_composite(t.fields.iter().map(|f| zero(types, f.id))),
        TypeDef::Primitive(p) => match p {
            TypeDefPrimitive::Bool => Value::bool(false),
            TypeDefPrimitive::Char => Value::char('0'),
            TypeDefPrimitive::Str => Value::string(""),
            TypeDefPrimitive::I8
            | TypeDefPrimitive::I16
            | TypeDefPrimitive::I32
            | TypeDefPrimitive::I64
            | TypeDefPrimitive::I128 => Value::i128(0),
            _ => Value::u128(0),
        },
        TypeDef::Compact(c) => zero(types, c.type_param.id),
        TypeDef::BitSequence(_) => panic!("bit sequences are not expected in the metagraph"),
    }
}

fn some(v: Value) -> Value {
    Value::unnamed_variant("Some", [v])
}

fn account(bytes: &[u8; 32]) -> Value {
    Value::unnamed_composite([Value::from_bytes(bytes)])
}

/// The SCALE answer of `get_selective_metagraph` for `chain`, or `None` (encoded) when
/// the subnet asked for is not the chain's.
pub fn encode_selective(md: &Metadata, chain: &Chain, netuid: u16) -> Vec<u8> {
    let method = md
        .runtime_api_trait_by_name("SubnetInfoRuntimeApi")
        .and_then(|t| t.method_by_name("get_selective_metagraph"))
        .expect("get_selective_metagraph in metadata");
    let out_ty = method.output_ty();
    let types = md.types();
    let TypeDef::Variant(option) = &types.resolve(out_ty).expect("output type").type_def else {
        panic!("output is not an Option");
    };
    let some_ty = option
        .variants
        .iter()
        .find(|v| v.name == "Some")
        .and_then(|v| v.fields.first())
        .expect("Some field")
        .ty
        .id;
    let value = if netuid != chain.netuid {
        Value::unnamed_variant("None", [])
    } else {
        let mut inner = zero(types, some_ty);
        let ValueDef::Composite(Composite::Named(fields)) = &mut inner.value else {
            panic!("SelectiveMetagraph is a named composite");
        };
        let n = chain.neurons.len();
        for (name, v) in fields.iter_mut() {
            *v = match name.as_str() {
                "netuid" => Value::u128(u128::from(chain.netuid)),
                "block" => some(Value::u128(u128::from(chain.block))),
                "num_uids" => some(Value::u128(n as u128)),
                "hotkeys" => some(Value::unnamed_composite(
                    chain.neurons.iter().map(|x| account(&x.hotkey)),
                )),
                "coldkeys" => some(Value::unnamed_composite(
                    chain.neurons.iter().map(|x| account(&x.coldkey)),
                )),
                "validator_permit" => some(Value::unnamed_composite(
                    chain
                        .neurons
                        .iter()
                        .map(|x| Value::bool(x.validator_permit)),
                )),
                "alpha_stake" => some(Value::unnamed_composite(
                    chain
                        .neurons
                        .iter()
                        .map(|x| Value::u128(u128::from(x.alpha_raw))),
                )),
                _ => continue,
            };
        }
        some(inner)
    };
    let mut out = Vec::new();
    subxt::ext::scale_value::scale::encode_as_type(&value, out_ty, types, &mut out)
        .expect("fixture encodes against the metadata");
    // subxt does not check trailing bytes; make sure the encoding is exact.
    let mut rest = &out[..];
    subxt::ext::scale_value::scale::decode_as_type(&mut rest, out_ty, types)
        .expect("fixture decodes");
    assert!(rest.is_empty(), "fixture encoding has trailing bytes");
    out
}

fn state_call(ctx: &Ctx, params: &[Json]) -> Result<String, ErrorObjectOwned> {
    let name = params
        .first()
        .and_then(Json::as_str)
        .ok_or_else(|| rpc_err("name"))?;
    let args = params
        .get(1)
        .and_then(Json::as_str)
        .map(|s| hex::decode(s.trim_start_matches("0x")).unwrap_or_default())
        .unwrap_or_default();
    if let Ok(mut calls) = ctx.calls.lock() {
        calls.push(name.to_owned());
    }
    let chain = ctx.chain.lock().map_err(|_| rpc_err("poisoned"))?.clone();
    let bytes = match name {
        "Core_version" => (
            "node-subtensor".to_string(),
            "node-subtensor".to_string(),
            1u32,
            chain.spec_version,
            1u32,
            Vec::<([u8; 8], u32)>::new(),
            1u32,
            1u8,
        )
            .encode(),
        "Metadata_metadata_versions" => vec![14u32, 15, 16, u32::MAX].encode(),
        "Metadata_metadata_at_version" => Some(ctx.metadata_bytes.clone()).encode(),
        "SubnetInfoRuntimeApi_get_selective_metagraph" => match chain.mode {
            Mode::Garbage => vec![0x01, 0xff, 0x00, 0x13],
            Mode::Hang | Mode::Normal => {
                let netuid = u16::decode(&mut &args[..]).map_err(|_| rpc_err("netuid"))?;
                encode_selective(&ctx.metadata, &chain, netuid)
            }
        },
        other => return Err(rpc_err(format!("unknown runtime call {other}"))),
    };
    Ok(format!("0x{}", hex::encode(bytes)))
}

impl FakeNode {
    /// Starts a node serving `chain` on a free port.
    pub async fn start(chain: Chain) -> Self {
        Self::start_on(
            "127.0.0.1:0".parse().expect("addr"),
            Arc::new(Mutex::new(chain)),
        )
        .await
    }

    /// Starts a node on `addr` sharing `chain` (to restart on the same port).
    pub async fn start_on(addr: SocketAddr, chain: Arc<Mutex<Chain>>) -> Self {
        let bytes = metadata_bytes();
        let metadata = Metadata::decode(&mut &bytes[..]).expect("metadata decodes");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let ctx = Ctx {
            chain: Arc::clone(&chain),
            metadata,
            metadata_bytes: bytes,
            calls: Arc::clone(&calls),
        };
        let server = Server::builder().build(addr).await.expect("bind fake node");
        let addr = server.local_addr().expect("node addr");
        let mut module = RpcModule::new(ctx);
        module
            .register_method("chain_getBlockHash", |_, ctx, _| {
                let _ = ctx;
                Ok::<_, ErrorObjectOwned>(hash_of(0))
            })
            .expect("register");
        module
            .register_method("chain_getFinalizedHead", |_, ctx, _| {
                let block = ctx.chain.lock().map(|c| c.block).unwrap_or(0);
                Ok::<_, ErrorObjectOwned>(hash_of(block))
            })
            .expect("register");
        module
            .register_method("chain_getHeader", |_, ctx, _| {
                let block = ctx.chain.lock().map(|c| c.block).unwrap_or(0);
                Ok::<_, ErrorObjectOwned>(json!({
                    "parentHash": hash_of(block.saturating_sub(1)),
                    "number": format!("0x{block:x}"),
                    "stateRoot": hash_of(1),
                    "extrinsicsRoot": hash_of(2),
                    "digest": {"logs": []},
                }))
            })
            .expect("register");
        module
            .register_async_method("state_call", |params, ctx, _| async move {
                let params: Vec<Json> = params.parse().map_err(|_| rpc_err("params"))?;
                let name = params.first().and_then(Json::as_str).unwrap_or_default();
                let hang = ctx
                    .chain
                    .lock()
                    .map(|c| c.mode == Mode::Hang)
                    .unwrap_or(false);
                if hang && name.starts_with("SubnetInfoRuntimeApi") {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
                state_call(&ctx, &params)
            })
            .expect("register");
        let handle = server.start(module);
        Self {
            url: format!("ws://{addr}"),
            addr,
            chain,
            calls,
            handle: Some(handle),
        }
    }

    /// Changes what the node serves.
    pub fn update(&self, f: impl FnOnce(&mut Chain)) {
        let mut chain = self.chain.lock().expect("chain lock");
        f(&mut chain);
    }

    /// Stops the node; open connections are closed.
    pub async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.stop();
            h.stopped().await;
        }
    }

    /// Starts it again on the same port with the same chain.
    pub async fn restart(&mut self) {
        self.stop().await;
        let mut again = Self::start_on(self.addr, Arc::clone(&self.chain)).await;
        self.handle = again.handle.take();
        self.calls = Arc::clone(&again.calls);
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            let _ = h.stop();
        }
    }
}
