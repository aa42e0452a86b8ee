//! Two-dimensional convolution with stride, zero padding and dilation, lowered onto matrix products.
//!
//! Images travel between layers as rows: row `i` of the input holds image `i`'s channels one after
//! the other, each `height x width` pixels row by row (`C·H·W` values). The output row is laid out
//! the same way with `out_channels` channels of `out_h x out_w` pixels.
//!
//! Forward. Output pixel `(o, y, x)` of an image is a weighted sum over a `k x k` patch of every
//! input channel, whose taps are `dilation` apart, starting `padding` pixels above and to the left:
//!
//! ```text
//! Y[o, y, x] = b[o] + Σ_{c, ky, kx} W[o, (c, ky, kx)] · X[c, y·stride - padding + ky·dilation,
//!                                                          x·stride - padding + kx·dilation]
//! out_h = (height + 2·padding - dilation·(k - 1) - 1) / stride + 1      (likewise out_w)
//! ```
//!
//! (pixels outside the image count as zero). Gather the patches of an image into a matrix `P`
//! with one row per tap and one column per output pixel (im2col); then the layer is a matrix
//! product per image, a [`Linear`](super::Linear) layer applied to every patch:
//!
//! ```text
//! W: (out_channels, c·k·k)    P: (c·k·k, out_h·out_w)    Y = W·P + b: (out_channels, out_h·out_w)
//! ```
//!
//! and `Y`, read row after row, is the image's output row: channel after channel, no reordering.
//!
//! Backward, as for a linear layer, with `dY` the image's output gradient in the same layout:
//!
//! ```text
//! dW = Σ_images dY·Pᵀ        db = Σ_images Σ_columns dY        dP = Wᵀ·dY
//! ```
//!
//! and `dX` adds every entry of `dP` back onto the input pixel it was copied from (col2im): a pixel
//! that appeared in several patches collects the gradient of each.
//!
//! `P` is not kept from the forward pass: backward gathers each image's `P` again from the input
//! the network hands back. Copying one image's patches (28 KB for MNIST) just before its product
//! keeps them in the fastest cache; a whole batch's patch matrix would not fit there.
//!
//! A kernel that covers the whole image without padding (LeNet-5's C5: 5x5 kernels on 5x5 maps)
//! has one patch per image, and that patch is the image's row itself (taps and pixels are both in
//! `(c, y, x)` order): the layer is then a [`Linear`](super::Linear) layer on the rows, and is
//! computed as one, `Y = X·Wᵀ + b`, `dW = dYᵀ·X`, `dX = dY·W`, a product per batch instead of a
//! sliver of a product per image.
//!
//! With a ReLU fused into the layer ([`Layer::fuse_relu`]), each image's `Y` is clamped to
//! `max(0, Y)` right after its product, and backward starts from `dZ = dY ⊙ [Y > 0]`.

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, ArrayViewMut2, Zip};
use rand::Rng;
use rayon::prelude::*;

use super::{
    check_features, ensure_shape, relu_backward, relu_in_place, two_params, Layer, LayerSpec,
    Param, Tensor, TensorSource,
};
use crate::gemm::{matmul, single_threaded, threads};
use crate::init::Init;

/// The shape of a convolution: channels, image size, kernel, stride, padding, dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConvShape {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels (filters).
    pub out_channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// The kernel is `kernel x kernel` taps.
    pub kernel: usize,
    /// Step between neighbouring output pixels, in input pixels.
    pub stride: usize,
    /// Zero pixels added on every side.
    pub padding: usize,
    /// Step between neighbouring taps (1 = an ordinary dense kernel).
    pub dilation: usize,
}

impl ConvShape {
    /// Output height: `(height + 2·padding - dilation·(kernel - 1) - 1) / stride + 1`.
    pub fn out_height(&self) -> usize {
        Self::out_size(self.height, self)
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        Self::out_size(self.width, self)
    }

    fn out_size(size: usize, s: &ConvShape) -> usize {
        (size + 2 * s.padding - s.dilation * (s.kernel - 1) - 1) / s.stride + 1
    }

