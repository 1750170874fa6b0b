//! The messages callers sign. Their exact text is part of the wire contract.

use std::fmt;

/// A message a caller signs to prove who it is for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commitment<'a> {
    /// Miner upload access: `s3:data:access:{coldkey}:{hotkey}:{timestamp}`.
    MinerAccess {
        /// The miner's coldkey as sent.
        coldkey: &'a str,
        /// The miner's hotkey.
        hotkey: &'a str,
        /// The request timestamp, in seconds.
        timestamp: i64,
    },
    /// Validator global access: `s3:validator:access:{timestamp}`.
    ValidatorAccess {
        /// The request timestamp, in seconds.
        timestamp: i64,
    },
    /// Validator access to one miner: `s3:validator:miner:{miner_hotkey}:{timestamp}`.
    ValidatorMiner {
        /// The miner whose folder is read.
        miner_hotkey: &'a str,
        /// The request timestamp, in seconds.
        timestamp: i64,
    },
    /// Validator read URLs for files of one miner:
    /// `s3:validator:files:{miner_hotkey}:{hotkey}:{timestamp}`.
    ValidatorFiles {
        /// The miner whose files are read.
        miner_hotkey: &'a str,
        /// The validator's hotkey.
        hotkey: &'a str,
        /// The request timestamp, in seconds.
        timestamp: i64,
    },
    /// Validator listing of job folders: `s3:validator:folders:{hotkey}:{timestamp}`.
    ValidatorFolders {
        /// The validator's hotkey.
        hotkey: &'a str,
        /// The request timestamp, in seconds.
        timestamp: i64,
    },
}

impl Commitment<'_> {
    /// The exact string the caller must have signed.
    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Commitment<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Commitment::MinerAccess {
                coldkey,
                hotkey,
                timestamp,
            } => write!(f, "s3:data:access:{coldkey}:{hotkey}:{timestamp}"),
            Commitment::ValidatorAccess { timestamp } => {
                write!(f, "s3:validator:access:{timestamp}")
            }
            Commitment::ValidatorMiner {
                miner_hotkey,
                timestamp,
            } => write!(f, "s3:validator:miner:{miner_hotkey}:{timestamp}"),
            Commitment::ValidatorFiles {
                miner_hotkey,
                hotkey,
                timestamp,
            } => write!(f, "s3:validator:files:{miner_hotkey}:{hotkey}:{timestamp}"),
            Commitment::ValidatorFolders { hotkey, timestamp } => {
                write!(f, "s3:validator:folders:{hotkey}:{timestamp}")
            }
        }
    }
}

/// The commitment templates, as shown to callers by `GET /commitment-formats`.
pub mod formats {
    /// Template of [`super::Commitment::MinerAccess`].
    pub const MINER: &str = "s3:data:access:{coldkey}:{hotkey}:{timestamp}";
    /// Template of [`super::Commitment::ValidatorAccess`].
    pub const VALIDATOR: &str = "s3:validator:access:{timestamp}";
    /// Template of [`super::Commitment::ValidatorMiner`].
    pub const VALIDATOR_MINER: &str = "s3:validator:miner:{miner_hotkey}:{timestamp}";
    /// Template of [`super::Commitment::ValidatorFiles`].
    pub const VALIDATOR_FILES: &str = "s3:validator:files:{miner_hotkey}:{hotkey}:{timestamp}";
    /// Template of [`super::Commitment::ValidatorFolders`].
    pub const VALIDATOR_FOLDERS: &str = "s3:validator:folders:{hotkey}:{timestamp}";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_match_the_reference() {
        let m = Commitment::MinerAccess {
            coldkey: "C",
            hotkey: "H",
            timestamp: 1763788800,
        };
        assert_eq!(m.message(), "s3:data:access:C:H:1763788800");
        assert_eq!(
            Commitment::ValidatorAccess { timestamp: 5 }.message(),
            "s3:validator:access:5"
        );
        assert_eq!(
            Commitment::ValidatorMiner {
                miner_hotkey: "M",
                timestamp: 5
            }
            .message(),
            "s3:validator:miner:M:5"
        );
        assert_eq!(
            Commitment::ValidatorFiles {
                miner_hotkey: "M",
                hotkey: "V",
                timestamp: 5
            }
            .message(),
            "s3:validator:files:M:V:5"
        );
        assert_eq!(
            Commitment::ValidatorFolders {
                hotkey: "V",
                timestamp: 5
            }
            .message(),
            "s3:validator:folders:V:5"
        );
    }
}
