//! The model and checkpoint loader, on any bytes: it must return an error, never panic, and a
//! model it accepts must run.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mnist_nn::model::from_bytes_with;

fuzz_target!(|bytes: &[u8]| {
    if let Ok((mut model, _)) = from_bytes_with(bytes) {
        let x = ndarray::Array2::<f32>::zeros((2, 784));
        let _ = model.network.forward(x.view(), false);
    }
});
