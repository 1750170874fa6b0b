//! The embedded S3 server's AWS-like edges, over `s3s-fs`: what real S3 treats differently
//! from a file system is done as S3 does it here, so dev mode and the tests meet it too.
//!
//! - Keys are kept literally ([`index`]): `s3s-fs` holds each object's bytes under a flat
//!   internal name and this layer keeps the key, so a key with `.` or `..` segments is
//!   stored and listed as itself (never resolved into another folder), keys of up to 1024
//!   bytes are stored, and a longer key is refused with `KeyTooLongError`.
//! - A bucket must exist: `s3s-fs` would create one's directory on the first upload.
//! - Listings are answered from the key index in S3's byte order: a ListObjects(V2) page
//!   holds at most 1000 keys and common prefixes whatever `max-keys` asks, with
//!   `IsTruncated` and a continuation token (or `NextMarker`), and names URL-encoded when
//!   asked with `encoding-type=url` ([`listing`]).

pub mod index;
pub mod listing;

use std::path::Path;

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

use index::{KeyIndex, internal_key};
use listing::{Encoding, contents};

/// Most keys AWS returns in one listing page.
pub const MAX_KEYS_PER_PAGE: i32 = 1000;
/// Longest key AWS stores, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// `inner` with AWS's key and listing rules.
#[derive(Debug)]
pub struct AwsLike<T> {
    inner: T,
    index: KeyIndex,
}

impl<T> AwsLike<T> {
    /// Wraps `inner`, a server storing under `root`, loading the key index kept there.
    pub fn open(inner: T, root: &Path) -> std::io::Result<Self> {
        Ok(Self {
            inner,
            index: KeyIndex::open(root)?,
        })
    }
}

fn check_key(key: &str) -> S3Result<()> {
    if key.len() > MAX_KEY_BYTES {
        return Err(s3_error!(
            KeyTooLongError,
            "Your key is too long: at most 1024 bytes"
        ));
    }
    Ok(())
}

/// Checks `key` and returns the internal key that holds it.
fn mapped(key: &mut ObjectKey) -> S3Result<String> {
    check_key(key)?;
    let original = std::mem::replace(key, internal_key(key));
    Ok(original)
}

fn map_source(source: &mut CopySource) -> S3Result<()> {
    if let CopySource::Bucket { key, .. } = source {
        check_key(key)?;
        *key = internal_key(key).into_boxed_str();
    }
    Ok(())
}

fn page(max_keys: Option<i32>) -> usize {
    let max = max_keys
        .unwrap_or(MAX_KEYS_PER_PAGE)
        .clamp(0, MAX_KEYS_PER_PAGE);
    usize::try_from(max).unwrap_or(0)
}

fn etag_of(etag: Option<&ETag>) -> Option<String> {
    etag.map(|e| e.value().to_owned())
}

#[async_trait::async_trait]
impl<T: S3> S3 for AwsLike<T> {
    async fn put_object(
        &self,
        mut req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        let bucket = req.input.bucket.clone();
        let out = self.inner.put_object(req).await?;
        self.record(&bucket, &key, etag_of(out.output.e_tag.as_ref()))
            .await?;
        Ok(out)
    }

    async fn copy_object(
        &self,
        mut req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        map_source(&mut req.input.copy_source)?;
        let bucket = req.input.bucket.clone();
        let out = self.inner.copy_object(req).await?;
        let etag = out
            .output
            .copy_object_result
            .as_ref()
            .and_then(|r| etag_of(r.e_tag.as_ref()));
        self.record(&bucket, &key, etag).await?;
        Ok(out)
    }

    async fn delete_object(
        &self,
        mut req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        let bucket = req.input.bucket.clone();
        let out = self.inner.delete_object(req).await?;
        self.index.remove(&bucket, &key).await;
        Ok(out)
    }

    async fn delete_objects(
        &self,
        mut req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.check_bucket(&req.input.bucket)?;
        let mut originals = std::collections::HashMap::new();
        for object in &mut req.input.delete.objects {
            let key = mapped(&mut object.key)?;
            originals.insert(object.key.clone(), key);
        }
        let bucket = req.input.bucket.clone();
        let mut out = self.inner.delete_objects(req).await?;
        for deleted in out.output.deleted.iter_mut().flatten() {
            if let Some(key) = deleted.key.as_mut().and_then(|k| originals.get(k)) {
                self.index.remove(&bucket, key).await;
                deleted.key = Some(key.clone());
            }
        }
        for error in out.output.errors.iter_mut().flatten() {
            if let Some(key) = error.key.as_ref().and_then(|k| originals.get(k)) {
                error.key = Some(key.clone());
            }
        }
        Ok(out)
    }

