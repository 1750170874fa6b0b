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
    }
}
