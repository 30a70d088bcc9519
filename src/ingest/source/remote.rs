//! Inputs on object storage (`build s3://bucket/ztf_public_20200202.tar.gz`): an object read
//! as a byte stream in ranged requests, so that an archive of gigabytes is streamed like a local
//! file, never held whole. It reads through an `ObjectClient` of its own — the lower-level client
//! the store's `ObjectStorage` is built on too, so both are configured alike (credentials,
//! timeouts) — not through a store: an input is not a store.

use std::io::{Read, Seek, SeekFrom};

use crate::store::object::ObjectClient;
use crate::store::StorageError;

/// Bytes fetched per request: large enough that request latency is small against inflate time,
/// small enough that the reader thread's memory stays bounded.
const PIECE: u64 = 8 << 20;

/// One object opened for reading: the client of its folder, its key, and its size.
pub(super) struct RemoteObject {
    client: ObjectClient,
    key: String,
    size: u64,
}

impl RemoteObject {
    /// Open the object named by `url` (`scheme://bucket/path/name`); `None` when there is none.
    ///
    /// # Errors
    /// The URL cannot be used, or the object cannot be examined.
    pub(super) fn open(url: &str) -> Result<Option<RemoteObject>, StorageError> {
        let (parent, key) = split(url);
        let client = ObjectClient::from_url(parent)?;
        Ok(client.size(key)?.map(|size| RemoteObject { client, key: key.to_string(), size }))
    }

    pub(super) fn size(&self) -> u64 {
        self.size
    }

    /// The whole object (for an alert file: they are small).
    ///
    /// # Errors
    /// It cannot be read.
    pub(super) fn read_all(&self) -> Result<Vec<u8>, StorageError> {
        self.client.get_range(&self.key, 0..self.size)
    }

    /// A reader of the object's bytes, in order.
    pub(super) fn reader(self) -> RemoteReader {
        RemoteReader { object: self, offset: 0, piece: Vec::new(), piece_pos: 0 }
    }
}

/// `scheme://bucket/path/name` → (`scheme://bucket/path`, `name`).
fn split(url: &str) -> (&str, &str) {
    url.rsplit_once('/').filter(|(parent, _)| !parent.ends_with(':') && !parent.ends_with("://")).unwrap_or((url, ""))
}

/// Reads an object in [`PIECE`]-sized ranged requests.
pub(super) struct RemoteReader {
    object: RemoteObject,
    offset: u64,
    piece: Vec<u8>,
    piece_pos: usize,
}

impl Read for RemoteReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.piece_pos == self.piece.len() {
            if self.offset >= self.object.size {
                return Ok(0);
            }
            let end = (self.offset + PIECE).min(self.object.size);
            self.piece = self.object.client.get_range(&self.object.key, self.offset..end).map_err(std::io::Error::other)?;
            if self.piece.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the object ended before its size"));
            }
            self.offset += self.piece.len() as u64;
            self.piece_pos = 0;
        }
        let n = buf.len().min(self.piece.len() - self.piece_pos);
        buf[..n].copy_from_slice(&self.piece[self.piece_pos..self.piece_pos + n]);
        self.piece_pos += n;
        Ok(n)
    }
}

impl crate::formats::gzip::ArchiveBytes for RemoteReader {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
        let end = offset.saturating_add(buf.len() as u64).min(self.object.size);
        if offset >= end {
            return Ok(0);
        }
        let bytes = self.object.client.get_range(&self.object.key, offset..end).map_err(std::io::Error::other)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        Ok(bytes.len())
    }
}

impl Seek for RemoteReader {
    /// Only the positions the archive reader asks for (from the start, or where it is).
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let position = self.offset - (self.piece.len() - self.piece_pos) as u64;
        let target = match to {
            SeekFrom::Start(at) => at,
            SeekFrom::Current(delta) => position.checked_add_signed(delta).ok_or_else(|| std::io::Error::other("seek before the start"))?,
            SeekFrom::End(delta) => {
                self.object.size.checked_add_signed(delta).ok_or_else(|| std::io::Error::other("seek before the start"))?
            }
        };
        if target != position {
            self.offset = target;
            self.piece.clear();
            self.piece_pos = 0;
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_url_splits_into_its_folder_and_name() {
        assert_eq!(split("s3://bucket/night.tar.gz"), ("s3://bucket", "night.tar.gz"));
        assert_eq!(split("s3://bucket/a/b/night.tar.gz"), ("s3://bucket/a/b", "night.tar.gz"));
    }

    #[test]
    fn an_object_is_read_whole_and_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let bytes: Vec<u8> = (0..(PIECE as usize * 2 + 123)).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("x.bin"), &bytes).unwrap();
        let url = format!("file://{}/x.bin", dir.path().display());
        let object = RemoteObject::open(&url).unwrap().expect("the object exists");
        assert_eq!(object.size(), bytes.len() as u64);
        assert_eq!(object.read_all().unwrap(), bytes);
        let mut reader = object.reader();
        let mut read = Vec::new();
        reader.read_to_end(&mut read).unwrap();
        assert_eq!(read, bytes);
        reader.seek(SeekFrom::Start(PIECE + 7)).unwrap();
        let mut four = [0u8; 4];
        reader.read_exact(&mut four).unwrap();
        assert_eq!(four[..], bytes[PIECE as usize + 7..PIECE as usize + 11]);
        assert!(RemoteObject::open(&format!("file://{}/none.bin", dir.path().display())).unwrap().is_none());
    }
}
