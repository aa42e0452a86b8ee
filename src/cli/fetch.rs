//! Finding a data set for a command, and downloading it with progress bars.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use mnist_nn::data::download::{download, DownloadEvent};
use mnist_nn::data::{load_raw, locate, DataSet, RawMnist};

use super::train::progress_bar;

/// Finds `set` (downloading it into the cache when it is nowhere and no folder was named) and
/// reads it as stored. Returns the data and the folder it came from.
pub fn load_raw_set(set: DataSet, data_dir: Option<&Path>) -> Result<(RawMnist, PathBuf)> {
    let env_dir = std::env::var_os(set.env_var()).map(PathBuf::from);
    let candidates = locate::candidates(set, data_dir, env_dir.as_deref());
    let dir = match locate::find(&candidates) {
        Some(found) => found.dir.clone(),
        None if data_dir.is_some() => bail!(locate::not_found_message(set, &candidates, None)),
        None => {
            let cache = locate::cache_dir(set).with_context(|| {
                locate::not_found_message(set, &candidates, Some("no cache folder"))
            })?;
            eprintln!(
                "{} not found locally: downloading it into {}",
                set.title(),
                cache.display()
            );
            if let Err(error) = fetch_with_progress(set, &cache, &mirrors(set, Vec::new())) {
                bail!(locate::not_found_message(
                    set,
                    &candidates,
                    Some(&format!("{error:#}"))
                ));
            }
            cache
        }
    };
    let raw = load_raw(&dir)
        .with_context(|| format!("reading {} from {}", set.title(), dir.display()))?;
    Ok((raw, dir))
}

/// The base URLs to download `set` from: those given with `--mirror`, else `$MNIST_NN_MIRROR`,
/// else the set's own mirrors.
pub fn mirrors(set: DataSet, given: Vec<String>) -> Vec<String> {
    if !given.is_empty() {
        return given;
    }
    match std::env::var("MNIST_NN_MIRROR") {
        Ok(mirror) if !mirror.is_empty() => vec![mirror],
        _ => set.mirrors().iter().map(|m| m.to_string()).collect(),
    }
}

/// Downloads `set` into `dir`, with a progress bar per file.
pub fn fetch_with_progress(set: DataSet, dir: &Path, mirrors: &[String]) -> Result<()> {
    let mut bar = None;
    download(set, dir, mirrors, &mut |event| match event {
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
    .with_context(|| format!("downloading {} into {}", set.title(), dir.display()))
}
