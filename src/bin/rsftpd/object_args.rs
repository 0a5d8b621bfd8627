//! The flags for homes on an object store (`--storage s3://bucket/prefix`), turned into
//! the library's configuration. Credentials come from the standard `AWS_*` variables
//! only, so no secret is ever on a command line or in a log.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use rsftp::storage::object::ObjectStoreConfig;

#[derive(Args)]
pub struct ObjectStoreArgs {
    /// With --storage s3://...: the store's URL, for anything but AWS itself
    /// (e.g. http://127.0.0.1:9000) [default: AWS_ENDPOINT, or AWS S3].
    #[arg(long, value_name = "URL")]
    s3_endpoint: Option<String>,
    /// With --storage s3://...: the region [default: AWS_REGION, or us-east-1].
    #[arg(long, value_name = "REGION")]
    s3_region: Option<String>,
    /// With --storage s3://...: address the bucket as ENDPOINT/BUCKET/KEY (MinIO, Garage,
    /// Ceph and most self-hosted stores) rather than BUCKET.ENDPOINT/KEY.
    #[arg(long)]
    s3_path_style: bool,
    /// With --storage s3://...: where the state of interrupted uploads is kept on local
    /// disk (upload ids, part ETags, MD5 states). With --accounts postgres://... it is
    /// kept in the database instead, for every node to resume.
    #[arg(long, default_value = "s3-state", value_name = "DIR")]
    s3_state_dir: PathBuf,
}

impl ObjectStoreArgs {
    /// The local folder the server keeps, and the object store if `storage` names one.
    pub fn resolve(self, storage: &Path) -> anyhow::Result<(PathBuf, Option<ObjectStoreConfig>)> {
        let Some(config) = storage.to_str().and_then(ObjectStoreConfig::from_url) else {
            return Ok((storage.to_owned(), None));
        };
        let mut config = config.context("--storage")?;
        config.endpoint = self.s3_endpoint;
        config.region = self.s3_region;
        config.path_style = self.s3_path_style;
        Ok((self.s3_state_dir, Some(config)))
    }
}
