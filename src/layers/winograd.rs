//! Winograd's minimal filtering F(2x2, 3x3) (Lavin and Gray, "Fast Algorithms for Convolutional
//! Neural Networks", 2016): a 3x3 convolution with stride 1 computed with 16 multiplications for
//! every 2x2 block of outputs (and pair of channels) instead of 36. [`Conv2d`](super::Conv2d) uses
//! it when asked to (`conv C 3 algorithm winograd` in the architecture grammar).
//!
//! One dimension first. Two outputs of a 3-tap filter `g` over four inputs `d`,
//! `y0 = d0·g0 + d1·g1 + d2·g2` and `y1 = d1·g0 + d2·g1 + d3·g2`, take six multiplications
//! directly and four this way:
//!
//! ```text
//! m0 = (d0 - d2)·g0              m1 = (d1 + d2)·(g0 + g1 + g2)/2
//! m3 = (d1 - d3)·g2              m2 = (d2 - d1)·(g0 - g1 + g2)/2
//! y0 = m0 + m1 + m2              y1 = m1 - m2 - m3
//! ```
//!
//! In matrices, `y = Aᵀ·[(G·g) ⊙ (Bᵀ·d)]`, with
//!
//! ```text
//!      | 1  0 -1  0 |        | 1    0    0   |
//! Bᵀ = | 0  1  1  0 |    G = | 1/2  1/2  1/2 |    Aᵀ = | 1  1  1  0 |
//!      | 0 -1  1  0 |        | 1/2 -1/2  1/2 |         | 0  1 -1 -1 |
//!      | 0  1  0 -1 |        | 0    0    1   |
//! ```
//!
//! Nested in both directions, it gives a 2x2 block of outputs `Y` from a 4x4 tile `d` of the input
//! (neighbouring tiles overlap by two pixels) and the 3x3 kernel `g`:
//!
//! ```text
//! Y = Aᵀ·[U ⊙ V]·A        U = G·g·Gᵀ (4x4)        V = Bᵀ·d·B (4x4)
//! ```
//!
//! Summed over the input channels, the element-wise products become, for each of the 16 positions
//! `ξ` of a transformed tile, one matrix product over all the tiles of a chunk of images:
//!
//! ```text
//! M[ξ] = U[ξ]·V[ξ]:   (out_channels, in_channels)·(in_channels, tiles) -> (out_channels, tiles)
//! ```
//!
//! and each tile's outputs are `Aᵀ·M·A` plus the bias. The products cost `2·16·out·in` per tile
//! of four outputs, against `2·9·out·in` per output directly: 2.25 times fewer. The transforms
//! are additions and halvings.
//!
//! Backward. Every step above is linear, so each one's gradient is its transpose:
//!
//! ```text
//! dM = A·dY·Aᵀ (per tile)       dU[ξ] = Σ_chunks dM[ξ]·V[ξ]ᵀ       dV[ξ] = U[ξ]ᵀ·dM[ξ]
//! dg = Gᵀ·dU·G                  dd = B·dV·Bᵀ, added onto the tile's 16 input pixels
//! ```
//!
//! The results are the direct convolution's up to rounding: the transforms sum in another order
//! (tests compare the two and check the gradients against finite differences).
//!
//! The tiles cover the output in 2x2 blocks, `tile_rows x tile_cols` of them per image. The
//! work goes a chunk of 8 images at a time, and every value is a vector of 8 "lanes", one per
//! image, so that each step of a transform is one vector instruction: each channel of the chunk
//! is first copied into a "plane" with the images innermost, `(pixel, image)`, zero-padded to
//! `(2·tile_rows + 2) x (2·tile_cols + 2)` pixels (the padding, and a block overhanging an
//! odd-sized output, read zeros without a test). Every transform is one function, [`two_sided`]:
//! `L·X·Lᵀ` computed as a one-dimensional step `x ↦ L·x` on the columns, then on the rows, each
//! step the rows of its matrix written out. The products go a group of tiles at a time (the
//! whole image for the fast recipe): column `t·8 + k` of the group's `V` and `M` is its tile `t`
//! of image `k`.

use std::ops::Range;

use ndarray::{s, Array3, ArrayView2, ArrayViewMut2, Axis};

use super::lanes::{
    add, copy_transposed, from_plane, half, later_wins_lanes, neg, pooled_grads_into_lanes, sub,
    to_plane, vectors, vectors_mut, ChunkGrad, ChunkOutput, Lanes, Region, Rows, LANES,
};
use super::ConvShape;
use crate::gemm::matmul;

