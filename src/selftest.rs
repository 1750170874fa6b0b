//! `s3-auth-api selftest`: a canary of the signing path against the real bucket. With the
//! service's own configuration and signing credentials it presigns what a miner gets (the
//! same policy conditions) for a key under [`SELFTEST_PREFIX`], uploads 1 KiB through that
//! form, reads it back and finds it through presigned GET and ListObjectsV2 URLs, and
//! deletes it through a presigned DELETE URL. What the lab's S3 servers forgive (IAM, ACL
//! permissions) is then tried against the real thing. With `REDIS_URL` set it first runs
//! the quota script on the configured cache ([`quota`]): the commands, ACL and cluster
//! slots the requests need, on the real engine.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_credential_types::Credentials;

use crate::access::miner::{MIN_UPLOAD_BYTES, upload_spec};
use crate::config::TaoSettings;
use crate::storage::BucketLocation;
use crate::storage::post_policy::presign_post;
use crate::storage::presign::{ListQuery, presign_delete, presign_list, presign_object};

/// Where the selftest writes: outside `data/`, so no validator ever lists it.
pub const SELFTEST_PREFIX: &str = "_selftest/";
/// Lifetime of the selftest's presigned URLs.
const URL_LIFETIME: Duration = Duration::from_secs(300);

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Run the quota script on the configured Redis (only with `REDIS_URL`).
    Quota,
    /// Sign the miner's upload policy for the selftest prefix.
    Presign,
    /// Upload 1 KiB through the form.
    Upload,
    /// Read it back through a presigned GET URL.
    Download,
    /// Find it through a presigned ListObjectsV2 URL.
    List,
    /// Delete it through a presigned DELETE URL.
    Delete,
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Step::Quota => "quota",
            Step::Presign => "presign",
            Step::Upload => "upload",
            Step::Download => "download",
            Step::List => "list",
            Step::Delete => "delete",
        })
    }
}

/// How one step ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It worked; the detail says what was seen.
    Ok(String),
    /// It failed; the detail names S3's error code when S3 answered.
    Fail(String),
    /// It could not run, since an earlier step failed.
    Skipped(&'static str),
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Ok(detail) => write!(f, "OK ({detail})"),
            Outcome::Fail(detail) => write!(f, "FAIL {detail}"),
            Outcome::Skipped(why) => write!(f, "SKIP ({why})"),
        }
    }
}

/// S3's error code and message from an error document, else the start of the body.
fn s3_error(status: u16, body: &str) -> String {
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_owned())
    };
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => format!("{code}: {message} (HTTP {status})"),
        (Some(code), None) => format!("{code} (HTTP {status})"),
        _ => {
            let start: String = body.chars().take(120).collect();
            format!("HTTP {status}: {}", start.trim())
        }
    }
}

fn took(start: Instant) -> String {
    format!("{} ms", start.elapsed().as_millis())
}

async fn send(request: reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), String> {
    // The request's URL is presigned: a transport error must not print it.
    let res = request
        .send()
        .await
        .map_err(|e| format!("request failed: {}", e.without_url()))?;
    let status = res.status().as_u16();
    let body = res
        .bytes()
        .await
        .map_err(|e| format!("reading the answer failed: {}", e.without_url()))?;
    Ok((status, body.to_vec()))
}

/// How long [`quota`] waits for the first connection.
const QUOTA_CONNECT_WAIT: Duration = Duration::from_secs(10);

