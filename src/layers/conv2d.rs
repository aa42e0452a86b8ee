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
//!
//! With a max pooling fused into the layer ([`Layer::fuse_max_pool`], `conv, maxpool, relu` in the
//! fast recipe), each image's `Z = W·P + b` goes into a buffer of one image, is pooled from there
//! (then clamped by a ReLU fused after the pooling), and only the pooled values and the index of
//! each window's winner are kept: `Z` never leaves the core's caches, where the separate layers
//! would write a batch's `Z` to memory and read it back. Backward rebuilds each image's `dZ` in
//! the same buffer, each window's gradient on its winner ([`MaxPool2d`](super::MaxPool2d)'s
//! backward), and goes on from there.
//!
//! A 3x3 kernel with stride 1 can be computed instead by Winograd's F(2x2, 3x3)
//! ([`Conv2d::with_winograd`], `conv C 3 algorithm winograd`; the maths in the `winograd` module):
//! 2.25 times fewer multiplications, a chunk of images at a time, the same results up to
//! rounding. A fused 2x2 pooling whose windows are the algorithm's 2x2 blocks of outputs is then
//! computed inside its output transform, and its backward pass sends each window's gradient
//! straight into the block.
//!
//! A convolution with stride 1 and few input channels (a first layer on the image) can be computed
//! instead by direct sums, a chunk of images at a time ([`Conv2d::with_direct`],
//! `conv C K algorithm direct`; the `direct` module): no patches and no products too small to run
//! at speed, the same results up to rounding, a fused 2x2 pooling taken from its blocks likewise.

use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

use ndarray::{s, Array1, Array2, Array3, ArrayView1, ArrayView2, ArrayViewMut2, Axis, Zip};
use rand::Rng;
use rayon::prelude::*;

use super::lanes::{self, ChunkGrad, ChunkOutput, LANES};
use super::max_pool::{max_of_windows, send_to_winners};
use super::{
    check_features, ensure_shape, relu_backward, relu_in_place, two_params, Layer, LayerSpec,
    Param, PoolShape, Tensor, TensorSource,
};
use super::{direct, winograd};
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
    /// Whether the layer applies the ReLU that follows it (after the pooling, if one is fused).
    fused_relu: bool,
    /// The max pooling the layer applies, if one is fused.
    pool: Option<PoolShape>,
    /// How the layer computes its sums.
    algorithm: Algorithm,
    /// With a fused pooling, for every pooled value, the index of its window's winner in its
    /// image's `Z` `(out_channels·out_h·out_w)`: image by image `(n, pooled values)`, or, when a
    /// chunked algorithm pools inside its blocks, in its layout, chunk by chunk
    /// `(chunks, pooled values, lanes)`; without a pooling, one unused entry per image, so that
    /// the images pair with their entries the same way in every case.
    winners: Vec<u32>,
    /// The forward pass's buffers, one set per thread that computes images (the backward pass
    /// keeps its own in `groups`)
    scratch: ScratchPool,
    /// The backward pass's sums and buffers, a group of images each (see [`IMAGES_PER_GROUP`])
    groups: Vec<GroupGradients>,
    /// `Y`, `(n, out_channels·out_h·out_w)`, or the pooled `(n, out_channels·pooled pixels)`
    output: Array2<f32>,
    /// `dZ = dY ⊙ [Y > 0]` when a ReLU is fused without a pooling, `(n, out_channels·out_h·out_w)`
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
            pool: None,
            algorithm: Algorithm::Im2col,
            winners: Vec::new(),
            scratch: ScratchPool::default(),
            groups: Vec::new(),
            output: Array2::zeros((0, 0)),
            grad_pre_activation: Array2::zeros((0, 0)),
            grad_input: Array2::zeros((0, 0)),
        }
    }
}

