//! Cropping: the middle of every map, without a border of `crop` pixels on every side.
//!
//! MNIST's digits were scaled to fit a 20x20 box and centred in the 28x28 image by their centre
//! of mass, so the outer pixels are background in nearly every image. Cropping the 28x28 image to
//! its middle 24x24 before the first convolution keeps nearly all of every digit and costs less:
//! every map of every layer above is 4 pixels narrower and shorter (the same as
//! `nn.ZeroPad2d(-2)`, or torchvision's `CenterCrop(24)` on the images). Not free: on one epoch
//! of the fast recipe it cost about 0.1 point of validation accuracy (docs/RESULTS.md).
//!
//! ```text
//! forward:   Y[c, y, x] = X[c, y + p, x + p]     for 0 ≤ y < h - 2p, 0 ≤ x < w - 2p
//!            X: (n, c·h·w)    Y: (n, c·(h - 2p)·(w - 2p))
//! backward:  dX[c, i, j] = dY[c, i - p, j - p]   inside the kept middle, 0 on the border
//! ```
//!
//! Each kept pixel is copied once, so its gradient is the one entry it was copied to; the border
//! does not reach the output, so its gradient is zero. Cropping is padding's adjoint: its forward
//! pass is [`Pad2d`](super::Pad2d)'s backward (the middle copied out) and its backward pass is
//! padding's forward with a border of zeros, and both are computed by the same two functions.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::pad::{copy_into_middle, copy_out_of_middle};
use super::{check_features, ensure_shape, Layer, LayerSpec, PadShape};

/// The shape of a cropping layer: its input images and the border it removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CropShape {
    /// Maps (each cropped on its own).
    pub channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// Pixels removed from every side.
    pub crop: usize,
}

impl CropShape {
    /// Output height: `height - 2·crop`.
    pub fn out_height(&self) -> usize {
        self.height - 2 * self.crop
    }

    /// Output width: `width - 2·crop`.
    pub fn out_width(&self) -> usize {
        self.width - 2 * self.crop
    }

    /// Values per input row: `channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Values per output row: `channels · out_h · out_w`.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_height() * self.out_width()
    }

    /// Whether this is a possible cropping, and if not why.
    pub fn check(&self) -> Result<(), String> {
        if [self.channels, self.height, self.width].contains(&0) {
            return Err("channels and image size must be positive".into());
        }
        let removed = self.crop.checked_mul(2);
        match removed {
            Some(removed) if removed < self.height && removed < self.width => Ok(()),
            _ => Err(format!(
                "cropping {} pixels from every side leaves nothing of a {}x{} image",
                self.crop, self.height, self.width
            )),
        }
    }

    /// The padding this cropping undoes: a border of `crop` pixels around the output's maps.
    fn undone_padding(&self) -> PadShape {
        PadShape {
            channels: self.channels,
            height: self.out_height(),
            width: self.out_width(),
            padding: self.crop,
            value: 0.0,
        }
    }
}

/// Keeps the middle of every map, without a border of `crop` pixels.
pub struct Crop2d {
    shape: CropShape,
    /// `Y`, `(n, c·out_h·out_w)`
    output: Array2<f32>,
    /// `dX`, `(n, c·h·w)`: its border stays zero from when the buffer is made
    grad_input: Array2<f32>,
}

impl Crop2d {
    /// A cropping of the given shape. Panics if it is impossible (see [`CropShape::check`]).
    pub fn new(shape: CropShape) -> Self {
        if let Err(message) = shape.check() {
            panic!("Crop2d: {message}");
        }
        Crop2d {
            shape,
            output: Array2::zeros((0, shape.output_len())),
            grad_input: Array2::zeros((0, shape.input_len())),
        }
    }
}

impl Layer for Crop2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Crop2d", self.shape.input_len(), input);
        ensure_shape(&mut self.output, input.nrows(), self.shape.output_len());
        copy_out_of_middle(&self.shape.undone_padding(), input, &mut self.output);
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        let n = input.nrows();
        assert_eq!(
            grad_output.dim(),
            (n, self.shape.output_len()),
            "Crop2d: the gradient's shape does not match the last forward pass"
        );
        ensure_shape(&mut self.grad_input, n, self.shape.input_len());
        copy_into_middle(
            &self.shape.undone_padding(),
            grad_output,
            &mut self.grad_input,
        );
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }

    fn describe(&self) -> String {
        let s = self.shape;
        format!(
            "Crop2d({} pixels; {}x{} -> {}x{})",
            s.crop,
            s.height,
            s.width,
            s.out_height(),
            s.out_width()
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Crop2d(self.shape)
    }
}