    /// Values per input row: `in_channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.height * self.width
    }

    /// Output pixels per channel: `out_height · out_width`, the columns of an image's `P`.
    pub fn out_pixels(&self) -> usize {
        self.out_height() * self.out_width()
    }

    /// Values per output row: `out_channels · out_height · out_width`.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.out_pixels()
    }

    /// Taps per output value: `in_channels · kernel · kernel`.
    pub fn taps(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// For output coordinate `out` (a row or a column) and kernel offset `k`, the input coordinate
    /// `out·stride - padding + k·dilation`, or `None` where it falls on the zero padding.
    pub fn source(&self, out: usize, k: usize, size: usize) -> Option<usize> {
        (out * self.stride + k * self.dilation)
            .checked_sub(self.padding)
            .filter(|&i| i < size)
    }

    /// Whether this is a possible convolution, and if not why.
    pub fn check(&self) -> Result<(), String> {
        let sizes = [
            self.in_channels,
            self.out_channels,
            self.kernel,
            self.stride,
            self.dilation,
        ];
        if sizes.contains(&0) || self.height == 0 || self.width == 0 {
            return Err(
                "image size, channels, kernel, stride and dilation must be positive".into(),
            );
        }
        let span = self
            .dilation
            .checked_mul(self.kernel - 1)
            .ok_or("the kernel's span overflows")?;
        let padded = |size: usize| size.checked_add(2usize.checked_mul(self.padding)?);
        match (padded(self.height), padded(self.width)) {
            (Some(h), Some(w)) if h > span && w > span => {}
            (Some(_), Some(_)) => {
                return Err("the dilated kernel is larger than the padded image".into())
            }
            _ => return Err("the padding overflows".into()),
        }
        // Every size the layer computes must fit in memory's address range.
        let out = |size: usize| (size + 2 * self.padding - span - 1) / self.stride + 1;
        let sizes = [
            [self.in_channels, self.height, self.width],
            [self.out_channels, out(self.height), out(self.width)],
            [self.in_channels, self.kernel, self.kernel],
        ];
        let fits = sizes.iter().all(|dims| {
            dims.iter()
                .try_fold(1usize, |acc, &d| acc.checked_mul(d))
                .is_some_and(|n| n < 1 << 40)
        });
        if fits {
            Ok(())
        } else {
            Err("the layer is too large".into())
        }
    }

    /// Calls `visit(tap, column, source, len)` for every run of taps of one image that fall inside
    /// it: output pixels `column..column + len` (counted row by row) of tap `(c, ky, kx)` read the
    /// input values `source, source + stride, ...` of the image's row.
    fn for_each_tap_run(&self, mut visit: impl FnMut(usize, usize, usize, usize)) {
        let (out_h, out_w) = (self.out_height(), self.out_width());
        let mut tap = 0;
        for c in 0..self.in_channels {
            for ky in 0..self.kernel {
                for kx in 0..self.kernel {
                    // The output columns whose tap kx lands inside the image: x0..x1.
                    let x0 = (0..out_w).find(|&x| self.source(x, kx, self.width).is_some());
                    let x1 = (0..out_w)
                        .rev()
                        .find(|&x| self.source(x, kx, self.width).is_some());
                    if let (Some(x0), Some(x1)) = (x0, x1) {
                        let ix0 = self.source(x0, kx, self.width).expect("inside");
                        for y in 0..out_h {
                            if let Some(iy) = self.source(y, ky, self.height) {
                                let source = (c * self.height + iy) * self.width + ix0;
                                visit(tap, y * out_w + x0, source, x1 + 1 - x0);
                            }
                        }
                    }
                    tap += 1;
                }
            }
        }
    }

    /// Whether the kernel covers the whole image, unpadded: then an image's only patch is its row.
    pub fn covers_image(&self) -> bool {
        self.padding == 0 && self.kernel == self.height && self.kernel == self.width
    }

    fn validate(&self) {
        if let Err(problem) = self.check() {
            panic!("Conv2d: {problem}: {self:?}");
        }
    }
}