impl Conv2d {
    /// The same convolution computed by Winograd's F(2x2, 3x3) (the `winograd` module): 2.25 times fewer
    /// multiplications, the same results up to rounding. Only for 3x3 kernels with stride 1 and
    /// dilation 1; says why otherwise.
    pub fn with_winograd(mut self) -> Result<Self, String> {
        winograd::check(&self.shape)?;
        self.algorithm = Algorithm::Winograd(Array3::zeros((0, 0, 0)));
        Ok(self)
    }

    /// The same convolution computed by direct sums, eight images at a time (the `direct`
    /// module): no patches and no matrix products, the same results up to rounding. Only for
    /// stride 1 and dilation 1, kernels up to 7x7 and a padding smaller than the kernel; says why
    /// otherwise.
    pub fn with_direct(mut self) -> Result<Self, String> {
        direct::check(&self.shape)?;
        self.algorithm = Algorithm::Direct;
        Ok(self)
    }
}

/// How a convolution computes its sums.
enum Algorithm {
    /// A matrix product per image, over its patches gathered (the module documentation).
    Im2col,
    /// Winograd's F(2x2, 3x3) (the `winograd` module), with the weights transformed for it, `U`
    /// `(16, out_channels, in_channels)`, as of the last forward pass.
    Winograd(Array3<f32>),
    /// Direct sums, eight images at a time (the `direct` module).
    Direct,
}

/// The buffers of one image's pass (or one chunk's, by Winograd's algorithm): each thread that
/// computes images needs its own.
#[derive(Default)]
struct ImageScratch {
    /// `P`, `(taps, out_h·out_w)`: gathered again, image by image, in both passes, so that it is
    /// still in the core's first-level cache when its product reads it
    patches: Array2<f32>,
    /// With a fused pooling, `Z` before the pooling (forward) or `dZ` (backward),
    /// `(out_channels·out_h·out_w)`
    unpooled: Vec<f32>,
    /// Winograd's transformed tiles of a chunk of images
    winograd: winograd::ChunkBuffers,
    /// The direct algorithm's planes of a chunk of images
    direct: direct::ChunkBuffers,
    /// A chunked algorithm's `Z` (forward) or `dZ` (backward) of a chunk of images, when a
    /// pooling whose windows are not the algorithm's blocks is fused:
    /// `(images, out_channels·out_h·out_w)`
    chunk_unpooled: Array2<f32>,
}

/// Buffers lent to the threads of forward passes and given back at the end of each piece of
/// work: a layer makes one set per thread once, instead of one per piece of work every pass
/// (each set is several hundred kilobytes, zeroed when made).
#[derive(Default)]
struct ScratchPool(Mutex<Vec<ImageScratch>>);

impl ScratchPool {
    /// A set of buffers: one given back earlier, or a new one.
    fn lend(&self) -> LentScratch<'_> {
        let scratch = self.0.lock().expect("not poisoned").pop();
        LentScratch {
            scratch: scratch.unwrap_or_default(),
            pool: self,
        }
    }
}

/// Buffers lent by a [`ScratchPool`], given back when dropped.
struct LentScratch<'a> {
    scratch: ImageScratch,
    pool: &'a ScratchPool,
}

impl Deref for LentScratch<'_> {
    type Target = ImageScratch;
    fn deref(&self) -> &ImageScratch {
        &self.scratch
    }
}

impl DerefMut for LentScratch<'_> {
    fn deref_mut(&mut self) -> &mut ImageScratch {
        &mut self.scratch
    }
}

impl Drop for LentScratch<'_> {
    fn drop(&mut self) {
        let scratch = std::mem::take(&mut self.scratch);
        self.pool.0.lock().expect("not poisoned").push(scratch);
    }
}

impl Conv2d {
    /// Values per output row: pooled, if a pooling is fused.
    fn output_len(&self) -> usize {
        self.pool
            .map_or(self.shape.output_len(), |pool| pool.output_len())
    }

