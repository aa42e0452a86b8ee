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
//!
//! On CPUs with AVX-512 the two inner loops run on 512-bit vectors, each holding two vectors of
//! lanes: two neighbouring pixels of a row (the block sums, for two blocks side by side:
//! [`block_pair_sums_avx512`]) or the same pixel of two filters (`dW`, four filters at a time:
//! [`add_weight_grad_avx512`]). Every lane still sums the same terms in the same order, so the
//! results are the same bits as with AVX2, at up to twice the multiply-adds per instruction.

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
    /// The sums of one row of blocks, `(blocks across)`
    row_sums: Vec<BlockSums>,
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
            row_sums: Vec::new(),
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
/// `Σ_{c, ky, kx} weights[o, c, ky, kx] · planes[c, 2·by + row + ky, 6·bx + column + kx]`, with
/// `weights` `(outs, ins, K, K)`. ([`block_row_sums`] loops over the blocks itself: a closure
/// called per block was compiled apart, without AVX2.)
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

/// The sums of the `blocks` blocks of row `by` of output channel `o` into `row`, one per block
/// across: two blocks at a time where the CPU has AVX-512, one at a time otherwise.
#[inline(always)]
fn block_row_sums<const K: usize>(
    input: (&[Lanes], Planes),
    weights: &[f32],
    (o, ins): (usize, usize),
    (by, blocks): (usize, usize),
    row: &mut Vec<BlockSums>,
) {
    row.resize(blocks, BlockSums::default());
    #[cfg(target_arch = "x86_64")]
    let paired = match has_avx512() {
        true => {
            let (pairs, _) = row.as_chunks_mut::<2>();
            for (pair, sums) in pairs.iter_mut().enumerate() {
                let block = (by, 2 * pair);
                // SAFETY: the CPU has AVX-512 (F and DQ), checked just above.
                unsafe { block_pair_sums_avx512::<K>(input, weights, (o, ins), block, sums) };
            }
            2 * pairs.len()
        }
        false => 0,
    };
    #[cfg(not(target_arch = "x86_64"))]
    let paired = 0;
    for (bx, sums) in row.iter_mut().enumerate().skip(paired) {
        *sums = block_sums::<K>(input, weights, (o, ins), (by, bx));
    }
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
            let row = &mut buffers.row_sums;
            for o in 0..channels.0 {
                let plane = &mut planes[o * pixels..][..pixels];
                for by in 0..geometry.blocks.0 {
                    let at = (by, geometry.blocks.1);
                    block_row_sums::<K>(input, weight, (o, channels.1), at, row);
                    for (bx, sums) in row.iter().enumerate() {
                        put_block(plane, width, (by, bx), sums);
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
            let row = &mut buffers.row_sums;
            pool_blocks::<K>(&geometry, input, (weight, bias), (pooled, winners), row);
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
    row: &mut Vec<BlockSums>,
) {
    let s = &geometry.shape;
    let (out_w, pooled_w) = (s.out_width(), s.out_width() / 2);
    let windows = (s.out_height() / 2) * pooled_w;
    let (below, below_next) = ([out_w as u32; LANES], [out_w as u32 + 1; LANES]);
    for (o, &b) in bias.iter().enumerate() {
        for by in 0..geometry.blocks.0 {
            let at = (by, geometry.blocks.1);
            block_row_sums::<K>(input, weight, (o, s.in_channels), at, row);
            for (bx, sums) in row.iter_mut().enumerate() {
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
    // Two filters at a time (four with AVX-512), their dZ planes written just before their dW
    // sums read them (all of them stay for dX, if wanted).
    let group = if has_avx512() { 4 } else { 2 };
    for first in (0..shape.out_channels).step_by(group) {
        let filters = first..(first + group).min(shape.out_channels);
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
        let weight_sums = vectors_mut(weight_sums);
        #[cfg(target_arch = "x86_64")]
        if filters.len() == 4 {
            // SAFETY: groups of four are made only where the CPU has AVX-512 (F and DQ).
            unsafe {
                add_weight_grad_avx512::<K>(&geometry, with_input_grad, first, buffers, weight_sums)
            };
            continue;
        }
        for pair in filters.clone().step_by(2) {
            let filters = pair..(pair + 2).min(filters.end);
            add_weight_grad::<K>(&geometry, with_input_grad, filters, buffers, weight_sums);
        }
    }
    if let Some(mut grad_input) = grad_input {
        flip_filters::<K>(shape, weight, &mut buffers.flipped);
        let (grad, _) = geometry.output_grad(true);
        let planes = vectors_mut(&mut buffers.input_grad_planes);
        let dx = geometry.input_grad();
        let dz = (vectors(&buffers.output_grad_planes), grad);
        let blocks = geometry.input_grad_blocks();
        let row = &mut buffers.row_sums;
        for c in 0..shape.in_channels {
            let plane = &mut planes[c * dx.pixels()..][..dx.pixels()];
            for by in 0..blocks.0 {
                let flipped = &buffers.flipped;
                let at = (by, blocks.1);
                block_row_sums::<K>(dz, flipped, (c, shape.out_channels), at, row);
                for (bx, sums) in row.iter().enumerate() {
                    put_block(plane, dx.width, (by, bx), sums);
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

/// What the `dW` loops read: the rows of the input planes and of the `dZ` planes.
struct WeightGradRows<'a> {
    input: (&'a [Lanes], Planes),
    dz: (&'a [Lanes], Planes),
    /// Where `dZ` starts in its planes: `border` pixels down and across.
    border: usize,
    /// The output's blocks, which the sums run over: rows, and columns of a row.
    rows: usize,
    cols: usize,
}

impl<'a> WeightGradRows<'a> {
    fn new(geometry: &Geometry, with_input_grad: bool, buffers: &'a ChunkBuffers) -> Self {
        let (grad, border) = geometry.output_grad(with_input_grad);
        WeightGradRows {
            input: (vectors(&buffers.input_planes), geometry.input),
            dz: (vectors(&buffers.output_grad_planes), grad),
            border,
            rows: geometry.output.height,
            cols: geometry.output.width,
        }
    }

    /// Row `y` of output channel `o`'s `dZ`: `cols` pixels.
    #[inline(always)]
    fn dz(&self, o: usize, y: usize) -> &'a [Lanes] {
        let (planes, grad) = self.dz;
        let row = (self.border + y) * grad.width + self.border;
        &planes[o * grad.pixels() + row..][..self.cols]
    }

    /// Row `y` of input channel `c`'s plane: the `cols + K - 1` pixels a row of sums reads.
    #[inline(always)]
    fn input<const K: usize>(&self, c: usize, y: usize) -> &'a [Lanes] {
        let (planes, input) = self.input;
        &planes[c * input.pixels() + y * input.width..][..self.cols + K - 1]
    }
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
    let rows = WeightGradRows::new(geometry, with_input_grad, buffers);
    // A single last filter is computed twice and kept once.
    let (o0, o1) = (filters.start, filters.end - 1);
    for c in 0..ins {
        for ky in 0..K {
            let mut sums = [[[0.0; LANES]; K]; 2];
            for y in 0..rows.rows {
                let (dz0, dz1) = (rows.dz(o0, y), rows.dz(o1, y));
                let x = rows.input::<K>(c, y + ky);
                for column in 0..rows.cols {
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

/// `dW` from the lanes' sums `(out_channels, taps, lanes)`: each weight's lanes added in order.
pub(crate) fn weight_grad(weight_sums: &[f32], mut grad_weight: ArrayViewMut2<f32>) {
    let grad = grad_weight
        .as_slice_mut()
        .expect("the weight gradient is contiguous");
    for (g, lanes) in grad.iter_mut().zip(vectors(weight_sums)) {
        *g = lanes.iter().sum();
    }
}

/// Whether the CPU has the AVX-512 instructions the 512-bit loops use (F and DQ).
fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    return std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// [`block_sums`] of blocks `bx` and `bx + 1` of row `by`, into `blocks`: 12 columns, each
/// 512-bit vector two neighbouring columns' lanes, so a row's 6 vectors of sums and one broadcast
/// weight take the place of 12 AVX2 ones. Each sum adds the same products in the same order as [`block_sums`].
///
/// # Safety
/// The CPU must have AVX-512 F and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
#[inline(never)]
fn block_pair_sums_avx512<const K: usize>(
    (planes, geometry): (&[Lanes], Planes),
    weights: &[f32],
    (o, ins): (usize, usize),
    (by, bx): (usize, usize),
    blocks: &mut [BlockSums; 2],
) {
    use std::arch::x86_64::*;
    const PAIRS: usize = BLOCK_COLS;
    let pixels = geometry.pixels();
    let mut sums = [[_mm512_setzero_ps(); PAIRS]; BLOCK_ROWS];
    for c in 0..ins {
        let plane = &planes[c * pixels..][..pixels];
        let filter = &weights[(o * ins + c) * K * K..][..K * K];
        for ky in 0..K {
            for (row, sums) in sums.iter_mut().enumerate() {
                let y = BLOCK_ROWS * by + row + ky;
                let x = &plane[y * geometry.width + BLOCK_COLS * bx..][..2 * BLOCK_COLS + K - 1];
                let x = x.as_flattened().as_ptr();
                for kx in 0..K {
                    let w = _mm512_set1_ps(filter[ky * K + kx]);
                    for (pair, sum) in sums.iter_mut().enumerate() {
                        // SAFETY: columns 2·pair + kx and the next are within `x`'s 12 + K - 1.
                        let x = unsafe { _mm512_loadu_ps(x.add((2 * pair + kx) * LANES)) };
                        *sum = _mm512_fmadd_ps(w, x, *sum);
                    }
                }
            }
        }
    }
    for (row, sums) in sums.iter().enumerate() {
        for (pair, &sum) in sums.iter().enumerate() {
            let (block, column) = (2 * pair / BLOCK_COLS, 2 * pair % BLOCK_COLS);
            let to = blocks[block][row][column..][..2].as_flattened_mut();
            // SAFETY: `to` holds two vectors of lanes, 16 values.
            unsafe { _mm512_storeu_ps(to.as_mut_ptr(), sum) };
        }
    }
}

/// [`add_weight_grad`] for the four filters from `first`, each 512-bit vector of sums two
/// filters' lanes (`dZ` of filters 0 and 1, or 2 and 3, against one input vector loaded into
/// both halves): 10 vectors of sums for a 5x5 kernel row instead of 20. Each lane adds the same
/// products in the same order as [`add_weight_grad`].
///
/// # Safety
/// The CPU must have AVX-512 F and DQ.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
#[inline(never)]
fn add_weight_grad_avx512<const K: usize>(
    geometry: &Geometry,
    with_input_grad: bool,
    first: usize,
    buffers: &ChunkBuffers,
    weight_sums: &mut [Lanes],
) {
    use std::arch::x86_64::*;
    let ins = geometry.shape.in_channels;
    let rows = WeightGradRows::new(geometry, with_input_grad, buffers);
    for c in 0..ins {
        for ky in 0..K {
            // Separate arrays, not one of two: the compiler kept one of those in memory.
            let (mut sums01, mut sums23) = ([_mm512_setzero_ps(); K], [_mm512_setzero_ps(); K]);
            for y in 0..rows.rows {
                let dz = |o: usize| rows.dz(first + o, y).as_flattened().as_ptr();
                let (dz0, dz1, dz2, dz3) = (dz(0), dz(1), dz(2), dz(3));
                let x = rows.input::<K>(c, y + ky).as_flattened().as_ptr();
                for at in (0..rows.cols * LANES).step_by(LANES) {
                    // SAFETY: every load is of a column below `cols` (and `cols + K - 1` for x).
                    unsafe {
                        let both = |low: *const f32, high: *const f32| {
                            let low = _mm512_castps256_ps512(_mm256_loadu_ps(low.add(at)));
                            _mm512_insertf32x8::<1>(low, _mm256_loadu_ps(high.add(at)))
                        };
                        let (d01, d23) = (both(dz0, dz1), both(dz2, dz3));
                        for kx in 0..K {
                            let x = _mm512_broadcast_f32x8(_mm256_loadu_ps(x.add(at + kx * LANES)));
                            sums01[kx] = _mm512_fmadd_ps(d01, x, sums01[kx]);
                            sums23[kx] = _mm512_fmadd_ps(d23, x, sums23[kx]);
                        }
                    }
                }
            }
            for (pair, sums) in [sums01, sums23].iter().enumerate() {
                for (kx, &sum) in sums.iter().enumerate() {
                    let mut halves = [Lanes::default(); 2];
                    // SAFETY: `halves` holds 16 values.
                    unsafe { _mm512_storeu_ps(halves.as_flattened_mut().as_mut_ptr(), sum) };
                    for (half, sum) in halves.into_iter().enumerate() {
                        let o = first + 2 * pair + half;
                        let total = &mut weight_sums[(o * ins + c) * K * K + ky * K + kx];
                        *total = add(*total, sum);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array2;
    use rand::Rng;

    use super::*;

    /// `Σ_terms a·b` with one rounding per term, in the order given: what every lane computes.
    fn fused_sum(terms: impl Iterator<Item = (f32, f32)>) -> f32 {
        terms.fold(0.0, |sum, (a, b)| a.mul_add(b, sum))
    }

    /// One chunk's forward pass, `dW` (each lane is one image's) and `dX` against the formulas of
    /// the module documentation summed value by value in the loops' order, bit for bit: whichever
    /// loops this CPU runs (AVX-512, AVX2 or neither), the results are the same. The shapes have
    /// blocks across in odd and even numbers (a pair and a single block with AVX-512) and filters
    /// in and not in groups of four.
    #[test]
    fn a_chunk_gives_the_bits_of_the_sums_in_order_on_any_cpu() {
        let mut rng = crate::seeded_rng(40);
        // (in, out, height, width, kernel, padding)
        for (ins, outs, height, width, kernel, padding) in [
            (1, 8, 28, 28, 5, 0),
            (2, 5, 9, 15, 3, 1),
            (3, 3, 8, 8, 4, 2),
        ] {
            let shape = ConvShape {
                in_channels: ins,
                out_channels: outs,
                height,
                width,
                kernel,
                stride: 1,
                padding,
                dilation: 1,
            };
            let (oh, ow) = (shape.out_height(), shape.out_width());
            let k = kernel;
            let mut random = |rows: usize, cols: usize| {
                Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0f32..1.0))
            };
            let (x, dz) = (
                random(LANES, shape.input_len()),
                random(LANES, shape.output_len()),
            );
            let (weight, bias) = (random(outs, ins * k * k), random(1, outs));
            let (weight, bias) = (weight.as_slice().unwrap(), bias.as_slice().unwrap());
            // X and dZ with zeros outside, and one weight, by their indices.
            let input = |n: usize, c: usize, y: isize, x_: isize| {
                let (y, x_) = (y - padding as isize, x_ - padding as isize);
                let inside = (0..height as isize).contains(&y) && (0..width as isize).contains(&x_);
                match inside {
                    true => x[(n, (c * height + y as usize) * width + x_ as usize)],
                    false => 0.0,
                }
            };
            let grad = |n: usize, o: usize, y: isize, x_: isize| {
                let inside = (0..oh as isize).contains(&y) && (0..ow as isize).contains(&x_);
                match inside {
                    true => dz[(n, (o * oh + y as usize) * ow + x_ as usize)],
                    false => 0.0,
                }
            };
            let w = |o: usize, c: usize, ky: usize, kx: usize| {
                weight[(o * ins + c) * k * k + ky * k + kx]
            };
            let taps = || {
                (0..ins)
                    .flat_map(move |c| (0..k).flat_map(move |ky| (0..k).map(move |kx| (c, ky, kx))))
            };

            let mut buffers = ChunkBuffers::default();
            let mut z = Array2::zeros((LANES, shape.output_len()));
            forward_chunk(
                &shape,
                weight,
                bias,
                x.view(),
                &mut buffers,
                ChunkOutput::Values(z.view_mut()),
            );
            let mut weight_sums = Vec::new();
            let mut dx = Array2::zeros((LANES, shape.input_len()));
            let grad_output = ChunkGrad::Values(dz.view());
            let sums = (&mut weight_sums, false);
            backward_chunk(
                &shape,
                weight,
                x.view(),
                grad_output,
                &mut buffers,
                sums,
                Some(dx.view_mut()),
            );

            for n in 0..LANES {
                for (o, y, x_) in (0..outs)
                    .flat_map(|o| (0..oh).flat_map(move |y| (0..ow).map(move |x_| (o, y, x_))))
                {
                    let terms = taps().map(|(c, ky, kx)| {
                        (
                            w(o, c, ky, kx),
                            input(n, c, (y + ky) as isize, (x_ + kx) as isize),
                        )
                    });
                    let expected = fused_sum(terms) + bias[o];
                    assert_eq!(
                        z[(n, (o * oh + y) * ow + x_)].to_bits(),
                        expected.to_bits(),
                        "{shape:?} Z"
                    );
                }
                for (o, (c, ky, kx)) in (0..outs).flat_map(|o| taps().map(move |t| (o, t))) {
                    let pixels = (0..oh).flat_map(|y| (0..ow).map(move |x_| (y, x_)));
                    let terms = pixels.map(|(y, x_)| {
                        let (y, x_) = (y as isize, x_ as isize);
                        (
                            grad(n, o, y, x_),
                            input(n, c, y + ky as isize, x_ + kx as isize),
                        )
                    });
                    let sum = weight_sums[((o * ins + c) * k * k + ky * k + kx) * LANES + n];
                    assert_eq!(sum.to_bits(), fused_sum(terms).to_bits(), "{shape:?} dW");
                }
                let border = (k - 1 - padding) as isize;
                for (c, i, j) in (0..ins)
                    .flat_map(|c| (0..height).flat_map(move |i| (0..width).map(move |j| (c, i, j))))
                {
                    let flipped_taps = (0..outs)
                        .flat_map(|o| (0..k).flat_map(move |ky| (0..k).map(move |kx| (o, ky, kx))));
                    let terms = flipped_taps.map(|(o, ky, kx)| {
                        let (y, x_) = ((i + ky) as isize - border, (j + kx) as isize - border);
                        (w(o, c, k - 1 - ky, k - 1 - kx), grad(n, o, y, x_))
                    });
                    let expected = fused_sum(terms);
                    assert_eq!(
                        dx[(n, (c * height + i) * width + j)].to_bits(),
                        expected.to_bits(),
                        "{shape:?} dX"
                    );
                }
            }
        }
    }
}