/// A 2-D convolution layer; see the module documentation for the maths.
pub struct Conv2d {
    /// The geometry.
    pub shape: ConvShape,
    /// `W`, `(out_channels, in_channels·k·k)`: row `o` is filter `o`, taps in `(c, ky, kx)` order.
    pub weight: Array2<f32>,
    /// `b`, `(out_channels)`
    pub bias: Array1<f32>,
    /// `dL/dW`, same shape as `weight`.
    pub grad_weight: Array2<f32>,
    /// `dL/db`, `(out_channels)`
    pub grad_bias: Array1<f32>,
    input_grad_needed: bool,
    /// Whether the layer applies the ReLU that follows it.
    fused_relu: bool,
    /// `P` of one image, `(taps, out_h·out_w)`: gathered again, image by image, in both passes, so
    /// that it is still in the core's first-level cache when its product reads it (a forward pass
    /// that shares the images between cores gives each of them a buffer of its own)
    patches: Array2<f32>,
    /// `dP` of one image, `(taps, out_h·out_w)`
    grad_patches: Array2<f32>,
    /// `Y`, `(n, out_channels·out_h·out_w)`
    output: Array2<f32>,
    /// `dZ = dY ⊙ [Y > 0]` when a ReLU is fused, `(n, out_channels·out_h·out_w)`
    grad_pre_activation: Array2<f32>,
    /// `dX`, `(n, in_channels·height·width)`
    grad_input: Array2<f32>,
}

impl Conv2d {
    /// A convolution of the given shape, weights drawn by `init` with `fan_in = in_channels·k·k`.
    pub fn new(shape: ConvShape, init: Init, rng: &mut impl Rng) -> Self {
        shape.validate();
        let weight = init
            .weights(shape.taps(), shape.out_channels, rng)
            .reversed_axes();
        let bias = init.bias(shape.taps(), shape.out_channels, rng);
        Self::from_params(shape, weight.as_standard_layout().into_owned(), bias)
    }

