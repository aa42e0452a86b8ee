//! Downloading the four IDX files of a data set, verified, and saved only when they are right.
//!
//! Each file is fetched whole into memory (the largest is 30 MB compressed) and its SHA-256
//! compared with the set's checksum (of the decompressed content, or of the `.gz` file where only
//! that is published, [`Checksum`]); only then is it written, atomically. A file already present
//! and right is not fetched again.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::decompress_if_gzip;
use super::locate::IDX_NAMES;
use super::sets::{Checksum, DataSet};
use super::DataError;
use crate::atomic::write_atomically;

/// What a download reports as it goes, for a progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownloadEvent {
    /// A file is already present and verified: nothing to fetch.
    AlreadyPresent(String),
    /// Fetching `file` from `url` has started; `total` bytes if the server said.
    Started {
        /// File name.
        file: String,
        /// Where from.
        url: String,
        /// Size announced by the server.
        total: Option<u64>,
    },
    /// This many more bytes arrived.
    Received(u64),
    /// The file was verified and saved.
    Saved(String),
}

/// Downloads any of the four files of `set` that `dir` lacks (creating `dir` if needed), trying
/// each base URL of `mirrors` in turn, verifying every file against the set's checksums.
pub fn download(
    set: DataSet,
    dir: &Path,
    mirrors: &[String],
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<(), DataError> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into();
    for (name, checksum) in IDX_NAMES.iter().zip(set.checksums()) {
        let file = format!("{name}.gz");
        let path = dir.join(&file);
        let present = std::fs::read(&path).is_ok_and(|bytes| {
            verify_file(&bytes, checksum, &file, &path.display().to_string()).is_ok()
        });
        if present {
            on_event(DownloadEvent::AlreadyPresent(file));
            continue;
        }
        let mut failures = Vec::new();
        let mut saved = false;
        for mirror in mirrors {
            let url = format!("{}/{file}", mirror.trim_end_matches('/'));
            match fetch(&agent, &url, &file, on_event) {
                Ok(bytes) => {
                    // A mirror that serves wrong bytes is an error, not a reason to try another.
                    verify_file(&bytes, checksum, &file, &url)?;
                    write_atomically(&path, &bytes).map_err(|e| DataError::io(&path, e))?;
                    on_event(DownloadEvent::Saved(file.clone()));
                    saved = true;
                    break;
                }
                Err(DataError::Download { url, message }) => {
                    failures.push(format!("{url}: {message}"))
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        if !saved {
            return Err(DataError::Download {
                url: format!("{file} (every mirror)"),
                message: failures.join("; "),
            });
        }
    }
    Ok(())
}

/// Checks the bytes of `file` (a `.gz` file as served, or its content if stored plain; `origin`,
/// its path or URL, names it in errors) against `checksum`.
pub fn verify_file(
    bytes: &[u8],
    checksum: Checksum,
    file: &str,
    origin: &str,
) -> Result<(), DataError> {
    let (digest, expected, what) = match checksum {
        Checksum::Content(expected) => (
            Sha256::digest(decompress_if_gzip(bytes.to_vec(), origin)?),
            expected,
            "the decompressed content",
        ),
        Checksum::Compressed(expected) => (Sha256::digest(bytes), expected, "the compressed file"),
    };
    let actual: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    if actual == expected {
        Ok(())
    } else {
        Err(DataError::Checksum {
            file: file.to_string(),
            what,
            expected: expected.to_string(),
            actual,
        })
    }
}

fn fetch(
    agent: &ureq::Agent,
    url: &str,
    file: &str,
    on_event: &mut dyn FnMut(DownloadEvent),
) -> Result<Vec<u8>, DataError> {
    let failed = |message: String| DataError::Download {
        url: url.to_string(),
        message,
    };
    let mut response = agent.get(url).call().map_err(|e| failed(e.to_string()))?;
    let total = response.body().content_length();
    on_event(DownloadEvent::Started {
        file: file.to_string(),
        url: url.to_string(),
        total,
    });
    let mut reader = response.body_mut().as_reader();
    let mut bytes = Vec::with_capacity(total.unwrap_or(0) as usize);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = reader.read(&mut chunk).map_err(|e| failed(e.to_string()))?;
        if read == 0 {
            break;
        }
        bytes.extend_from_slice(&chunk[..read]);
        on_event(DownloadEvent::Received(read as u64));
    }
    Ok(bytes)
}
