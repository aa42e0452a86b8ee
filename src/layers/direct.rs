//! A convolution with stride 1 computed directly, without patches or matrix products, eight
//! images at a time (one per lane of every vector: see the `lanes` module).
//! [`Conv2d`](super::Conv2d) uses it when asked to (`conv C K algorithm direct` in the
//! architecture grammar). It pays where im2col's products are too small to run at speed: few
//! input channels, as in a first layer on the image itself (the fast recipe's 1 -> 24 maps, 5x5,
//! whose product per image is 24x25 by 25x576).
//!
//! Forward: every output value a sum over the taps, every term one fused multiply-add of a vector
//! (one rounding; the same bits on every CPU, see [`add_scaled`]):
//!
//! ```text
//! Z[o, y, x] = b[o] + Σ_{c, ky, kx} W[o, c, ky, kx] · X[c, y + ky - padding, x + kx - padding]
//! ```
//!
//! (pixels outside the image count as zero), computed a block of 2x6 outputs at a time: the
//! block's 12 sums stay in registers while the taps go by, and each input vector read serves the
//! block's 6 columns. A fused 2x2 pooling takes the block's three windows as soon as it is done.
//!
//! Backward, with `dZ` the output gradient (zero outside the output):
//!
//! ```text
//! dW[o, c, ky, kx] = Σ_images Σ_{y, x} dZ[o, y, x] · X[c, y + ky - padding, x + kx - padding]
//! db[o]            = Σ_images Σ_{y, x} dZ[o, y, x]
//! dX[c, i, j]      = Σ_{o, ky, kx} W[o, c, ky, kx] · dZ[o, i + padding - ky, j + padding - kx]
//! ```
//!
//! `dW` is summed for two output channels and one row of the kernel at a time (2·K vectors of
//! sums in registers) over every output pixel; each lane sums its own image's terms, and the
//! lanes are added together once a group of images is done ([`weight_grad`]). `dX` is the
//! forward pass again: `dZ` padded by `K - 1 - padding` pixels, convolved with the filters
//! flipped and their channels swapped, `W'[c, o, ky, kx] = W[o, c, K-1-ky, K-1-kx]`.
//!
//! Planes: each input channel of a chunk is copied inside a border of `padding` zeros, and the
//! output is computed in whole blocks, so a plane is as large as the blocks need (what lies
//! beyond the image, or beyond the output, is zero and never written).

use std::ops::Range;

use ndarray::{ArrayView2, ArrayViewMut2};

use super::lanes::{
    add, copy_transposed, from_plane, later_wins_lanes, pooled_grads_into_lanes, to_plane, vectors,
    vectors_mut, ChunkGrad, ChunkOutput, Lanes, Region, Rows, LANES,
};
use super::ConvShape;

/// Output rows of a block.
const BLOCK_ROWS: usize = 2;
/// Output columns of a block. 12 sums a block: a fused multiply-add takes 4-5 cycles and two
/// start every cycle, so fewer than 10 independent sums leave the units waiting (2x4 measured
/// 10% slower on the fast recipe's first layer); 12, a broadcast weight and an input vector fit
/// AVX2's 16 registers.
const BLOCK_COLS: usize = 6;
/// The largest kernel the algorithm takes: each kernel size is a separately compiled loop nest
/// (2·K sums in registers for `dW`), and AVX2 has 16 registers.
const MAX_KERNEL: usize = 7;

/// Whether a convolution can be computed by this algorithm, and if not why.
pub fn check(shape: &ConvShape) -> Result<(), String> {
    if shape.stride != 1 || shape.dilation != 1 {
        return Err("the direct algorithm needs stride 1 and dilation 1".into());
    }
    if shape.kernel > MAX_KERNEL {
        return Err(format!(
            "the direct algorithm takes kernels up to {MAX_KERNEL}x{MAX_KERNEL}"
        ));
    }
    if shape.padding >= shape.kernel {
        return Err("the direct algorithm needs a padding smaller than the kernel".into());
    }
    Ok(())
}

/// The sums of one block of outputs, `[row][column]`.
type BlockSums = [[Lanes; BLOCK_COLS]; BLOCK_ROWS];

