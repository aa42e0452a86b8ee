//! `mnist-nn bench`: seconds per training epoch of the workloads, beside the GEMM bound.

use std::path::PathBuf;

use anyhow::Result;
use clap::builder::PossibleValuesParser;
use clap::Args;
use serde::Serialize;

use mnist_nn::bench::{gemm_peak, time_epochs, Workload, WORKLOADS};
use mnist_nn::data::{DataSet, Mnist};
use mnist_nn::gemm;

use super::fetch::load_raw_set;
use super::train::progress_bar;

/// Side of the square product that measures the machine's peak.
const PEAK_SIZE: usize = 2048;

#[derive(Args)]
pub struct BenchArgs {
    /// Only this workload (repeatable) [default: all of them].
    #[arg(long, value_parser = PossibleValuesParser::new(WORKLOADS.map(|w| w.name)))]
    workload: Vec<String>,
    /// Timed epochs per workload, after one warm-up epoch; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = crate::positive)]
    epochs: usize,
    /// Print one JSON object keyed by workload name instead of a table.
    #[arg(long)]
    json: bool,
    /// The data set the workloads train on: mnist, fashion-mnist or kmnist.
    #[arg(long, default_value = "mnist", value_parser = str::parse::<DataSet>)]
    dataset: DataSet,
    /// Folder holding the data set [default: its variable, ./data/NAME, ../shared/data/NAME, the
    /// system package, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// One workload's figures, as `--json` prints them.
#[derive(Serialize)]
struct Measured {
    /// Median seconds per training epoch.
    s_per_epoch: f64,
    /// Achieved GFLOP/s at the median.
    gflops: f64,
    /// The machine's GEMM peak, GFLOP/s.
    peak_gflops: f64,
    /// Floating-point operations per epoch.
    flops_per_epoch: u64,
    /// The lower bound on an epoch: its FLOPs at the peak rate, in seconds.
    bound_s: f64,
    /// Every timed epoch, in seconds.
    epoch_seconds: Vec<f64>,
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let workloads: Vec<&Workload> = if args.workload.is_empty() {
        WORKLOADS.iter().collect()
    } else {
        args.workload
            .iter()
            .map(|name| Workload::find(name).expect("clap checked the name"))
            .collect()
    };
    let (raw, _) = load_raw_set(args.dataset, args.data_dir.as_deref())?;
    let peak = gemm_peak(PEAK_SIZE, 10);
    if !args.json {
        println!(
            "GEMM peak: {peak:.1} GFLOP/s (median of 10 {PEAK_SIZE}x{PEAK_SIZE}x{PEAK_SIZE} f32 products, {} cores)",
            gemm::cores()
        );
        println!(
            "{} timed epochs per workload after one warm-up; median seconds per epoch\n",
            args.epochs
        );
        println!(
            "{:<10} {:>9} {:>12} {:>8} {:>10} {:>9} {:>8}",
            "workload", "s/epoch", "GFLOP/epoch", "GFLOP/s", "% of peak", "bound s", "x bound"
        );
    }
    let mut results = serde_json::Map::new();
    for workload in workloads {
        let experiment = workload.experiment();
        let mnist = Mnist::prepare(&raw, experiment.regime);
        let bar = progress_bar(args.epochs as u64, "{msg} [{bar:30}] {pos}/{len} epochs");
        bar.set_message(workload.name);
        let times = time_epochs(workload, &mnist.train, args.epochs, |done| {
            bar.set_position(done as u64)
        });
        bar.finish_and_clear();
        let bound = times.flops as f64 / (peak * 1e9);
        let measured = Measured {
            s_per_epoch: times.median(),
            gflops: times.gflops(),
            peak_gflops: peak,
            flops_per_epoch: times.flops,
            bound_s: bound,
            epoch_seconds: times.seconds.clone(),
        };
        if !args.json {
            println!(
                "{:<10} {:>9.3} {:>12.1} {:>8.1} {:>9.0}% {:>9.3} {:>8.2}   {}",
                workload.name,
                measured.s_per_epoch,
                times.flops as f64 / 1e9,
                measured.gflops,
                100.0 * measured.gflops / peak,
                bound,
                measured.s_per_epoch / bound,
                workload.description
            );
        }
        results.insert(workload.name.to_string(), serde_json::to_value(measured)?);
    }
    if args.json {
        println!("{}", serde_json::Value::Object(results));
    }
    Ok(())
}
