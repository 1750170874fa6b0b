//! Continuation tokens: the service's own folder-listing cursor, and the bounds on the S3
//! tokens that validators pass through to presigned list URLs.
//!
//! A folder cursor is a position in S3's key order under [`DATA_PREFIX`]: the listing
//! resumes strictly after it (`StartAfter`). Any name a miner can give its folders or
//! objects yields a position that resumes right after it, so no name can end a listing.
//!
//! What is checked of a token, exactly: its length, its format (`f2.` and unpadded
//! base64url, or the older `f1.`), that it decodes to UTF-8 naming a position under
//! [`DATA_PREFIX`] of at most 1024 bytes, and that a position inside a miner's folder
//! names a valid SS58 miner. A token is not authenticated: it only says where a
//! validator's own listing resumes, so a validator that edits its token only changes
//! what it is shown itself, and nothing it could not ask for with `miner_hotkeys`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::validator::{DATA_PREFIX, MAX_KEY_BYTES};
use crate::auth::decode_ss58;
use crate::storage::listing::after_folder;

/// Longest `continuation_token` of `/get-folder-presigned-urls`: the prefix and the
/// base64 of a position of at most 1024 bytes.
pub const MAX_FOLDER_TOKEN_BYTES: usize = 1400;
/// Longest S3 continuation token passed through to a presigned list URL
/// (`/get-validator-access`, `/get-miner-specific-access`, `/get-miner-list`).
pub const MAX_S3_TOKEN_BYTES: usize = 1024;
/// The current token format.
const TOKEN_VERSION: &str = "f2.";
/// The previous format: the last folder of the page, resumed after.
const OLD_TOKEN_VERSION: &str = "f1.";

/// A continuation token that is not well-formed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Invalid continuation_token")]
pub struct BadToken;

/// Where a folder page resumes: strictly after this position in S3's key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCursor {
    after: String,
}

impl FolderCursor {
    /// The cursor after `position`, if it is one the listing can resume from.
    pub fn at(position: impl Into<String>) -> Result<Self, BadToken> {
        let after = position.into();
        let rest = after.strip_prefix(DATA_PREFIX).ok_or(BadToken)?;
        if after.len() > MAX_KEY_BYTES {
            return Err(BadToken);
        }
        if let Some((miner, _)) = rest.split_once('/') {
            decode_ss58(miner).map_err(|_| BadToken)?;
        }
        Ok(Self { after })
    }

    /// The cursor right after `folder` and everything inside it.
    pub fn after_folder(folder: &str) -> Result<Self, BadToken> {
        if !folder.ends_with('/') {
            return Err(BadToken);
        }
        Self::at(after_folder(folder))
    }

    /// The position: a `StartAfter` key.
    pub fn position(&self) -> &str {
        &self.after
    }

    /// The position in the listing of miner folders: up to the miner's folder, without
    /// its `/`, when the position lies inside one (so that folder is listed again).
    pub fn miners_position(&self) -> &str {
        let rest = &self.after[DATA_PREFIX.len()..];
        match rest.find('/') {
            Some(i) => &self.after[..DATA_PREFIX.len() + i],
            None => &self.after,
        }
    }

    /// Whether the folder `folder` (ending in `/`) still has keys after the position.
    pub fn before_end_of(&self, folder: &str) -> bool {
        after_folder(folder).as_str() > self.after.as_str()
    }

    /// The opaque token a client sends back as `continuation_token`.
    pub fn token(&self) -> String {
        format!("{TOKEN_VERSION}{}", URL_SAFE_NO_PAD.encode(&self.after))
    }

    /// Reads a token made by [`FolderCursor::token`] (or by the previous format).
    pub fn parse(token: &str) -> Result<Self, BadToken> {
        if token.len() > MAX_FOLDER_TOKEN_BYTES {
            return Err(BadToken);
        }
        let (encoded, old) = match token.strip_prefix(TOKEN_VERSION) {
            Some(rest) => (rest, false),
            None => (token.strip_prefix(OLD_TOKEN_VERSION).ok_or(BadToken)?, true),
        };
        let bytes = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| BadToken)?;
        let text = String::from_utf8(bytes).map_err(|_| BadToken)?;
        if old {
            Self::after_folder(&text)
        } else {
            Self::at(text)
        }
    }
}

