//! `serve`: a saved model behind a web page to draw on, and a JSON API (see
//! [`mnist_nn::serve`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;

use mnist_nn::data::handwriting::preparation;
use mnist_nn::serve::api::ModelInfo;
use mnist_nn::serve::predictor::Predictor;
use mnist_nn::serve::test_report::TestReport;
use mnist_nn::serve::{serve as run_server, AppState, DEFAULT_BODY_LIMIT};

use super::fetch::load_raw_set;

#[derive(Args)]
pub struct ServeArgs {
    /// The saved model (.safetensors).
    #[arg(long)]
    model: PathBuf,
    /// The address to listen on: loopback unless told otherwise (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Largest request body accepted, in bytes (larger ones get 413).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT, value_parser = crate::positive)]
    body_limit: usize,
    /// Folder holding the model's data set, whose test set the mistakes page shows [default: its
    /// variable, ./data/NAME, ../shared/data/NAME, the system package, the cache].
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

pub fn serve(args: ServeArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
    let predictor =
        Predictor::new(bytes).map_err(|e| anyhow::anyhow!("{}: {e}", args.model.display()))?;
    let set = predictor.dataset();
    let (raw, dir) = load_raw_set(set, args.data_dir.as_deref())?;
    let report = TestReport::new(&predictor, raw.test);
    let (layers, parameters) = predictor.with_network(|network| {
        let layers = network.layers().iter().map(|l| l.describe()).collect();
        (layers, network.parameter_count())
    });
    let model = ModelInfo {
        file: args
            .model
            .file_name()
            .map_or_else(String::new, |name| name.to_string_lossy().into_owned()),
        dataset: set.name(),
        dataset_title: set.title(),
        classes: set.class_names().to_vec(),
        preparation: preparation(set),
        layers,
        parameters,
        trained: predictor.training().summary(),
        training: predictor.training().clone(),
        test_accuracy: report.accuracy(),
        test_images: report.len(),
    };
    println!(
        "{}: test accuracy {:.4} on {} ({} test images in {})",
        args.model.display(),
        model.test_accuracy,
        set.title(),
        report.len(),
        dir.display()
    );
    let state = Arc::new(AppState {
        predictor,
        report,
        model,
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the server's threads")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("listening on {}", args.addr))?;
        let addr = listener.local_addr()?;
        println!(
            "serving on http://{addr}/ (the mistakes page: http://{addr}/mistakes); Ctrl-C stops"
        );
        run_server(listener, state, args.body_limit, stop_signal())
            .await
            .context("serving")?;
        println!("stopped");
        Ok(())
    })
}

/// Completes on Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn stop_signal() {
    let interrupt = async {
        // Without a handler the default action (ending the process) still applies.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
