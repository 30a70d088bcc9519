//! A store on object storage: S3 (and S3-compatible servers), Google Cloud Storage and Azure
//! Blob Storage, through the `object_store` crate, plus its `file://` and `memory://` stores.
//! [`ObjectStorage`] is the [`Storage`] of a store named by a URL (`s3://bucket/prefix/s.zarr`):
//! the URL's path is the store's prefix and every key is relative to it.
//!
//! `object_store` is asynchronous; the store layer is not. Each [`ObjectStorage`] owns a small
//! tokio runtime and blocks on it once per call, so its methods must be called from ordinary
//! threads (as the store layer does), never from inside a runtime.
//!
//! Configuration comes from the environment the usual way (`AWS_*`, `GOOGLE_*`, `AZURE_*`, read
//! by the builders' `from_env`). Two things are set here on top, so that a command cannot hang:
//! bounded timeouts and retries ([`RETRY`], [`TIMEOUTS`]), and a refusal to start without
//! configured credentials, which would otherwise send the client to a cloud metadata server.

use std::ops::Range;
use std::sync::Arc;
use std::time::Duration;

use futures_util::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientConfigKey, GetOptions, GetRange, ObjectStore, ObjectStoreExt, ObjectStoreScheme, PutMode, PutPayload, PutResult,
    RetryConfig, UpdateVersion,
};
use url::Url;

use super::storage::{Conditional, Storage, StorageError, Version};

/// Why configuring a client failed, before it becomes a [`StorageError`] naming the URL.
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Retries of one request: few and soon given up, so that a dead server or a wrong endpoint
/// fails a command within about half a minute (with [`TIMEOUTS`]) instead of minutes.
const RETRY: RetryConfig = RetryConfig {
    backoff: BackoffConfig { init_backoff: Duration::from_millis(100), max_backoff: Duration::from_secs(2), base: 2.0 },
    max_retries: 3,
    retry_timeout: Duration::from_secs(10),
};

/// Client timeouts (key, its name after the `AWS_`/`GOOGLE_`/`AZURE_` prefix of an environment
/// variable that overrides it, value). 20 s for a whole request still moves a 5 MB chunk over a
/// slow 2 Mbit/s link.
const TIMEOUTS: [(ClientConfigKey, &str, &str); 2] =
    [(ClientConfigKey::ConnectTimeout, "CONNECT_TIMEOUT", "5s"), (ClientConfigKey::Timeout, "TIMEOUT", "20s")];

/// The objects of a store on object storage, named by a URL.
/// A client of one object store at a URL: the connection (an `object_store` client and the
/// runtime it runs on) and the key prefix the URL's path names, with the reads every user of
/// objects needs. The store's [`ObjectStorage`] is built on one; inputs on object storage read
/// through one of their own, so that the store's type is not an input reader.
#[derive(Debug)]
pub struct ObjectClient {
    /// The URL as given less trailing slashes ([`display_url`]), for messages.
    url: String,
    store: Arc<dyn ObjectStore>,
    /// The store's root inside `store` (the URL's path).
    prefix: Path,
    runtime: tokio::runtime::Runtime,
}

/// The objects of a store on object storage, named by a URL.
#[derive(Debug)]
pub struct ObjectStorage {
    client: ObjectClient,
}

/// Whether a STORE argument names an object store: a `scheme://` URL of a kind [`ObjectStorage`]
/// opens (`s3://`, `gs://`, `az://`, `abfs://`, `file://`, `memory://`, an `https://` address of
/// S3 or Azure). A plain path is not one, even with a colon in it.
#[must_use]
pub(crate) fn is_url(text: &str) -> bool {
    if !text.contains("://") {
        return false;
    }
    match Url::parse(text) {
        Ok(url) => matches!(ObjectStoreScheme::parse(&url), Ok((scheme, _)) if scheme != ObjectStoreScheme::Http),
        Err(_) => false,
    }
}

/// The scheme of a `scheme://…` argument (RFC 3986: a letter, then letters, digits, `+`, `-`,
/// `.`), or None for a path.
fn url_scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let mut chars = scheme.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic() && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))).then_some(scheme)
}

/// What a STORE argument names, by its text.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Named {
    /// A path, as it is.
    Path,
    /// A `file://` URL: the local path it names.
    File(std::path::PathBuf),
    /// An object-store URL whose key prefix maps one for one onto the objects' keys.
    Url,
}

