//! Parsing of ListObjectsV2 XML answers (just what the client needs).

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedObject {
    /// The object key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
}

/// One page of a ListObjectsV2 answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// The objects.
    pub objects: Vec<ListedObject>,
    /// Common prefixes (with a delimiter).
    pub prefixes: Vec<String>,
    /// The token of the next page, when truncated.
    pub next_token: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The text of each `<tag>...</tag>` inside `xml`, in order.
fn all<'a>(xml: &'a str, tag: &str) -> Vec<&'a str> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let Some(end) = after.find(&close) else {
            break;
        };
        out.push(&after[..end]);
        rest = &after[end + close.len()..];
    }
    out
}

/// Parses a ListObjectsV2 answer. When it says `<EncodingType>url</EncodingType>` (the
/// service's list URLs ask for it), keys and prefixes are URL-decoded, as botocore does.
pub fn parse_list(xml: &str) -> ListPage {
    let url_encoded = all(xml, "EncodingType")
        .first()
        .is_some_and(|e| e.trim() == "url");
    let name = |raw: &str| {
        let text = unescape(raw);
        if url_encoded {
            crate::storage::listing::decode(&text)
        } else {
            text
        }
    };
    let objects = all(xml, "Contents")
        .into_iter()
        .filter_map(|c| {
            let key = all(c, "Key").first().map(|k| name(k))?;
            let size = all(c, "Size")
                .first()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            Some(ListedObject { key, size })
        })
        .collect();
    let prefixes = all(xml, "CommonPrefixes")
        .into_iter()
        .filter_map(|p| all(p, "Prefix").first().map(|k| name(k)))
        .collect();
    let truncated = all(xml, "IsTruncated")
        .first()
        .is_some_and(|t| t.trim() == "true");
    let next_token = if truncated {
        all(xml, "NextContinuationToken")
            .first()
            .map(|t| unescape(t))
    } else {
        None
    };
    ListPage {
        objects,
        prefixes,
        next_token,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_objects_prefixes_and_tokens() {
        let xml = r#"<ListBucketResult><IsTruncated>true</IsTruncated>
<Contents><Key>data/hotkey=5A/job_id=1/a&amp;b.parquet</Key><Size>2048</Size></Contents>
<Contents><Key>data/hotkey=5A/job_id=1/c.parquet</Key><Size>10</Size></Contents>
<CommonPrefixes><Prefix>data/hotkey=5B/</Prefix></CommonPrefixes>
<NextContinuationToken>tok+en=</NextContinuationToken></ListBucketResult>"#;
        let page = parse_list(xml);
        assert_eq!(page.objects.len(), 2);
        assert_eq!(page.objects[0].key, "data/hotkey=5A/job_id=1/a&b.parquet");
        assert_eq!(page.objects[0].size, 2048);
        assert_eq!(page.prefixes, vec!["data/hotkey=5B/"]);
        assert_eq!(page.next_token.as_deref(), Some("tok+en="));
        let last =
            parse_list("<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>");
        assert_eq!(last.next_token, None);
    }

    #[test]
    fn url_encoded_names_are_decoded_only_when_the_answer_says_so() {
        let body = "<Contents><Key>data/hotkey%3D5A/job_id%3Dj%2541/a%2Bb+c%C3%A9.parquet</Key>\
<Size>1</Size></Contents><CommonPrefixes><Prefix>data/hotkey%3D5B/</Prefix></CommonPrefixes>";
        let encoded = parse_list(&format!(
            "<ListBucketResult><EncodingType>url</EncodingType>{body}</ListBucketResult>"
        ));
        assert_eq!(
            encoded.objects[0].key,
            "data/hotkey=5A/job_id=j%41/a+b cé.parquet"
        );
        assert_eq!(encoded.prefixes, vec!["data/hotkey=5B/"]);
        let plain = parse_list(&format!("<ListBucketResult>{body}</ListBucketResult>"));
        assert_eq!(
            plain.objects[0].key,
            "data/hotkey%3D5A/job_id%3Dj%2541/a%2Bb+c%C3%A9.parquet"
        );
    }
}
