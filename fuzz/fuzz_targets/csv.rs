//! The CSV reader, on any text: it must return an error, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_nn::data::csv::parse_csv;

fuzz_target!(|bytes: &[u8]| {
    let _ = parse_csv(&String::from_utf8_lossy(bytes), "fuzz");
});
