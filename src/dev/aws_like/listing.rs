//! The body of a listing page from the key index, URL-encoded when the request asks for
//! `encoding-type=url`: S3 then encodes `Key`, `Prefix`, `Delimiter` and `StartAfter`
//! (`Marker` and `NextMarker` in ListObjects), and clients such as botocore decode them.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use s3s::dto::*;

use super::index::{KeyIndex, Listed};

/// What an encoded key keeps as it is: unreserved characters and `/`.
const KEPT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~')
    .remove(b'/');

/// Whether a listing's names are URL-encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoding {
    url: bool,
}

impl Encoding {
    /// The encoding a request's `encoding-type` asks for (only `url` exists).
    pub fn of(requested: Option<&EncodingType>) -> Self {
        Self {
            url: requested.is_some_and(|e| e.as_str() == EncodingType::URL),
        }
    }

    /// `name` as the response carries it.
    pub fn name(self, name: &str) -> String {
        if self.url {
            utf8_percent_encode(name, KEPT).to_string()
        } else {
            name.to_owned()
        }
    }

    /// An optional element as the response carries it.
    pub fn element(self, value: Option<String>) -> Option<String> {
        value.map(|v| self.name(&v))
    }
}

/// The continuation token after `key`: opaque base64, as S3's are, so no key's characters
/// reach the XML answer raw.
pub fn key_token(key: &str) -> String {
    STANDARD.encode(key)
}

/// The key a token of [`key_token`] resumes after, if it is one.
pub fn token_key(token: &str) -> Option<String> {
    String::from_utf8(STANDARD.decode(token).ok()?).ok()
}

/// The `Contents` and `CommonPrefixes` of a page, each `None` when empty.
pub fn contents(
    listed: &Listed,
    encoding: Encoding,
) -> (Option<Vec<Object>>, Option<Vec<CommonPrefix>>) {
    let objects: Vec<Object> = listed
        .objects
        .iter()
        .map(|(key, entry)| Object {
            key: Some(encoding.name(key)),
            size: Some(entry.size),
            e_tag: entry.etag.clone().map(ETag::Strong),
            last_modified: Some(KeyIndex::timestamp(entry.modified)),
            storage_class: Some(ObjectStorageClass::from_static(
                ObjectStorageClass::STANDARD,
            )),
            ..Default::default()
        })
        .collect();
    let prefixes: Vec<CommonPrefix> = listed
        .prefixes
        .iter()
        .map(|p| CommonPrefix {
            prefix: Some(encoding.name(p)),
        })
        .collect();
    (
        (!objects.is_empty()).then_some(objects),
        (!prefixes.is_empty()).then_some(prefixes),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved_bytes_only() {
        let url = Encoding::of(Some(&EncodingType::from_static(EncodingType::URL)));
        assert_eq!(
            url.name("data/hotkey=5A/job_id=a b+c/é.parquet"),
            "data/hotkey%3D5A/job_id%3Da%20b%2Bc/%C3%A9.parquet"
        );
        assert_eq!(Encoding::of(None).name("a b+c"), "a b+c");
    }
}