/// Tiles whose transforms go through the products together (of each of the chunk's images): the
/// whole image for the fast recipe's 10x10 output (25 tiles), a bound on `V`, `M` and `dV` for
/// larger ones (a 28x28 output has 196). Smaller groups measured no faster on the fast recipe's
/// layer: 13 tiles as fast, 5 slower (narrower products).
const TILES_PER_GROUP: usize = 25;

/// Positions of a transformed 4x4 tile.
const TILE: usize = 16;

/// Whether a convolution of this shape can be computed by F(2x2, 3x3), and if not why.
pub fn check(shape: &ConvShape) -> Result<(), String> {
    if (shape.kernel, shape.stride, shape.dilation) == (3, 1, 1) {
        Ok(())
    } else {
        Err(
            "the Winograd algorithm F(2x2, 3x3) needs a 3x3 kernel with stride 1 and dilation 1"
                .into(),
        )
    }
}

/// Floating-point operations of one of the layer's three products (`M`, `dU` or `dV`) for one
/// image: `2·16·out_channels·in_channels` per tile.
pub fn product_flops(shape: &ConvShape) -> u64 {
    let tiles = Tiles::new(shape).per_image();
    2 * (TILE * shape.out_channels * shape.in_channels * tiles) as u64
}

/// How the 2x2 blocks of outputs tile an image.
#[derive(Clone, Copy)]
struct Tiles {
    shape: ConvShape,
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn new(shape: &ConvShape) -> Self {
        Tiles {
            shape: *shape,
            rows: shape.out_height().div_ceil(2),
            cols: shape.out_width().div_ceil(2),
        }
    }

    fn per_image(&self) -> usize {
        self.rows * self.cols
    }

    /// Pixels across an input plane.
    fn plane_width(&self) -> usize {
        2 * self.cols + 2
    }

    /// Pixels of an input plane.
    fn plane_pixels(&self) -> usize {
        (2 * self.rows + 2) * self.plane_width()
    }

    /// Pixels of a plane of output blocks.
    fn output_pixels(&self) -> usize {
        4 * self.per_image()
    }

    /// Where an input channel lies in an input plane: inside its border of `padding` pixels.
    fn image_region(&self) -> Region {
        let s = &self.shape;
        let stride = self.plane_width();
        Region {
            start: s.padding * stride + s.padding,
            stride,
            height: s.height,
            width: s.width,
        }
    }

    /// Where an output channel lies in a plane of output blocks, `2·rows x 2·cols` pixels.
    fn output_region(&self) -> Region {
        Region {
            start: 0,
            stride: 2 * self.cols,
            height: self.shape.out_height(),
            width: self.shape.out_width(),
        }
    }

    /// The groups of tiles whose products are computed together: consecutive tiles,
    /// [`TILES_PER_GROUP`] at most.
    fn groups(&self) -> impl Iterator<Item = Range<usize>> {
        let tiles = self.per_image();
        (0..tiles)
            .step_by(TILES_PER_GROUP)
            .map(move |first| first..tiles.min(first + TILES_PER_GROUP))
    }

    /// The tiles of `group`: each one's index in the group and its position `(ty, tx)`.
    #[inline(always)]
    fn of(&self, group: &Range<usize>) -> impl Iterator<Item = (usize, (usize, usize))> {
        let (first, cols) = (group.start, self.cols);
        group
            .clone()
            .map(move |t| (t - first, (t / cols, t % cols)))
    }
}

/// Where one channel's entries lie in `V`, `M` or their gradients `(16, channels,
/// TILES_PER_GROUP·lanes)` seen as vectors of lanes: entry `ξ` of the group's tile `t` is
/// `start + ξ·per_entry + t`.
#[derive(Clone, Copy)]
struct Transformed {
    start: usize,
    per_entry: usize,
}

impl Transformed {
    fn new(channel: usize, channels: usize) -> Self {
        Transformed {
            start: channel * TILES_PER_GROUP,
            per_entry: channels * TILES_PER_GROUP,
        }
    }

    #[inline(always)]
    fn at(&self, xi: usize, t: usize) -> usize {
        self.start + xi * self.per_entry + t
    }
}

/// `V`, `M` or their gradients as vectors of lanes (see [`Transformed`]).
#[inline(always)]
fn entries(transformed: &Array3<f32>) -> &[Lanes] {
    vectors(transformed.as_slice().expect("standard layout"))
}

/// [`entries`], to write.
#[inline(always)]
fn entries_mut(transformed: &mut Array3<f32>) -> &mut [Lanes] {
    vectors_mut(transformed.as_slice_mut().expect("standard layout"))
}

// Each transform's one-dimensional step, `x ↦ L·x` for one of the matrices of the module
// documentation written out row by row (the tests check them against the matrices).