    /// A convolution with the given weight `(out_channels, in_channels·k·k)` and bias `(out_channels)`.
    pub fn from_params(shape: ConvShape, weight: Array2<f32>, bias: Array1<f32>) -> Self {
        shape.validate();
        assert_eq!(
            weight.dim(),
            (shape.out_channels, shape.taps()),
            "Conv2d: weight must be (out_channels, in_channels·k·k)"
        );
        assert_eq!(
            bias.len(),
            shape.out_channels,
            "Conv2d: bias must have out_channels entries"
        );
        Conv2d {
            grad_weight: Array2::zeros(weight.dim()),
            grad_bias: Array1::zeros(bias.len()),
            shape,
            weight,
            bias,
            input_grad_needed: true,
            fused_relu: false,
            patches: Array2::zeros((0, 0)),
            grad_patches: Array2::zeros((0, 0)),
            output: Array2::zeros((0, 0)),
            grad_pre_activation: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }
}

/// im2col for one image: copies the patches of `image` `(C·H·W)` into `patches`
/// `(taps, out_h·out_w)`, shaping it first if need be. Entries on the padding stay zero from when
/// the buffer was made: every image of the same geometry writes the same entries.
fn gather_patches(shape: &ConvShape, image: &[f32], patches: &mut Array2<f32>) {
    let per_image = shape.out_pixels();
    ensure_shape(patches, shape.taps(), per_image);
    let p = patches.as_slice_mut().expect("standard layout");
    shape.for_each_tap_run(|tap, column, source, len| {
        let to = &mut p[tap * per_image + column..][..len];
        if shape.stride == 1 {
            to.copy_from_slice(&image[source..source + len]);
        } else {
            let from = image[source..].iter().step_by(shape.stride);
            to.iter_mut().zip(from).for_each(|(to, &value)| *to = value);
        }
    });
}

/// col2im for one image: adds every entry of `grad_patches` (its `dP`) onto the value of
/// `grad_image` it was copied from.
fn scatter_patch_gradients(shape: &ConvShape, grad_patches: &Array2<f32>, grad_image: &mut [f32]) {
    let per_image = shape.out_pixels();
    let dp = grad_patches.as_slice().expect("standard layout");
    shape.for_each_tap_run(|tap, column, source, len| {
        let from = &dp[tap * per_image + column..][..len];
        if shape.stride == 1 {
            let to = &mut grad_image[source..source + len];
            to.iter_mut().zip(from).for_each(|(to, &g)| *to += g);
        } else {
            let to = grad_image[source..].iter_mut().step_by(shape.stride);
            to.zip(from).for_each(|(to, &g)| *to += g);
        }
    });
}

/// An image's row of output values (or their gradients) as the matrix `(out_channels, out_h·out_w)`.
fn channels_by_pixels(row: ArrayView1<'_, f32>, channels: usize) -> ArrayView2<'_, f32> {
    let pixels = row.len() / channels;
    row.into_shape_with_order((channels, pixels))
        .expect("a row is out_channels·out_h·out_w values")
}

impl Layer for Conv2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Conv2d", self.shape.input_len(), input);
        let shape = self.shape;
        let (channels, per_image) = (shape.out_channels, shape.out_pixels());
        ensure_shape(&mut self.output, input.nrows(), shape.output_len());
        let (weight, bias, fused_relu) = (self.weight.view(), &self.bias, self.fused_relu);
        if shape.covers_image() {
            // Y = X·Wᵀ + b: (n, taps)·(taps, out_channels)
            self.output.assign(bias);
            matmul(input, weight.t(), true, self.output.view_mut());
            if fused_relu {
                relu_in_place(self.output.as_slice_mut().expect("standard layout"));
            }
            return self.output.view();
        }
        // Image i: P (taps, out_h·out_w) gathered, then Y = W·P + b (then max(0, Y) if fused),
        // written straight into the image's output row: (out_channels, out_h·out_w)
        let one_image = |patches: &mut Array2<f32>, (i, row): (usize, &mut [f32])| {
            let image = input.row(i);
            gather_patches(&shape, image.to_slice().expect("contiguous rows"), patches);
            let mut y = ArrayViewMut2::from_shape((channels, per_image), &mut *row)
                .expect("a row is out_channels·out_h·out_w values");
            for (mut channel, &b) in y.rows_mut().into_iter().zip(bias) {
                channel.fill(b);
            }
            single_threaded(|| matmul(weight, patches.view(), true, y));
            if fused_relu {
                relu_in_place(row);
            }
        };
        // The products are small (8 x 9 x 784 for the cnn): share the images between the cores
        // rather than each product, unless this thread already has its one core.
        let rows = self.output.as_slice_mut().expect("standard layout");
        let row_len = shape.output_len();
        if threads() > 1 {
            rows.par_chunks_mut(row_len)
                .enumerate()
                .for_each_init(|| Array2::zeros((0, 0)), one_image);
        } else {
            let patches = &mut self.patches;
            rows.chunks_mut(row_len)
                .enumerate()
                .for_each(|image| one_image(patches, image));
        }
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        check_features("Conv2d", self.shape.input_len(), input);
        let (n, channels, per_image) = (
            input.nrows(),
            self.shape.out_channels,
            self.shape.out_pixels(),
        );
        assert_eq!(
            grad_output.dim(),
            (n, self.shape.output_len()),
            "Conv2d: the gradient's shape does not match the input's and the layer's"
        );
        // With a fused ReLU, everything below uses dZ = dY ⊙ [Y > 0] in place of dY.
        let grad_output = if self.fused_relu {
            relu_backward(
                self.output.view(),
                grad_output,
                &mut self.grad_pre_activation,
            );
            self.grad_pre_activation.view()
        } else {
            grad_output
        };
        if self.shape.covers_image() {
            // dW = dYᵀ·X: (out_channels, taps), db = column sums of dY, dX = dY·W: (n, taps)
            matmul(grad_output.t(), input, false, self.grad_weight.view_mut());
            self.grad_bias
                .assign(&grad_output.sum_axis(ndarray::Axis(0)));
            let rows = if self.input_grad_needed { n } else { 0 };
            ensure_shape(&mut self.grad_input, rows, self.shape.input_len());
            if self.input_grad_needed {
                matmul(
                    grad_output,
                    self.weight.view(),
                    false,
                    self.grad_input.view_mut(),
                );
            }
            return self.grad_input.view();
        }
        // dW = Σ_images dY·Pᵀ, db = Σ_images Σ_columns dY, each image's P gathered again (small
        // products: one core each)
        self.grad_bias.fill(0.0);
        for (i, dy) in grad_output.rows().into_iter().enumerate() {
            let dy = channels_by_pixels(dy, channels);
            let image = input.row(i);
            gather_patches(
                &self.shape,
                image.to_slice().expect("contiguous rows"),
                &mut self.patches,
            );
            single_threaded(|| matmul(dy, self.patches.t(), i > 0, self.grad_weight.view_mut()));
            Zip::from(&mut self.grad_bias)
                .and(dy.rows())
                .for_each(|g, dy| *g += dy.sum());
        }
        if !self.input_grad_needed {
            ensure_shape(&mut self.grad_input, 0, self.shape.input_len());
            return self.grad_input.view();
        }
        // dP = Wᵀ·dY, then dX by col2im, image by image.
        ensure_shape(&mut self.grad_patches, self.shape.taps(), per_image);
        let mut grad_input = std::mem::take(&mut self.grad_input);
        ensure_shape(&mut grad_input, n, self.shape.input_len());
        grad_input.fill(0.0);
        for (dy, mut dx) in grad_output.rows().into_iter().zip(grad_input.rows_mut()) {
            let dy = channels_by_pixels(dy, channels);
            single_threaded(|| matmul(self.weight.t(), dy, false, self.grad_patches.view_mut()));
            let dx = dx.as_slice_mut().expect("contiguous rows");
            scatter_patch_gradients(&self.shape, &self.grad_patches, dx);
        }
        self.grad_input = grad_input;
        self.grad_input.view()
    }

