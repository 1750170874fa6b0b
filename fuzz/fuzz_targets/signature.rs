//! sr25519 signature parsing and verification with arbitrary key bytes, messages and
//! signature strings: never a panic; a parsed signature is exactly the hex it came from;
//! real signatures over the fuzzed message verify (bare, `<Bytes>`-wrapped, `0x` and
//! upper-case forms) and any one-bit change of them does not (for one input in eight:
//! signing is slow under the sanitizer).
//!
//! Input: 32 bytes of public key, then UTF-8 (lossy) `message` `\n` `signature`.

#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use s3_auth_api::auth::signature::{SignatureError, parse_signature_hex, verify_signature};
use s3_auth_api::keys::SigningKey;

fn signer() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::from_seed(&[7u8; 32]).expect("fixed seed"))
}

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

fuzz_target!(|data: &[u8]| {
    let mut key = [0u8; 32];
    let n = data.len().min(32);
    key[..n].copy_from_slice(&data[..n]);
    let text = String::from_utf8_lossy(data.get(32..).unwrap_or_default());
    let (message, signature) = text.split_once('\n').unwrap_or((&text, ""));

    // Parsing: exactly 128 hex digits (optional 0x) give the bytes they spell.
    match parse_signature_hex(signature) {
        Ok(bytes) => {
            let digits = strip_0x(signature);
            assert_eq!(hex::encode(bytes), digits.to_ascii_lowercase());
        }
        Err(SignatureError::BadLength(len)) => assert_ne!(len, 64),
        Err(_) => {}
    }

    // Verification with arbitrary key bytes and strings: an error or (never, in practice)
    // success, but never a panic; success implies the signature parsed.
    if verify_signature(&key, message, signature).is_ok() {
        assert!(parse_signature_hex(signature).is_ok());
    }
    // The same with the real key, so the curve code sees the fuzzed signatures too.
    let public = signer().public();
    if verify_signature(&public, message, signature).is_ok() {
        assert!(parse_signature_hex(signature).is_ok());
    }

    // Signing and verifying real signatures costs milliseconds under the sanitizer: do it
    // for one input in eight (chosen by the input, so a crash reproduces).
    if key[2] % 8 != 0 {
        return;
    }

    // Real signatures over the fuzzed message verify, in every accepted spelling.
    let good = signer().sign_hex(message);
    assert_eq!(verify_signature(&public, message, &good), Ok(()));
    assert_eq!(
        verify_signature(
            &public,
            message,
            &format!("0x{}", good.to_ascii_uppercase())
        ),
        Ok(())
    );
    let wrapped = signer().sign_hex(&format!("<Bytes>{message}</Bytes>"));
    assert_eq!(verify_signature(&public, message, &wrapped), Ok(()));

    // Flipping any one bit (chosen by the input) makes it fail.
    let mut bytes = parse_signature_hex(&good).expect("own signature parses");
    let bit = usize::from(key[0]) | (usize::from(key[1] & 1) << 8);
    bytes[bit / 8] ^= 1 << (bit % 8);
    assert!(
        verify_signature(&public, message, &hex::encode(bytes)).is_err(),
        "a signature with bit {bit} flipped still verifies"
    );
    // And a real signature does not verify a different message.
    let other = format!("{message}x");
    assert!(verify_signature(&public, &other, &good).is_err());
});