/// `Bᵀ·d`
#[inline(always)]
fn input_step([d0, d1, d2, d3]: [Lanes; 4]) -> [Lanes; 4] {
    [sub(d0, d2), add(d1, d2), sub(d2, d1), sub(d1, d3)]
}

/// `Aᵀ·m`
#[inline(always)]
fn output_step([m0, m1, m2, m3]: [Lanes; 4]) -> [Lanes; 2] {
    [add(add(m0, m1), m2), sub(sub(m1, m2), m3)]
}

/// `G·g`
#[inline(always)]
fn filter_step([g0, g1, g2]: [Lanes; 3]) -> [Lanes; 4] {
    [
        g0,
        half(add(add(g0, g1), g2)),
        half(add(sub(g0, g1), g2)),
        g2,
    ]
}

/// `A·dy`, the transpose of [`output_step`]
#[inline(always)]
fn output_grad_step([y0, y1]: [Lanes; 2]) -> [Lanes; 4] {
    [y0, add(y0, y1), sub(y0, y1), neg(y1)]
}

/// `B·dv`, the transpose of [`input_step`]
#[inline(always)]
fn input_grad_step([v0, v1, v2, v3]: [Lanes; 4]) -> [Lanes; 4] {
    [v0, add(sub(v1, v2), v3), add(sub(v1, v0), v2), neg(v3)]
}

/// `Gᵀ·du`, the transpose of [`filter_step`]
#[inline(always)]
fn filter_grad_step([u0, u1, u2, u3]: [Lanes; 4]) -> [Lanes; 3] {
    let sum = half(add(u1, u2));
    [add(u0, sum), half(sub(u1, u2)), add(sum, u3)]
}

/// `Y = L·X·Lᵀ` in every lane, for the step `x ↦ L·x`: the step on each column of `X` `(N, N)`,
/// then on each row of the result.
#[inline(always)]
fn two_sided<const N: usize, const M: usize>(
    step: impl Fn([Lanes; N]) -> [Lanes; M],
    x: &[[Lanes; N]; N],
) -> [[Lanes; M]; M] {
    // columns[i][b] = (L·X)(i, b)
    let mut columns = [[[0.0; LANES]; N]; M];
    for b in 0..N {
        let mut column = [[0.0; LANES]; N];
        for (a, entry) in column.iter_mut().enumerate() {
            *entry = x[a][b];
        }
        for (i, entry) in step(column).iter().enumerate() {
            columns[i][b] = *entry;
        }
    }
    let mut y = [[[0.0; LANES]; M]; M];
    for (y, columns) in y.iter_mut().zip(&columns) {
        *y = step(*columns);
    }
    y
}

/// The `R x C` pixels of a plane `width` pixels across from pixel `(y, x)` down and right.
#[inline(always)]
fn block<const R: usize, const C: usize>(
    plane: &[Lanes],
    width: usize,
    (y, x): (usize, usize),
) -> [[Lanes; C]; R] {
    let mut values = [[[0.0; LANES]; C]; R];
    for (a, row) in values.iter_mut().enumerate() {
        for (b, value) in row.iter_mut().enumerate() {
            *value = plane[(y + a) * width + x + b];
        }
    }
    values
}

/// Writes a block into a plane (see [`block`]).
#[inline(always)]
fn put_block<const R: usize, const C: usize>(
    plane: &mut [Lanes],
    width: usize,
    (y, x): (usize, usize),
    values: &[[Lanes; C]; R],
) {
    for (a, row) in values.iter().enumerate() {
        for (b, value) in row.iter().enumerate() {
            plane[(y + a) * width + x + b] = *value;
        }
    }
}

/// The 16 transformed entries of a group's tile `t`, from one channel's rows.
#[inline(always)]
fn tile_entries(values: &[Lanes], at: Transformed, t: usize) -> [[Lanes; 4]; 4] {
    let mut entries = [[[0.0; LANES]; 4]; 4];
    for (xi, entry) in entries.as_flattened_mut().iter_mut().enumerate() {
        *entry = values[at.at(xi, t)];
    }
    entries
}

/// Writes a tile's 16 transformed entries (see [`tile_entries`]).
#[inline(always)]
fn put_tile_entries(values: &mut [Lanes], at: Transformed, t: usize, entries: &[[Lanes; 4]; 4]) {
    for (xi, entry) in entries.as_flattened().iter().enumerate() {
        values[at.at(xi, t)] = *entry;
    }
}