/// Where a chunk's planes of one kind lie: `channels` planes of `height x width` pixels, one
/// after the other.
#[derive(Clone, Copy)]
struct Planes {
    width: usize,
    height: usize,
}

impl Planes {
    fn pixels(&self) -> usize {
        self.width * self.height
    }

    /// The `height x width` pixels from pixel `(top, left)` of a plane.
    fn region(&self, (top, left): (usize, usize), (height, width): (usize, usize)) -> Region {
        Region {
            start: top * self.width + left,
            stride: self.width,
            height,
            width,
        }
    }
}

/// How the blocks cover a layer's output, and the planes they read and write.
struct Geometry {
    shape: ConvShape,
    /// Blocks down and across the output.
    blocks: (usize, usize),
    /// The input planes: the image inside its border of `padding` zeros, and as much more as
    /// the last blocks read.
    input: Planes,
    /// The output planes (`Z` when it is not pooled): the output's blocks.
    output: Planes,
}

impl Geometry {
    fn new(shape: &ConvShape) -> Self {
        let blocks = (
            shape.out_height().div_ceil(BLOCK_ROWS),
            shape.out_width().div_ceil(BLOCK_COLS),
        );
        let output = Planes {
            height: BLOCK_ROWS * blocks.0,
            width: BLOCK_COLS * blocks.1,
        };
        let input = Planes {
            height: output.height + shape.kernel - 1,
            width: output.width + shape.kernel - 1,
        };
        Geometry {
            shape: *shape,
            blocks,
            input,
            output,
        }
    }

    fn image_region(&self) -> Region {
        let s = &self.shape;
        self.input
            .region((s.padding, s.padding), (s.height, s.width))
    }

    fn output_region(&self) -> Region {
        let s = &self.shape;
        self.output.region((0, 0), (s.out_height(), s.out_width()))
    }

    /// The planes of `dZ` and where it lies in them: a border of `K - 1 - padding` zeros when
    /// `dX` is computed from them (blocks covering the input), none otherwise.
    fn output_grad(&self, with_input_grad: bool) -> (Planes, usize) {
        let s = &self.shape;
        if !with_input_grad {
            return (self.output, 0);
        }
        let border = s.kernel - 1 - s.padding;
        let (rows, cols) = self.input_grad_blocks();
        let reach = |blocks: usize, size: usize, out: usize| {
            (size * blocks + s.kernel - 1).max(border + out)
        };
        let planes = Planes {
            height: reach(rows, BLOCK_ROWS, self.output.height),
            width: reach(cols, BLOCK_COLS, self.output.width),
        };
        (planes, border)
    }

    /// Blocks down and across the input, for `dX`.
    fn input_grad_blocks(&self) -> (usize, usize) {
        let s = &self.shape;
        (s.height.div_ceil(BLOCK_ROWS), s.width.div_ceil(BLOCK_COLS))
    }

    /// The planes `dX` is computed into: the input's blocks.
    fn input_grad(&self) -> Planes {
        let (rows, cols) = self.input_grad_blocks();
        Planes {
            height: BLOCK_ROWS * rows,
            width: BLOCK_COLS * cols,
        }
    }
}

/// One core's buffers for a chunk of images.
#[derive(Default)]
pub(crate) struct ChunkBuffers {
    /// Every input channel of the chunk, `(in_channels, input plane, lanes)`
    input_planes: Vec<f32>,
    /// `Z`, `(out_channels, output plane, lanes)`, when it is not pooled
    output_planes: Vec<f32>,
    /// `dZ`, `(out_channels, its plane, lanes)`: what lies outside the output is never written
    output_grad_planes: Vec<f32>,
    /// `dX`, `(in_channels, input's blocks, lanes)`
    input_grad_planes: Vec<f32>,
    /// The pooled values (forward) or their gradients (backward), `(out_channels, windows, lanes)`
    pooled: Vec<f32>,
    /// The filters flipped, their channels swapped: `(in_channels, out_channels, K, K)`
    flipped: Vec<f32>,
    /// The layer the buffers were made for, and whether the `dZ` planes have a border
    made_for: Option<(ConvShape, bool)>,
}

