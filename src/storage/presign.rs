//! Presigned GET URLs (SigV4, query-string signing) for ListObjectsV2 and GetObject.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::sign::v4;
use chrono::{DateTime, Utc};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use sha2::{Digest, Sha256};

use super::BucketLocation;

/// Characters S3 requires encoded in query values: everything but unreserved ones.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
/// Characters encoded in an object key path: as [`QUERY`], but `/` is kept.
const KEY_PATH: &AsciiSet = &QUERY.remove(b'/');

/// Percent-encodes an object key for a URL path, keeping `/`.
pub fn encode_key(key: &str) -> String {
    utf8_percent_encode(key, KEY_PATH).to_string()
}

fn encode_query(value: &str) -> String {
    utf8_percent_encode(value, QUERY).to_string()
}

/// A presigned URL could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PresignError {
    /// The URL could not be parsed or signed.
    #[error("cannot sign request: {0}")]
    Signing(String),
    /// The requested lifetime is longer than SigV4 allows (7 days).
    #[error("presigned URL lifetime {0:?} exceeds 7 days")]
    TooLong(Duration),
}

/// Maximum lifetime of a SigV4 presigned URL.
pub const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

/// Presigns `GET {url}?{query}` for `expires_in`. `url` must already be encoded.
///
/// SigV4 query-string signing with `host` as the only signed header and an unsigned
/// payload, as S3 presigned URLs are; the signing key is derived once per day. The URL is
/// byte-identical to what `aws-sigv4` produces for the same request (a test checks).
pub fn presign_get(
    credentials: &Credentials,
    region: &str,
    url: &str,
    query: &[(&str, &str)],
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    presign_method(
        "GET",
        credentials,
        region,
        url,
        query,
        None,
        now,
        expires_in,
    )
}

/// Presigns `{method} {url}?{query}` as [`presign_get`] does for GET; with
/// `content_type`, the `Content-Type` header is signed too, so the request must send it.
#[allow(clippy::too_many_arguments)]
pub fn presign_method(
    method: &str,
    credentials: &Credentials,
    region: &str,
    url: &str,
    query: &[(&str, &str)],
    content_type: Option<&str>,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    if expires_in > MAX_PRESIGN {
        return Err(PresignError::TooLong(expires_in));
    }
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| PresignError::Signing(format!("not an absolute URL: {url}")))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() {
        return Err(PresignError::Signing("URL has no host".into()));
    }
    // The default port of the scheme is not part of the signed host.
    let host = match (scheme, authority.rsplit_once(':')) {
        ("http", Some((h, "80"))) | ("https", Some((h, "443"))) => h,
        _ => authority,
    };
    let time: DateTime<Utc> = now.into();
    let amz_date = crate::timefmt::amz_date(&time);
    let scope = format!(
        "{}/{region}/s3/aws4_request",
        crate::timefmt::amz_day(&time)
    );
    let credential = format!("{}/{scope}", credentials.access_key_id());
    let expires = expires_in.as_secs().to_string();

    let request_params: Vec<(String, String)> = query
        .iter()
        .map(|(k, v)| (encode_query(k), encode_query(v)))
        .collect();
    let mut signing_params: Vec<(&str, String)> = vec![
        ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_owned()),
        ("X-Amz-Credential", encode_query(&credential)),
        ("X-Amz-Date", amz_date.clone()),
        ("X-Amz-Expires", expires),
        (
            "X-Amz-SignedHeaders",
            if content_type.is_some() {
                "content-type%3Bhost".to_owned()
            } else {
                "host".to_owned()
            },
        ),
    ];
    let token = credentials.session_token().map(encode_query);
    let mut canonical: Vec<(&str, &str)> = request_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(signing_params.iter().map(|(k, v)| (*k, v.as_str())))
        .chain(token.as_deref().map(|t| ("X-Amz-Security-Token", t)))
        .collect();
    canonical.sort_unstable();

    let mut creq = String::with_capacity(512);
    creq.push_str(method);
    creq.push('\n');
    creq.push_str(path);
    creq.push('\n');
    for (i, (k, v)) in canonical.iter().enumerate() {
        if i > 0 {
            creq.push('&');
        }
        creq.push_str(k);
        creq.push('=');
        creq.push_str(v);
    }
    creq.push('\n');
    if let Some(ct) = content_type {
        creq.push_str("content-type:");
        creq.push_str(ct.trim());
        creq.push('\n');
    }
    creq.push_str("host:");
    creq.push_str(host);
    creq.push_str(if content_type.is_some() {
        "\n\ncontent-type;host\nUNSIGNED-PAYLOAD"
    } else {
        "\n\nhost\nUNSIGNED-PAYLOAD"
    });
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(creq.as_bytes()))
    );
    let key = super::signing_key::signing_key(credentials.secret_access_key(), now, region);
    let signature = v4::calculate_signature(key, string_to_sign.as_bytes());
    signing_params.push(("X-Amz-Signature", signature));

    let mut full = String::with_capacity(url.len() + 512);
    full.push_str(url);
    let mut sep = '?';
    let all = request_params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .chain(signing_params.iter().map(|(k, v)| (*k, v.as_str())))
        .chain(token.as_deref().map(|t| ("X-Amz-Security-Token", t)));
    for (k, v) in all {
        full.push(sep);
        sep = '&';
        full.push_str(k);
        full.push('=');
        full.push_str(v);
    }
    Ok(full)
}