/// One core's buffers for a chunk of images. A chunk has [`LANES`] lanes however many images it
/// holds: the lanes of missing images are zeros, so that they add nothing to `dU`.
#[derive(Default)]
pub(crate) struct ChunkBuffers {
    /// `V` of a group of tiles, `(16, in_channels, TILES_PER_GROUP·lanes)`
    transformed_input: Array3<f32>,
    /// `M` in the forward pass, `dM` in the backward pass: `(16, out_channels,
    /// TILES_PER_GROUP·lanes)`
    products: Array3<f32>,
    /// `dV`, `(16, in_channels, TILES_PER_GROUP·lanes)`
    transformed_input_grad: Array3<f32>,
    /// Every input channel of the chunk, `(in_channels, plane pixels, lanes)`: the border is
    /// never written
    input_planes: Vec<f32>,
    /// `dX`, the same shape
    input_grad_planes: Vec<f32>,
    /// The output blocks `Y`, `(out_channels, 2·tile_rows · 2·tile_cols, lanes)`
    output_planes: Vec<f32>,
    /// Their gradient `dY`, the same shape: the overhang of odd-sized outputs is never written
    output_grad_planes: Vec<f32>,
    /// The pooled values (forward) or their gradients (backward), `(out_channels, tiles, lanes)`
    pooled: Vec<f32>,
    /// The taps of the filters, one row per tap (see [`transform_weights`])
    taps: Vec<f32>,
    /// The layer the buffers were made for
    made_for: Option<ConvShape>,
}

impl ChunkBuffers {
    /// Shapes the buffers for a layer (zeroed when the layer's shape changes).
    fn prepare(&mut self, tiles: &Tiles) {
        let s = tiles.shape;
        if self.made_for == Some(s) {
            return;
        }
        let columns = TILES_PER_GROUP * LANES;
        self.transformed_input = Array3::zeros((TILE, s.in_channels, columns));
        self.products = Array3::zeros((TILE, s.out_channels, columns));
        self.transformed_input_grad = Array3::zeros((TILE, s.in_channels, columns));
        let input = s.in_channels * tiles.plane_pixels() * LANES;
        self.input_planes = vec![0.0; input];
        self.input_grad_planes = vec![0.0; input];
        let output = s.out_channels * tiles.output_pixels() * LANES;
        self.output_planes = vec![0.0; output];
        self.output_grad_planes = vec![0.0; output];
        let pooled = s.out_channels * tiles.per_image() * LANES;
        self.pooled = vec![0.0; pooled];
        self.made_for = Some(s);
    }
}

/// `L·F·Lᵀ` for the step `x ↦ L·x` and each of `count` small square matrices `F`, stored entry
/// by entry: entry `(a, b)` of matrix `f` at `from[(a·N + b)·count + f]`, entry `(i, j)` of its
/// result at `to[(i·M + j)·count + f]`. [`LANES`] matrices at a time.
fn each_filter<const M: usize, const N: usize>(
    step: impl Fn([Lanes; N]) -> [Lanes; M],
    from: &[f32],
    to: &mut [f32],
    count: usize,
) {
    for first in (0..count).step_by(LANES) {
        let lanes = LANES.min(count - first);
        let mut f = [[[0.0; LANES]; N]; N];
        for (a, row) in f.iter_mut().enumerate() {
            for (b, entry) in row.iter_mut().enumerate() {
                entry[..lanes].copy_from_slice(&from[(a * N + b) * count + first..][..lanes]);
            }
        }
        let result = two_sided(&step, &f);
        for (e, entry) in result.as_flattened().iter().enumerate() {
            to[e * count + first..][..lanes].copy_from_slice(&entry[..lanes]);
        }
    }
}

/// `U = G·g·Gᵀ` for every filter `o` and input channel `c`, from the weight
/// `(out_channels, in_channels·9)`, into `u` `(16, out_channels, in_channels)`.
pub(crate) fn transform_weights(
    shape: &ConvShape,
    weight: ArrayView2<f32>,
    u: &mut Array3<f32>,
    buffers: &mut ChunkBuffers,
) {
    let (outs, ins) = (shape.out_channels, shape.in_channels);
    if u.dim() != (TILE, outs, ins) {
        *u = Array3::zeros((TILE, outs, ins));
    }
    let count = outs * ins;
    let taps = &mut buffers.taps;
    taps.resize(9 * count, 0.0);
    for ((o, tap), &w) in weight.indexed_iter() {
        taps[tap_entry((o, tap), (outs, ins))] = w;
    }
    let u = u.as_slice_mut().expect("standard layout");
    each_filter(filter_step, taps, u, count);
}

