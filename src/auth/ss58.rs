//! SS58 addresses (the Substrate account format) with checksum verification.
//!
//! Only the generic Substrate prefix 42 is accepted, which is what bittensor wallets
//! print. An address with another prefix encodes the same public key for a different
//! network; accepting it would let two strings name one account, so it is rejected.

use blake2::{Blake2b512, Digest};

/// The SS58 address type that bittensor uses (generic Substrate).
pub const SUBSTRATE_PREFIX: u16 = 42;

const CHECKSUM_PREFIX: &[u8] = b"SS58PRE";
const CHECKSUM_LEN: usize = 2;
const KEY_LEN: usize = 32;

/// Why a string is not a usable SS58 address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ss58Error {
    /// The input was empty.
    #[error("address is empty")]
    Empty,
    /// The input contains a character outside the base58 alphabet.
    #[error("address is not base58")]
    NotBase58,
    /// The decoded payload does not hold a 32-byte account id.
    #[error("address has the wrong length")]
    BadLength,
    /// The checksum bytes do not match the payload.
    #[error("address checksum does not match")]
    BadChecksum,
    /// The address decodes to a prefix-42 key, but not from its one canonical spelling
    /// (e.g. prefix 42 written in the two-byte form).
    #[error("address is not in canonical SS58 form")]
    NotCanonical,
    /// The address is valid but for another network.
    #[error("address has SS58 prefix {found}, expected {SUBSTRATE_PREFIX}")]
    WrongPrefix {
        /// The prefix found in the address.
        found: u16,
    },
}

fn checksum(payload: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut hasher = Blake2b512::new();
    hasher.update(CHECKSUM_PREFIX);
    hasher.update(payload);
    let hash = hasher.finalize();
    [hash[0], hash[1]]
}

/// Decodes an SS58 address with prefix 42 into its 32-byte public key.
pub fn decode_ss58(address: &str) -> Result<[u8; KEY_LEN], Ss58Error> {
    if address.is_empty() {
        return Err(Ss58Error::Empty);
    }
    // 35 bytes decode to at most 48 base58 characters; anything far longer is not an address.
    if address.len() > 64 {
        return Err(Ss58Error::BadLength);
    }
    let data = bs58::decode(address)
        .into_vec()
        .map_err(|_| Ss58Error::NotBase58)?;
    let (prefix, prefix_len) = match data.first() {
        Some(&b) if b < 64 => (u16::from(b), 1),
        Some(&b) if b < 128 => {
            let second = *data.get(1).ok_or(Ss58Error::BadLength)?;
            // Two-byte prefix as defined by the SS58 spec.
            let lower = (b << 2) | (second >> 6);
            let upper = second & 0b0011_1111;
            (u16::from(lower) | (u16::from(upper) << 8), 2)
        }
        _ => return Err(Ss58Error::BadLength),
    };
    if data.len() != prefix_len + KEY_LEN + CHECKSUM_LEN {
        return Err(Ss58Error::BadLength);
    }
    let (payload, check) = data.split_at(prefix_len + KEY_LEN);
    if checksum(payload) != check {
        return Err(Ss58Error::BadChecksum);
    }
    if prefix != SUBSTRATE_PREFIX {
        return Err(Ss58Error::WrongPrefix { found: prefix });
    }
    // Prefixes below 64 have exactly one spelling: the one-byte form. base58 itself is
    // one-to-one, so with it every accepted address re-encodes to the string given.
    if prefix_len != 1 {
        return Err(Ss58Error::NotCanonical);
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&payload[prefix_len..]);
    Ok(key)
}

/// Encodes a 32-byte public key as an SS58 address with prefix 42.
pub fn encode_ss58(public_key: &[u8; KEY_LEN]) -> String {
    let mut payload = Vec::with_capacity(1 + KEY_LEN + CHECKSUM_LEN);
    // 42 < 64, so the prefix is a single byte.
    payload.push(SUBSTRATE_PREFIX as u8);
    payload.extend_from_slice(public_key);
    let check = checksum(&payload);
    payload.extend_from_slice(&check);
    bs58::encode(payload).into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_alice() {
        let addr = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";
        let key = decode_ss58(addr).expect("alice decodes");
        assert_eq!(
            hex::encode(key),
            "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
        );
        assert_eq!(encode_ss58(&key), addr);
    }

    #[test]
    fn rejects_the_two_byte_spelling_of_prefix_42() {
        // //Charlie's key with prefix 42 written in the two-byte form.
        let charlie = "5FLSigC9HGRKVhB9FiEo4Y3koPsNmBmLJbpXg2mp1hXcS59Y";
        let key = decode_ss58(charlie).expect("canonical decodes");
        assert_eq!(encode_ss58(&key), charlie);
        let two_byte = "Zp4RBgDgd1t4ugjm1KTJnuB2HqDB9CpGKwxD7Z5PVFs2r6jgw";
        assert_eq!(decode_ss58(two_byte), Err(Ss58Error::NotCanonical));
    }

    #[test]
    fn rejects_polkadot_prefix() {
        let err = decode_ss58("15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5").unwrap_err();
        assert_eq!(err, Ss58Error::WrongPrefix { found: 0 });
    }
}