/// The parameters of a ListObjectsV2 request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListQuery<'a> {
    /// Only keys starting with this.
    pub prefix: &'a str,
    /// Group keys by this (usually `/`).
    pub delimiter: Option<&'a str>,
    /// Page size (S3's default 1000).
    pub max_keys: Option<u32>,
    /// The page after this token.
    pub continuation_token: Option<&'a str>,
}

impl<'a> ListQuery<'a> {
    /// Everything under `prefix`.
    pub fn prefix(prefix: &'a str) -> Self {
        Self {
            prefix,
            ..Self::default()
        }
    }
}

/// Presigns a ListObjectsV2 request on the bucket, with `encoding-type=url` signed in as
/// botocore signs it: S3 then percent-encodes the names in the answer, which validators
/// decode (`urllib.parse.unquote` on every `Key` and `Prefix`), so a key holding `%` or
/// characters XML cannot carry reads back as stored.
pub fn presign_list(
    credentials: &Credentials,
    location: &BucketLocation,
    list: ListQuery<'_>,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    let max_keys = list.max_keys.map(|n| n.to_string());
    let mut query: Vec<(&str, &str)> = Vec::with_capacity(6);
    if let Some(t) = list.continuation_token {
        query.push(("continuation-token", t));
    }
    if let Some(d) = list.delimiter {
        query.push(("delimiter", d));
    }
    query.push(("encoding-type", "url"));
    query.push(("list-type", "2"));
    if let Some(m) = &max_keys {
        query.push(("max-keys", m));
    }
    query.push(("prefix", list.prefix));
    presign_get(
        credentials,
        &location.region,
        &location.object_url(""),
        &query,
        now,
        expires_in,
    )
}

/// Presigns a GetObject request for `key`.
pub fn presign_object(
    credentials: &Credentials,
    location: &BucketLocation,
    key: &str,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    presign_object_method("GET", credentials, location, key, None, now, expires_in)
}

/// Presigns `{method}` of the object `key`, signing `content_type` when given.
fn presign_object_method(
    method: &str,
    credentials: &Credentials,
    location: &BucketLocation,
    key: &str,
    content_type: Option<&str>,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    presign_method(
        method,
        credentials,
        &location.region,
        &location.object_url(key),
        &[],
        content_type,
        now,
        expires_in,
    )
}

/// Presigns a DeleteObject request for `key`.
pub fn presign_delete(
    credentials: &Credentials,
    location: &BucketLocation,
    key: &str,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    presign_object_method("DELETE", credentials, location, key, None, now, expires_in)
}