/// Connects to the configured Redis as the service would and runs the quota script on
/// probe keys (it writes nothing): what `/readyz` calls a usable Redis.
pub async fn quota(store: &crate::quota::RedisStore) -> Outcome {
    let start = Instant::now();
    while store.is_cluster().is_none() {
        if start.elapsed() > QUOTA_CONNECT_WAIT {
            return Outcome::Fail(format!(
                "no connection within {} s",
                QUOTA_CONNECT_WAIT.as_secs()
            ));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mode = if store.is_cluster() == Some(true) {
        "cluster"
    } else {
        "standalone"
    };
    let start = Instant::now();
    match store.probe().await {
        Ok(()) => Outcome::Ok(format!("{mode}, script ran in {}", took(start))),
        Err(e) => Outcome::Fail(format!("{mode}: {e}")),
    }
}

/// Runs every step at `now` (the signing time), with the policy's size range from `sizes`, calling `report` after each, and returns
/// whether all passed. A key that was uploaded is deleted even when a later step failed.
pub async fn run(
    credentials: &Credentials,
    location: &BucketLocation,
    sizes: &TaoSettings,
    http: &reqwest::Client,
    now: SystemTime,
    mut report: impl FnMut(Step, &Outcome),
) -> bool {
    let mut all_ok = true;
    let mut note = |step: Step, outcome: Outcome| {
        all_ok &= matches!(outcome, Outcome::Ok(_));
        report(step, &outcome);
    };
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let name = format!("canary-{nonce}.bin");
    let key = format!("{SELFTEST_PREFIX}{name}");
    let len = MIN_UPLOAD_BYTES.max(sizes.min_upload_bytes);
    let content: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();

    let form = presign_post(
        credentials,
        location,
        &upload_spec(SELFTEST_PREFIX, credentials, now, sizes),
        now,
    );
    note(Step::Presign, Outcome::Ok(format!("key {key}")));

    let start = Instant::now();
    let mut multipart = reqwest::multipart::Form::new();
    for (field, value) in &form.fields.0 {
        let value = if field == "key" {
            key.clone()
        } else {
            value.clone()
        };
        multipart = multipart.text(field.clone(), value);
    }
    multipart = multipart.part(
        "file",
        reqwest::multipart::Part::bytes(content.clone()).file_name(name),
    );
    let uploaded = match send(http.post(&form.url).multipart(multipart)).await {
        Ok((status, _)) if (200..300).contains(&status) => {
            note(
                Step::Upload,
                Outcome::Ok(format!("HTTP {status}, {}", took(start))),
            );
            true
        }
        Ok((status, body)) => {
            let text = String::from_utf8_lossy(&body);
            note(Step::Upload, Outcome::Fail(s3_error(status, &text)));
            false
        }
        Err(e) => {
            note(Step::Upload, Outcome::Fail(e));
            false
        }
    };
    if !uploaded {
        for step in [Step::Download, Step::List, Step::Delete] {
            note(step, Outcome::Skipped("nothing was uploaded"));
        }
        return all_ok;
    }

    let start = Instant::now();
    let download = match presign_object(credentials, location, &key, now, URL_LIFETIME) {
        Err(e) => Outcome::Fail(format!("cannot sign: {e}")),
        Ok(url) => match send(http.get(&url)).await {
            Ok((200, body)) if body == content => {
                Outcome::Ok(format!("{} bytes, {}", body.len(), took(start)))
            }
            Ok((200, body)) => Outcome::Fail(format!(
                "read back {} bytes that differ from the upload",
                body.len()
            )),
            Ok((status, body)) => Outcome::Fail(s3_error(status, &String::from_utf8_lossy(&body))),
            Err(e) => Outcome::Fail(e),
        },
    };
    note(Step::Download, download);

    let start = Instant::now();
    let list = match presign_list(
        credentials,
        location,
        ListQuery::prefix(&key),
        now,
        URL_LIFETIME,
    ) {
        Err(e) => Outcome::Fail(format!("cannot sign: {e}")),
        Ok(url) => match send(http.get(&url)).await {
            Ok((200, body)) => {
                let xml = String::from_utf8_lossy(&body);
                if xml.contains(&format!("<Key>{key}</Key>")) {
                    Outcome::Ok(format!("found, {}", took(start)))
                } else {
                    Outcome::Fail("the listing does not show the uploaded key".into())
                }
            }
            Ok((status, body)) => Outcome::Fail(s3_error(status, &String::from_utf8_lossy(&body))),
            Err(e) => Outcome::Fail(e),
        },
    };
    note(Step::List, list);

    let start = Instant::now();
    let delete = match presign_delete(credentials, location, &key, now, URL_LIFETIME) {
        Err(e) => Outcome::Fail(format!("cannot sign: {e}")),
        Ok(url) => match send(http.delete(&url)).await {
            Ok((status, _)) if (200..300).contains(&status) => {
                Outcome::Ok(format!("HTTP {status}, {}", took(start)))
            }
            Ok((status, body)) => Outcome::Fail(s3_error(status, &String::from_utf8_lossy(&body))),
            Err(e) => Outcome::Fail(e),
        },
    };
    note(Step::Delete, delete);
    all_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_are_named_by_their_code() {
        let xml = "<?xml version=\"1.0\"?><Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>";
        assert_eq!(s3_error(403, xml), "AccessDenied: Access Denied (HTTP 403)");
        assert_eq!(s3_error(502, "Bad gateway"), "HTTP 502: Bad gateway");
    }
}