/// Which kind of store a STORE argument names. Refused: URLs of no object store
/// (`http://host/…` would otherwise become a local folder `http:`), a query or fragment (`?`,
/// `#`), and in the path empty segments (`//`, which S3 keeps in keys but `object_store` drops),
/// `.` and `..` (resolved by URL parsing, so two spellings would name one store) and percent
/// escapes (`%2F` is `/` to some clients and not to others).
///
/// # Errors
/// The argument is a URL that cannot be mapped one for one.
pub(super) fn check_store_url(text: &str) -> Result<Named, String> {
    let Some(scheme) = url_scheme(text) else { return Ok(Named::Path) };
    let rest = &text[scheme.len() + 3..];
    if rest.contains(['?', '#']) {
        return Err("a store URL has no query or fragment (`?`, `#`): object keys with those characters are not supported".into());
    }
    let path = rest.split_once('/').map_or("", |(_, path)| path);
    let path = path.strip_suffix('/').unwrap_or(path);
    for segment in path.split('/').filter(|_| !path.is_empty()) {
        let reason = match segment {
            "" => "an empty path segment (`//`), which object stores do not keep one for one",
            "." | ".." => "a `.` or `..` path segment, which would give one store two names",
            s if s.contains('%') => "a percent escape (such as `%2F`), which clients decode differently",
            _ => continue,
        };
        return Err(format!("its path has {reason}"));
    }
    if scheme.eq_ignore_ascii_case("file") {
        let url = Url::parse(text).map_err(|e| format!("not a URL: {e}"))?;
        return url.to_file_path().map(Named::File).map_err(|()| "a file:// URL must name an absolute local path (file:///PATH)".into());
    }
    if !is_url(text) {
        return Err(unsupported(&format!("`{scheme}://` is not a URL of an object store")));
    }
    Ok(Named::Url)
}

impl ObjectClient {
    /// The client of the objects under `url`, configured from the environment.
    ///
    /// # Errors
    /// The URL is not one of an object store, its client cannot be configured (for instance no
    /// credentials are set), or the runtime cannot start.
    pub fn from_url(url: &str) -> Result<ObjectClient, StorageError> {
        let open_error = |source: BoxError| StorageError::new("open", url, source);
        let parsed = Url::parse(url).map_err(|e| open_error(format!("not a URL: {e}").into()))?;
        let (scheme, prefix) = ObjectStoreScheme::parse(&parsed).map_err(|e| open_error(unsupported(&e.to_string()).into()))?;
        let store = open_store(&scheme, url).map_err(open_error)?;
        ObjectClient::with_store(url, store, prefix)
    }

    /// The objects at `prefix` inside `store`, named `url` in messages.
    fn with_store(url: &str, store: Arc<dyn ObjectStore>, prefix: Path) -> Result<ObjectClient, StorageError> {
        // Two workers: enough to overlap the requests of the store layer's threads on two cores.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("ztf2zarr-io")
            .enable_all()
            .build()
            .map_err(|e| StorageError::new("open", url, e))?;
        Ok(ObjectClient { url: display_url(url), store, prefix, runtime })
    }

    /// Where the object `key` is, as a URL, for messages.
    fn object_location(&self, key: &str) -> String {
        format!("{}/{key}", self.url)
    }

    /// The object `key` inside the store.
    fn path(&self, action: &'static str, key: &str) -> Result<Path, StorageError> {
        let full = if self.prefix.as_ref().is_empty() { key.to_string() } else { format!("{}/{key}", self.prefix.as_ref()) };
        Path::parse(&full).map_err(|e| self.error(action, key, e))
    }

    fn error(&self, action: &'static str, key: &str, source: impl Into<BoxError>) -> StorageError {
        let source: BoxError = source.into();
        // The server's answer for a missing bucket is an XML document that names it in passing;
        // say it in words, with where it was looked for.
        let text = source.to_string();
        if NO_CONTAINER.iter().any(|marker| text.contains(marker)) {
            return StorageError::new(action, self.object_location(key), missing_container(&self.url));
        }
        StorageError::new(action, self.object_location(key), source)
    }

    /// The key of a listed object: its path less the store's prefix.
    fn key_of(&self, path: &Path) -> Option<String> {
        let parts = path.prefix_match(&self.prefix)?;
        Some(parts.map(|part| part.as_ref().to_string()).collect::<Vec<_>>().join("/"))
    }