impl ChunkBuffers {
    /// Shapes the buffers for a layer (zeroed when the layer's shape changes).
    fn prepare(&mut self, geometry: &Geometry, with_input_grad: bool) {
        let s = geometry.shape;
        if self.made_for == Some((s, with_input_grad)) {
            return;
        }
        let zeros = |planes: usize, pixels: usize| vec![0.0; planes * pixels * LANES];
        let windows = (s.out_height() / 2) * (s.out_width() / 2);
        let (grad, _) = geometry.output_grad(with_input_grad);
        *self = ChunkBuffers {
            input_planes: zeros(s.in_channels, geometry.input.pixels()),
            output_planes: zeros(s.out_channels, geometry.output.pixels()),
            output_grad_planes: zeros(s.out_channels, grad.pixels()),
            input_grad_planes: zeros(s.in_channels, geometry.input_grad().pixels()),
            pooled: zeros(s.out_channels, windows),
            flipped: Vec::new(),
            made_for: Some((s, with_input_grad)),
        };
    }
}

/// `sum + w·x` in every lane, as one fused multiply-add (one rounding): an FMA instruction where
/// the CPU has them, the C library's exact `fmaf` (slower) where not, so the results do not
/// depend on the CPU.
#[inline(always)]
fn add_scaled(mut sum: Lanes, w: f32, x: &Lanes) -> Lanes {
    for (sum, &x) in sum.iter_mut().zip(x) {
        *sum = w.mul_add(x, *sum);
    }
    sum
}

/// `sum + d·x`, lane by lane, fused as in [`add_scaled`].
#[inline(always)]
fn add_product(mut sum: Lanes, d: &Lanes, x: &Lanes) -> Lanes {
    for ((sum, &d), &x) in sum.iter_mut().zip(d).zip(x) {
        *sum = d.mul_add(x, *sum);
    }
    sum
}

/// The sums of output channel `o`'s block `(by, bx)`,
/// `Σ_{c, ky, kx} weights[o, c, ky, kx] · planes[c, 2·by + row + ky, 4·bx + column + kx]`, with
/// `weights` `(outs, ins, K, K)`. (The callers loop over the blocks themselves: a closure called
/// per block was compiled apart, without AVX2.)
#[inline(always)]
fn block_sums<const K: usize>(
    (planes, geometry): (&[Lanes], Planes),
    weights: &[f32],
    (o, ins): (usize, usize),
    (by, bx): (usize, usize),
) -> BlockSums {
    let pixels = geometry.pixels();
    let mut sums = [[[0.0; LANES]; BLOCK_COLS]; BLOCK_ROWS];
    for c in 0..ins {
        let plane = &planes[c * pixels..][..pixels];
        let filter = &weights[(o * ins + c) * K * K..][..K * K];
        for ky in 0..K {
            for (row, sums) in sums.iter_mut().enumerate() {
                let y = BLOCK_ROWS * by + row + ky;
                let x = &plane[y * geometry.width + BLOCK_COLS * bx..][..BLOCK_COLS + K - 1];
                for kx in 0..K {
                    let w = filter[ky * K + kx];
                    for (column, sum) in sums.iter_mut().enumerate() {
                        *sum = add_scaled(*sum, w, &x[column + kx]);
                    }
                }
            }
        }
    }
    sums
}

/// Stores a block's sums at block `(by, bx)` of a plane `width` pixels across.
#[inline(always)]
fn put_block(plane: &mut [Lanes], width: usize, (by, bx): (usize, usize), sums: &BlockSums) {
    for (row, sums) in sums.iter().enumerate() {
        let at = (BLOCK_ROWS * by + row) * width + BLOCK_COLS * bx;
        plane[at..][..BLOCK_COLS].copy_from_slice(sums);
    }
}

/// Calls `run::<K>()` for the layer's kernel size `kernel` (each size its own compiled loops).
macro_rules! for_kernel {
    ($kernel:expr, $run:ident ( $($arg:expr),* )) => {
        match $kernel {
            1 => $run::<1>($($arg),*),
            2 => $run::<2>($($arg),*),
            3 => $run::<3>($($arg),*),
            4 => $run::<4>($($arg),*),
            5 => $run::<5>($($arg),*),
            6 => $run::<6>($($arg),*),
            7 => $run::<7>($($arg),*),
            k => unreachable!("check() refuses {k}x{k} kernels"),
        }
    };
}

