//! The async HTTP client of the pyxis `/v1/` API.
//!
//! [`Client`] turns each call into one HTTP request, sends it through the retry loop of
//! `retry.rs` (which picks the endpoint) and decodes the reply into the wire types of
//! [`api`](crate::api). It does not choose the leader: any node forwards writes to it, so
//! rotating past dead or leaderless nodes is enough. Leases are in `client/lease.rs`,
//! resumable watches in `client/watch.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde::de::DeserializeOwned;

use crate::api::{
    AddMemberRequest, ClusterInfo, DeleteResponse, ErrorCode, HEADER_CREATE_REVISION,
    HEADER_MOD_REVISION, HEADER_REVISION, HEADER_VERSION, NodeId, NodeStatus, PutResponse,
    RangeResponse, Revision, TxnRequest, TxnResponse,
};
use crate::error::{Error, Result};
use crate::request_id::{HEADER_REQUEST_ID, IdSource, RequestId};
use crate::retry::{self, Endpoints, Failure, Kind, RetryPolicy};
use crate::url::{kv_path, normalize_endpoint, prefix_path};

mod acl;
mod backup;
mod lease;
mod naming;
mod watch;

pub use backup::SnapshotStream;
pub use lease::{KeepAlive, LeaseLost};
pub use watch::Watch;

/// How a read is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReadConsistency {
    /// Confirmed through the leader (read index): sees every write acknowledged before it.
    #[default]
    Linearizable,
    /// Served from the answering node's local state: fast, possibly stale.
    Serializable,
}

/// One key as a raw `GET /v1/kv/{key}` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GetResult {
    /// The raw value.
    pub value: Bytes,
    /// Store revision at which the read was served.
    pub revision: Revision,
    /// Revision of the key's last change.
    pub mod_rev: Revision,
    /// Revision at which the key was created.
    pub create_rev: Revision,
    /// Number of puts since the key was created.
    pub version: u64,
}

/// Timeouts and retry settings of a [`Client`]; build with the chained setters.
///
/// ```
/// use std::time::Duration;
/// let options = pyxis_client::ClientOptions::default()
///     .request_timeout(Duration::from_secs(2))
///     .retry_budget(Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    request_timeout: Duration,
    connect_timeout: Duration,
    snapshot_timeout: Duration,
    retry: RetryPolicy,
    /// PEM file of the CA that signs the nodes' certificates, for `https://` endpoints.
    ca_file: Option<PathBuf>,
    token: Option<BearerToken>,
}

/// A bearer secret; its `Debug` never shows it, so options can be logged.
#[derive(Clone, PartialEq, Eq)]
struct BearerToken(String);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(1),
            snapshot_timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            ca_file: None,
            token: None,
        }
    }
}

impl ClientOptions {
    /// Time limit of one attempt, reply body included (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Time limit for opening a connection (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Time limit of one snapshot download, which may be large (default 120 s).
    pub fn snapshot_timeout(mut self, timeout: Duration) -> Self {
        self.snapshot_timeout = timeout;
        self
    }

    /// Total time spent retrying one call before its last error is returned (default 10 s).
    /// Zero disables retries: each call makes a single attempt.
    pub fn retry_budget(mut self, budget: Duration) -> Self {
        self.retry.budget = budget;
        self
    }

    /// Trust only the CA certificate(s) in this PEM file for `https://` endpoints (a private
    /// CA such as `pyxis tls gen` writes); without it, the system's roots are used.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Cap on the number of retries of one call, on top of the budget (default: none).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.retry.max_retries = Some(retries);
        self
    }

    /// Backoff after the first round of failures over all endpoints (default 50 ms); it
    /// doubles every round up to [`max_backoff`](Self::max_backoff).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.retry.initial_backoff = backoff;
        self
    }

    /// Cap of the backoff between rounds (default 1 s).
    pub fn max_backoff(mut self, backoff: Duration) -> Self {
        self.retry.max_backoff = backoff;
        self
    }

    /// ACL token sent as `Authorization: Bearer TOKEN` on every request, watches and
    /// keep-alives included (default: none, for a cluster whose ACLs are off).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(BearerToken(token.into()));
        self
    }
}

/// Async client of a pyxis cluster; cheap to clone (clones share connections and the
/// remembered endpoint).
///
/// Every call goes to the endpoint that answered last. A connect error, a read timeout or
/// a 503 `no_leader`/`unavailable` moves on to the next endpoint and, after a full round,
/// backs off (50 ms doubling up to 1 s by default) until the retry budget is spent. Every
/// key-space write carries a [`RequestId`] that its retries repeat, so the store applies it
/// once however often it is sent; such writes are retried like reads. Membership changes
/// carry none and are retried only when they cannot have been applied (connect error, 503).
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    endpoints: Endpoints,
    options: ClientOptions,
    /// This client's request-id session.
    ids: IdSource,
}

