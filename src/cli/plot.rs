//! `--plot`: the training curves (loss and accuracy per epoch) as a PNG.

use std::path::Path;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use mnist_nn::atomic::write_atomically;

use mnist_nn::fit::EpochRecord;

const WIDTH: u32 = 1000;
const HEIGHT: u32 = 420;

/// Draws loss (left) and accuracy (right) against the epoch, training and validation, and writes
/// the PNG atomically.
pub fn plot_curves(path: &Path, records: &[EpochRecord]) -> Result<()> {
    // The font is embedded, so plots look the same on every machine; registering twice is harmless.
    let _ =
        plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    let mut rgb = vec![255u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (WIDTH, HEIGHT)).into_drawing_area();
        let (left, right) = root.split_horizontally(WIDTH / 2);
        let loss = |r: &EpochRecord| (Some(r.train_loss), r.val_loss);
        let accuracy = |r: &EpochRecord| (Some(r.train_accuracy), r.val_accuracy);
        panel(
            &left,
            "loss",
            records,
            loss,
            SeriesLabelPosition::UpperRight,
        )
        .map_err(|e| anyhow!("drawing the plot: {e}"))?;
        panel(
            &right,
            "accuracy",
            records,
            accuracy,
            SeriesLabelPosition::LowerRight,
        )
        .map_err(|e| anyhow!("drawing the plot: {e}"))?;
        root.present()
            .map_err(|e| anyhow!("drawing the plot: {e}"))?;
    }
    let picture = image::RgbImage::from_raw(WIDTH, HEIGHT, rgb).expect("the buffer fits the size");
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture
        .write_to(&mut bytes, image::ImageFormat::Png)
        .context("encoding the plot")?;
    write_atomically(path, bytes.get_ref()).with_context(|| format!("writing {}", path.display()))
}

/// One chart: the training and (where measured) validation values of one quantity.
fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    records: &[EpochRecord],
    values: impl Fn(&EpochRecord) -> (Option<f64>, Option<f64>),
    legend: SeriesLabelPosition,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    // (epoch, value) points of the training (index 0) or validation (index 1) values.
    let series = |which: usize| -> Vec<(f64, f64)> {
        records
            .iter()
            .filter_map(|r| {
                let (train, validation) = values(r);
                let value = if which == 0 { train } else { validation };
                value.filter(|v| v.is_finite()).map(|v| (r.epoch as f64, v))
            })
            .collect()
    };
    let train = series(0);
    let validation = series(1);
    let all = train.iter().chain(&validation).map(|&(_, v)| v);
    let (low, high) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
        (l.min(v), h.max(v))
    });
    let (low, high) = if low < high {
        (low, high)
    } else {
        (low - 0.5, low + 0.5)
    };
    let margin = (high - low) * 0.05;
    let last_epoch = records.last().map_or(1, |r| r.epoch).max(2) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(1f64..last_epoch, (low - margin)..(high + margin))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .light_line_style(WHITE)
        .draw()?;
    chart
        .draw_series(LineSeries::new(train, BLUE.stroke_width(2)))?
        .label("training")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    if !validation.is_empty() {
        chart
            .draw_series(LineSeries::new(validation, RED.stroke_width(2)))?
            .label("validation")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(legend)
        .draw()
}
