//! The IDX format of the MNIST files, plain or gzip-compressed.
//!
//! ```text
//! bytes 0-1   0x00 0x00
//! byte  2     element type: 0x08 = unsigned byte (the only one MNIST uses)
//! byte  3     number of dimensions d (3 for images, 1 for labels)
//! then        d sizes, each a big-endian u32 (60000, 28, 28 for the training images)
//! then        the elements, last dimension fastest
//! ```

use std::io::Read;
use std::path::Path;

use flate2::read::GzDecoder;

use super::{DataError, IMAGE_PIXELS, IMAGE_SIDE};

/// Magic number of an IDX file of unsigned bytes with 3 dimensions (images).
pub const IMAGES_MAGIC: u32 = 0x0803;
/// Magic number of an IDX file of unsigned bytes with 1 dimension (labels).
pub const LABELS_MAGIC: u32 = 0x0801;

/// The contents of an IDX file of unsigned bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idx {
    /// The size of each dimension.
    pub dims: Vec<usize>,
    /// The elements, last dimension fastest; `data.len()` is the product of `dims`.
    pub data: Vec<u8>,
}

/// Parses IDX bytes (already decompressed). `what` names the source in error messages.
pub fn parse_idx(bytes: &[u8], what: &str) -> Result<Idx, DataError> {
    let bad = |message: String| DataError::Format {
        file: what.to_string(),
        message,
    };
    if bytes.len() < 4 {
        return Err(bad(format!(
            "{} bytes is too short for an IDX header",
            bytes.len()
        )));
    }
    if bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad(format!(
            "not an IDX file (magic number starts {:#04x} {:#04x}, expected 0x00 0x00)",
            bytes[0], bytes[1]
        )));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!(
            "IDX element type {:#04x} is not supported (MNIST uses 0x08, unsigned bytes)",
            bytes[2]
        )));
    }
    let ndims = bytes[3] as usize;
    let header_len = 4 + 4 * ndims;
    if bytes.len() < header_len {
        return Err(bad(format!(
            "header announces {ndims} dimensions but the file ends after {} bytes",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header_len]
        .chunks_exact(4)
        .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
        .collect();
    let expected = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| bad(format!("dimensions {dims:?} are too large")))?;
    let data = &bytes[header_len..];
    if data.len() != expected {
        return Err(bad(format!(
            "header says {dims:?} = {expected} bytes of data, but the file holds {}",
            data.len()
        )));
    }
    Ok(Idx {
        dims,
        data: data.to_vec(),
    })
}

/// Reads a whole file, decompressing it if it is gzip.
pub fn read_maybe_gzip(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    decompress_if_gzip(raw, &path.display().to_string())
}

/// Decompresses `bytes` if they are gzip (recognised by their first two bytes, 0x1f 0x8b,
/// whatever the file is called); returns them unchanged otherwise.
pub fn decompress_if_gzip(bytes: Vec<u8>, what: &str) -> Result<Vec<u8>, DataError> {
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        return Ok(bytes);
    }
    let mut out = Vec::with_capacity(bytes.len() * 4);
    GzDecoder::new(&bytes[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::Format {
            file: what.to_string(),
            message: format!("corrupt or truncated gzip data ({e})"),
        })?;
    Ok(out)
}

/// Reads an images file: `(count, pixels)` with 784 pixels per image, row by row.
pub fn read_images(path: &Path) -> Result<(usize, Vec<u8>), DataError> {
    let what = path.display().to_string();
    let idx = parse_idx(&read_maybe_gzip(path)?, &what)?;
    images_from_idx(idx, &what)
}

/// Reads a labels file: one byte per image, each 0-9.
pub fn read_labels(path: &Path) -> Result<Vec<u8>, DataError> {
    let what = path.display().to_string();
    let idx = parse_idx(&read_maybe_gzip(path)?, &what)?;
    labels_from_idx(idx, &what)
}

/// Checks that an IDX file holds 28x28 images and returns `(count, pixels)`.
pub fn images_from_idx(idx: Idx, what: &str) -> Result<(usize, Vec<u8>), DataError> {
    match idx.dims[..] {
        [count, IMAGE_SIDE, IMAGE_SIDE] => {
            debug_assert_eq!(idx.data.len(), count * IMAGE_PIXELS);
            Ok((count, idx.data))
        }
        _ => Err(DataError::Format {
            file: what.to_string(),
            message: format!(
                "expected images of shape (count, 28, 28), found dimensions {:?}",
                idx.dims
            ),
        }),
    }
}

/// Checks that an IDX file holds one label 0-9 per entry.
pub fn labels_from_idx(idx: Idx, what: &str) -> Result<Vec<u8>, DataError> {
    if idx.dims.len() != 1 {
        return Err(DataError::Format {
            file: what.to_string(),
            message: format!(
                "expected a 1-dimensional label file, found dimensions {:?}",
                idx.dims
            ),
        });
    }
    if let Some(position) = idx.data.iter().position(|&l| l > 9) {
        return Err(DataError::Format {
            file: what.to_string(),
            message: format!(
                "label {} at position {position} is not a digit 0-9",
                idx.data[position]
            ),
        });
    }
    Ok(idx.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            bytes.extend_from_slice(&d.to_be_bytes());
        }
        bytes.extend_from_slice(data);
        bytes
    }

    #[test]
    fn parses_a_well_formed_file() {
        let idx = parse_idx(&idx_bytes(&[2, 3], &[1, 2, 3, 4, 5, 6]), "t").unwrap();
        assert_eq!(idx.dims, vec![2, 3]);
        assert_eq!(idx.data, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn refuses_bad_magic_type_and_lengths() {
        let message = |bytes: &[u8]| parse_idx(bytes, "f").unwrap_err().to_string();
        assert!(message(&[0, 0]).contains("too short"));
        assert!(message(b"PK\x03\x04rest").contains("not an IDX file"));
        assert!(message(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0]).contains("element type"));
        assert!(message(&[0, 0, 8, 3, 0, 0]).contains("announces 3 dimensions"));
        assert!(message(&idx_bytes(&[2, 3], &[1, 2, 3])).contains("holds 3"));
        assert!(message(&idx_bytes(&[2, 3], &[0; 7])).contains("holds 7"));
        assert!(message(&idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[])).contains("too large"));
    }

    #[test]
    fn checks_image_shape_and_label_range() {
        let images = parse_idx(&idx_bytes(&[1, 28, 27], &[0; 28 * 27]), "i").unwrap();
        assert!(images_from_idx(images, "i")
            .unwrap_err()
            .to_string()
            .contains("28, 28"));
        let labels = parse_idx(&idx_bytes(&[3], &[1, 10, 2]), "l").unwrap();
        let err = labels_from_idx(labels, "l").unwrap_err().to_string();
        assert!(err.contains("label 10 at position 1"), "{err}");
    }
}
