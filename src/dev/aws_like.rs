//! The embedded S3 server's AWS-like edges, over `s3s-fs`: what real S3 treats differently
//! from a file system is refused or limited here, so dev mode and the tests meet it too.
//!
//! - A key with a `.` or `..` segment is refused with 400 `InvalidArgument`: `s3s-fs`
//!   would resolve it as a path (a key of one miner's folder landing in another's), while
//!   AWS keeps keys literally. Refusing is the closest honest behaviour without a key
//!   mapping of our own.
//! - A ListObjects(V2) page holds at most 1000 keys whatever `max-keys` asks, as on AWS,
//!   with `IsTruncated` and the continuation token from `s3s-fs`.

use s3s::dto::*;
use s3s::{S3, S3Request, S3Response, S3Result, s3_error};

/// Most keys AWS returns in one listing page.
pub const MAX_KEYS_PER_PAGE: i32 = 1000;

/// `inner` with AWS's key and listing rules.
#[derive(Debug)]
pub struct AwsLike<T>(pub T);

/// Whether `key` would be resolved as a path by a file-system backend.
pub fn has_dot_segment(key: &str) -> bool {
    key.split('/')
        .any(|segment| segment == "." || segment == "..")
}

fn check_key(key: &str) -> S3Result<()> {
    if has_dot_segment(key) {
        return Err(s3_error!(
            InvalidArgument,
            "keys with '.' or '..' segments are refused by this development server"
        ));
    }
    Ok(())
}

fn page(max_keys: Option<i32>) -> Option<i32> {
    Some(
        max_keys
            .unwrap_or(MAX_KEYS_PER_PAGE)
            .clamp(0, MAX_KEYS_PER_PAGE),
    )
}

#[async_trait::async_trait]
impl<T: S3> S3 for AwsLike<T> {
    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        check_key(&req.input.key)?;
        self.0.put_object(req).await
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        check_key(&req.input.key)?;
        self.0.create_multipart_upload(req).await
    }

    async fn list_objects_v2(
        &self,
        mut req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        req.input.max_keys = page(req.input.max_keys);
        let mut out = self.0.list_objects_v2(req).await?;
        out.output.max_keys = out.output.max_keys.map(|k| k.min(MAX_KEYS_PER_PAGE));
        Ok(out)
    }

    async fn list_objects(
        &self,
        mut req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        req.input.max_keys = page(req.input.max_keys);
        self.0.list_objects(req).await
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        self.0.create_bucket(req).await
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        self.0.copy_object(req).await
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        self.0.delete_bucket(req).await
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        self.0.delete_object(req).await
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        self.0.delete_objects(req).await
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        self.0.get_bucket_location(req).await
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        self.0.get_object(req).await
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        self.0.head_bucket(req).await
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        self.0.head_object(req).await
    }

    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        self.0.list_buckets(req).await
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        self.0.upload_part(req).await
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        self.0.upload_part_copy(req).await
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        self.0.list_parts(req).await
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        self.0.complete_multipart_upload(req).await
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        self.0.abort_multipart_upload(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_segments_are_found_anywhere() {
        assert!(has_dot_segment("data/hotkey=A/../hotkey=B/x"));
        assert!(has_dot_segment("./x"));
        assert!(has_dot_segment("a/.."));
        assert!(!has_dot_segment("data/hotkey=A/job_id=j/a..b.parquet"));
        assert!(!has_dot_segment("data/hotkey=A/.hidden"));
        assert_eq!(page(Some(10_000)), Some(1000));
        assert_eq!(page(None), Some(1000));
        assert_eq!(page(Some(5)), Some(5));
    }
}
