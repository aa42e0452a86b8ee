//! Finding MNIST for a command, and downloading it with progress bars.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use mnist_nn::data::download::{download_mnist, DownloadEvent, MIRRORS};
use mnist_nn::data::{load_raw, locate, RawMnist};

use super::train::progress_bar;

/// Finds MNIST (downloading it into the cache when it is nowhere and no folder was named) and
/// reads it as stored. Returns the data and the folder it came from.
pub fn load_raw_mnist(data_dir: Option<&Path>) -> Result<(RawMnist, PathBuf)> {
    let env_dir = std::env::var_os("MNIST_DIR").map(PathBuf::from);
    let candidates = locate::candidates(data_dir, env_dir.as_deref());
    let dir = match locate::find(&candidates) {
        Some(found) => found.dir.clone(),
        None if data_dir.is_some() => bail!(locate::not_found_message(&candidates, None)),
        None => {
            let cache = locate::cache_dir()
                .with_context(|| locate::not_found_message(&candidates, Some("no cache folder")))?;
            eprintln!(
                "MNIST not found locally: downloading it into {}",
                cache.display()
            );
            if let Err(error) = fetch_with_progress(&cache, &mirrors(Vec::new())) {
                bail!(locate::not_found_message(
                    &candidates,
                    Some(&format!("{error:#}"))
                ));
            }
            cache
        }
    };
    let raw = load_raw(&dir).with_context(|| format!("reading MNIST from {}", dir.display()))?;
    Ok((raw, dir))
}

/// The base URLs to download from: those given with `--mirror`, else `$MNIST_NN_MIRROR`, else the
/// built-in mirrors.
pub fn mirrors(given: Vec<String>) -> Vec<String> {
    if !given.is_empty() {
        return given;
    }
    match std::env::var("MNIST_NN_MIRROR") {
        Ok(mirror) if !mirror.is_empty() => vec![mirror],
        _ => MIRRORS.iter().map(|m| m.to_string()).collect(),
    }
}

/// Downloads MNIST into `dir`, with a progress bar per file.
pub fn fetch_with_progress(dir: &Path, mirrors: &[String]) -> Result<()> {
    let mut bar = None;
    download_mnist(dir, mirrors, &mut |event| match event {
        DownloadEvent::AlreadyPresent(file) => println!("{file}: already present and verified"),
        DownloadEvent::Started { file, url, total } => {
            let new_bar = progress_bar(
                total.unwrap_or(0),
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
            );
            new_bar.set_message(file);
            new_bar.suspend(|| println!("fetching {url}"));
            bar = Some(new_bar);
        }
        DownloadEvent::Received(bytes) => {
            if let Some(bar) = &bar {
                bar.inc(bytes);
            }
        }
        DownloadEvent::Saved(file) => {
            if let Some(bar) = bar.take() {
                bar.finish_and_clear();
            }
            println!("{file}: verified and saved");
        }
    })
    .with_context(|| format!("downloading MNIST into {}", dir.display()))
}