/// Every channel of the chunk's images `(images, C·H·W)` into its input plane, images innermost.
#[inline(always)]
fn fill_input_planes(geometry: &Geometry, images: ArrayView2<f32>, buffers: &mut ChunkBuffers) {
    let s = &geometry.shape;
    let planes = buffers
        .input_planes
        .chunks_exact_mut(geometry.input.pixels() * LANES);
    for (c, plane) in planes.enumerate() {
        to_plane(
            images,
            c * s.height * s.width,
            geometry.image_region(),
            plane,
        );
    }
}

/// The forward pass of a chunk of at most [`LANES`] images `(images, C·H·W)`: their
/// `Z = conv(X) + b`, or its pooling, into `output`. `weight` is `(out_channels, C·K·K)`.
pub(crate) fn forward_chunk(
    shape: &ConvShape,
    weight: &[f32],
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    output: ChunkOutput,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { forward_chunk_avx2(shape, weight, bias, images, buffers, output) };
    }
    for_kernel!(
        shape.kernel,
        forward_chunk_body(shape, weight, bias, images, buffers, output)
    )
}

/// [`forward_chunk`] compiled for AVX2 and FMA (8 lanes a register instead of the baseline's 4,
/// and the fused multiply-add as one instruction).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn forward_chunk_avx2(
    shape: &ConvShape,
    weight: &[f32],
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    output: ChunkOutput,
) {
    for_kernel!(
        shape.kernel,
        forward_chunk_body(shape, weight, bias, images, buffers, output)
    )
}

#[inline(always)]
fn forward_chunk_body<const K: usize>(
    shape: &ConvShape,
    weight: &[f32],
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    output: ChunkOutput,
) {
    let geometry = Geometry::new(shape);
    buffers.prepare(&geometry, false);
    fill_input_planes(&geometry, images, buffers);
    let input = (vectors(&buffers.input_planes), geometry.input);
    let channels = (shape.out_channels, shape.in_channels);
    match output {
        ChunkOutput::Values(mut z) => {
            let planes = vectors_mut(&mut buffers.output_planes);
            let (width, pixels) = (geometry.output.width, geometry.output.pixels());
            for o in 0..channels.0 {
                let plane = &mut planes[o * pixels..][..pixels];
                for by in 0..geometry.blocks.0 {
                    for bx in 0..geometry.blocks.1 {
                        let sums = block_sums::<K>(input, weight, (o, channels.1), (by, bx));
                        put_block(plane, width, (by, bx), &sums);
                    }
                }
            }
            let planes = buffers.output_planes.chunks_exact(pixels * LANES);
            for ((o, &b), plane) in bias.iter().enumerate().zip(planes) {
                let channel = o * shape.out_pixels();
                from_plane(plane, geometry.output_region(), channel, z.view_mut());
                for mut z in z.rows_mut() {
                    let z = z.as_slice_mut().expect("contiguous rows");
                    z[channel..][..shape.out_pixels()]
                        .iter_mut()
                        .for_each(|z| *z += b);
                }
            }
        }
        ChunkOutput::Pooled(mut y, won) => {
            let pooled = vectors_mut(&mut buffers.pooled);
            let winners = won.as_chunks_mut::<LANES>().0;
            pool_blocks::<K>(&geometry, input, (weight, bias), (pooled, winners));
            let windows = (shape.out_height() / 2) * (shape.out_width() / 2);
            let (n, row_len) = y.dim();
            let y = y.as_slice_mut().expect("contiguous rows");
            for o in 0..shape.out_channels {
                let (from, to) = (o * windows * LANES, o * windows);
                let pooled = Rows::of(&buffers.pooled[from..], LANES);
                copy_transposed(pooled, (&mut y[to..], row_len), windows, n);
            }
        }
    }
}

