//! The freshness window a signed request must fall in.

/// How far a request's timestamp may lie from the server's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimestampWindow {
    /// Oldest accepted age of a timestamp, in seconds (the original: 300).
    pub max_age_secs: i64,
    /// How far in the future a timestamp may be, in seconds (the original: 60).
    pub max_skew_secs: i64,
    /// Default validity of a request when it gives no `expiry` (the original: 86400).
    pub default_expiry_secs: i64,
}

impl Default for TimestampWindow {
    fn default() -> Self {
        Self {
            max_age_secs: 300,
            max_skew_secs: 60,
            default_expiry_secs: 86_400,
        }
    }
}

/// The request's timestamp is outside the window or past its expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    /// Older than `max_age_secs`.
    #[error("timestamp is too old")]
    TooOld,
    /// Further ahead than `max_skew_secs`.
    #[error("timestamp is in the future")]
    InFuture,
    /// `now` is past the request's `expiry`.
    #[error("request has expired")]
    Expired,
}

/// A request's timestamp and expiry after defaults were applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestTime {
    /// The timestamp the caller signed (or `now` when absent).
    pub timestamp: i64,
    /// Until when the caller wants its access (default `timestamp + 86400`).
    pub expiry: i64,
}

/// Extra life of a replay record beyond the last second its timestamp is accepted in.
pub const REPLAY_MARGIN_SECS: i64 = 2;

impl TimestampWindow {
    /// Seconds a replay record written at `now` (whole Unix seconds) must live so that it
    /// outlasts every moment at which `timestamp` is still accepted, plus
    /// [`REPLAY_MARGIN_SECS`], and never less than the whole window (`max_age +
    /// max_skew`), for instances whose clocks differ slightly. `now` is truncated to the second, so the window's last
    /// accepted second, `timestamp + max_age`, ends at real time `timestamp + max_age + 1`.
    pub fn replay_ttl_secs(&self, timestamp: i64, now: i64) -> u64 {
        let accepted_until = timestamp
            .saturating_add(self.max_age_secs)
            .saturating_add(1);
        let ttl = accepted_until
            .saturating_add(REPLAY_MARGIN_SECS)
            .saturating_sub(now);
        // Never below the whole window: instances' clocks may differ by a few seconds,
        // and another instance may accept the timestamp a little longer.
        let floor = self.max_age_secs.saturating_add(self.max_skew_secs);
        u64::try_from(ttl.max(floor).max(1)).unwrap_or(1)
    }

    /// Applies the defaults and checks the window exactly as the original did:
    /// rejected when `now > expiry`, `now - timestamp > max_age` or `timestamp > now + skew`.
    pub fn check(
        &self,
        now: i64,
        timestamp: Option<i64>,
        expiry: Option<i64>,
    ) -> Result<RequestTime, TimestampError> {
        let timestamp = timestamp.unwrap_or(now);
        let expiry = expiry.unwrap_or_else(|| timestamp.saturating_add(self.default_expiry_secs));
        if now > expiry {
            return Err(TimestampError::Expired);
        }
        if now.saturating_sub(timestamp) > self.max_age_secs {
            return Err(TimestampError::TooOld);
        }
        if timestamp > now.saturating_add(self.max_skew_secs) {
            return Err(TimestampError::InFuture);
        }
        Ok(RequestTime { timestamp, expiry })
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn replay_records_outlive_every_moment_a_timestamp_is_accepted() {
        // A controlled clock in tenths of a second across the whole window: whenever a
        // timestamp was first accepted, its record (written then, with the TTL given)
        // still exists at every later moment it would be accepted, plus the margin.
        let w = TimestampWindow::default();
        let ts = 1_800_000_000i64;
        for first_tenths in ((ts - w.max_skew_secs) * 10)..=((ts + w.max_age_secs + 1) * 10 - 1) {
            let first_secs = first_tenths.div_euclid(10);
            if w.check(first_secs, Some(ts), None).is_err() {
                continue;
            }
            let ttl = w.replay_ttl_secs(ts, first_secs) as i64;
            let record_dies_tenths = first_tenths + ttl * 10;
            // The last moment the timestamp is accepted: just before ts + max_age + 1.
            let last_accepted_tenths = (ts + w.max_age_secs + 1) * 10 - 1;
            assert!(w.check(last_accepted_tenths / 10, Some(ts), None).is_ok());
            assert!(
                w.check(last_accepted_tenths / 10 + 1, Some(ts), None)
                    .is_err()
            );
            assert!(
                record_dies_tenths >= last_accepted_tenths + 1 + REPLAY_MARGIN_SECS * 10,
                "accepted first at {first_tenths}/10: record dies at {record_dies_tenths}/10"
            );
        }
        // The case that was reported: timestamp now + 60, replayed 360.6 s later.
        let t0 = ts - 60;
        let ttl = w.replay_ttl_secs(ts, t0) as f64;
        assert!(ttl >= 360.6 + 2.0, "ttl {ttl}");
    }

    use super::*;

    #[test]
    fn window_edges() {
        let w = TimestampWindow::default();
        let now = 1_000_000;
        assert!(w.check(now, Some(now - 300), None).is_ok());
        assert_eq!(
            w.check(now, Some(now - 301), None),
            Err(TimestampError::TooOld)
        );
        assert!(w.check(now, Some(now + 60), None).is_ok());
        assert_eq!(
            w.check(now, Some(now + 61), None),
            Err(TimestampError::InFuture)
        );
        assert_eq!(
            w.check(now, Some(now), Some(now - 1)),
            Err(TimestampError::Expired)
        );
        let t = w.check(now, None, None).expect("defaults are valid");
        assert_eq!(t.timestamp, now);
        assert_eq!(t.expiry, now + 86_400);
        // Extreme values never overflow.
        assert_eq!(
            w.check(now, Some(i64::MIN), None),
            Err(TimestampError::Expired)
        );
        assert_eq!(
            w.check(now, Some(i64::MAX), None),
            Err(TimestampError::InFuture)
        );
    }
}