/// `dg = Gᵀ·dU·G` for every filter and input channel: `du` `(16, out_channels, in_channels)` into
/// the weight's gradient `(out_channels, in_channels·9)`.
pub(crate) fn weight_grad(
    du: &Array3<f32>,
    mut grad_weight: ArrayViewMut2<f32>,
    buffers: &mut ChunkBuffers,
) {
    let (_, outs, ins) = du.dim();
    let count = outs * ins;
    let taps = &mut buffers.taps;
    taps.resize(9 * count, 0.0);
    each_filter(
        filter_grad_step,
        du.as_slice().expect("standard layout"),
        taps,
        count,
    );
    for ((o, tap), g) in grad_weight.indexed_iter_mut() {
        *g = taps[tap_entry((o, tap), (outs, ins))];
    }
}

/// Where tap `tap` (`c·9 + 3·ky + kx`) of filter `o` lies among the taps laid out for
/// [`each_filter`], `(9, out_channels·in_channels)`: filter `(o, c)` is column
/// `o·in_channels + c` of row `3·ky + kx`.
fn tap_entry((o, tap): (usize, usize), (outs, ins): (usize, usize)) -> usize {
    (tap % 9) * outs * ins + o * ins + tap / 9
}

/// Every channel of the chunk's images `(images, C·H·W)` into its input plane, images innermost,
/// inside the zero border.
#[inline(always)]
fn fill_input_planes(tiles: &Tiles, images: ArrayView2<f32>, buffers: &mut ChunkBuffers) {
    let s = &tiles.shape;
    let planes = buffers
        .input_planes
        .chunks_exact_mut(tiles.plane_pixels() * LANES);
    for (c, plane) in planes.enumerate() {
        to_plane(images, c * s.height * s.width, tiles.image_region(), plane);
    }
}

/// `V = Bᵀ·d·B` for every tile `d` of `group` in every input plane.
#[inline(always)]
fn transform_input(tiles: &Tiles, group: &Range<usize>, buffers: &mut ChunkBuffers) {
    let channels = tiles.shape.in_channels;
    let width = tiles.plane_width();
    let v = entries_mut(&mut buffers.transformed_input);
    let planes = buffers
        .input_planes
        .chunks_exact(tiles.plane_pixels() * LANES);
    for (c, plane) in planes.enumerate() {
        let (plane, at) = (vectors(plane), Transformed::new(c, channels));
        for (t, (ty, tx)) in tiles.of(group) {
            let d = block::<4, 4>(plane, width, (2 * ty, 2 * tx));
            put_tile_entries(v, at, t, &two_sided(input_step, &d));
        }
    }
}

/// The forward pass of a chunk of at most [`LANES`] images `(images, C·H·W)`: their
/// `Z = conv(X) + b`, or its pooling, into `output`, given `U` from [`transform_weights`].
pub(crate) fn forward_chunk(
    shape: &ConvShape,
    u: &Array3<f32>,
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    output: ChunkOutput,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { forward_chunk_avx2(shape, u, bias, images, buffers, output) };
    }
    forward_chunk_body(shape, u, bias, images, buffers, output)
}

/// [`forward_chunk`] compiled for AVX2 (see [`backward_chunk_avx2`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn forward_chunk_avx2(
    shape: &ConvShape,
    u: &Array3<f32>,
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    output: ChunkOutput,
) {
    forward_chunk_body(shape, u, bias, images, buffers, output)
}

#[inline(always)]
fn forward_chunk_body(
    shape: &ConvShape,
    u: &Array3<f32>,
    bias: &[f32],
    images: ArrayView2<f32>,
    buffers: &mut ChunkBuffers,
    mut output: ChunkOutput,
) {
    let tiles = Tiles::new(shape);
    buffers.prepare(&tiles);
    fill_input_planes(&tiles, images, buffers);
    // The pooling's winners go straight into the layer's (already in the lanes' layout).
    let mut winners = match &mut output {
        ChunkOutput::Values(_) => None,
        ChunkOutput::Pooled(_, winners) => Some(winners.as_chunks_mut::<LANES>().0),
    };
    for group in tiles.groups() {
        transform_input(&tiles, &group, buffers);
        let columns = group.len() * LANES;
        for xi in 0..TILE {
            matmul(
                u.index_axis(Axis(0), xi),
                buffers.transformed_input.slice(s![xi, .., ..columns]),
                false,
                buffers.products.slice_mut(s![xi, .., ..columns]),
            );
        }
        transform_output(&tiles, &group, bias, winners.as_deref_mut(), buffers);
    }
    write_output(&tiles, bias, buffers, output);
}