/// Every block's sums plus the bias, pooled by 2x2 windows into `buffers.pooled`, with the index
/// of each window's winner in its image's `Z` (PyTorch's scan: a later value wins only if larger
/// or NaN).
#[inline(always)]
fn pool_blocks<const K: usize>(
    geometry: &Geometry,
    input: (&[Lanes], Planes),
    (weight, bias): (&[f32], &[f32]),
    (pooled, winners): (&mut [Lanes], &mut [[u32; LANES]]),
) {
    let s = &geometry.shape;
    let (out_w, pooled_w) = (s.out_width(), s.out_width() / 2);
    let windows = (s.out_height() / 2) * pooled_w;
    let (below, below_next) = ([out_w as u32; LANES], [out_w as u32 + 1; LANES]);
    for (o, &b) in bias.iter().enumerate() {
        for by in 0..geometry.blocks.0 {
            for bx in 0..geometry.blocks.1 {
                let mut sums = block_sums::<K>(input, weight, (o, s.in_channels), (by, bx));
                for z in sums.as_flattened_mut() {
                    for z in z {
                        *z += b;
                    }
                }
                for window in 0..BLOCK_COLS / 2 {
                    let px = BLOCK_COLS / 2 * bx + window;
                    if px >= pooled_w {
                        break;
                    }
                    // The window's four values and their offsets from its first in Z (the same
                    // for every window: vectors made once), then the winner's index.
                    let first = (o * s.out_pixels() + 2 * by * out_w + 2 * px) as u32;
                    let value = |row: usize, column: usize| sums[row][2 * window + column];
                    let upper =
                        later_wins_lanes((value(0, 0), [0; LANES]), (value(0, 1), [1; LANES]));
                    let lower = later_wins_lanes((value(1, 0), below), (value(1, 1), below_next));
                    let (max, offset) = later_wins_lanes(upper, lower);
                    let at = o * windows + by * pooled_w + px;
                    pooled[at] = max;
                    for (winner, offset) in winners[at].iter_mut().zip(offset) {
                        *winner = first + offset;
                    }
                }
            }
        }
    }
}

/// The backward pass of a chunk of images `(images, C·H·W)` given their `dZ` (or the gradient of
/// their pooling): each lane's `dW` added onto `weight_sums` `(out_channels, C·K·K, lanes)`
/// (assigned when not `accumulate`) and, if given, `dX` into `grad_input` `(images, C·H·W)`.
pub(crate) fn backward_chunk<'a>(
    shape: &ConvShape,
    weight: &[f32],
    images: ArrayView2<'a, f32>,
    grad_output: ChunkGrad<'a>,
    buffers: &mut ChunkBuffers,
    (weight_sums, accumulate): (&mut Vec<f32>, bool),
    grad_input: Option<ArrayViewMut2<'a, f32>>,
) {
    let args = (
        images,
        grad_output,
        buffers,
        weight_sums,
        accumulate,
        grad_input,
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA, checked just above.
        return unsafe { backward_chunk_avx2(shape, weight, args) };
    }
    for_kernel!(shape.kernel, backward_chunk_body(shape, weight, args))
}

/// What [`backward_chunk`] works on besides the layer.
type BackwardArgs<'a, 'b> = (
    ArrayView2<'a, f32>,
    ChunkGrad<'a>,
    &'b mut ChunkBuffers,
    &'b mut Vec<f32>,
    bool,
    Option<ArrayViewMut2<'a, f32>>,
);

/// [`backward_chunk`] compiled for AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn backward_chunk_avx2(shape: &ConvShape, weight: &[f32], args: BackwardArgs) {
    for_kernel!(shape.kernel, backward_chunk_body(shape, weight, args))
}