/// Presigns a PutObject request for `key`, signing `Content-Type: {content_type}`.
pub fn presign_put(
    credentials: &Credentials,
    location: &BucketLocation,
    key: &str,
    content_type: &str,
    now: SystemTime,
    expires_in: Duration,
) -> Result<String, PresignError> {
    presign_object_method(
        "PUT",
        credentials,
        location,
        key,
        Some(content_type),
        now,
        expires_in,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sigv4::http_request::{
        PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
        UriPathNormalizationMode, sign,
    };
    use aws_smithy_runtime_api::client::identity::Identity;

    /// The same URL signed by `aws-sigv4` itself: the reference the fast path must match.
    fn presign_get_reference(
        credentials: &Credentials,
        region: &str,
        url: &str,
        query: &[(&str, &str)],
        now: SystemTime,
        expires_in: Duration,
    ) -> Result<String, PresignError> {
        if expires_in > MAX_PRESIGN {
            return Err(PresignError::TooLong(expires_in));
        }
        let mut full = url.to_owned();
        for (i, (k, v)) in query.iter().enumerate() {
            full.push(if i == 0 { '?' } else { '&' });
            full.push_str(&encode_query(k));
            full.push('=');
            full.push_str(&encode_query(v));
        }
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(expires_in);
        let identity: Identity = credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            "GET",
            full.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| PresignError::Signing(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| PresignError::Signing(e.to_string()))?
            .into_parts();
        let mut sep = if query.is_empty() { '?' } else { '&' };
        for (name, value) in instructions.params() {
            full.push(sep);
            sep = '&';
            full.push_str(&encode_query(name));
            full.push('=');
            full.push_str(&encode_query(value));
        }
        Ok(full)
    }

    #[test]
    fn fast_path_is_byte_identical_to_aws_sigv4() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_812_800);
        let plain = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "t");
        let temporary = Credentials::new("ASIAX", "s/e+c=", Some("tok/en+=&x y".into()), None, "t");
        let urls = [
            "https://bucket.s3.us-east-2.amazonaws.com/",
            "https://bucket.s3.us-east-2.amazonaws.com/data/hotkey%3D5F/job_id%3Dj/a%20b.parquet",
            "http://127.0.0.1:9000/dev-bucket/",
            "http://localhost:80/b/k",
            "https://example.com:443/b/",
        ];
        let queries: [&[(&str, &str)]; 3] = [
            &[],
            &[("list-type", "2"), ("prefix", "data/hotkey=5F/")],
            &[
                ("continuation-token", "1/a+b=="),
                ("delimiter", "/"),
                ("encoding-type", "url"),
                ("list-type", "2"),
                ("max-keys", "1000"),
                ("prefix", "data/ü x/"),
            ],
        ];
        for creds in [&plain, &temporary] {
            for url in urls {
                for query in queries {
                    for region in ["us-east-2", "eu-west-1"] {
                        let ttl = Duration::from_secs(3_600);
                        let fast = presign_get(creds, region, url, query, at, ttl).expect("fast");
                        let reference =
                            presign_get_reference(creds, region, url, query, at, ttl).expect("ref");
                        assert_eq!(fast, reference, "{url} {query:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn list_url_carries_query_and_signature() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("tok/en+=".into()),
            None,
            "test",
        );
        let loc = BucketLocation {
            bucket: "b".into(),
            region: "us-east-2".into(),
            public_endpoint: None,
        };
        let url = presign_list(
            &creds,
            &loc,
            ListQuery::prefix("data/hotkey=5X/"),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_812_800),
            Duration::from_secs(10_800),
        )
        .expect("signs");
        assert!(url.starts_with(
            "https://b.s3.us-east-2.amazonaws.com/?encoding-type=url&list-type=2&prefix=data%2Fhotkey%3D5X%2F&"
        ));
        assert!(url.contains("X-Amz-Expires=10800"));
        assert!(
            url.contains("X-Amz-Credential=AKIDEXAMPLE%2F20251122%2Fus-east-2%2Fs3%2Faws4_request")
        );
        assert!(url.contains("X-Amz-Security-Token=tok%2Fen%2B%3D"));
        assert!(url.contains("X-Amz-Signature="));
    }

    #[test]
    fn every_list_url_signs_encoding_type_url_as_botocore_does() {
        // botocore adds `encoding-type=url` to every ListObjectsV2 it signs, and S3 checks
        // it as part of the canonical query: each list URL must be the request with it,
        // signed, byte for byte as `aws-sigv4` signs that request.
        let creds = Credentials::new("AKIDEXAMPLE", "secret", Some("tok".into()), None, "t");
        let loc = BucketLocation {
            bucket: "b".into(),
            region: "us-east-2".into(),
            public_endpoint: None,
        };
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_763_812_800);
        let ttl = Duration::from_secs(3_600);
        let lists = [
            (ListQuery::prefix("data/"), vec![("prefix", "data/")]),
            (
                ListQuery {
                    prefix: "data/hotkey=5X/",
                    delimiter: Some("/"),
                    max_keys: Some(1000),
                    continuation_token: Some("1/a+b=="),
                },
                vec![
                    ("continuation-token", "1/a+b=="),
                    ("delimiter", "/"),
                    ("max-keys", "1000"),
                    ("prefix", "data/hotkey=5X/"),
                ],
            ),
        ];
        for (list, params) in lists {
            let url = presign_list(&creds, &loc, list, at, ttl).expect("signs");
            assert_eq!(url.matches("encoding-type=url").count(), 1, "{url}");
            let mut query = params;
            query.push(("encoding-type", "url"));
            query.push(("list-type", "2"));
            query.sort_unstable();
            let reference =
                presign_get_reference(&creds, "us-east-2", &loc.object_url(""), &query, at, ttl)
                    .expect("ref");
            assert_eq!(url, reference);
        }
    }

    #[test]
    fn refuses_more_than_seven_days() {
        let creds = Credentials::new("a", "b", None, None, "test");
        let err = presign_get(
            &creds,
            "us-east-1",
            "https://h/",
            &[],
            SystemTime::now(),
            MAX_PRESIGN + Duration::from_secs(1),
        );
        assert!(matches!(err, Err(PresignError::TooLong(_))));
    }
}