    /// Entries of `winners` per image: one per pooled value, or the one unused entry.
    fn winners_per_image(&self) -> usize {
        self.pool.map_or(1, |pool| pool.output_len())
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

/// Images whose gradient sums one core computes on its own in a backward pass. A batch's `dW` is
/// the sum over groups of at most this many images (each group's sum in image order, then the
/// groups' sums in order), so the groups can run on different cores and the result does not
/// depend on how many there are. A training shard of up to 128 images (the fast recipe's) is one
/// group; a whole batch of 256, as batch normalisation needs, is two, one per core.
const IMAGES_PER_GROUP: usize = 128;

/// What the backward pass reads of the layer and of its forward pass.
struct ForwardRecord<'a> {
    shape: ConvShape,
    weight: ArrayView2<'a, f32>,
    /// How the layer computes (with Winograd's transformed weights `U`).
    algorithm: &'a Algorithm,
    /// What the fused pooling left, if one is fused.
    pool: Option<PoolRecord<'a>>,
}

/// What a fused pooling's backward reads of the forward pass.
struct PoolRecord<'a> {
    /// The pooling's windows.
    shape: PoolShape,
    /// The index of every pooled value's winner in its image's `Z`, laid out as the layer's
    /// `winners`.
    winners: &'a [u32],
    /// The pooled output, when a ReLU is fused after the pooling (its mask), `(n, pooled values)`.
    relu_output: Option<ArrayView2<'a, f32>>,
}

impl PoolRecord<'_> {
    /// Image `i`'s winners, when they are laid out image by image.
    fn image_winners(&self, i: usize) -> &[u32] {
        let per_image = self.shape.output_len();
        &self.winners[i * per_image..][..per_image]
    }
}

/// One group's sums and buffers in a backward pass.
struct GroupGradients {
    /// `Σ_group dZ·Pᵀ`, `(out_channels, taps)`
    weight: Array2<f32>,
    /// `Σ_group Σ_columns dZ`, `(out_channels)`
    bias: Array1<f32>,
    /// By Winograd's algorithm, `Σ_group dU` `(16, out_channels, in_channels)`, whose transform
    /// back is `weight`
    transformed_weight: Array3<f32>,
    /// By the direct algorithm, each lane's `Σ_group dW` `(out_channels, taps, lanes)`, whose
    /// lanes' sum is `weight`
    weight_by_lane: Vec<f32>,
    scratch: ImageScratch,
    /// `dP` of one image, `(taps, out_h·out_w)`
    grad_patches: Array2<f32>,
}

impl GroupGradients {
    fn new(out_channels: usize, taps: usize) -> Self {
        GroupGradients {
            weight: Array2::zeros((out_channels, taps)),
            bias: Array1::zeros(out_channels),
            transformed_weight: Array3::zeros((0, 0, 0)),
            weight_by_lane: Vec::new(),
            scratch: ImageScratch::default(),
            grad_patches: Array2::zeros((0, 0)),
        }
    }
}

