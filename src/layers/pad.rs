//! Constant padding: a border of `padding` pixels of one value around every map of an image.
//!
//! LeNet-5 reads 32x32 images: the 28x28 digit in the middle of a border of background, so that
//! strokes near the edge reach the centre of the first layer's receptive fields. The background is
//! not zero there (pixels are scaled to -0.1 for white), so the border is a layer of its own rather
//! than a convolution's zero padding.
//!
//! ```text
//! forward:   Y[c, y, x] = X[c, y - p, x - p]   where 0 ≤ y - p < h and 0 ≤ x - p < w
//!                       = value                 elsewhere (the border)
//!            X: (n, c·h·w)    Y: (n, c·(h + 2p)·(w + 2p))
//! backward:  dX[c, i, j] = dY[c, i + p, j + p]
//! ```
//!
//! The border does not depend on the input, so its gradient goes nowhere; every input pixel
//! appears once in the output, so its gradient is the one entry it was copied to.

use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::{check_features, ensure_shape, Layer, LayerSpec};

/// The shape of a padding layer: its input images and the border.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PadShape {
    /// Maps (each padded on its own).
    pub channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// Pixels added on every side.
    pub padding: usize,
    /// The value of the added pixels.
    pub value: f32,
}

impl PadShape {
    /// Output height: `height + 2·padding`.
    pub fn out_height(&self) -> usize {
        self.height + 2 * self.padding
    }

    /// Output width: `width + 2·padding`.
    pub fn out_width(&self) -> usize {
        self.width + 2 * self.padding
    }

    /// Values per input row: `channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Values per output row: `channels · out_h · out_w`.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_height() * self.out_width()
    }

    /// Whether this is a possible padding, and if not why.
    pub fn check(&self) -> Result<(), String> {
        if [self.channels, self.height, self.width].contains(&0) {
            return Err("channels and image size must be positive".into());
        }
        if !self.value.is_finite() {
            return Err(format!(
                "the padding value must be finite, got {}",
                self.value
            ));
        }
        let side = |size: usize| size.checked_add(self.padding.checked_mul(2)?);
        let len = side(self.height)
            .zip(side(self.width))
            .and_then(|(h, w)| h.checked_mul(w)?.checked_mul(self.channels));
        match len {
            Some(n) if n < 1 << 40 => Ok(()),
            _ => Err("the padded image is too large".into()),
        }
    }

    /// Calls `visit(input offset, output offset)` for the first pixel of every input row of
    /// pixels (`width` pixels each), in order.
    fn for_each_pixel_row(&self, mut visit: impl FnMut(usize, usize)) {
        let (out_h, out_w) = (self.out_height(), self.out_width());
        for c in 0..self.channels {
            for y in 0..self.height {
                let input = (c * self.height + y) * self.width;
                let output = (c * out_h + y + self.padding) * out_w + self.padding;
                visit(input, output);
            }
        }
    }
}

/// Adds a border of `padding` pixels of `value` around every map (`nn.ConstantPad2d`).
pub struct Pad2d {
    shape: PadShape,
    /// `Y`, `(n, c·out_h·out_w)`: its border is written once, when the buffer is made
    output: Array2<f32>,
    /// `dX`, `(n, c·h·w)`
    grad_input: Array2<f32>,
}

impl Pad2d {
    /// A padding of the given shape. Panics if it is impossible (see [`PadShape::check`]).
    pub fn new(shape: PadShape) -> Self {
        if let Err(message) = shape.check() {
            panic!("Pad2d: {message}");
        }
        Pad2d {
            shape,
            output: Array2::zeros((0, shape.output_len())),
            grad_input: Array2::zeros((0, shape.input_len())),
        }
    }
}

impl Layer for Pad2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Pad2d", self.shape.input_len(), input);
        if self.output.nrows() != input.nrows() {
            self.output =
                Array2::from_elem((input.nrows(), self.shape.output_len()), self.shape.value);
        }
        copy_into_middle(&self.shape, input, &mut self.output);
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
            "Pad2d: the gradient's shape does not match the last forward pass"
        );
        ensure_shape(&mut self.grad_input, n, self.shape.input_len());
        copy_out_of_middle(&self.shape, grad_output, &mut self.grad_input);
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
            "Pad2d({} pixels of {}; {}x{} -> {}x{})",
            s.padding,
            s.value,
            s.height,
            s.width,
            s.out_height(),
            s.out_width()
        )
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Pad2d(self.shape)
    }
}

/// Copies every row of `inner` `(n, c·h·w)` into the middle of the same row of `outer`
/// `(n, c·(h + 2p)·(w + 2p))`, leaving its border as it is: padding's forward pass, and
/// cropping's backward pass ([`Crop2d`](super::Crop2d) is padding's adjoint).
pub(super) fn copy_into_middle(shape: &PadShape, inner: ArrayView2<f32>, outer: &mut Array2<f32>) {
    let width = shape.width;
    for (x, mut y) in inner.rows().into_iter().zip(outer.rows_mut()) {
        let x = x.to_slice().expect("contiguous rows");
        let y = y.as_slice_mut().expect("contiguous rows");
        shape.for_each_pixel_row(|from, to| {
            y[to..to + width].copy_from_slice(&x[from..from + width]);
        });
    }
}

/// Copies the middle of every row of `outer` `(n, c·(h + 2p)·(w + 2p))` into the same row of
/// `inner` `(n, c·h·w)`: padding's backward pass, and cropping's forward pass.
pub(super) fn copy_out_of_middle(
    shape: &PadShape,
    outer: ArrayView2<f32>,
    inner: &mut Array2<f32>,
) {
    let width = shape.width;
    for (y, mut x) in outer.rows().into_iter().zip(inner.rows_mut()) {
        let y = y.to_slice().expect("contiguous rows");
        let x = x.as_slice_mut().expect("contiguous rows");
        shape.for_each_pixel_row(|to, from| {
            x[to..to + width].copy_from_slice(&y[from..from + width]);
        });
    }
}
