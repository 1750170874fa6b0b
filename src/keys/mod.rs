//! sr25519 key pairs for clients and dev mode: Substrate secret URIs (`//Alice`,
//! `//Alice//stash`, `<mnemonic>//hard`), bittensor wallet keyfiles, and signing.

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use schnorrkel::derive::ChainCode;
use schnorrkel::{ExpansionMode, Keypair, MiniSecretKey};
use sha2::Sha512;

pub mod wallet;

use crate::auth::encode_ss58;

/// The phrase behind Substrate's well-known development accounts (`//Alice`, ...).
pub const DEV_PHRASE: &str =
    "bottom drive obey lake curtain smoke basket hold race lonely fit walk";

/// Why a key could not be made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The mnemonic is not a valid BIP-39 English phrase.
    #[error("invalid mnemonic: {0}")]
    Mnemonic(String),
    /// The secret seed is not 32 bytes of hex.
    #[error("invalid secret seed: expected 32 bytes of hex")]
    Seed,
    /// Only hard junctions (`//name`) are supported.
    #[error("unsupported derivation path {0:?}: only hard junctions like //Alice are supported")]
    Path(String),
    /// A wallet file could not be read or parsed.
    #[error("cannot read wallet file {path}: {reason}")]
    Wallet {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// An sr25519 key pair with its SS58 address.
#[derive(Clone)]
pub struct SigningKey {
    pair: Keypair,
    ss58: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("ss58", &self.ss58)
            .finish()
    }
}

fn mini_secret_from_phrase(phrase: &str, password: &str) -> Result<MiniSecretKey, KeyError> {
    let mnemonic = bip39::Mnemonic::parse_normalized(phrase.trim())
        .map_err(|e| KeyError::Mnemonic(e.to_string()))?;
    let entropy = mnemonic.to_entropy();
    // Substrate: the seed is PBKDF2-HMAC-SHA512 over the entropy (not the phrase).
    let mut seed = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<Sha512>(
        &entropy,
        format!("mnemonic{password}").as_bytes(),
        2048,
        &mut seed,
    );
    MiniSecretKey::from_bytes(&seed[..32]).map_err(|_| KeyError::Seed)
}

/// The chain code of a hard junction, as Substrate computes it.
fn chain_code(junction: &str) -> ChainCode {
    let encoded: Vec<u8> = match junction.parse::<u64>() {
        Ok(n) => n.to_le_bytes().to_vec(),
        Err(_) => {
            // SCALE: compact length prefix, then the bytes.
            let bytes = junction.as_bytes();
            let mut v = compact_len(bytes.len());
            v.extend_from_slice(bytes);
            v
        }
    };
    let mut cc = [0u8; 32];
    if encoded.len() > 32 {
        let mut hasher = Blake2b::<U32>::new();
        hasher.update(&encoded);
        cc.copy_from_slice(&hasher.finalize());
    } else {
        cc[..encoded.len()].copy_from_slice(&encoded);
    }
    ChainCode(cc)
}

fn compact_len(n: usize) -> Vec<u8> {
    match n {
        0..=63 => vec![(n as u8) << 2],
        64..=16_383 => (((n as u16) << 2) | 1).to_le_bytes().to_vec(),
        _ => (((n as u32) << 2) | 2).to_le_bytes().to_vec(),
    }
}

impl SigningKey {
    fn from_pair(pair: Keypair) -> Self {
        let ss58 = encode_ss58(&pair.public.to_bytes());
        Self { pair, ss58 }
    }