/// The backward pass of the images `images` of the batch, one core's work: for each, `dZ` (rebuilt
/// from the windows' gradients if a pooling is fused), `P` gathered again, `dW += dZ·Pᵀ`,
/// `db += Σ_columns dZ`, and, given the group's rows of `dX`, `dP = Wᵀ·dZ` added onto them by
/// col2im.
fn backward_group(
    record: &ForwardRecord,
    images: std::ops::Range<usize>,
    input: ArrayView2<f32>,
    grad_output: ArrayView2<f32>,
    sums: &mut GroupGradients,
    mut grad_input: Option<&mut ArrayViewMut2<f32>>,
) {
    if !matches!(record.algorithm, Algorithm::Im2col) {
        backward_group_by_chunks(record, images, input, grad_output, sums, grad_input);
        return;
    }
    let shape = &record.shape;
    let (channels, per_image) = (shape.out_channels, shape.out_pixels());
    ensure_shape(&mut sums.grad_patches, shape.taps(), per_image);
    sums.bias.fill(0.0);
    let scratch = &mut sums.scratch;
    for (k, i) in images.enumerate() {
        let dy = grad_output.row(i);
        let dz = match &record.pool {
            None => channels_by_pixels(dy, channels),
            Some(pool) => {
                scratch.unpooled.clear();
                scratch.unpooled.resize(shape.output_len(), 0.0);
                let relu_output = pool.relu_output.map(|y| y.index_axis_move(Axis(0), i));
                send_to_winners(
                    dy.as_slice().expect("contiguous rows"),
                    pool.image_winners(i),
                    relu_output
                        .as_ref()
                        .map(|y| y.as_slice().expect("contiguous rows")),
                    &mut scratch.unpooled,
                );
                ArrayView2::from_shape((channels, per_image), &scratch.unpooled)
                    .expect("dZ is out_channels·out_h·out_w values")
            }
        };
        let image = input.row(i);
        let image = image.to_slice().expect("contiguous rows");
        gather_patches(shape, image, &mut scratch.patches);
        single_threaded(|| matmul(dz, scratch.patches.t(), k > 0, sums.weight.view_mut()));
        Zip::from(&mut sums.bias)
            .and(dz.rows())
            .for_each(|g, dz| *g += dz.sum());
        if let Some(grad_input) = grad_input.as_mut() {
            single_threaded(|| matmul(record.weight.t(), dz, false, sums.grad_patches.view_mut()));
            let dx = grad_input.row_mut(k).into_slice().expect("contiguous rows");
            scatter_patch_gradients(shape, &sums.grad_patches, dx);
        }
    }
}

/// [`backward_group`] by Winograd's algorithm, a chunk of images at a time: each chunk's `dZ`
/// (rebuilt from the windows' gradients if a pooling is fused, or those gradients themselves when
/// the windows are the algorithm's blocks), `dU += ` its share, `db += ` its sums and, given the
/// group's rows of `dX`, the chunk's rows of it; at the end `dW = Gᵀ·dU·G`.
fn backward_group_by_chunks(
    record: &ForwardRecord,
    images: std::ops::Range<usize>,
    input: ArrayView2<f32>,
    grad_output: ArrayView2<f32>,
    sums: &mut GroupGradients,
    mut grad_input: Option<&mut ArrayViewMut2<f32>>,
) {
    let shape = &record.shape;
    sums.bias.fill(0.0);
    let scratch = &mut sums.scratch;
    let first = images.start;
    for (c, start) in images.clone().step_by(LANES).enumerate() {
        let end = (start + LANES).min(images.end);
        let rows = s![start..end, ..];
        let dy = grad_output.slice(rows);
        let dz = match &record.pool {
            None => {
                add_channel_sums(&mut sums.bias, dy, None);
                ChunkGrad::Values(dy)
            }
            Some(pool) if lanes::pools_blocks(shape, &pool.shape) => {
                // Each window's gradient goes straight into its tile's block.
                let relu_output = pool.relu_output.map(|y| y.slice_move(rows));
                add_channel_sums(&mut sums.bias, dy, relu_output);
                ChunkGrad::Pooled {
                    grad: dy,
                    winners: &pool.winners[start * pool.shape.output_len()..]
                        [..LANES * pool.shape.output_len()],
                    relu_output,
                }
            }
            Some(pool) => {
                ensure_shape(&mut scratch.chunk_unpooled, end - start, shape.output_len());
                for (i, mut dz) in (start..end).zip(scratch.chunk_unpooled.rows_mut()) {
                    let dz = dz.as_slice_mut().expect("contiguous rows");
                    dz.fill(0.0);
                    let relu_output = pool.relu_output.map(|y| y.index_axis_move(Axis(0), i));
                    send_to_winners(
                        grad_output.row(i).to_slice().expect("contiguous rows"),
                        pool.image_winners(i),
                        relu_output
                            .as_ref()
                            .map(|y| y.as_slice().expect("contiguous rows")),
                        dz,
                    );
                }
                add_channel_sums(&mut sums.bias, scratch.chunk_unpooled.view(), None);
                ChunkGrad::Values(scratch.chunk_unpooled.view())
            }
        };
        let grad_input = grad_input
            .as_mut()
            .map(|dx| dx.slice_mut(s![start - first..end - first, ..]));
        let images = input.slice(s![start..end, ..]);
        match record.algorithm {
            Algorithm::Winograd(u) => winograd::backward_chunk(
                shape,
                u,
                images,
                dz,
                &mut scratch.winograd,
                &mut sums.transformed_weight,
                c > 0,
                grad_input,
            ),
            Algorithm::Direct => direct::backward_chunk(
                shape,
                record.weight.as_slice().expect("standard layout"),
                images,
                dz,
                &mut scratch.direct,
                (&mut sums.weight_by_lane, c > 0),
                grad_input,
            ),
            Algorithm::Im2col => unreachable!("im2col goes image by image"),
        }
    }
    match record.algorithm {
        Algorithm::Winograd(_) => winograd::weight_grad(
            &sums.transformed_weight,
            sums.weight.view_mut(),
            &mut scratch.winograd,
        ),
        Algorithm::Direct => direct::weight_grad(&sums.weight_by_lane, sums.weight.view_mut()),
        Algorithm::Im2col => unreachable!("im2col goes image by image"),
    }
}