    /// Bytes `range` of the object `key` (fewer at its end).
    ///
    /// # Errors
    /// The object cannot be read.
    pub fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        let path = self.path("read", key)?;
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let options = GetOptions { range: Some(GetRange::Bounded(range.clone())), ..GetOptions::default() };
        let read = async {
            let result = self.store.get_opts(&path, options).await?;
            result.bytes().await
        };
        match self.runtime.block_on(read) {
            Ok(bytes) => Ok(Vec::from(bytes)),
            // A range that starts at or past the end is refused by the stores; it holds no bytes.
            Err(e) => match self.size(key) {
                Ok(Some(size)) if size <= range.start => Ok(Vec::new()),
                _ => Err(self.error("read", key, e)),
            },
        }
    }

    /// The size of the object `key`, or None when there is none.
    ///
    /// # Errors
    /// The object cannot be examined.
    pub fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path("read", key)?;
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(e) if no_such_object(&e) => Ok(None),
            Err(e) => Err(self.error("read", key, e)),
        }
    }
}

impl ObjectStorage {
    /// The store at `url`, configured from the environment.
    ///
    /// # Errors
    /// The URL is not one of an object store, its client cannot be configured (for instance no
    /// credentials are set), or the runtime cannot start.
    pub fn from_url(url: &str) -> Result<ObjectStorage, StorageError> {
        Ok(ObjectStorage { client: ObjectClient::from_url(url)? })
    }

    /// The store at `prefix` inside `store`, named `url` in messages.
    #[cfg(test)]
    fn with_store(url: &str, store: Arc<dyn ObjectStore>, prefix: Path) -> Result<ObjectStorage, StorageError> {
        Ok(ObjectStorage { client: ObjectClient::with_store(url, store, prefix)? })
    }
}

impl Storage for ObjectStorage {
    fn location(&self) -> String {
        self.client.url.clone()
    }

    fn object_location(&self, key: &str) -> String {
        self.client.object_location(key)
    }

    fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.client.path("read", key)?;
        let read = async {
            let result = self.client.store.get(&path).await?;
            result.bytes().await
        };
        match self.client.runtime.block_on(read) {
            Ok(bytes) => Ok(Some(Vec::from(bytes))),
            Err(e) if no_such_object(&e) => Ok(None),
            Err(e) => Err(self.client.error("read", key, e)),
        }
    }

    fn get_range(&self, key: &str, range: Range<u64>) -> Result<Vec<u8>, StorageError> {
        self.client.get_range(key, range)
    }

    fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        self.client.size(key)
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.client.path("write", key)?;
        let payload = PutPayload::from(bytes.to_vec());
        self.client.runtime.block_on(self.client.store.put(&path, payload)).map(drop).map_err(|e| self.client.error("write", key, e))
    }

    fn put_if_absent(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        let path = self.client.path("create", key)?;
        let payload = PutPayload::from(bytes.to_vec());
        // On S3 this is a PUT with `If-None-Match: *`, which the server refuses (412) when the
        // object exists: atomic against another writer doing the same.
        match self.client.runtime.block_on(self.client.store.put_opts(&path, payload, PutMode::Create.into())) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.client.error("create", key, e)),
        }
    }

    /// On S3 a PUT with `If-Match: ETAG` (or `If-None-Match: *` to create), which the server
    /// refuses (412) when the object changed: atomic against any other write of it.
    fn put_if(&self, key: &str, bytes: &[u8], expected: Option<&Version>) -> Result<Conditional, StorageError> {
        let path = self.client.path("write", key)?;
        let payload = PutPayload::from(bytes.to_vec());
        let mode = match expected {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion { e_tag: v.e_tag.clone(), version: v.version.clone() }),
        };
        match self.client.runtime.block_on(self.client.store.put_opts(&path, payload, mode.into())) {
            Ok(result) => Ok(Conditional::Written(version_of(result))),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(Conditional::Conflict),
            // An update of an object that is gone (S3 answers 404; object_store makes most of them
            // a precondition failure).
            Err(e) if expected.is_some() && no_such_object(&e) => Ok(Conditional::Conflict),
            Err(object_store::Error::NotImplemented { .. }) => Ok(Conditional::Unsupported),
            Err(e) => Err(self.client.error("write", key, e)),
        }
    }

    fn put_versioned(&self, key: &str, bytes: &[u8]) -> Result<Version, StorageError> {
        let path = self.client.path("write", key)?;
        let payload = PutPayload::from(bytes.to_vec());
        self.client.runtime.block_on(self.client.store.put(&path, payload)).map(version_of).map_err(|e| self.client.error("write", key, e))
    }

    fn get_versioned(&self, key: &str) -> Result<Option<(Vec<u8>, Version)>, StorageError> {
        let path = self.client.path("read", key)?;
        let read = async {
            let result = self.client.store.get(&path).await?;
            let version = Version { e_tag: result.meta.e_tag.clone(), version: result.meta.version.clone() };
            Ok::<_, object_store::Error>((result.bytes().await?, version))
        };
        match self.client.runtime.block_on(read) {
            Ok((bytes, version)) => Ok(Some((Vec::from(bytes), version))),
            Err(e) if no_such_object(&e) => Ok(None),
            Err(e) => Err(self.client.error("read", key, e)),
        }
    }

    fn version(&self, key: &str) -> Result<Option<Version>, StorageError> {
        let path = self.client.path("read", key)?;
        match self.client.runtime.block_on(self.client.store.head(&path)) {
            Ok(meta) => Ok(Some(Version { e_tag: meta.e_tag, version: meta.version })),
            Err(e) if no_such_object(&e) => Ok(None),
            Err(e) => Err(self.client.error("read", key, e)),
        }
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.client.path("delete", key)?;
        match self.client.runtime.block_on(self.client.store.delete(&path)) {
            Ok(()) => Ok(()),
            Err(e) if no_such_object(&e) => Ok(()),
            Err(e) => Err(self.client.error("delete", key, e)),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let folder = prefix.trim_end_matches('/');
        let under = if folder.is_empty() { self.client.prefix.clone() } else { self.client.path("list", folder)? };
        let listing = self.client.store.list((!under.as_ref().is_empty()).then_some(&under));
        match self.client.runtime.block_on(listing.try_collect::<Vec<_>>()) {
            Ok(objects) => Ok(objects.iter().filter_map(|meta| self.client.key_of(&meta.location)).collect()),
            Err(e) if no_such_object(&e) => Ok(Vec::new()),
            Err(e) => Err(self.client.error("list", prefix, e)),
        }
    }

    /// One listing, which gives every object's size: no request per object.
    fn total_size(&self) -> Result<u64, StorageError> {
        let listing = self.client.store.list((!self.client.prefix.as_ref().is_empty()).then_some(&self.client.prefix));
        match self.client.runtime.block_on(listing.try_collect::<Vec<_>>()) {
            Ok(objects) => Ok(objects.iter().map(|meta| meta.size).sum()),
            Err(e) if no_such_object(&e) => Ok(0),
            Err(e) => Err(self.client.error("list", "", e)),
        }
    }
}