#[inline(always)]
fn backward_chunk_body<const K: usize>(shape: &ConvShape, weight: &[f32], args: BackwardArgs) {
    let (images, grad_output, buffers, weight_sums, accumulate, grad_input) = args;
    let geometry = Geometry::new(shape);
    let with_input_grad = grad_input.is_some();
    buffers.prepare(&geometry, with_input_grad);
    fill_input_planes(&geometry, images, buffers);
    read_pooled_grad(&grad_output, buffers);
    let (region, plane_len) = output_grad_region(&geometry, with_input_grad);
    let sums_len = shape.out_channels * shape.taps() * LANES;
    if !accumulate || weight_sums.len() != sums_len {
        weight_sums.clear();
        weight_sums.resize(sums_len, 0.0);
    }
    // Two filters at a time, their dZ planes written just before their dW sums read them (all of
    // them stay for dX, if wanted).
    for first in (0..shape.out_channels).step_by(2) {
        let filters = first..(first + 2).min(shape.out_channels);
        for o in filters.clone() {
            let plane = &mut buffers.output_grad_planes[o * plane_len..][..plane_len];
            match &grad_output {
                ChunkGrad::Values(dz) => to_plane(*dz, o * shape.out_pixels(), region, plane),
                ChunkGrad::Pooled { winners, .. } => {
                    let pooled = (vectors(&buffers.pooled), winners.as_chunks::<LANES>().0);
                    write_winners_grad(&geometry, o, (region, plane), pooled)
                }
            }
        }
        add_weight_grad::<K>(
            &geometry,
            with_input_grad,
            filters,
            buffers,
            vectors_mut(weight_sums),
        );
    }
    if let Some(mut grad_input) = grad_input {
        flip_filters::<K>(shape, weight, &mut buffers.flipped);
        let (grad, _) = geometry.output_grad(true);
        let planes = vectors_mut(&mut buffers.input_grad_planes);
        let dx = geometry.input_grad();
        let dz = (vectors(&buffers.output_grad_planes), grad);
        let blocks = geometry.input_grad_blocks();
        for c in 0..shape.in_channels {
            let plane = &mut planes[c * dx.pixels()..][..dx.pixels()];
            for by in 0..blocks.0 {
                for bx in 0..blocks.1 {
                    let flipped = &buffers.flipped;
                    let sums = block_sums::<K>(dz, flipped, (c, shape.out_channels), (by, bx));
                    put_block(plane, dx.width, (by, bx), &sums);
                }
            }
        }
        let region = dx.region((0, 0), (shape.height, shape.width));
        let planes = buffers.input_grad_planes.chunks_exact(dx.pixels() * LANES);
        for (c, plane) in planes.enumerate() {
            let channel = c * shape.height * shape.width;
            from_plane(plane, region, channel, grad_input.view_mut());
        }
    }
}

/// `W'[c, o, ky, kx] = W[o, c, K-1-ky, K-1-kx]` into `flipped`, from `weight` `(out, C·K·K)`.
fn flip_filters<const K: usize>(shape: &ConvShape, weight: &[f32], flipped: &mut Vec<f32>) {
    let (outs, ins) = (shape.out_channels, shape.in_channels);
    flipped.resize(weight.len(), 0.0);
    for o in 0..outs {
        for c in 0..ins {
            let from = &weight[(o * ins + c) * K * K..][..K * K];
            let to = &mut flipped[(c * outs + o) * K * K..][..K * K];
            for (to, &w) in to.iter_mut().zip(from.iter().rev()) {
                *to = w;
            }
        }
    }
}

/// For a pooling's gradient, the windows' gradients (zero where the ReLU after the pooling was
/// off) into lanes, `(out_channels·windows, lanes)` (the winners are in lanes already).
#[inline(always)]
fn read_pooled_grad(grad_output: &ChunkGrad, buffers: &mut ChunkBuffers) {
    if let ChunkGrad::Pooled {
        grad, relu_output, ..
    } = grad_output
    {
        pooled_grads_into_lanes(*grad, *relu_output, &mut buffers.pooled);
    }
}

/// Where an output channel's `dZ` lies in its plane (see [`Geometry::output_grad`]), and the
/// values of a plane.
#[inline(always)]
fn output_grad_region(geometry: &Geometry, with_input_grad: bool) -> (Region, usize) {
    let s = &geometry.shape;
    let (planes, border) = geometry.output_grad(with_input_grad);
    let region = planes.region((border, border), (s.out_height(), s.out_width()));
    (region, planes.pixels() * LANES)
}

