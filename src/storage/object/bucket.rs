//! The connection to one bucket: where it is, how to reach it, and the check at start.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use object_store::RetryConfig;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};

use super::errors::ObjectError;

/// Idempotent requests that fail with a 5xx or a broken connection are tried again this
/// often, with backoff, within [`RETRY_TIMEOUT`]; then the client gets the error.
pub const MAX_RETRIES: usize = 4;
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the homes are: `s3://bucket/prefix`, and how to reach the store.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ObjectStoreConfig {
    pub bucket: String,
    /// Key prefix of all homes, without slashes around it; may be empty.
    pub prefix: String,
    /// The store's URL, for anything but AWS itself (`http://127.0.0.1:9000`).
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Address the bucket as `endpoint/bucket/key` rather than `bucket.endpoint/key`.
    pub path_style: bool,
    /// A credential given by the embedding program; otherwise the standard `AWS_*`
    /// variables (or the instance's role) provide it.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
}

// The secret key is never printed.
impl fmt::Debug for ObjectStoreConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreConfig")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("path_style", &self.path_style)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<secret>"),
            )
            .finish()
    }
}

impl ObjectStoreConfig {
    /// Reads `s3://bucket/prefix`; `None` for anything that is not an `s3://` URL (such
    /// as a folder on local disk).
    pub fn from_url(url: &str) -> Option<std::result::Result<ObjectStoreConfig, ObjectError>> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Some(Err(ObjectError::Config(format!(
                "{bucket:?} is not a bucket name (3 to 63 of a-z, 0-9, '-' and '.')"
            ))));
        }
        Some(Ok(ObjectStoreConfig {
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
            ..ObjectStoreConfig::default()
        }))
    }
}

/// One bucket, reached through object_store.
#[derive(Clone)]
pub struct Bucket {
    pub(super) s3: Arc<AmazonS3>,
    /// Where the store is, for the log: never a credential.
    endpoint: String,
    pub(super) prefix: String,
}

impl fmt::Debug for Bucket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bucket")
            .field("endpoint", &self.endpoint)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl Bucket {
    /// Sets up the client: the standard `AWS_*` variables first (credentials among
    /// them), then what `config` says. Nothing is sent yet; see [`Bucket::check`].
    pub fn connect(config: &ObjectStoreConfig) -> std::result::Result<Bucket, ObjectError> {
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&config.bucket);
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(region) = &config.region {
            builder = builder.with_region(region);
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        if endpoint
            .as_deref()
            .is_some_and(|e| e.starts_with("http://"))
        {
            builder = builder.with_allow_http(true);
        }
        builder = builder
            .with_virtual_hosted_style_request(!config.path_style)
            .with_retry(RetryConfig {
                max_retries: MAX_RETRIES,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            });
        let s3 = builder
            .build()
            .map_err(|e| ObjectError::Config(e.to_string()))?;
        Ok(Bucket {
            s3: Arc::new(s3),
            endpoint: endpoint.unwrap_or_else(|| "AWS S3".to_owned()),
            prefix: config.prefix.clone(),
        })
    }

    /// One listing request under the prefix, so that a wrong endpoint, bucket or
    /// credential stops the server at start rather than at a user's first command.
    pub async fn check(&self) -> std::result::Result<(), ObjectError> {
        use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
        let options = PaginatedListOptions {
            max_keys: Some(1),
            ..PaginatedListOptions::default()
        };
        let prefix = (!self.prefix.is_empty()).then(|| format!("{}/", self.prefix));
        self.s3
            .list_paginated(prefix.as_deref(), options)
            .await
            .map(|_| ())
            .map_err(|e| ObjectError::Unreachable(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_secret_key_is_never_printed() {
        let config = ObjectStoreConfig {
            secret_access_key: Some("very-secret".into()),
            ..ObjectStoreConfig::default()
        };
        let printed = format!("{config:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("<secret>"), "{printed}");
    }

    #[test]
    fn reads_storage_urls() {
        let config = ObjectStoreConfig::from_url("s3://homes/team/a/")
            .unwrap()
            .unwrap();
        assert_eq!(
            (config.bucket.as_str(), config.prefix.as_str()),
            ("homes", "team/a")
        );
        let bare = ObjectStoreConfig::from_url("s3://my-bucket")
            .unwrap()
            .unwrap();
        assert_eq!(
            (bare.bucket.as_str(), bare.prefix.as_str()),
            ("my-bucket", "")
        );
        assert!(ObjectStoreConfig::from_url("storage").is_none());
        assert!(ObjectStoreConfig::from_url("/srv/homes").is_none());
        for bad in ["s3://", "s3://ab", "s3://Upper", "s3://a_b/x", "s3:///x"] {
            assert!(
                matches!(ObjectStoreConfig::from_url(bad), Some(Err(_))),
                "{bad:?}"
            );
        }
    }
}