    /// The key of a 32-byte mini secret (a bittensor keyfile's `secretSeed`).
    pub fn from_seed(seed: &[u8; 32]) -> Result<Self, KeyError> {
        let mini = MiniSecretKey::from_bytes(seed).map_err(|_| KeyError::Seed)?;
        Ok(Self::from_pair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// The key of a hex seed, with or without `0x`.
    pub fn from_seed_hex(hex_seed: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        hex::decode_to_slice(hex_seed.trim().trim_start_matches("0x"), &mut seed)
            .map_err(|_| KeyError::Seed)?;
        Self::from_seed(&seed)
    }

    /// The key of a secret URI: `//Alice`, `//Alice//stash`, `<mnemonic>`,
    /// `<mnemonic>//path`, or `0x<seed>//path`. Soft junctions and passwords are not supported.
    pub fn from_uri(uri: &str) -> Result<Self, KeyError> {
        let uri = uri.trim();
        let (base, path) = match uri.find("//") {
            Some(i) => (uri[..i].trim(), &uri[i..]),
            None => (uri, ""),
        };
        if path.contains("///")
            || path
                .split("//")
                .skip(1)
                .any(|j| j.is_empty() || j.contains('/'))
        {
            return Err(KeyError::Path(path.to_owned()));
        }
        let mini = if base.is_empty() {
            mini_secret_from_phrase(DEV_PHRASE, "")?
        } else if let Some(hex_seed) = base.strip_prefix("0x") {
            let mut seed = [0u8; 32];
            hex::decode_to_slice(hex_seed, &mut seed).map_err(|_| KeyError::Seed)?;
            MiniSecretKey::from_bytes(&seed).map_err(|_| KeyError::Seed)?
        } else {
            mini_secret_from_phrase(base, "")?
        };
        let mut pair = mini.expand_to_keypair(ExpansionMode::Ed25519);
        for junction in path.split("//").skip(1) {
            let (next, _) = pair
                .secret
                .hard_derive_mini_secret_key(Some(chain_code(junction)), b"");
            pair = next.expand_to_keypair(ExpansionMode::Ed25519);
        }
        Ok(Self::from_pair(pair))
    }

    /// The key of a BIP-39 mnemonic (no derivation).
    pub fn from_mnemonic(phrase: &str) -> Result<Self, KeyError> {
        let mini = mini_secret_from_phrase(phrase, "")?;
        Ok(Self::from_pair(
            mini.expand_to_keypair(ExpansionMode::Ed25519),
        ))
    }

    /// The SS58 address (prefix 42).
    pub fn ss58(&self) -> &str {
        &self.ss58
    }

    /// The public key.
    pub fn public(&self) -> [u8; 32] {
        self.pair.public.to_bytes()
    }

    /// Hex sr25519 signature (context `substrate`) over `message`.
    pub fn sign_hex(&self, message: &str) -> String {
        hex::encode(
            self.pair
                .sign_simple(b"substrate", message.as_bytes())
                .to_bytes(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::verify_signature;

    #[test]
    fn well_known_dev_accounts() {
        let cases = [
            (
                "//Alice",
                "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",
            ),
            ("//Bob", "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"),
            (
                "//Charlie",
                "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y",
            ),
            ("//Dave", "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"),
            ("//Eve", "5HGjWAeFDfFCWPsjFQdVV2Msvz2XtMktvgocEZcCj68kUMaw"),
            (
                "//Ferdie",
                "5CiPPseXPECbkjWCa6MnjNokrgYjMqmKndv2rSnekmSK2DjL",
            ),
            (
                "//Alice//stash",
                "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY",
            ),
            (
                "//Bob//stash",
                "5HpG9w8EBLe5XCrbczpwq5TSXvedjrBGCwqxK1iQ7qUsSWFc",
            ),
        ];
        for (uri, ss58) in cases {
            let key = SigningKey::from_uri(uri).expect(uri);
            assert_eq!(key.ss58(), ss58, "{uri}");
        }
    }

    #[test]
    fn signatures_verify() {
        let key = SigningKey::from_uri("//Charlie").expect("charlie");
        let sig = key.sign_hex("s3:validator:access:1");
        assert!(verify_signature(&key.public(), "s3:validator:access:1", &sig).is_ok());
    }

    #[test]
    fn bad_input() {
        assert!(SigningKey::from_uri("not a mnemonic at all").is_err());
        assert!(SigningKey::from_uri("//Alice/soft").is_err());
        assert!(SigningKey::from_seed_hex("0x1234").is_err());
    }
}