    fn output(&self) -> ArrayView2<'_, f32> {
        self.output.view()
    }

    fn grad_input(&self) -> ArrayView2<'_, f32> {
        self.grad_input.view()
    }
    fn params(&mut self) -> Vec<Param<'_>> {
        two_params(
            ["weight", "bias"],
            (&mut self.weight, &self.grad_weight),
            (&mut self.bias, &self.grad_bias),
        )
    }

    fn set_input_grad_needed(&mut self, needed: bool) {
        self.input_grad_needed = needed;
    }

    fn fuse_relu(&mut self) -> bool {
        self.fused_relu = true;
        true
    }

    /// `Z = W·P`, `dW = dZ·Pᵀ` and `dP = Wᵀ·dZ` each cost `2·out_channels·taps·n·out_h·out_w`.
    fn training_flops(&self, batch: usize) -> u64 {
        let products = if self.input_grad_needed { 3 } else { 2 };
        let s = self.shape;
        let pixels = batch * s.out_pixels();
        products * 2 * (s.out_channels * s.taps() * pixels) as u64
    }

    fn spec(&self) -> LayerSpec {
        LayerSpec::Conv2d(self.shape)
    }

    /// PyTorch's layout `(out, in, k, k)` is ours, `(out, in·k·k)`, with the last axis split.
    fn export(&self) -> Vec<Tensor> {
        let s = self.shape;
        vec![
            Tensor {
                name: "weight",
                shape: vec![s.out_channels, s.in_channels, s.kernel, s.kernel],
                values: self.weight.iter().copied().collect(),
            },
            Tensor {
                name: "bias",
                shape: vec![s.out_channels],
                values: self.bias.to_vec(),
            },
        ]
    }

    fn import(&mut self, tensor: &mut TensorSource<'_>) -> Result<(), String> {
        let s = self.shape;
        let weight = tensor(
            "weight",
            &[s.out_channels, s.in_channels, s.kernel, s.kernel],
        )?;
        self.weight = Array2::from_shape_vec((s.out_channels, s.taps()), weight)
            .map_err(|e| e.to_string())?;
        self.bias = Array1::from_vec(tensor("bias", &[s.out_channels])?);
        Ok(())
    }

    fn describe(&self) -> String {
        let s = self.shape;
        format!(
            "Conv2d({} -> {}, {k}x{k}, stride {}, padding {}, dilation {}; {}x{} -> {}x{})",
            s.in_channels,
            s.out_channels,
            s.stride,
            s.padding,
            s.dilation,
            s.height,
            s.width,
            s.out_height(),
            s.out_width(),
            k = s.kernel
        )
    }
}