/// A successful (2xx) reply, read in full.
struct Reply {
    headers: HeaderMap,
    body: Bytes,
}

/// One HTTP request, kept whole so that it can be sent again to another endpoint.
struct Call {
    method: Method,
    /// Path and query, starting with `/`.
    path: String,
    /// Body and its content type.
    body: Option<(Bytes, &'static str)>,
    kind: Kind,
    /// Sent as `x-pyxis-request-id` on every attempt, so a repeat is applied once.
    request_id: Option<RequestId>,
    timeout: Duration,
}

impl Client {
    /// A client with default [`ClientOptions`]; endpoints are `host:port` or `http://host:port`.
    pub fn new(endpoints: Vec<String>) -> Result<Client> {
        Client::with_options(endpoints, ClientOptions::default())
    }

    /// A client with the given options; fails on an empty endpoint list.
    pub fn with_options(endpoints: Vec<String>, options: ClientOptions) -> Result<Client> {
        let list = endpoints
            .iter()
            .map(|e| normalize_endpoint(e))
            .collect::<Result<Vec<_>>>()?;
        if list.is_empty() {
            return Err(Error::InvalidArgument(
                "endpoints: at least one is needed".into(),
            ));
        }
        let mut headers = HeaderMap::new();
        if let Some(BearerToken(t)) = &options.token {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|_| {
                    Error::InvalidArgument(
                        "token: must be printable ASCII without spaces or control characters"
                            .into(),
                    )
                })?;
            // Kept out of reqwest's and hyper's debug output.
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        // Default headers go on every request this client sends: calls, watches, keep-alives.
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::Client::builder()
            .no_proxy()
            .default_headers(headers)
            .connect_timeout(options.connect_timeout);
        if let Some(ca) = &options.ca_file {
            let config = crate::tls::client_config(ca, None)
                .map_err(|e| Error::Tls(format!("ca_file: {e}")))?;
            builder = builder.tls_backend_preconfigured(config);
        }
        let http = builder
            .build()
            .map_err(|e| Error::Transport(format!("building the http client: {e}")))?;
        Ok(Client {
            inner: Arc::new(Inner {
                http,
                endpoints: Endpoints::new(list),
                options,
                ids: IdSource::new(),
            }),
        })
    }

    /// The endpoints as normalised base URLs (`http://host:port`), in the order given.
    pub fn endpoints(&self) -> &[String] {
        self.inner.endpoints.list()
    }

    /// Reads one key (linearizable); `None` if it does not exist.
    pub async fn get(&self, key: &str) -> Result<Option<GetResult>> {
        self.get_with(key, ReadConsistency::Linearizable).await
    }

    /// Reads one key from the answering node's local state; `None` if it does not exist there.
    pub async fn get_serializable(&self, key: &str) -> Result<Option<GetResult>> {
        self.get_with(key, ReadConsistency::Serializable).await
    }

    /// Reads one key with the given consistency; `None` if it does not exist.
    pub async fn get_with(
        &self,
        key: &str,
        consistency: ReadConsistency,
    ) -> Result<Option<GetResult>> {
        let path = with_query(kv_path(key)?, consistency_param(consistency).as_slice());
        let Some(reply) = self.read_optional(path).await? else {
            return Ok(None);
        };
        Ok(Some(GetResult {
            revision: header_u64(&reply.headers, HEADER_REVISION)?,
            mod_rev: header_u64(&reply.headers, HEADER_MOD_REVISION)?,
            create_rev: header_u64(&reply.headers, HEADER_CREATE_REVISION)?,
            version: header_u64(&reply.headers, HEADER_VERSION)?,
            value: reply.body,
        }))
    }

    /// Lists every key under `prefix` (linearizable); `/` lists the whole key space.
    pub async fn range(&self, prefix: &str) -> Result<RangeResponse> {
        self.range_with(prefix, ReadConsistency::Linearizable).await
    }

    /// Lists every key under `prefix` with the given consistency.
    pub async fn range_with(
        &self,
        prefix: &str,
        consistency: ReadConsistency,
    ) -> Result<RangeResponse> {
        let mut params = vec!["prefix=true".to_owned()];
        params.extend(consistency_param(consistency));
        let path = with_query(prefix_path(prefix)?, &params);
        self.send_json(self.call(Method::GET, path, Kind::Read))
            .await
    }

    /// Writes a key unconditionally.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<PutResponse> {
        let call = self.put_call(kv_path(key)?, value.into());
        self.send_json(call).await
    }

    /// Writes a key only if its mod revision is `prev_rev` (0: only if it does not exist).
    ///
    /// A mismatch is `Error::Api` with code [`CompareFailed`](crate::api::ErrorCode::CompareFailed).
    pub async fn put_if(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        prev_rev: Revision,
    ) -> Result<PutResponse> {
        let path = with_query(kv_path(key)?, &[format!("prev_rev={prev_rev}")]);
        self.send_json(self.put_call(path, value.into())).await
    }

