//! Stores on object storage (placeholder until the object_store backend lands).

use super::{Storage, StorageError};

/// Whether `text` names an object store.
#[must_use]
pub fn is_url(text: &str) -> bool {
    ["s3://", "gs://", "az://", "abfs://", "file://", "memory://"].iter().any(|s| text.starts_with(s))
}

/// A store on object storage.
#[derive(Debug)]
pub struct ObjectStorage;

impl ObjectStorage {
    /// # Errors
    /// Always, for now.
    pub fn from_url(url: &str) -> Result<ObjectStorage, StorageError> {
        Err(StorageError::new("open", url, "object storage is not built in"))
    }
}

impl Storage for ObjectStorage {
    fn location(&self) -> String {
        String::new()
    }
    fn get(&self, _: &str) -> Result<Option<Vec<u8>>, StorageError> {
        unreachable!()
    }
    fn get_range(&self, _: &str, _: std::ops::Range<u64>) -> Result<Vec<u8>, StorageError> {
        unreachable!()
    }
    fn size(&self, _: &str) -> Result<Option<u64>, StorageError> {
        unreachable!()
    }
    fn put(&self, _: &str, _: &[u8]) -> Result<(), StorageError> {
        unreachable!()
    }
    fn put_if_absent(&self, _: &str, _: &[u8]) -> Result<bool, StorageError> {
        unreachable!()
    }
    fn delete(&self, _: &str) -> Result<(), StorageError> {
        unreachable!()
    }
    fn list(&self, _: &str) -> Result<Vec<String>, StorageError> {
        unreachable!()
    }
}
