//! Reading one variable: empty counts as unset, and a bad value becomes a
//! [`ConfigError`] naming it.

use super::ConfigError;

/// Reads variables through a lookup function, checking each value.
pub(super) struct Env<'a> {
    /// A variable's value, if set.
    pub(super) get: &'a dyn Fn(&str) -> Option<String>,
}

impl Env<'_> {
    /// The variable's value; empty counts as unset.
    pub(super) fn raw(&self, var: &str) -> Option<String> {
        (self.get)(var).filter(|v| !v.trim().is_empty())
    }

    /// The variable's value, or `default` when unset.
    pub(super) fn string(&self, var: &str, default: &str) -> String {
        self.raw(var).unwrap_or_else(|| default.to_owned())
    }

    /// The variable parsed as `T` and accepted by `valid`, or `default` when unset.
    pub(super) fn parsed<T: std::str::FromStr>(
        &self,
        var: &'static str,
        default: T,
        expected: &str,
        valid: impl Fn(&T) -> bool,
    ) -> Result<T, ConfigError> {
        match self.raw(var) {
            None => Ok(default),
            Some(v) => match v.trim().parse::<T>() {
                Ok(parsed) if valid(&parsed) => Ok(parsed),
                _ => Err(ConfigError {
                    var,
                    value: v,
                    expected: expected.to_owned(),
                }),
            },
        }
    }

    /// A boolean: `true`/`1`/`yes` or `false`/`0`/`no`, or `default` when unset.
    pub(super) fn flag(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(v) = self.raw(var) else {
            return Ok(default);
        };
        match v.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" => Ok(true),
            "false" | "0" | "no" => Ok(false),
            _ => Err(ConfigError {
                var,
                value: v,
                expected: "true or false".into(),
            }),
        }
    }

    /// An http(s) URL with a host and no userinfo or query (trailing `/` dropped).
    pub(super) fn url(&self, var: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(v) = self.raw(var) else {
            return Ok(None);
        };
        let trimmed = v.trim().trim_end_matches('/').to_owned();
        let ok = trimmed
            .parse::<http::Uri>()
            .ok()
            .filter(|u| matches!(u.scheme_str(), Some("http" | "https")))
            .filter(|u| u.host().is_some_and(|h| !h.is_empty()))
            .filter(|u| u.query().is_none())
            .filter(|u| u.authority().is_some_and(|a| !a.as_str().contains('@')))
            .is_some();
        if ok {
            Ok(Some(trimmed))
        } else {
            Err(ConfigError {
                var,
                value: crate::redact::url(&v),
                expected: "an http:// or https:// URL with a host, no user info and no query"
                    .into(),
            })
        }
    }
}

/// Whether `name` is a valid S3 bucket name.
pub(super) fn valid_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphanumeric)
        && name
            .as_bytes()
            .last()
            .is_some_and(u8::is_ascii_alphanumeric)
}

/// Whether `r` looks like an AWS region name.
pub(super) fn valid_region(r: &str) -> bool {
    !r.is_empty()
        && r.len() <= 32
        && r.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}
