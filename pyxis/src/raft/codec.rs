//! The binary encoding of everything pyxis writes to disk or sends between nodes.
//!
//! postcard with a leading format byte, so that a future format change can be
//! detected instead of misread. The public HTTP API uses JSON and does not come here.

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
}

impl From<CodecError> for std::io::Error {
    fn from(e: CodecError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// Encodes `value` with the format byte in front.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    Ok(postcard::to_extend(value, vec![FORMAT_V1])?)
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
