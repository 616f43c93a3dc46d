//! The binary encoding of everything pyxis writes to disk or sends between nodes.
//!
//! postcard with a leading format byte, so that a future format change can be
//! detected instead of misread. The public HTTP API uses JSON and does not come here.

use std::io::Write as _;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Format byte written before every encoded value.
const FORMAT_V1: u8 = 1;

/// An encoding or decoding failure.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The payload starts with a format byte this build does not know.
    #[error("unknown format version {0}")]
    UnknownFormat(u8),
    /// The payload is empty.
    #[error("empty payload")]
    Empty,
    /// postcard failed.
    #[error("postcard: {0}")]
    Postcard(#[from] postcard::Error),
    /// Writing the encoding failed.
    #[error("writing: {0}")]
    Io(std::io::Error),
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        match e {
            CodecError::Io(io) => io,
            other => std::io::Error::new(std::io::ErrorKind::InvalidData, other),
        }
    }
}

/// Encodes `value` with the format byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_extend(value, vec![FORMAT_V1])?)
}

/// Encodes `value` as [`encode`] does, straight into `out`.
pub fn encode_to<W: std::io::Write, T: Serialize + ?Sized>(
    out: &mut W,
    value: &T,
) -> Result<(), CodecError> {
    let mut out = KeepError {
        inner: out,
        error: None,
    };
    let written = out
        .write_all(&[FORMAT_V1])
        .map_err(CodecError::Io)
        .and_then(|()| {
            postcard::to_io(value, &mut out)
                .map(drop)
                .map_err(CodecError::Postcard)
        });
    match (written, out.error) {
        (Ok(()), _) => Ok(()),
        // postcard reports a failed write as its own error; the I/O error says more.
        (Err(_), Some(io)) => Err(CodecError::Io(io)),
        (Err(e), None) => Err(e),
    }
}

/// A writer that remembers its last I/O error, which postcard's `to_io` would drop.
struct KeepError<'a, W> {
    inner: &'a mut W,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> std::io::Write for KeepError<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner.write(buf).map_err(|e| {
            let copy = std::io::Error::new(e.kind(), e.to_string());
            self.error = Some(e);
            copy
        })
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Decodes a value written by [`encode`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    match bytes.split_first() {
        None => Err(CodecError::Empty),
        Some((&FORMAT_V1, rest)) => Ok(postcard::from_bytes(rest)?),
        Some((&v, _)) => Err(CodecError::UnknownFormat(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_version_check() {
        let bytes = encode(&("a", 7u64)).unwrap();
        assert_eq!(bytes[0], FORMAT_V1);
        let back: (String, u64) = decode(&bytes).unwrap();
        assert_eq!(back, ("a".to_owned(), 7));
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert!(matches!(
            decode::<(String, u64)>(&bad),
            Err(CodecError::UnknownFormat(9))
        ));
        assert!(matches!(decode::<u8>(&[]), Err(CodecError::Empty)));
    }
}
