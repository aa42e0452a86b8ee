//! What one data-parallel training step allocates: a counting allocator around 16 steps of the
//! `minibatch` and `cnn` workloads (after 4 warm-up steps that size every buffer).
//!
//! `cargo run --release --example step_allocations`
//!
//! The images are random: only their shape matters here.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use mnist_nn::bench::Workload;
use mnist_nn::data::Dataset;
use mnist_nn::optim::Optimizer;
use mnist_nn::seeded_rng;
use ndarray::Array2;
use rand::Rng;

/// The system allocator, counting the allocations and their bytes.
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed on unchanged to the system allocator.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        System.alloc(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn main() {
    const BATCH: usize = 128;
    const STEPS: usize = 16;
    for name in ["minibatch", "cnn"] {
        let mut rng = seeded_rng(0);
        let n = (4 + STEPS) * BATCH;
        let images = Array2::from_shape_fn((n, 784), |_| rng.random::<f32>());
        let labels: Vec<u8> = (0..n).map(|_| rng.random_range(0..10)).collect();
        let data = Dataset::new(images, labels);
        let workload = Workload::find(name).expect("a bench workload");
        let mut network = workload.experiment().build(&mut rng);
        let mut optimizer = Optimizer::sgd(1e-3);
        let indices: Vec<u32> = (0..n as u32).collect();
        let mut batches = indices.chunks(BATCH);
        for batch in batches.by_ref().take(4) {
            network.train_step_on(&data, batch, &mut optimizer);
        }
        let before = (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        for batch in batches {
            network.train_step_on(&data, batch, &mut optimizer);
        }
        let after = (
            ALLOCATIONS.load(Ordering::Relaxed),
            BYTES.load(Ordering::Relaxed),
        );
        println!(
            "{name}: {} allocations, {} bytes per step",
            (after.0 - before.0) / STEPS,
            (after.1 - before.1) / STEPS
        );
    }
}
