//! SigV4 signing keys, derived once per credential, UTC day and region.
//!
//! A signing key is four chained HMAC-SHA256 over the secret, the date, the region and
//! the service. It changes only when one of those does, so the last one derived is kept
//! and reused by every request until the day or the credentials change.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use aws_sigv4::sign::v4::generate_signing_key;

struct Cached {
    secret: String,
    day: u64,
    region: String,
    key: [u8; 32],
}

static LAST: ArcSwapOption<Cached> = ArcSwapOption::const_empty();

fn day_of(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0)
}

/// The S3 signing key of `secret_access_key` for the UTC day of `time` in `region`.
pub fn signing_key(secret_access_key: &str, time: SystemTime, region: &str) -> [u8; 32] {
    let day = day_of(time);
    if let Some(c) = LAST.load().as_ref()
        && c.day == day
        && c.region == region
        && c.secret == secret_access_key
    {
        return c.key;
    }
    let derived = generate_signing_key(secret_access_key, time, region, "s3");
    let mut key = [0u8; 32];
    key.copy_from_slice(derived.as_ref());
    LAST.store(Some(Arc::new(Cached {
        secret: secret_access_key.to_owned(),
        day,
        region: region.to_owned(),
        key,
    })));
    key
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn cached_key_matches_a_fresh_derivation() {
        let t = UNIX_EPOCH + Duration::from_secs(1_763_812_800);
        let fresh = |s: &str, t: SystemTime, r: &str| {
            let k = generate_signing_key(s, t, r, "s3");
            k.as_ref().to_vec()
        };
        assert_eq!(
            signing_key("a", t, "us-east-2").to_vec(),
            fresh("a", t, "us-east-2")
        );
        // Same day: the cached key; other secret, region or day: a new one.
        let later = t + Duration::from_secs(3_600);
        assert_eq!(
            signing_key("a", later, "us-east-2").to_vec(),
            fresh("a", t, "us-east-2")
        );
        assert_eq!(
            signing_key("b", t, "us-east-2").to_vec(),
            fresh("b", t, "us-east-2")
        );
        assert_eq!(
            signing_key("b", t, "eu-west-1").to_vec(),
            fresh("b", t, "eu-west-1")
        );
        let tomorrow = t + Duration::from_secs(86_400);
        assert_eq!(
            signing_key("b", tomorrow, "eu-west-1").to_vec(),
            fresh("b", tomorrow, "eu-west-1")
        );
    }
}