/// Adds each channel's sum of the gradients `rows` `(images, channels·values)` onto `sums`
/// `(channels)`, only where the ReLU's output `mask` (the same shape) is positive if one is given.
fn add_channel_sums(sums: &mut Array1<f32>, rows: ArrayView2<f32>, mask: Option<ArrayView2<f32>>) {
    let channels = sums.len();
    for (i, row) in rows.rows().into_iter().enumerate() {
        let values = row.len() / channels;
        let row = row.to_slice().expect("contiguous rows");
        let mask = mask.map(|m| m.index_axis_move(Axis(0), i));
        let mask = mask
            .as_ref()
            .map(|m| m.as_slice().expect("contiguous rows"));
        for (c, sum) in sums.iter_mut().enumerate() {
            let part = &row[c * values..][..values];
            *sum += masked_sum(part, mask.map(|m| &m[c * values..][..values]));
        }
    }
}

/// `Σ values`, only where `mask` is positive if one is given. Summed in 8 interleaved parts, then
/// the parts (a single running sum waits for each addition before the next).
fn masked_sum(values: &[f32], mask: Option<&[f32]>) -> f32 {
    const PARTS: usize = 8;
    let mut parts = [0.0f32; PARTS];
    let keep = lanes::where_positive;
    let chunks = values.chunks_exact(PARTS);
    let rest = chunks.remainder();
    match mask {
        None => {
            for chunk in chunks {
                for (part, &g) in parts.iter_mut().zip(chunk) {
                    *part += g;
                }
            }
            parts[..rest.len()]
                .iter_mut()
                .zip(rest)
                .for_each(|(p, &g)| *p += g);
        }
        Some(mask) => {
            for (chunk, on) in chunks.zip(mask.chunks_exact(PARTS)) {
                for ((part, &g), &y) in parts.iter_mut().zip(chunk).zip(on) {
                    *part += keep(g, y);
                }
            }
            let on = &mask[values.len() - rest.len()..];
            for ((part, &g), &y) in parts.iter_mut().zip(rest).zip(on) {
                *part += keep(g, y);
            }
        }
    }
    parts.iter().sum()
}