/// The version a put gave its object.
fn version_of(result: PutResult) -> Version {
    Version { e_tag: result.e_tag, version: result.version }
}

/// `url` less trailing slashes, but keeping the `//` after its scheme (`memory:///` →
/// `memory://`), so that `{url}/{key}` names an object.
fn display_url(url: &str) -> String {
    let trimmed = url.trim_end_matches('/');
    if trimmed.ends_with(':') {
        format!("{trimmed}//")
    } else {
        trimmed.to_string()
    }
}

/// What the servers say when a bucket or container does not exist.
const NO_CONTAINER: [&str; 3] = ["NoSuchBucket", "ContainerNotFound", "bucket does not exist"];

/// "the bucket `b` does not exist at ENDPOINT", for the store `url`.
fn missing_container(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let name = rest.split('/').next().unwrap_or(rest);
    let (noun, variables): (&str, &[&str]) = match scheme {
        "s3" | "s3a" => ("bucket", &["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
        "gs" => ("bucket", &["GOOGLE_SERVICE_ENDPOINT"]),
        _ => ("container", &["AZURE_STORAGE_ENDPOINT"]),
    };
    let endpoint = variables.iter().find_map(|v| std::env::var(v).ok().filter(|e| !e.is_empty()));
    let at = endpoint.map_or_else(|| "at the provider's default endpoint".to_string(), |e| format!("at {e}"));
    format!("the {noun} `{name}` does not exist {at} (check its name, and the endpoint and region the environment gives)")
}

/// Whether `error` says that the object does not exist, and not that its bucket or container
/// does not: the servers answer both with 404, and a mistyped bucket must not read as an empty
/// store. (A HEAD answer has no body to tell them apart.)
fn no_such_object(error: &object_store::Error) -> bool {
    matches!(error, object_store::Error::NotFound { .. }) && {
        let text = error.to_string();
        !NO_CONTAINER.iter().any(|marker| text.contains(marker))
    }
}

/// The message for a URL that `object_store` does not take.
fn unsupported(reason: &str) -> String {
    format!("{reason}; a store URL is s3://BUCKET/PATH, gs://BUCKET/PATH, az://CONTAINER/PATH, file:///PATH or memory:///PATH")
}

/// The client for a URL of `scheme`, configured from the environment.
fn open_store(scheme: &ObjectStoreScheme, url: &str) -> Result<Arc<dyn ObjectStore>, BoxError> {
    Ok(match scheme {
        ObjectStoreScheme::Local => Arc::new(LocalFileSystem::new()),
        ObjectStoreScheme::Memory => Arc::new(InMemory::new()),
        ObjectStoreScheme::AmazonS3 => Arc::new(s3_builder(AmazonS3Builder::from_env(), url)?.build()?),
        ObjectStoreScheme::GoogleCloudStorage => Arc::new(gcs_builder(GoogleCloudStorageBuilder::from_env(), url)?.build()?),
        ObjectStoreScheme::MicrosoftAzure => Arc::new(azure_builder(MicrosoftAzureBuilder::from_env(), url)?.build()?),
        other => return Err(unsupported(&format!("{other:?} URLs are not supported")).into()),
    })
}

/// The timeouts of [`TIMEOUTS`] that no `{env_prefix}NAME` variable overrides.
fn default_timeouts(env_prefix: &str) -> impl Iterator<Item = (ClientConfigKey, &'static str)> + '_ {
    TIMEOUTS
        .into_iter()
        .filter(move |(_, name, _)| std::env::var_os(format!("{env_prefix}{name}")).is_none())
        .map(|(key, _, value)| (key, value))
}

/// Whether any of `values` is set to something other than `false`: a credential, or a switch
/// that tells the client where its credentials come from.
fn any_set(values: impl IntoIterator<Item = Option<String>>) -> bool {
    values.into_iter().flatten().any(|value| !value.is_empty() && !value.eq_ignore_ascii_case("false"))
}

fn missing_credentials(how: &str) -> BoxError {
    format!("no credentials are configured: {how}").into()
}

/// `builder` (from the environment) for `url`, with bounded timeouts and retries.
///
/// # Errors
/// No credentials are configured (the client would ask the instance metadata server, which
/// only answers on an EC2 machine; set `AWS_METADATA_ENDPOINT` to use it there).
fn s3_builder(builder: AmazonS3Builder, url: &str) -> Result<AmazonS3Builder, BoxError> {
    use AmazonS3ConfigKey as Key;
    let credentials = [
        Key::AccessKeyId,
        Key::WebIdentityTokenFile,
        Key::ContainerCredentialsRelativeUri,
        Key::ContainerCredentialsFullUri,
        Key::SkipSignature,
        Key::MetadataEndpoint,
    ];
    if !any_set(credentials.iter().map(|key| builder.get_config_value(key))) {
        let how = "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN for temporary ones), \
                   AWS_SKIP_SIGNATURE=true for a public bucket, or AWS_METADATA_ENDPOINT for an instance role";
        return Err(missing_credentials(how));
    }
    let endpoint = builder.get_config_value(&Key::Endpoint).unwrap_or_default();
    if endpoint.starts_with("http://") && !any_set([builder.get_config_value(&Key::Client(ClientConfigKey::AllowHttp))]) {
        return Err(format!("the endpoint `{endpoint}` is plain HTTP: set AWS_ALLOW_HTTP=true to use it").into());
    }
    let builder = default_timeouts("AWS_").fold(builder, |b, (key, value)| b.with_config(Key::Client(key), value));
    Ok(builder.with_url(url).with_retry(RETRY))
}

/// `builder` (from the environment) for `url`, with bounded timeouts and retries.
///
/// # Errors
/// No credentials are configured (neither in the environment nor gcloud's application default
/// credentials file).
fn gcs_builder(builder: GoogleCloudStorageBuilder, url: &str) -> Result<GoogleCloudStorageBuilder, BoxError> {
    use GoogleConfigKey as Key;
    let credentials = [Key::ServiceAccount, Key::ServiceAccountKey, Key::ApplicationCredentials, Key::BearerToken, Key::SkipSignature];
    let gcloud_file = std::env::var_os("HOME")
        .map(|home| std::path::Path::new(&home).join(".config/gcloud/application_default_credentials.json"))
        .is_some_and(|file| file.is_file());
    if !gcloud_file && !any_set(credentials.iter().map(|key| builder.get_config_value(key))) {
        let how = "set GOOGLE_APPLICATION_CREDENTIALS or GOOGLE_SERVICE_ACCOUNT to a service account key file, \
                   run `gcloud auth application-default login`, or set GOOGLE_SKIP_SIGNATURE=true for a public bucket";
        return Err(missing_credentials(how));
    }
    let builder = default_timeouts("GOOGLE_").fold(builder, |b, (key, value)| b.with_config(Key::Client(key), value));
    Ok(builder.with_url(url).with_retry(RETRY))
}

/// `builder` (from the environment) for `url`, with bounded timeouts and retries.
///
/// # Errors
/// No credentials are configured (the client would ask the instance metadata server, which
/// only answers on an Azure machine; set `AZURE_MSI_ENDPOINT` to use it there).
fn azure_builder(builder: MicrosoftAzureBuilder, url: &str) -> Result<MicrosoftAzureBuilder, BoxError> {
    use AzureConfigKey as Key;
    let credentials = [
        Key::AccessKey,
        Key::SasKey,
        Key::Token,
        Key::ClientSecret,
        Key::FederatedTokenFile,
        Key::UseAzureCli,
        Key::UseEmulator,
        Key::SkipSignature,
        Key::MsiEndpoint,
        Key::CredentialType,
    ];
    if !any_set(credentials.iter().map(|key| builder.get_config_value(key))) {
        let how = "set AZURE_STORAGE_ACCOUNT_NAME with AZURE_STORAGE_ACCOUNT_KEY or AZURE_STORAGE_SAS_KEY, \
                   AZURE_USE_AZURE_CLI=true, AZURE_STORAGE_USE_EMULATOR=true, or AZURE_MSI_ENDPOINT for a managed identity";
        return Err(missing_credentials(how));
    }
    let builder = default_timeouts("AZURE_").fold(builder, |b, (key, value)| b.with_config(Key::Client(key), value));
    Ok(builder.with_url(url).with_retry(RETRY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sorted(mut keys: Vec<String>) -> Vec<String> {
        keys.sort();
        keys
    }

    /// What the store layer relies on, on any backend.
    fn conforms(storage: &ObjectStorage) {
        storage.put("catalog/3", b"one").unwrap();
        storage.put("catalog/3", b"two!").unwrap();
        storage.put(".zmetadata", b"{}").unwrap();
        storage.put(".ztf2zarr/candids/000001", b"12345678").unwrap();
        storage.flush().unwrap();
        assert_eq!(storage.get("catalog/3").unwrap().as_deref(), Some(&b"two!"[..]));
        assert_eq!(storage.get("catalog/4").unwrap(), None);
        assert_eq!(storage.size("catalog/3").unwrap(), Some(4));
        assert_eq!(storage.size("catalog/4").unwrap(), None);
        assert_eq!(storage.get_range("catalog/3", 1..3).unwrap(), b"wo");
        assert_eq!(storage.get_range("catalog/3", 2..100).unwrap(), b"o!", "a range past the end is cut short");
        assert!(storage.get_range("catalog/3", 4..8).unwrap().is_empty(), "a range at the end holds no bytes");
        assert!(storage.get_range("catalog/4", 0..8).is_err(), "a range of no object is an error");

        assert!(storage.put_if_absent(".ztf2zarr/lock", b"pid 1").unwrap());
        assert!(!storage.put_if_absent(".ztf2zarr/lock", b"pid 2").unwrap());
        assert_eq!(storage.get(".ztf2zarr/lock").unwrap().as_deref(), Some(&b"pid 1"[..]), "the second create left it alone");

        assert_eq!(
            sorted(storage.list("").unwrap()),
            [".zmetadata", ".ztf2zarr/candids/000001", ".ztf2zarr/lock", "catalog/3"],
            "keys are relative to the store's root"
        );
        assert_eq!(sorted(storage.list(".ztf2zarr/").unwrap()), [".ztf2zarr/candids/000001", ".ztf2zarr/lock"]);
        assert!(storage.list("rejects/").unwrap().is_empty());

        storage.delete(".ztf2zarr/lock").unwrap();
        storage.delete(".ztf2zarr/lock").unwrap();
        assert_eq!(storage.get(".ztf2zarr/lock").unwrap(), None);
        assert!(storage.put_if_absent(".ztf2zarr/lock", b"pid 3").unwrap(), "a deleted lock can be taken again");
    }

    #[test]
    fn memory_store_conforms() {
        let storage = ObjectStorage::from_url("memory:///deep/store.zarr").unwrap();
        assert_eq!(storage.location(), "memory:///deep/store.zarr");
        assert_eq!(storage.object_location("catalog/3"), "memory:///deep/store.zarr/catalog/3");
        assert!(storage.local_root().is_none());
        conforms(&storage);
    }

    #[test]
    fn file_store_conforms_and_keeps_keys_under_its_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("s.zarr");
        let storage = ObjectStorage::from_url(&format!("file://{}/", root.display())).unwrap();
        std::fs::write(dir.path().join("beside"), b"not in the store").unwrap();
        conforms(&storage);
        assert_eq!(std::fs::read(root.join("catalog/3")).unwrap(), b"two!");
        assert!(root.join(".ztf2zarr/candids/000001").is_file());
    }

    #[test]
    fn a_conditional_put_writes_only_over_the_version_it_expects() {
        let storage = ObjectStorage::from_url("memory:///s.zarr").unwrap();
        let Conditional::Written(first) = storage.put_if(".zmetadata", b"1", None).unwrap() else { panic!("created") };
        assert_eq!(storage.put_if(".zmetadata", b"2", None).unwrap(), Conditional::Conflict, "a create over an object");
        assert_eq!(storage.version(".zmetadata").unwrap().as_ref(), Some(&first));
        let Conditional::Written(second) = storage.put_if(".zmetadata", b"2", Some(&first)).unwrap() else { panic!("updated") };
        assert_eq!(storage.put_if(".zmetadata", b"3", Some(&first)).unwrap(), Conditional::Conflict, "an update of a stale version");
        assert_eq!(storage.get_versioned(".zmetadata").unwrap(), Some((b"2".to_vec(), second.clone())));
        storage.delete(".zmetadata").unwrap();
        assert_eq!(storage.put_if(".zmetadata", b"4", Some(&second)).unwrap(), Conditional::Conflict, "an update of a deleted object");
        assert_eq!(storage.get(".zmetadata").unwrap(), None);
        assert_eq!(storage.put_versioned("x", b"5").unwrap(), storage.version("x").unwrap().unwrap());
    }

    #[test]
    fn a_file_url_cannot_update_conditionally() {
        let dir = tempfile::tempdir().unwrap();
        let storage = ObjectStorage::from_url(&format!("file://{}/s.zarr", dir.path().display())).unwrap();
        let Conditional::Written(version) = storage.put_if("x", b"1", None).unwrap() else { panic!("created") };
        assert_eq!(storage.put_if("x", b"2", Some(&version)).unwrap(), Conditional::Unsupported);
        assert_eq!(storage.get("x").unwrap().as_deref(), Some(&b"1"[..]));
    }

    #[test]
    fn a_store_at_the_root_lists_every_key() {
        let storage = ObjectStorage::from_url("memory://").unwrap();
        storage.put("stamps/0.0.0.0", b"x").unwrap();
        assert_eq!(storage.list("").unwrap(), ["stamps/0.0.0.0"]);
        assert_eq!(storage.list("stamps").unwrap(), ["stamps/0.0.0.0"]);
    }

    #[test]
    fn object_locations_are_urls() {
        assert_eq!(display_url("s3://bucket/prefix/s.zarr/"), "s3://bucket/prefix/s.zarr");
        assert_eq!(display_url("s3://bucket"), "s3://bucket");
        let root = ObjectStorage::from_url("memory:///").unwrap();
        assert_eq!(root.location(), "memory://");
        assert_eq!(root.object_location(".zmetadata"), "memory:///.zmetadata");
    }

    #[test]
    fn a_sibling_with_a_longer_name_is_not_listed() {
        let store = Arc::new(InMemory::new());
        let storage = ObjectStorage::with_store("memory:///a", store.clone(), Path::from("a")).unwrap();
        let sibling = ObjectStorage::with_store("memory:///ab", store, Path::from("ab")).unwrap();
        sibling.put("rejects/000001.jsonl", b"{}").unwrap();
        storage.put("rejects/000002.jsonl", b"{}").unwrap();
        assert_eq!(storage.list("").unwrap(), ["rejects/000002.jsonl"]);
        assert_eq!(storage.list("rejects/").unwrap(), ["rejects/000002.jsonl"]);
    }

    #[test]
    fn is_url_takes_object_store_urls_only() {
        for url in
            ["s3://bucket/prefix/store.zarr", "S3://bucket", "gs://b/p", "az://c/p", "abfs://c/p", "file:///tmp/s.zarr", "memory:///s"]
        {
            assert!(is_url(url), "{url}");
        }
        assert!(is_url("https://s3.eu-west-1.amazonaws.com/bucket/store.zarr"));
        for path in [
            "store.zarr",
            "/data/store.zarr",
            "C:\\stores\\s.zarr",
            "data:2024/s.zarr",
            "night:1/s3://x",
            "ftp://host/s",
            "https://example.org/s",
        ] {
            assert!(!is_url(path), "{path}");
        }
    }

    #[test]
    fn a_store_has_one_name() {
        assert_eq!(check_store_url("data/s.zarr").unwrap(), Named::Path);
        assert_eq!(check_store_url("night:1/s3://x").unwrap(), Named::Path, "a path with a colon");
        assert_eq!(check_store_url("file:///tmp/s.zarr").unwrap(), Named::File("/tmp/s.zarr".into()));
        assert_eq!(check_store_url("file:///tmp/s.zarr/").unwrap(), Named::File("/tmp/s.zarr".into()));
        assert_eq!(check_store_url("s3://b/x/y.zarr/").unwrap(), Named::Url);
        for (url, reason) in [
            ("s3://b//y.zarr", "empty path segment"),
            ("s3://b/x//y.zarr", "empty path segment"),
            ("s3://b/x/../y.zarr", "`..`"),
            ("s3://b/./y.zarr", "`..`"),
            ("s3://b/x%2Fy.zarr", "percent escape"),
            ("s3://b/y.zarr?versionId=1", "query or fragment"),
            ("s3://b/y.zarr#a", "query or fragment"),
            ("http://example.org/s.zarr", "not a URL of an object store"),
            ("ftp://host/s.zarr", "not a URL of an object store"),
            ("file://host/tmp/s.zarr", "absolute local path"),
        ] {
            let message = check_store_url(url).unwrap_err();
            assert!(message.contains(reason), "{url}: {message}");
        }
    }

    #[test]
    fn unknown_schemes_and_hosts_are_refused_with_the_url() {
        for url in ["ftp://host/store.zarr", "https://example.org/store.zarr", "s3:///no-bucket"] {
            let message = ObjectStorage::from_url(url).unwrap_err().to_string();
            assert!(message.contains(url), "{message}");
            assert!(message.contains("s3://BUCKET/PATH"), "{message}");
        }
    }

    #[test]
    fn missing_credentials_are_named_before_any_request() {
        let message = s3_builder(AmazonS3Builder::new(), "s3://bucket/s.zarr").unwrap_err().to_string();
        assert!(message.contains("AWS_ACCESS_KEY_ID"), "{message}");
        let message = azure_builder(MicrosoftAzureBuilder::new(), "az://c/s.zarr").unwrap_err().to_string();
        assert!(message.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{message}");
        assert!(s3_builder(AmazonS3Builder::new().with_access_key_id("k").with_secret_access_key("s"), "s3://b/s").is_ok());
        assert!(s3_builder(AmazonS3Builder::new().with_skip_signature(true), "s3://b/s").is_ok());
        assert!(s3_builder(AmazonS3Builder::new().with_skip_signature(false), "s3://b/s").is_err());
    }

    #[test]
    fn a_plain_http_endpoint_needs_allow_http() {
        let keys = || AmazonS3Builder::new().with_access_key_id("k").with_secret_access_key("s").with_endpoint("http://127.0.0.1:9000");
        let message = s3_builder(keys(), "s3://b/s").unwrap_err().to_string();
        assert!(message.contains("http://127.0.0.1:9000") && message.contains("AWS_ALLOW_HTTP=true"), "{message}");
        assert!(s3_builder(keys().with_allow_http(true), "s3://b/s").is_ok());
    }

    #[test]
    fn a_dead_server_fails_soon_naming_the_object() {
        // Nothing listens on a port just freed; connecting there is refused at once, and every
        // retry too.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let builder = AmazonS3Builder::new()
            .with_access_key_id("key")
            .with_secret_access_key("secret")
            .with_endpoint(format!("http://127.0.0.1:{port}"))
            .with_allow_http(true);
        let url = "s3://bucket/prefix/s.zarr";
        let store = Arc::new(s3_builder(builder, url).unwrap().build().unwrap());
        let storage = ObjectStorage::with_store(url, store, Path::from("prefix/s.zarr")).unwrap();
        let started = std::time::Instant::now();
        let message = storage.get(".zmetadata").unwrap_err().to_string();
        assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
        assert!(message.starts_with("cannot read `s3://bucket/prefix/s.zarr/.zmetadata`"), "{message}");
    }
}