/// Output channel `o`'s `dZ` rebuilt from its pooling's gradient: each window's gradient on its
/// winner, zeros elsewhere.
#[inline(always)]
fn write_winners_grad(
    geometry: &Geometry,
    o: usize,
    (region, plane): (Region, &mut [f32]),
    (grads, winners): (&[Lanes], &[[u32; LANES]]),
) {
    let s = &geometry.shape;
    let (out_w, pooled_w) = (s.out_width(), s.out_width() / 2);
    let windows = (s.out_height() / 2) * pooled_w;
    let plane = vectors_mut(plane);
    for py in 0..s.out_height() / 2 {
        for px in 0..pooled_w {
            let at = o * windows + py * pooled_w + px;
            let (g, won) = (&grads[at], &winners[at]);
            for (row, column) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let (y, x) = (2 * py + row, 2 * px + column);
                let index = (o * s.out_pixels() + y * out_w + x) as u32;
                plane[region.start + y * region.stride + x] = won_by(g, won, index);
            }
        }
    }
}

/// `g` in the lanes whose winner is `index`, zero in the others. A mask of bits rather than an
/// `if`, which the compiler turned into a branch per lane (as often taken as not).
#[inline(always)]
fn won_by(g: &Lanes, winners: &[u32; LANES], index: u32) -> Lanes {
    let mut dz = [0.0; LANES];
    for ((dz, &g), &winner) in dz.iter_mut().zip(g).zip(winners) {
        let mask = ((winner == index) as u32).wrapping_neg();
        *dz = f32::from_bits(g.to_bits() & mask);
    }
    dz
}

/// Each lane's `dW[o, c, ky, kx] += Σ_{y, x} dZ[o, y, x] · X[c, y + ky, x + kx]` (the input
/// planes' coordinates) for the one or two `filters`, one kernel row at a time.
#[inline(always)]
fn add_weight_grad<const K: usize>(
    geometry: &Geometry,
    with_input_grad: bool,
    filters: Range<usize>,
    buffers: &ChunkBuffers,
    weight_sums: &mut [Lanes],
) {
    let ins = geometry.shape.in_channels;
    let (grad, border) = geometry.output_grad(with_input_grad);
    let (input, input_planes) = (geometry.input, vectors(&buffers.input_planes));
    let dz_planes = vectors(&buffers.output_grad_planes);
    let (rows, cols) = (geometry.output.height, geometry.output.width);
    {
        // A single last filter is computed twice and kept once.
        let (o0, o1) = (filters.start, filters.end - 1);
        for c in 0..ins {
            let plane = &input_planes[c * input.pixels()..][..input.pixels()];
            for ky in 0..K {
                let mut sums = [[[0.0; LANES]; K]; 2];
                for y in 0..rows {
                    let row = (border + y) * grad.width + border;
                    let dz0 = &dz_planes[o0 * grad.pixels() + row..][..cols];
                    let dz1 = &dz_planes[o1 * grad.pixels() + row..][..cols];
                    let x = &plane[(y + ky) * input.width..][..cols + K - 1];
                    for column in 0..cols {
                        let (d0, d1, x) = (dz0[column], dz1[column], &x[column..][..K]);
                        for kx in 0..K {
                            sums[0][kx] = add_product(sums[0][kx], &d0, &x[kx]);
                            sums[1][kx] = add_product(sums[1][kx], &d1, &x[kx]);
                        }
                    }
                }
                for (o, sums) in [o0, o1].into_iter().zip(&sums).take(o1 + 1 - o0) {
                    let first = (o * ins + c) * K * K + ky * K;
                    for (total, sum) in weight_sums[first..][..K].iter_mut().zip(sums) {
                        *total = add(*total, *sum);
                    }
                }
            }
        }
    }
}

/// `dW` from the lanes' sums `(out_channels, taps, lanes)`: each weight's lanes added in order.
pub(crate) fn weight_grad(weight_sums: &[f32], mut grad_weight: ArrayViewMut2<f32>) {
    let grad = grad_weight
        .as_slice_mut()
        .expect("the weight gradient is contiguous");
    for (g, lanes) in grad.iter_mut().zip(vectors(weight_sums)) {
        *g = lanes.iter().sum();
    }
}