/// An image's row of output values (or their gradients) as the matrix `(out_channels, out_h·out_w)`.
fn channels_by_pixels(row: ArrayView1<'_, f32>, channels: usize) -> ArrayView2<'_, f32> {
    let pixels = row.len() / channels;
    row.into_shape_with_order((channels, pixels))
        .expect("a row is out_channels·out_h·out_w values")
}

impl Conv2d {
    /// The forward pass by a chunked algorithm (Winograd's or the direct one), into `output`
    /// (shaped already): a chunk of images at a time, `Z` straight into the chunk's output rows,
    /// or pooled into them from a chunk buffer; then `max(0, Y)` if a ReLU is fused.
    fn forward_by_chunks(&mut self, input: ArrayView2<f32>) {
        let shape = self.shape;
        let (pool, fused_relu) = (self.pool, self.fused_relu);
        let row_len = self.output_len();
        let winners_per_image = self.winners_per_image();
        let weight = self.weight.view();
        let u = match &mut self.algorithm {
            Algorithm::Winograd(u) => {
                winograd::transform_weights(&shape, weight, u, &mut self.scratch.lend().winograd);
                Some(&*u)
            }
            _ => None,
        };
        let weight = weight.to_slice().expect("standard layout");
        let bias = self.bias.as_slice().expect("standard layout");
        let forward_chunk =
            |scratch: &mut ImageScratch, images: ArrayView2<f32>, output: ChunkOutput| match u {
                Some(u) => {
                    winograd::forward_chunk(&shape, u, bias, images, &mut scratch.winograd, output)
                }
                None => {
                    direct::forward_chunk(&shape, weight, bias, images, &mut scratch.direct, output)
                }
            };
        let one_chunk =
            |scratch: &mut ImageScratch,
             ((c, rows), winners): ((usize, &mut [f32]), &mut [u32])| {
                let count = rows.len() / row_len;
                let images = input.slice(s![c * LANES..c * LANES + count, ..]);
                let mut output = ArrayViewMut2::from_shape((count, row_len), &mut *rows)
                    .expect("a chunk's output rows");
                match &pool {
                    None => forward_chunk(scratch, images, ChunkOutput::Values(output)),
                    Some(pool) if lanes::pools_blocks(&shape, pool) => {
                        let output = ChunkOutput::Pooled(output, winners);
                        forward_chunk(scratch, images, output)
                    }
                    Some(pool) => {
                        let mut z = std::mem::take(&mut scratch.chunk_unpooled);
                        ensure_shape(&mut z, count, shape.output_len());
                        forward_chunk(scratch, images, ChunkOutput::Values(z.view_mut()));
                        let winners = winners.chunks_mut(winners_per_image);
                        for ((z, mut y), winners) in
                            z.rows().into_iter().zip(output.rows_mut()).zip(winners)
                        {
                            let z = z.to_slice().expect("contiguous rows");
                            max_of_windows(
                                pool,
                                z,
                                y.as_slice_mut().expect("contiguous rows"),
                                winners,
                            );
                        }
                        scratch.chunk_unpooled = z;
                    }
                }
                if fused_relu {
                    relu_in_place(rows);
                }
            };
        // Whole chunks of winners, in the lanes' layout when the pooling is the algorithm's.
        let chunks = input.nrows().div_ceil(LANES);
        self.winners.resize(chunks * LANES * winners_per_image, 0);
        for_each_piece(
            (
                self.output.as_slice_mut().expect("standard layout"),
                row_len * LANES,
            ),
            (&mut self.winners, winners_per_image * LANES),
            &self.scratch,
            one_chunk,
        );
    }
}

/// A piece of the forward pass's output (an image, or a chunk of images by Winograd's
/// algorithm): its index, its rows of the output and its entries of the winners.
type OutputPiece<'a> = ((usize, &'a mut [f32]), &'a mut [u32]);