    async fn get_object(
        &self,
        mut req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        self.inner.get_object(req).await
    }

    async fn head_object(
        &self,
        mut req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        self.inner.head_object(req).await
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        let max = page(input.max_keys);
        let resumed = match input.continuation_token.as_deref() {
            Some(token) => Some(listing::token_key(token).ok_or_else(|| {
                s3_error!(
                    InvalidArgument,
                    "The continuation token provided is incorrect"
                )
            })?),
            None => None,
        };
        let after = resumed.as_deref().or(input.start_after.as_deref());
        let prefix = input.prefix.clone().unwrap_or_default();
        let listed = self.index.list(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            after,
            max,
        );
        let encoding = Encoding::of(input.encoding_type.as_ref());
        let (contents, common_prefixes) = contents(&listed, encoding);
        let key_count = listed.objects.len() + listed.prefixes.len();
        Ok(S3Response::new(ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: encoding.element(input.prefix),
            delimiter: encoding.element(input.delimiter),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS_PER_PAGE)),
            key_count: Some(i32::try_from(key_count).unwrap_or(MAX_KEYS_PER_PAGE)),
            is_truncated: Some(listed.truncated),
            next_continuation_token: listed
                .last
                .as_deref()
                .filter(|_| listed.truncated)
                .map(listing::key_token),
            continuation_token: input.continuation_token,
            start_after: encoding.element(input.start_after),
            encoding_type: input.encoding_type,
            contents,
            common_prefixes,
            ..Default::default()
        }))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        let input = req.input;
        self.check_bucket(&input.bucket)?;
        let max = page(input.max_keys);
        let prefix = input.prefix.clone().unwrap_or_default();
        let listed = self.index.list(
            &input.bucket,
            &prefix,
            input.delimiter.as_deref(),
            input.marker.as_deref(),
            max,
        );
        let encoding = Encoding::of(input.encoding_type.as_ref());
        let (contents, common_prefixes) = contents(&listed, encoding);
        Ok(S3Response::new(ListObjectsOutput {
            name: Some(input.bucket),
            prefix: encoding.element(input.prefix),
            delimiter: encoding.element(input.delimiter),
            marker: encoding.element(input.marker),
            max_keys: Some(i32::try_from(max).unwrap_or(MAX_KEYS_PER_PAGE)),
            is_truncated: Some(listed.truncated),
            next_marker: encoding.element(listed.last.clone().filter(|_| listed.truncated)),
            encoding_type: input.encoding_type,
            contents,
            common_prefixes,
            ..Default::default()
        }))
    }

    async fn create_multipart_upload(
        &self,
        mut req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        let mut out = self.inner.create_multipart_upload(req).await?;
        out.output.key = Some(key);
        Ok(out)
    }

    async fn upload_part(
        &self,
        mut req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        self.inner.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        mut req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        map_source(&mut req.input.copy_source)?;
        self.inner.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        mut req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        let mut out = self.inner.list_parts(req).await?;
        out.output.key = Some(key);
        Ok(out)
    }

    async fn complete_multipart_upload(
        &self,
        mut req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        let key = mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        let bucket = req.input.bucket.clone();
        let mut out = self.inner.complete_multipart_upload(req).await?;
        self.record(&bucket, &key, etag_of(out.output.e_tag.as_ref()))
            .await?;
        out.output.key = Some(key);
        Ok(out)
    }

    async fn abort_multipart_upload(
        &self,
        mut req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        mapped(&mut req.input.key)?;
        self.check_bucket(&req.input.bucket)?;
        self.inner.abort_multipart_upload(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.inner.create_bucket(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.inner.delete_bucket(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.inner.get_bucket_location(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.inner.head_bucket(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.inner.list_buckets(req).await
    }
}

impl<T> AwsLike<T> {
    /// Adds a stored object to the key index.
    async fn record(&self, bucket: &str, key: &str, etag: Option<String>) -> S3Result<()> {
        self.index
            .insert(bucket, key, etag)
            .await
            .map_err(|e| s3_error!(InternalError, "cannot record the key: {e}"))
    }

    /// `NoSuchBucket` unless `bucket` exists.
    fn check_bucket(&self, bucket: &str) -> S3Result<()> {
        if s3s::path::check_bucket_name(bucket) && self.index.has_bucket(bucket) {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_keys_are_bounded_as_on_aws() {
        assert_eq!(page(Some(10_000)), 1000);
        assert_eq!(page(None), 1000);
        assert_eq!(page(Some(5)), 5);
        assert_eq!(page(Some(-1)), 0);
        assert!(check_key(&"k".repeat(1024)).is_ok());
        assert!(check_key(&"k".repeat(1025)).is_err());
    }
}
