//! sr25519 signature verification, as bittensor's `Keypair.verify` does it.

use schnorrkel::{PublicKey, Signature};

/// The signing context Substrate and bittensor use for sr25519.
const SIGNING_CONTEXT: &[u8] = b"substrate";

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature is not hex (an optional `0x` prefix is allowed).
    #[error("signature is not hex")]
    NotHex,
    /// The signature does not decode to exactly 64 bytes.
    #[error("signature must be 64 bytes, got {0}")]
    BadLength(usize),
    /// The public key is not a valid sr25519 point.
    #[error("public key is not a valid sr25519 key")]
    BadPublicKey,
    /// The bytes are not an sr25519 signature, or it does not match the message and key.
    #[error("signature does not verify")]
    Mismatch,
}

/// Parses a hex signature, with or without `0x`, into its 64 bytes.
pub fn parse_signature_hex(signature: &str) -> Result<[u8; 64], SignatureError> {
    let hex_part = signature
        .strip_prefix("0x")
        .or_else(|| signature.strip_prefix("0X"))
        .unwrap_or(signature);
    if hex_part.len() != 128 {
        // Report the byte length the caller sent when it is at least hex-shaped.
        return Err(match hex::decode(hex_part) {
            Ok(bytes) => SignatureError::BadLength(bytes.len()),
            Err(_) => SignatureError::NotHex,
        });
    }
    let mut out = [0u8; 64];
    hex::decode_to_slice(hex_part, &mut out).map_err(|_| SignatureError::NotHex)?;
    Ok(out)
}

/// Verifies an sr25519 signature (hex) by `public_key` over `message`.
///
/// Like bittensor's `Keypair.verify`, a signature over `<Bytes>message</Bytes>` (what
/// polkadot.js `signRaw` produces) is accepted as well as one over the bare message.
pub fn verify_signature(
    public_key: &[u8; 32],
    message: &str,
    signature_hex: &str,
) -> Result<(), SignatureError> {
    let public = PublicKey::from_bytes(public_key).map_err(|_| SignatureError::BadPublicKey)?;
    verify_with_key(&public, message, signature_hex)
}

/// [`verify_signature`] with a public key already decoded (the metagraph keeps each
/// neuron's, so a request does not pay for the point decompression).
pub fn verify_with_key(
    public: &PublicKey,
    message: &str,
    signature_hex: &str,
) -> Result<(), SignatureError> {
    verify_bytes_with_key(public, message, &parse_signature_hex(signature_hex)?)
}

/// [`verify_with_key`] with the signature's 64 bytes already decoded.
pub fn verify_bytes_with_key(
    public: &PublicKey,
    message: &str,
    bytes: &[u8; 64],
) -> Result<(), SignatureError> {
    // `from_bytes` rejects signatures without the sr25519 marker bit (e.g. ed25519 ones).
    let signature = Signature::from_bytes(bytes).map_err(|_| SignatureError::Mismatch)?;
    if public
        .verify_simple(SIGNING_CONTEXT, message.as_bytes(), &signature)
        .is_ok()
    {
        return Ok(());
    }
    let wrapped = format!("<Bytes>{message}</Bytes>");
    public
        .verify_simple(SIGNING_CONTEXT, wrapped.as_bytes(), &signature)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_hex_forms() {
        let hex64 = "ab".repeat(64);
        assert!(parse_signature_hex(&hex64).is_ok());
        assert!(parse_signature_hex(&format!("0x{hex64}")).is_ok());
        assert_eq!(
            parse_signature_hex(&"ab".repeat(63)),
            Err(SignatureError::BadLength(63))
        );
        assert_eq!(
            parse_signature_hex(&"zz".repeat(64)),
            Err(SignatureError::NotHex)
        );
        assert_eq!(parse_signature_hex(""), Err(SignatureError::BadLength(0)));
    }
}