/// Runs `work` on every piece of the output, `rows_per` output values and `winners_per` winners
/// each. The products are small (8 x 9 x 784 for the cnn): the pieces are shared between the
/// cores rather than each product (every core with its own buffers, its products on itself),
/// unless this thread already has its one core.
fn for_each_piece(
    (rows, rows_per): (&mut [f32], usize),
    (winners, winners_per): (&mut [u32], usize),
    scratch: &ScratchPool,
    work: impl Fn(&mut ImageScratch, OutputPiece) + Sync,
) {
    if threads() > 1 {
        rows.par_chunks_mut(rows_per)
            .enumerate()
            .zip(winners.par_chunks_mut(winners_per))
            .for_each_init(
                || scratch.lend(),
                |scratch, piece| single_threaded(|| work(scratch, piece)),
            );
    } else {
        let mut scratch = scratch.lend();
        rows.chunks_mut(rows_per)
            .enumerate()
            .zip(winners.chunks_mut(winners_per))
            .for_each(|piece| work(&mut scratch, piece));
    }
}

impl Layer for Conv2d {
    fn forward(&mut self, input: ArrayView2<f32>, _train: bool) -> ArrayView2<'_, f32> {
        check_features("Conv2d", self.shape.input_len(), input);
        let shape = self.shape;
        let (channels, per_image) = (shape.out_channels, shape.out_pixels());
        let row_len = self.output_len();
        ensure_shape(&mut self.output, input.nrows(), row_len);
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
        if !matches!(self.algorithm, Algorithm::Im2col) {
            self.forward_by_chunks(input);
            return self.output.view();
        }
        // Image i: P (taps, out_h·out_w) gathered, then Z = W·P + b: (out_channels, out_h·out_w),
        // written straight into the image's output row, or pooled from the image's buffer into
        // it; then max(0, Y) if a ReLU is fused.
        let pool = self.pool;
        let one_image =
            |scratch: &mut ImageScratch, ((i, row), winners): ((usize, &mut [f32]), &mut [u32])| {
                let image = input.row(i);
                let image = image.to_slice().expect("contiguous rows");
                gather_patches(&shape, image, &mut scratch.patches);
                let z = if pool.is_some() {
                    scratch.unpooled.resize(shape.output_len(), 0.0);
                    &mut scratch.unpooled[..]
                } else {
                    &mut *row
                };
                let mut z = ArrayViewMut2::from_shape((channels, per_image), z)
                    .expect("Z is out_channels·out_h·out_w values");
                for (mut channel, &b) in z.rows_mut().into_iter().zip(bias) {
                    channel.fill(b);
                }
                matmul(weight, scratch.patches.view(), true, z);
                if let Some(pool) = &pool {
                    max_of_windows(pool, &scratch.unpooled, row, winners);
                }
                if fused_relu {
                    relu_in_place(row);
                }
            };
        let winners_per_image = self.winners_per_image();
        self.winners.resize(input.nrows() * winners_per_image, 0);
        for_each_piece(
            (
                self.output.as_slice_mut().expect("standard layout"),
                row_len,
            ),
            (&mut self.winners, winners_per_image),
            &self.scratch,
            one_image,
        );
        self.output.view()
    }

    fn backward(
        &mut self,
        input: ArrayView2<f32>,
        grad_output: ArrayView2<f32>,
    ) -> ArrayView2<'_, f32> {
        check_features("Conv2d", self.shape.input_len(), input);
        let n = input.nrows();
        assert_eq!(
            grad_output.dim(),
            (n, self.output_len()),
            "Conv2d: the gradient's shape does not match the input's and the layer's"
        );
        // With a fused ReLU (and no pooling), everything below uses dZ = dY ⊙ [Y > 0] in place of
        // dY; after a pooling, the ReLU's mask is applied to each window's gradient instead.
        let grad_output = if self.fused_relu && self.pool.is_none() {
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
        // The images in groups (see IMAGES_PER_GROUP), each group's sums on one core.
        let rows = if self.input_grad_needed { n } else { 0 };
        ensure_shape(&mut self.grad_input, rows, self.shape.input_len());
        self.grad_input.fill(0.0);
        let group_count = n.div_ceil(IMAGES_PER_GROUP).max(1);
        let (out_channels, taps) = self.weight.dim();
        self.groups
            .resize_with(group_count, || GroupGradients::new(out_channels, taps));
        let record = ForwardRecord {
            shape: self.shape,
            weight: self.weight.view(),
            algorithm: &self.algorithm,
            pool: self.pool.map(|pool| PoolRecord {
                shape: pool,
                winners: &self.winners,
                relu_output: self.fused_relu.then(|| self.output.view()),
            }),
        };
        let mut grad_inputs: Vec<Option<ArrayViewMut2<f32>>> = if self.input_grad_needed {
            self.grad_input
                .axis_chunks_iter_mut(Axis(0), IMAGES_PER_GROUP)
                .map(Some)
                .collect()
        } else {
            (0..group_count).map(|_| None).collect()
        };
        let groups = &mut self.groups[..group_count];
        let one_group =
            |(g, (sums, grad_input)): (usize, (&mut GroupGradients, &mut Option<_>))| {
                let images = g * IMAGES_PER_GROUP..((g + 1) * IMAGES_PER_GROUP).min(n);
                backward_group(
                    &record,
                    images,
                    input,
                    grad_output,
                    sums,
                    grad_input.as_mut(),
                );
            };
        if threads() > 1 && group_count > 1 {
            groups
                .par_iter_mut()
                .zip(grad_inputs.par_iter_mut())
                .enumerate()
                .for_each(one_group);
        } else {
            groups
                .iter_mut()
                .zip(grad_inputs.iter_mut())
                .enumerate()
                .for_each(one_group);
        }
        // dW = Σ_groups dW_group, in order (likewise db).
        let (first, others) = self.groups.split_first().expect("at least one group");
        self.grad_weight.assign(&first.weight);
        self.grad_bias.assign(&first.bias);
        for group in &others[..group_count - 1] {
            self.grad_weight += &group.weight;
            self.grad_bias += &group.bias;
        }
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

    /// Taken unless a ReLU is already fused (it would come before the pooling) or the kernel
    /// covers the image (one output pixel per channel: nothing to pool).
    fn fuse_max_pool(&mut self, pool: PoolShape) -> bool {
        let s = self.shape;
        let fits = (pool.channels, pool.height, pool.width)
            == (s.out_channels, s.out_height(), s.out_width());
        if self.fused_relu || s.covers_image() || self.pool.is_some() || !fits {
            return false;
        }
        self.pool = Some(pool);
        true
    }

    /// `Z = W·P`, `dW = dZ·Pᵀ` and `dP = Wᵀ·dZ` each cost `2·out_channels·taps·n·out_h·out_w`
    /// (by Winograd's algorithm, `M`, `dU` and `dV` each cost `2·16·out_channels·in_channels` per
    /// tile; the direct algorithm's sums are im2col's products term for term).
    fn training_flops(&self, batch: usize) -> u64 {
        let products = if self.input_grad_needed { 3 } else { 2 };
        let s = self.shape;
        if let Algorithm::Winograd(_) = self.algorithm {
            return products * batch as u64 * winograd::product_flops(&s);
        }
        let pixels = batch * s.out_pixels();
        products * 2 * (s.out_channels * s.taps() * pixels) as u64
    }

    fn spec(&self) -> LayerSpec {
        match self.algorithm {
            Algorithm::Im2col => LayerSpec::Conv2d(self.shape),
            Algorithm::Winograd(_) => LayerSpec::WinogradConv2d(self.shape),
            Algorithm::Direct => LayerSpec::DirectConv2d(self.shape),
        }
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
        let algorithm = match self.algorithm {
            Algorithm::Im2col => "",
            Algorithm::Winograd(_) => ", Winograd F(2x2, 3x3)",
            Algorithm::Direct => ", direct",
        };
        format!(
            "Conv2d({} -> {}, {k}x{k}, stride {}, padding {}, dilation {}; {}x{} -> {}x{}{algorithm})",
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
