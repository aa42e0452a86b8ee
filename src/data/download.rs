//! Downloading the four MNIST files, verified, and saved only when they are right.
//!
//! Each file is fetched whole into memory (the largest is 9.9 MB compressed), decompressed, and its
//! SHA-256 compared with the published one; only then is it written, atomically. A file already
//! present with the right content is not fetched again.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::idx::{decompress_if_gzip, read_maybe_gzip};
use super::locate::IDX_NAMES;
use super::DataError;
use crate::atomic::write_atomically;

/// Mirrors serving the original `.gz` files, tried in order.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// SHA-256 of the *decompressed* content of each file, in [`IDX_NAMES`] order.
pub const SHA256: [&str; 4] = [
    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
];

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

/// Downloads any of the four MNIST files that `dir` lacks (creating `dir` if needed), trying each
/// base URL of `mirrors` in turn, verifying every file against [`SHA256`].
pub fn download_mnist(
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
    for (name, sha) in IDX_NAMES.iter().zip(SHA256) {
        let file = format!("{name}.gz");
        let path = dir.join(&file);
        let present =
            read_maybe_gzip(&path).is_ok_and(|content| verify(&content, sha, &file).is_ok());
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
                    verify(&decompress_if_gzip(bytes.clone(), &url)?, sha, &file)?;
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

/// Checks the SHA-256 of decompressed `content`.
pub fn verify(content: &[u8], expected: &str, file: &str) -> Result<(), DataError> {
    let actual: String = Sha256::digest(content)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if actual == expected {
        Ok(())
    } else {
        Err(DataError::Checksum {
            file: file.to_string(),
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