/// `Y = Aᵀ·M·A` for every tile of `group` of every output channel, into the channel's plane of
/// blocks; or, given the pooling's `winners` `(out_channels·tiles, lanes)`, each tile's four
/// values plus the bias pooled: the largest (PyTorch's scan: a later value wins only if larger or
/// NaN) and its index in the image's `Z`, into `winners`.
#[inline(always)]
fn transform_output(
    tiles: &Tiles,
    group: &Range<usize>,
    bias: &[f32],
    mut winners: Option<&mut [[u32; LANES]]>,
    buffers: &mut ChunkBuffers,
) {
    let shape = &tiles.shape;
    let (out_w, blocks_w) = (shape.out_width(), 2 * tiles.cols);
    let m = entries(&buffers.products);
    let planes = vectors_mut(&mut buffers.output_planes);
    let pooled_values = vectors_mut(&mut buffers.pooled);
    for (o, &b) in bias.iter().enumerate() {
        let at = Transformed::new(o, shape.out_channels);
        let plane = &mut planes[o * tiles.output_pixels()..][..tiles.output_pixels()];
        for (t, (ty, tx)) in tiles.of(group) {
            let mut y = two_sided(output_step, &tile_entries(m, at, t));
            let Some(winners) = winners.as_deref_mut() else {
                put_block(plane, blocks_w, (2 * ty, 2 * tx), &y);
                continue;
            };
            for y in y.as_flattened_mut() {
                for y in y {
                    *y += b;
                }
            }
            // The indices in Z of the block's four values.
            let first = (o * shape.out_pixels() + 2 * ty * out_w + 2 * tx) as u32;
            let below = first + out_w as u32;
            let value = |a: usize, x: usize, index: u32| (y[a][x], [index; LANES]);
            let upper = later_wins_lanes(value(0, 0, first), value(0, 1, first + 1));
            let lower = later_wins_lanes(value(1, 0, below), value(1, 1, below + 1));
            let at = o * tiles.per_image() + group.start + t;
            (pooled_values[at], winners[at]) = later_wins_lanes(upper, lower);
        }
    }
}

/// The chunk's outputs from the planes of blocks into `Z` plus the bias, or the pooled values and
/// their winners into theirs.
#[inline(always)]
fn write_output(tiles: &Tiles, bias: &[f32], buffers: &ChunkBuffers, output: ChunkOutput) {
    let shape = &tiles.shape;
    let per_image = tiles.per_image();
    match output {
        ChunkOutput::Values(mut z) => {
            let planes = buffers
                .output_planes
                .chunks_exact(tiles.output_pixels() * LANES);
            for ((o, &b), plane) in bias.iter().enumerate().zip(planes) {
                let channel = o * shape.out_pixels();
                from_plane(plane, tiles.output_region(), channel, z.view_mut());
                for mut z in z.rows_mut() {
                    let z = &mut z.as_slice_mut().expect("contiguous rows");
                    z[channel..][..shape.out_pixels()]
                        .iter_mut()
                        .for_each(|z| *z += b);
                }
            }
        }
        ChunkOutput::Pooled(mut y, _) => {
            let (n, row_len) = y.dim();
            let y = y.as_slice_mut().expect("contiguous rows");
            for o in 0..shape.out_channels {
                let (from, to) = (o * per_image * LANES, o * per_image);
                let pooled = Rows::of(&buffers.pooled[from..], LANES);
                copy_transposed(pooled, (&mut y[to..], row_len), per_image, n);
            }
        }
    }
}

/// The backward pass of a chunk of images `(images, C·H·W)` given their `dZ` (or the gradient of
/// their pooling): `dU` added onto `du` (assigned when not `accumulate`) and, if given, `dX` into
/// `grad_input` `(images, C·H·W)`. `U` is the forward pass's.
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward_chunk<'a>(
    shape: &ConvShape,
    u: &Array3<f32>,
    images: ArrayView2<'a, f32>,
    grad_output: ChunkGrad<'a>,
    buffers: &mut ChunkBuffers,
    du: &mut Array3<f32>,
    accumulate: bool,
    grad_input: Option<ArrayViewMut2<'a, f32>>,
) {
    let args = (images, grad_output, buffers, du, accumulate, grad_input);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { backward_chunk_avx2(shape, u, args) };
    }
    backward_chunk_body(shape, u, args)
}

/// What [`backward_chunk`] works on besides the layer: the chunk's images and `dZ`, its buffers,
/// `dU` and whether to add onto it, and `dX` if wanted.
type BackwardArgs<'a, 'b> = (
    ArrayView2<'a, f32>,
    ChunkGrad<'a>,
    &'b mut ChunkBuffers,
    &'b mut Array3<f32>,
    bool,
    Option<ArrayViewMut2<'a, f32>>,
);

