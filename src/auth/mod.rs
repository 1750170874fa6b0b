//! Who is calling: SS58 addresses, sr25519 signatures, commitment strings and the
//! timestamp window. Nothing in here knows about HTTP.

pub mod commitment;
pub mod signature;
pub mod ss58;
pub mod tao;
pub mod timestamp;

pub use commitment::Commitment;
pub use signature::{SignatureError, verify_bytes_with_key, verify_signature, verify_with_key};
pub use ss58::{Ss58Error, decode_ss58, encode_ss58};
pub use timestamp::{TimestampError, TimestampWindow};
