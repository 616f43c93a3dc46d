//! Backups read as a stream: `GET /v1/snapshot` chunk by chunk, so a backup of any size
//! never has to fit in the client's memory (nor, on the server, in the node's).

use bytes::Bytes;
use reqwest::Method;

use super::{Client, header_u64};
use crate::api::{HEADER_REVISION, Revision};
use crate::error::{Error, Result};
use crate::retry::{self, Kind};

/// A backup being downloaded: its revision, then its bytes in order.
#[derive(Debug)]
pub struct SnapshotStream {
    /// The store revision the backup was taken at.
    pub revision: Revision,
    response: reqwest::Response,
}

impl SnapshotStream {
    /// The next chunk; `None` once the whole backup has arrived. A stream cut off midway is
    /// a transport error: the bytes read so far are not a backup.
    pub async fn next_chunk(&mut self) -> Result<Option<Bytes>> {
        self.response
            .chunk()
            .await
            .map_err(|e| Error::Transport(format!("backup download cut off: {e}")))
    }
}

impl Client {
    /// A consistent backup of the whole store, as one buffer, with its revision.
    pub async fn snapshot(&self) -> Result<(Bytes, Revision)> {
        let mut stream = self.snapshot_stream().await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next_chunk().await? {
            out.extend_from_slice(&chunk);
        }
        Ok((Bytes::from(out), stream.revision))
    }

    /// Starts downloading a consistent backup of the whole store. Finding a node that
    /// answers is retried like any read; the download itself is not (start again).
    pub async fn snapshot_stream(&self) -> Result<SnapshotStream> {
        let mut call = self.call(Method::GET, "/v1/snapshot".into(), Kind::Read);
        call.timeout = self.inner.options.snapshot_timeout;
        let call = &call;
        let response = retry::run(
            &self.inner.endpoints,
            &self.inner.options.retry,
            call.kind,
            |base| async move { self.open(&base, call).await },
        )
        .await?;
        let revision = header_u64(response.headers(), HEADER_REVISION)?;
        Ok(SnapshotStream { revision, response })
    }
}