/// [`backward_chunk`] compiled for the CPU's AVX2 vector units (8 lanes of `f32` a register, and
/// 16 registers) instead of the baseline x86-64 ones (4 lanes). The transforms are additions and
/// multiplications by constants, which give the same bits either way (Rust never fuses them into
/// FMAs on its own).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backward_chunk_avx2(shape: &ConvShape, u: &Array3<f32>, args: BackwardArgs) {
    backward_chunk_body(shape, u, args)
}

#[inline(always)]
fn backward_chunk_body(shape: &ConvShape, u: &Array3<f32>, args: BackwardArgs) {
    let (images, grad_output, buffers, du, accumulate, grad_input) = args;
    let tiles = Tiles::new(shape);
    buffers.prepare(&tiles);
    let winners = read_output_grad(&tiles, grad_output, buffers);
    // V again: recomputing it costs less than keeping a batch's V in memory.
    fill_input_planes(&tiles, images, buffers);
    if grad_input.is_some() {
        buffers.input_grad_planes.fill(0.0);
    }
    if du.dim() != (TILE, shape.out_channels, shape.in_channels) {
        *du = Array3::zeros((TILE, shape.out_channels, shape.in_channels));
    }
    for (g, group) in tiles.groups().enumerate() {
        transform_output_grad(&tiles, &group, winners, buffers);
        transform_input(&tiles, &group, buffers);
        let columns = group.len() * LANES;
        let dm = buffers.products.slice(s![.., .., ..columns]);
        let v = buffers.transformed_input.slice(s![.., .., ..columns]);
        for xi in 0..TILE {
            // dU[ξ] = dM[ξ]·V[ξ]ᵀ: (out_channels, columns)·(columns, in_channels)
            let (dm, v) = (dm.index_axis(Axis(0), xi), v.index_axis(Axis(0), xi));
            matmul(
                dm,
                v.t(),
                accumulate || g > 0,
                du.index_axis_mut(Axis(0), xi),
            );
        }
        if grad_input.is_none() {
            continue;
        }
        for xi in 0..TILE {
            // dV[ξ] = U[ξ]ᵀ·dM[ξ]: (in_channels, out_channels)·(out_channels, columns)
            matmul(
                u.index_axis(Axis(0), xi).t(),
                dm.index_axis(Axis(0), xi),
                false,
                buffers
                    .transformed_input_grad
                    .slice_mut(s![xi, .., ..columns]),
            );
        }
        transform_input_grad(&tiles, &group, buffers);
    }
    if let Some(mut grad_input) = grad_input {
        let s = &tiles.shape;
        let planes = buffers
            .input_grad_planes
            .chunks_exact(tiles.plane_pixels() * LANES);
        for (c, plane) in planes.enumerate() {
            let channel = c * s.height * s.width;
            from_plane(plane, tiles.image_region(), channel, grad_input.view_mut());
        }
    }
}

/// The chunk's `dZ` into the planes of output blocks; or, for a pooling whose windows are the
/// blocks, the windows' gradients (zero where the ReLU after the pooling was off); then the
/// pooling's winners, in the lanes' layout `(out_channels·tiles, lanes)`.
#[inline(always)]
fn read_output_grad<'a>(
    tiles: &Tiles,
    grad_output: ChunkGrad<'a>,
    buffers: &mut ChunkBuffers,
) -> Option<&'a [[u32; LANES]]> {
    let s = &tiles.shape;
    match grad_output {
        ChunkGrad::Values(dz) => {
            let planes = buffers
                .output_grad_planes
                .chunks_exact_mut(tiles.output_pixels() * LANES);
            for (o, plane) in planes.enumerate() {
                to_plane(dz, o * s.out_pixels(), tiles.output_region(), plane);
            }
            None
        }
        ChunkGrad::Pooled {
            grad,
            winners,
            relu_output,
        } => {
            pooled_grads_into_lanes(grad, relu_output, &mut buffers.pooled);
            Some(winners.as_chunks::<LANES>().0)
        }
    }
}

