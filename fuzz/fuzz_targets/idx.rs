//! The IDX reader, on any bytes (plain or gzip): it must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_nn::data::idx::{decompress_if_gzip, images_from_idx, labels_from_idx, parse_idx};

fuzz_target!(|bytes: &[u8]| {
    let Ok(content) = decompress_if_gzip(bytes.to_vec(), "fuzz") else { return };
    if let Ok(idx) = parse_idx(&content, "fuzz") {
        let _ = images_from_idx(idx.clone(), "fuzz");
        let _ = labels_from_idx(idx, "fuzz");
    }
});