/// Checks an S3 continuation token that goes into a presigned list URL: at most
/// [`MAX_S3_TOKEN_BYTES`] of printable ASCII (S3's tokens are base64), so the answer stays
/// small and nothing S3's XML cannot carry is passed on (S3 echoes the token in XML).
pub fn check_s3_token(token: &str) -> Result<(), BadToken> {
    if token.len() <= MAX_S3_TOKEN_BYTES && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(BadToken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINER: &str = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY";

    #[test]
    fn every_folder_name_gives_a_token_that_round_trips() {
        for job in ["", "-", "~", "%2F", "j 1", "é", "\u{FFFF}", "\u{1}", "a+b"] {
            let folder = format!("{DATA_PREFIX}{MINER}/job_id={job}/");
            let cursor = FolderCursor::after_folder(&folder).expect("a folder");
            let token = cursor.token();
            assert!(token.len() <= MAX_FOLDER_TOKEN_BYTES);
            assert_eq!(FolderCursor::parse(&token), Ok(cursor.clone()), "{job:?}");
            assert!(cursor.position() > folder.as_str());
            assert!(!cursor.before_end_of(&folder));
        }
        let longest = format!("{DATA_PREFIX}{MINER}/job_id={}/", "x".repeat(1024 - 69));
        assert_eq!(longest.len(), MAX_KEY_BYTES);
        let token = FolderCursor::after_folder(&longest)
            .expect("folder")
            .token();
        assert!(token.len() <= MAX_FOLDER_TOKEN_BYTES, "{}", token.len());
    }

    #[test]
    fn the_previous_format_resumes_after_its_folder() {
        let folder = format!("{DATA_PREFIX}{MINER}/job_id=j1/");
        let old = format!("f1.{}", URL_SAFE_NO_PAD.encode(&folder));
        let cursor = FolderCursor::parse(&old).expect("an f1 token");
        assert_eq!(
            cursor.position(),
            format!("{DATA_PREFIX}{MINER}/job_id=j10")
        );
        assert_eq!(cursor.miners_position(), format!("{DATA_PREFIX}{MINER}"));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        for bad in [
            "".to_owned(),
            "f2.".to_owned(),
            "f2.!!!".to_owned(),
            "abc".to_owned(),
            URL_SAFE_NO_PAD.encode(format!("{DATA_PREFIX}{MINER}/job_id=a0")),
            format!("f2.{}", URL_SAFE_NO_PAD.encode("data/other/")),
            format!("f2.{}", URL_SAFE_NO_PAD.encode("data/hotkey=5X/job_id=a0")),
            format!("f2.{}", URL_SAFE_NO_PAD.encode([0xFF, 0xFE])),
            format!(
                "f1.{}",
                URL_SAFE_NO_PAD.encode(format!("{DATA_PREFIX}{MINER}/j"))
            ),
            format!("f2.{}", "A".repeat(MAX_FOLDER_TOKEN_BYTES)),
            format!(
                "f2.{}",
                URL_SAFE_NO_PAD.encode(format!("{DATA_PREFIX}{}", "a".repeat(1100)))
            ),
        ] {
            assert_eq!(FolderCursor::parse(&bad), Err(BadToken), "{bad:?}");
        }
    }

    #[test]
    fn s3_tokens_are_short_printable_ascii() {
        assert!(check_s3_token("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=").is_ok());
        assert!(check_s3_token(&"A".repeat(MAX_S3_TOKEN_BYTES)).is_ok());
        assert!(check_s3_token(&"A".repeat(MAX_S3_TOKEN_BYTES + 1)).is_err());
        for bad in ["a b", "a\u{FFFF}", "a\u{1}", "é"] {
            assert!(check_s3_token(bad).is_err(), "{bad:?}");
        }
    }
}
