//! `decode_ss58` on arbitrary strings: it never panics, and whatever it accepts is the one
//! canonical prefix-42 spelling of its key (`encode_ss58` gives the same string back), so
//! two different strings never name one account (and one miner folder).

#![no_main]

use libfuzzer_sys::fuzz_target;
use s3_auth_api::access::miner_folder;
use s3_auth_api::auth::{decode_ss58, encode_ss58};

fuzz_target!(|data: &[u8]| {
    if let Ok(address) = std::str::from_utf8(data)
        && let Ok(key) = decode_ss58(address)
    {
        assert_eq!(
            encode_ss58(&key),
            address,
            "an accepted address is the canonical encoding of its key"
        );
        assert_eq!(miner_folder(address), format!("data/hotkey={address}/"));
    }
    // Any 32 bytes encode to an address that decodes back to them.
    if let Some(bytes) = data.get(..32) {
        let mut key = [0u8; 32];
        key.copy_from_slice(bytes);
        let address = encode_ss58(&key);
        assert!(
            address.len() >= 46 && address.len() <= 48,
            "unexpected length {}",
            address.len()
        );
        assert!(address.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(decode_ss58(&address), Ok(key));
    }
});