/// `dM = A·dY·Aᵀ` for every tile of `group` of every output channel, `dY` from the planes of
/// output blocks or, given the pooling's `winners`, each window's gradient on its winner and
/// zeros elsewhere.
#[inline(always)]
fn transform_output_grad(
    tiles: &Tiles,
    group: &Range<usize>,
    winners: Option<&[[u32; LANES]]>,
    buffers: &mut ChunkBuffers,
) {
    let s = &tiles.shape;
    let (out_w, blocks_w) = (s.out_width(), 2 * tiles.cols);
    let dm = entries_mut(&mut buffers.products);
    let planes = vectors(&buffers.output_grad_planes);
    let grads = vectors(&buffers.pooled);
    for o in 0..s.out_channels {
        let at = Transformed::new(o, s.out_channels);
        let plane = &planes[o * tiles.output_pixels()..][..tiles.output_pixels()];
        for (t, (ty, tx)) in tiles.of(group) {
            let dy = if let Some(winners) = winners {
                let window = o * tiles.per_image() + group.start + t;
                let (g, w) = (&grads[window], &winners[window]);
                let first = (o * s.out_pixels() + 2 * ty * out_w + 2 * tx) as u32;
                let offsets = [[0, 1], [out_w as u32, out_w as u32 + 1]];
                let mut dy = [[[0.0; LANES]; 2]; 2];
                for (dy, offsets) in dy.iter_mut().zip(offsets) {
                    for (dy, offset) in dy.iter_mut().zip(offsets) {
                        for ((dy, &g), &w) in dy.iter_mut().zip(g).zip(w) {
                            *dy = if w == first + offset { g } else { 0.0 };
                        }
                    }
                }
                dy
            } else {
                block::<2, 2>(plane, blocks_w, (2 * ty, 2 * tx))
            };
            put_tile_entries(dm, at, t, &two_sided(output_grad_step, &dy));
        }
    }
}

/// `dd = B·dV·Bᵀ` for every tile of `group`, added onto the tile's pixels in the input gradient's
/// planes.
#[inline(always)]
fn transform_input_grad(tiles: &Tiles, group: &Range<usize>, buffers: &mut ChunkBuffers) {
    let (channels, width) = (tiles.shape.in_channels, tiles.plane_width());
    let dv = entries(&buffers.transformed_input_grad);
    let planes = buffers
        .input_grad_planes
        .chunks_exact_mut(tiles.plane_pixels() * LANES);
    for (c, plane) in planes.enumerate() {
        let (plane, at) = (vectors_mut(plane), Transformed::new(c, channels));
        for (t, (ty, tx)) in tiles.of(group) {
            let corner = (2 * ty, 2 * tx);
            let mut sum = block::<4, 4>(plane, width, corner);
            let dd = two_sided(input_grad_step, &tile_entries(dv, at, t));
            for (sum, dd) in sum.as_flattened_mut().iter_mut().zip(dd.as_flattened()) {
                *sum = add(*sum, *dd);
            }
            put_block(plane, width, corner, &sum);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Bᵀ`, `G` and `Aᵀ` of the module documentation, and their transposes.
    const BT: [[f32; 4]; 4] = [
        [1.0, 0.0, -1.0, 0.0],
        [0.0, 1.0, 1.0, 0.0],
        [0.0, -1.0, 1.0, 0.0],
        [0.0, 1.0, 0.0, -1.0],
    ];
    const G: [[f32; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    const AT: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];
    const B: [[f32; 4]; 4] = transposed(BT);
    const GT: [[f32; 4]; 3] = transposed(G);
    const A: [[f32; 2]; 4] = transposed(AT);

    const fn transposed<const M: usize, const N: usize>(m: [[f32; N]; M]) -> [[f32; M]; N] {
        let mut t = [[0.0; M]; N];
        let mut i = 0;
        while i < M {
            let mut j = 0;
            while j < N {
                t[j][i] = m[i][j];
                j += 1;
            }
            i += 1;
        }
        t
    }

    /// Checks `step(x) = matrix·x` in every lane for a few inputs.
    fn check_step<const M: usize, const N: usize>(
        step: impl Fn([Lanes; N]) -> [Lanes; M],
        matrix: [[f32; N]; M],
    ) {
        for seed in 0..4 {
            let mut x = [[0.0; LANES]; N];
            for (a, entry) in x.iter_mut().enumerate() {
                for (lane, value) in entry.iter_mut().enumerate() {
                    // Distinct values of both signs, exact in f32.
                    *value = ((seed * 31 + a * 7 + lane * 3) % 17) as f32 - 8.25;
                }
            }
            let y = step(x);
            for (i, row) in matrix.iter().enumerate() {
                for lane in 0..LANES {
                    let expected: f32 = row.iter().zip(&x).map(|(m, x)| m * x[lane]).sum();
                    assert_eq!(y[i][lane], expected, "row {i}, lane {lane}");
                }
            }
        }
    }

    #[test]
    fn each_step_is_its_matrix() {
        check_step(input_step, BT);
        check_step(output_step, AT);
        check_step(filter_step, G);
        check_step(input_grad_step, B);
        check_step(output_grad_step, A);
        check_step(filter_grad_step, GT);
    }
}
