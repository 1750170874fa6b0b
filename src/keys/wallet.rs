//! bittensor wallet directories: `~/.bittensor/wallets/<wallet>/hotkeys/<hotkey>` (an
//! unencrypted JSON keyfile) and `<wallet>/coldkeypub.txt`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{KeyError, SigningKey};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Keyfile {
    secret_seed: Option<String>,
    secret_phrase: Option<String>,
    ss58_address: Option<String>,
}

fn wallet_err(path: &Path, reason: impl Into<String>) -> KeyError {
    KeyError::Wallet {
        path: path.display().to_string(),
        reason: reason.into(),
    }
}

fn read_keyfile(path: &Path) -> Result<Keyfile, KeyError> {
    let text = std::fs::read_to_string(path).map_err(|e| wallet_err(path, e.to_string()))?;
    let trimmed = text.trim_start();
    if trimmed.starts_with("$NACL")
        || trimmed.starts_with("$ANSIBLE")
        || trimmed.starts_with("gAAAA")
    {
        return Err(wallet_err(
            path,
            "the keyfile is encrypted; use an unencrypted hotkey, --uri or --mnemonic",
        ));
    }
    serde_json::from_str(trimmed).map_err(|e| wallet_err(path, format!("not a JSON keyfile: {e}")))
}

/// The default wallets directory, `~/.bittensor/wallets`.
pub fn default_wallets_dir() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".bittensor")
        .join("wallets")
}

/// Loads the hotkey `hotkey` of wallet `wallet`.
pub fn load_hotkey(wallets: &Path, wallet: &str, hotkey: &str) -> Result<SigningKey, KeyError> {
    let path = wallets.join(wallet).join("hotkeys").join(hotkey);
    let file = read_keyfile(&path)?;
    let key = match (&file.secret_seed, &file.secret_phrase) {
        (Some(seed), _) => SigningKey::from_seed_hex(seed)?,
        (None, Some(phrase)) => SigningKey::from_mnemonic(phrase)?,
        (None, None) => return Err(wallet_err(&path, "no secretSeed or secretPhrase")),
    };
    if let Some(addr) = &file.ss58_address
        && addr != key.ss58()
    {
        return Err(wallet_err(
            &path,
            format!(
                "ss58Address {addr} does not match the secret ({})",
                key.ss58()
            ),
        ));
    }
    Ok(key)
}

/// Reads the SS58 address in `<wallet>/coldkeypub.txt`.
pub fn load_coldkeypub(wallets: &Path, wallet: &str) -> Result<String, KeyError> {
    let path = wallets.join(wallet).join("coldkeypub.txt");
    let file = read_keyfile(&path)?;
    file.ss58_address
        .ok_or_else(|| wallet_err(&path, "no ss58Address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_wallet_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hotkeys = dir.path().join("w").join("hotkeys");
        std::fs::create_dir_all(&hotkeys).expect("mkdir");
        let key = SigningKey::from_seed(&[7u8; 32]).expect("key");
        std::fs::write(
            hotkeys.join("h"),
            format!(
                r#"{{"secretSeed":"0x{}","ss58Address":"{}"}}"#,
                hex::encode([7u8; 32]),
                key.ss58()
            ),
        )
        .expect("write");
        std::fs::write(
            dir.path().join("w").join("coldkeypub.txt"),
            r#"{"ss58Address":"5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"}"#,
        )
        .expect("write");
        let loaded = load_hotkey(dir.path(), "w", "h").expect("hotkey");
        assert_eq!(loaded.ss58(), key.ss58());
        assert_eq!(
            load_coldkeypub(dir.path(), "w").expect("cold"),
            "5GNJqTPyNqANBkUVMN1LPPrxXnFouWXoe2wNSmmEoLctxiZY"
        );
        std::fs::write(hotkeys.join("enc"), "$NACL....").expect("write");
        assert!(load_hotkey(dir.path(), "w", "enc").is_err());
    }
}