    /// Writes a key bound to lease `lease`, optionally only if its mod revision is
    /// `prev_rev`. An unknown or expired lease is `Error::Api` with code `NotFound`.
    pub async fn put_leased(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        lease: u64,
        prev_rev: Option<Revision>,
    ) -> Result<PutResponse> {
        let mut query = vec![format!("lease={lease}")];
        if let Some(rev) = prev_rev {
            query.push(format!("prev_rev={rev}"));
        }
        let path = with_query(kv_path(key)?, &query);
        self.send_json(self.put_call(path, value.into())).await
    }

    /// Deletes one key; `deleted` is 0 if it did not exist.
    pub async fn delete(&self, key: &str) -> Result<DeleteResponse> {
        let call = self.once_call(Method::DELETE, kv_path(key)?);
        self.send_json(call).await
    }

    /// Deletes every key under `prefix`.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<DeleteResponse> {
        let path = with_query(prefix_path(prefix)?, &["prefix=true".to_owned()]);
        self.send_json(self.once_call(Method::DELETE, path)).await
    }

    /// Deletes every key in the store, `/ns/` included (`DELETE /v1/kv/?all=true`).
    pub async fn delete_all(&self) -> Result<DeleteResponse> {
        let path = with_query("/v1/kv/".to_owned(), &["all=true".to_owned()]);
        self.send_json(self.once_call(Method::DELETE, path)).await
    }

    /// Runs a multi-key transaction.
    pub async fn txn(&self, request: TxnRequest) -> Result<TxnResponse> {
        let call = self.json_call(Method::POST, "/v1/txn".into(), &request)?;
        self.send_json(call).await
    }

    /// The cluster's members, leader and term.
    pub async fn cluster(&self) -> Result<ClusterInfo> {
        self.send_json(self.call(Method::GET, "/v1/cluster".into(), Kind::Read))
            .await
    }

    /// Adds node `id` serving at `addr` (`host:port`); returns the membership after the change.
    pub async fn add_member(&self, id: NodeId, addr: impl Into<String>) -> Result<ClusterInfo> {
        let body = AddMemberRequest {
            id,
            addr: addr.into(),
        };
        let mut call = self.json_call(Method::POST, "/v1/cluster/members".into(), &body)?;
        // Membership changes are not deduplicated by request id: retry only what cannot
        // have been applied.
        (call.kind, call.request_id) = (Kind::Write, None);
        self.send_json(call).await
    }

    /// Removes node `id`; an unknown id is `Error::Api` with code `not_found`.
    pub async fn remove_member(&self, id: NodeId) -> Result<ClusterInfo> {
        let path = format!("/v1/cluster/members/{id}");
        self.send_json(self.call(Method::DELETE, path, Kind::Write))
            .await
    }

    /// The own view of the first endpoint that answers.
    pub async fn status(&self) -> Result<NodeStatus> {
        self.send_json(self.call(Method::GET, "/v1/status".into(), Kind::Read))
            .await
    }

    /// The own view of one particular node (`host:port` or URL), asked once without retries.
    pub async fn status_of(&self, endpoint: &str) -> Result<NodeStatus> {
        let base = normalize_endpoint(endpoint)?;
        let call = self.call(Method::GET, "/v1/status".into(), Kind::Read);
        let reply = self.attempt(&base, &call).await.map_err(|f| f.error)?;
        decode_json(&reply)
    }

    /// Succeeds when the first endpoint that answers reports itself healthy.
    pub async fn healthz(&self) -> Result<()> {
        self.send(self.call(Method::GET, "/healthz".into(), Kind::Read))
            .await
            .map(drop)
    }

    /// A body-less call with the default timeout.
    fn call(&self, method: Method, path: String, kind: Kind) -> Call {
        Call {
            method,
            path,
            body: None,
            kind,
            request_id: None,
            timeout: self.inner.options.request_timeout,
        }
    }

    /// A body-less write with a fresh request id, safe to repeat.
    fn once_call(&self, method: Method, path: String) -> Call {
        let mut call = self.call(method, path, Kind::Once);
        call.request_id = Some(self.inner.ids.next_id());
        call
    }

    /// A `PUT` of raw value bytes.
    fn put_call(&self, path: String, value: Bytes) -> Call {
        let mut call = self.once_call(Method::PUT, path);
        call.body = Some((value, "application/octet-stream"));
        call
    }

    /// A write carrying a JSON body.
    fn json_call(
        &self,
        method: Method,
        path: String,
        body: &impl serde::Serialize,
    ) -> Result<Call> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| Error::InvalidArgument(format!("encoding the request body: {e}")))?;
        let mut call = self.once_call(method, path);
        call.body = Some((Bytes::from(bytes), "application/json"));
        Ok(call)
    }

    /// A `GET` of `path` through the retry loop; `None` on a 404.
    async fn read_optional(&self, path: String) -> Result<Option<Reply>> {
        match self.send(self.call(Method::GET, path, Kind::Read)).await {
            Ok(r) => Ok(Some(r)),
            Err(Error::Api {
                code: ErrorCode::NotFound,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends through the retry loop and decodes a JSON reply.
    async fn send_json<T: DeserializeOwned>(&self, call: Call) -> Result<T> {
        decode_json(&self.send(call).await?)
    }

    /// Sends through the retry loop, rotating endpoints as `retry::run` decides.
    async fn send(&self, call: Call) -> Result<Reply> {
        let inner = &self.inner;
        let call = &call;
        retry::run(
            &inner.endpoints,
            &inner.options.retry,
            call.kind,
            |base| async move { self.attempt(&base, call).await },
        )
        .await
    }

    /// One attempt against one endpoint; the whole reply is read before it counts as success.
    async fn attempt(&self, base: &str, call: &Call) -> Result<Reply, Failure> {
        let resp = self.open(base, call).await?;
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_failure(base, &e))?;
        Ok(Reply { headers, body })
    }

    /// Sends `call` to one endpoint; a success status gives the response with its body still
    /// to read, any other the error its body names.
    async fn open(&self, base: &str, call: &Call) -> Result<reqwest::Response, Failure> {
        let mut req = self
            .inner
            .http
            .request(call.method.clone(), format!("{base}{}", call.path))
            .timeout(call.timeout);
        if let Some((body, content_type)) = &call.body {
            req = req.header(CONTENT_TYPE, *content_type).body(body.clone());
        }
        if let Some(id) = call.request_id {
            req = req.header(HEADER_REQUEST_ID, id.to_string());
        }
        let resp = req.send().await.map_err(|e| transport_failure(base, &e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp
            .bytes()
            .await
            .map_err(|e| transport_failure(base, &e))?;
        // A 503 other than `unknown_outcome` is the server's promise that nothing was applied,
        // so even writes without a request id may retry it.
        let error = Error::from_response(status.as_u16(), &body);
        let maybe_applied =
            status.as_u16() != 503 || error.code() == Some(ErrorCode::UnknownOutcome);
        Err(Failure {
            error,
            maybe_applied,
        })
    }
}

/// Classifies a reqwest error: only a failed connect proves the request was not received.
///
/// The message names the endpoint, the stage and the root cause (`http://h:1: connect:
/// Connection refused (os error 111)`), because reqwest's own `Display` ("error sending
/// request") hides the cause and the chain in between is hyper's bookkeeping.
fn transport_failure(base: &str, e: &reqwest::Error) -> Failure {
    let text = e.to_string();
    let head = text.split(" for url (").next().unwrap_or(&text);
    let stage = if e.is_connect() { "connect" } else { head };
    let mut root = None;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        root = Some(s);
        source = s.source();
    }
    if let Some(reason) = crate::tls::untrusted_certificate(e) {
        // Nothing was sent: the handshake failed before the request.
        return Failure {
            error: Error::Tls(format!(
                "{base}: the server's certificate is not trusted ({reason}); \
                 check that the CA given (--ca, ca_file) signed the node's certificate"
            )),
            maybe_applied: false,
        };
    }
    let message = match root {
        Some(root) => format!("{base}: {stage}: {root}"),
        None => format!("{base}: {stage}"),
    };
    Failure {
        error: Error::Transport(message),
        maybe_applied: !e.is_connect(),
    }
}

/// The `consistency` query parameter, absent for the linearizable default.
fn consistency_param(c: ReadConsistency) -> Option<String> {
    match c {
        ReadConsistency::Linearizable => None,
        ReadConsistency::Serializable => Some("consistency=serializable".into()),
    }
}

/// Appends `?a=1&b=2` to a path (the parameters are already URL-safe).
fn with_query(mut path: String, params: &[String]) -> String {
    for (i, p) in params.iter().enumerate() {
        path.push(if i == 0 { '?' } else { '&' });
        path.push_str(p);
    }
    path
}

/// Parses a revision-style header; a missing or malformed one is a decode error.
fn header_u64(headers: &HeaderMap, name: &str) -> Result<u64> {
    let value = headers
        .get(name)
        .ok_or_else(|| Error::Decode(format!("reply has no {name} header")))?;
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| Error::Decode(format!("header {name}: {value:?} is not a number")))
}

/// Decodes a JSON reply body.
fn decode_json<T: DeserializeOwned>(reply: &Reply) -> Result<T> {
    serde_json::from_slice(&reply.body).map_err(|e| Error::Decode(format!("reply body: {e}")))
}

#[cfg(test)]
mod tests;
