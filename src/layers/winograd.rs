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
//! The tiles cover the output in 2x2 blocks, `tile_rows x tile_cols` of them per image. Every
//! transform is one function, [`two_sided`], `L·X·Rᵀ` with the matrices above, computed for the
//! same tile of all the chunk's images at once: each entry of the small matrices is a row of
//! "lanes", one lane per image, and each step a sum of such rows, which the compiler turns into
//! vector instructions. For that, each channel of the chunk is first turned into a "plane" with
//! the images innermost, `(pixel, image)`, zero-padded to `(2·tile_rows + 2) x (2·tile_cols + 2)`
//! pixels: the padding, and a block overhanging an odd-sized output, read zeros without a test.
//! Column `t·images + k` of `V` and `M` is tile `t` of image `k`.

use ndarray::{Array3, ArrayView2, ArrayViewMut2, Axis};

use super::max_pool::later_wins;
use super::{ConvShape, PoolShape};
use crate::gemm::matmul;

/// Images whose tiles go through the products together: enough columns (25 tiles an image for
/// the fast recipe's 10x10 output) for efficient products, few enough for the chunk's `V` and `M`
/// to stay in the core's second-level cache.
pub(crate) const IMAGES_PER_CHUNK: usize = 16;

/// Positions of a transformed 4x4 tile.
const TILE: usize = 16;

/// `Bᵀ`, `G` and `Aᵀ` of the module documentation, and their transposes for the backward pass.
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

    /// Tile `t`'s 16 entries in `V` or `M` `(16, channels, tiles·images)`, for channel `channel`
    /// of the chunk's `images` images side by side: entry `(i, j)` is `ξ = 4·i + j`.
    fn transformed(&self, t: usize, channel: usize, channels: usize, images: usize) -> Entries {
        let columns = images * self.per_image();
        Entries {
            start: channel * columns + t * images,
            down: 4 * channels * columns,
            across: channels * columns,
            lanes: images,
        }
    }

    /// The pixels of tile `(ty, tx)`'s block in a plane `width` pixels across, images innermost.
    fn block(&self, (ty, tx): (usize, usize), width: usize, images: usize) -> Entries {
        Entries {
            start: (2 * ty * width + 2 * tx) * images,
            down: width * images,
            across: images,
            lanes: images,
        }
    }

    /// Every tile: its index `t` and its position `(ty, tx)`.
    #[inline(always)]
    fn all(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let cols = self.cols;
        (0..self.per_image()).map(move |t| (t, t / cols, t % cols))
    }
}

/// Where the lanes of a small matrix's entries lie in a buffer: entry `(a, b)`'s are
/// `start + a·down + b·across ..` and `lanes` long.
#[derive(Clone, Copy)]
struct Entries {
    start: usize,
    down: usize,
    across: usize,
    lanes: usize,
}

impl Entries {
    fn get(&self, a: usize, b: usize) -> std::ops::Range<usize> {
        let start = self.start + a * self.down + b * self.across;
        start..start + self.lanes
    }
}

/// Lanes computed together: one vector register of `f32`.
const LANES: usize = 8;

/// `Y = L·X·Rᵀ` in every lane, `X` `(N1, N2)` and `Y` `(M1, M2)` where `x` and `y` say; `Y` is
/// added onto what `y` holds if `accumulate`. Eight lanes at a time, each read once and written
/// once; the matrices are constants, so the zero entries' terms vanish when this is compiled.
#[inline(always)]
fn two_sided<const M1: usize, const N1: usize, const M2: usize, const N2: usize>(
    left: &[[f32; N1]; M1],
    right: &[[f32; N2]; M2],
    (x, x_at): (&[f32], Entries),
    (y, y_at): (&mut [f32], Entries),
    accumulate: bool,
) {
    for first in (0..x_at.lanes).step_by(LANES) {
        let count = LANES.min(x_at.lanes - first);
        let mut xs = [[[0.0f32; LANES]; N2]; N1];
        for (a, row) in xs.iter_mut().enumerate() {
            for (b, lanes) in row.iter_mut().enumerate() {
                copy_lanes(&x[x_at.get(a, b)][first..], lanes);
            }
        }
        // (L·X)(i, b) = Σ_a L[i][a]·X(a, b)
        let mut mid = [[[0.0f32; LANES]; N2]; M1];
        for (i, l) in left.iter().enumerate() {
            for (a, &k) in l.iter().enumerate() {
                if k != 0.0 {
                    for b in 0..N2 {
                        for lane in 0..LANES {
                            mid[i][b][lane] += k * xs[a][b][lane];
                        }
                    }
                }
            }
        }
        // Y(i, j) = Σ_b (L·X)(i, b)·R[j][b]
        for (i, mid) in mid.iter().enumerate() {
            for (j, r) in right.iter().enumerate() {
                let to = &mut y[y_at.get(i, j)][first..first + count];
                let mut out = [0.0f32; LANES];
                if accumulate {
                    copy_lanes(to, &mut out);
                }
                for (b, &k) in r.iter().enumerate() {
                    if k != 0.0 {
                        for lane in 0..LANES {
                            out[lane] += k * mid[b][lane];
                        }
                    }
                }
                copy_lanes(&out, to);
            }
        }
    }
}

/// Copies as many values as the shorter of the two holds: a whole block of lanes as one vector
/// move (a length the compiler knows), a shorter one value by value.
#[inline(always)]
fn copy_lanes(from: &[f32], to: &mut [f32]) {
    if from.len() >= LANES && to.len() >= LANES {
        to[..LANES].copy_from_slice(&from[..LANES]);
    } else {
        for (to, &v) in to.iter_mut().zip(from) {
            *to = v;
        }
    }
}

/// One core's buffers for a chunk of images.
#[derive(Default)]
pub(crate) struct ChunkBuffers {
    /// `V`, `(16, in_channels, chunk tiles)`
    transformed_input: Array3<f32>,
    /// `M` in the forward pass, `dM` in the backward pass: `(16, out_channels, chunk tiles)`
    products: Array3<f32>,
    /// `dV`, `(16, in_channels, chunk tiles)`
    transformed_input_grad: Array3<f32>,
    /// One input channel of the chunk, `(plane pixels, images)`: its border is never written
    input_plane: Vec<f32>,
    /// One channel of `dX`, `(plane pixels, images)`
    input_grad_plane: Vec<f32>,
    /// One channel of the output blocks `Y`, `(2·tile_rows · 2·tile_cols, images)`
    output_plane: Vec<f32>,
    /// One channel of `dY`, the same shape: the overhang of odd-sized outputs is never written
    output_grad_plane: Vec<f32>,
    /// The lanes of the weight transforms, one row per tap or entry
    lanes: Vec<f32>,
    /// One channel's pooled values (forward) or their gradients (backward), `(tiles, images)`
    pooled: Vec<f32>,
    /// One channel's pooled values after the ReLU, its mask in the backward pass,
    /// `(tiles, images)`
    pooled_relu: Vec<f32>,
    /// The winners of `pooled`, `(tiles, images)`
    winners: Vec<u32>,
    /// Images and geometry the planes were made for
    made_for: Option<(usize, usize, usize)>,
}

impl ChunkBuffers {
    /// Shapes the buffers for `images` images (zeroing the planes if their shape changes).
    fn prepare(&mut self, tiles: &Tiles, images: usize) {
        let s = tiles.shape;
        let columns = images * tiles.per_image();
        let fit = |buffer: &mut Array3<f32>, rows: usize| {
            if buffer.dim() != (TILE, rows, columns) {
                *buffer = Array3::zeros((TILE, rows, columns));
            }
        };
        fit(&mut self.transformed_input, s.in_channels);
        fit(&mut self.products, s.out_channels);
        fit(&mut self.transformed_input_grad, s.in_channels);
        let geometry = (images, s.height + 2 * s.padding, s.width + 2 * s.padding);
        if self.made_for != Some(geometry) {
            let input = tiles.plane_pixels() * images;
            let output = 4 * tiles.per_image() * images;
            self.input_plane = vec![0.0; input];
            self.input_grad_plane = vec![0.0; input];
            self.output_plane = vec![0.0; output];
            self.output_grad_plane = vec![0.0; output];
            self.pooled = vec![0.0; tiles.per_image() * images];
            self.pooled_relu = vec![0.0; tiles.per_image() * images];
            self.winners = vec![0; tiles.per_image() * images];
            self.made_for = Some(geometry);
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
    // Tap (ky, kx) of filter (o, c) into lane o·in_channels + c of row 3·ky + kx.
    let lanes = outs * ins;
    buffers.lanes.resize(9 * lanes, 0.0);
    for ((o, tap), &w) in weight.indexed_iter() {
        buffers.lanes[(tap % 9) * lanes + o * ins + tap / 9] = w;
    }
    let u = u.as_slice_mut().expect("standard layout");
    two_sided(
        &G,
        &G,
        (&buffers.lanes, packed(lanes, 3)),
        (u, packed(lanes, 4)),
        false,
    );
}

/// `dg = Gᵀ·dU·G` for every filter and input channel: `du` `(16, out_channels, in_channels)` into
/// the weight's gradient `(out_channels, in_channels·9)`.
pub(crate) fn weight_grad(
    du: &Array3<f32>,
    mut grad_weight: ArrayViewMut2<f32>,
    buffers: &mut ChunkBuffers,
) {
    let (_, outs, ins) = du.dim();
    let lanes = outs * ins;
    buffers.lanes.resize(9 * lanes, 0.0);
    two_sided(
        &GT,
        &GT,
        (du.as_slice().expect("standard layout"), packed(lanes, 4)),
        (&mut buffers.lanes, packed(lanes, 3)),
        false,
    );
    for ((o, tap), g) in grad_weight.indexed_iter_mut() {
        *g = buffers.lanes[(tap % 9) * lanes + o * ins + tap / 9];
    }
}

/// A small matrix with `width` columns stored entry after entry, `lanes` values each.
fn packed(lanes: usize, width: usize) -> Entries {
    Entries {
        start: 0,
        down: width * lanes,
        across: lanes,
        lanes,
    }
}

/// `to[j·to_stride + i] = from[i·from_stride + j]` for `i < rows` and `j < cols`: a transposed
/// copy, by blocks of 8x8 read and written a block row at a time (copying value by value along
/// one side scatters the accesses of the other, several times slower).
#[inline(always)]
fn copy_transposed<T: Copy + Default>(
    (from, from_stride): (&[T], usize),
    (to, to_stride): (&mut [T], usize),
    rows: usize,
    cols: usize,
) {
    for i0 in (0..rows).step_by(8) {
        for j0 in (0..cols).step_by(8) {
            if i0 + 8 <= rows && j0 + 8 <= cols {
                let mut block = [[T::default(); 8]; 8];
                for (i, row) in block.iter_mut().enumerate() {
                    row.copy_from_slice(&from[(i0 + i) * from_stride + j0..][..8]);
                }
                for j in 0..8 {
                    let to = &mut to[(j0 + j) * to_stride + i0..][..8];
                    for (i, to) in to.iter_mut().enumerate() {
                        *to = block[i][j];
                    }
                }
            } else {
                for i in i0..rows.min(i0 + 8) {
                    for j in j0..cols.min(j0 + 8) {
                        to[j * to_stride + i] = from[i * from_stride + j];
                    }
                }
            }
        }
    }
}

/// Where the `height x width` pixels of a channel lie in a plane: row `y` from pixel
/// `start + y·stride`.
#[derive(Clone, Copy)]
struct Region {
    start: usize,
    stride: usize,
    height: usize,
    width: usize,
}

impl Region {
    /// `len` values one after the other from the plane's start (no border, one row).
    fn run(len: usize) -> Self {
        Region {
            start: 0,
            stride: len,
            height: 1,
            width: len,
        }
    }

    /// Runs of pixels that follow each other both in the channel and in the plane: `(first pixel
    /// in the channel, first pixel in the plane, pixels)`. The whole channel is one run when the
    /// plane has no border.
    #[inline(always)]
    fn runs(&self) -> impl Iterator<Item = (usize, usize, usize)> {
        let (runs, len) = if self.stride == self.width {
            (1, self.height * self.width)
        } else {
            (self.height, self.width)
        };
        let (start, stride, width) = (self.start, self.stride, self.width);
        (0..runs).map(move |r| (r * width, start + r * stride, len))
    }
}

/// The channel starting at value `first` of every image's row of `rows` `(images, row_len)` into
/// `region` of a plane `(pixels, images)`.
#[inline(always)]
fn to_plane<T: Copy + Default>(rows: ArrayView2<T>, first: usize, region: Region, plane: &mut [T]) {
    let (images, row_len) = rows.dim();
    let rows = rows.as_slice().expect("contiguous rows");
    for (value, pixel, len) in region.runs() {
        let from = (&rows[first + value..], row_len);
        copy_transposed(from, (&mut plane[pixel * images..], images), images, len);
    }
}

/// `region` of a plane `(pixels, images)` into the channel starting at value `first` of every
/// image's row of `rows` `(images, row_len)`.
#[inline(always)]
fn from_plane(plane: &[f32], region: Region, first: usize, mut rows: ArrayViewMut2<f32>) {
    let (images, row_len) = rows.dim();
    let rows = rows.as_slice_mut().expect("contiguous rows");
    for (value, pixel, len) in region.runs() {
        let to = (&mut rows[first + value..], row_len);
        copy_transposed((&plane[pixel * images..], images), to, len, images);
    }
}

/// `V = Bᵀ·d·B` for every tile `d` of every channel of the chunk's images `(images, C·H·W)`.
#[inline(always)]
fn transform_input(tiles: &Tiles, images: ArrayView2<f32>, buffers: &mut ChunkBuffers) {
    let s = tiles.shape;
    let (n, width) = (images.nrows(), tiles.plane_width());
    let v = buffers
        .transformed_input
        .as_slice_mut()
        .expect("standard layout");
    let plane = &mut buffers.input_plane;
    for c in 0..s.in_channels {
        // The channel's pixels, images innermost, inside the zero border.
        to_plane(images, c * s.height * s.width, tiles.image_region(), plane);
        for (t, ty, tx) in tiles.all() {
            let tile = tiles.block((ty, tx), width, n);
            let at = tiles.transformed(t, c, s.in_channels, n);
            two_sided(&BT, &BT, (plane, tile), (v, at), false);
        }
    }
}

/// Whether a max pooling's windows are the tiles' 2x2 blocks (2x2 windows 2 apart on an output of
/// even height and width): the forward pass can then pool each tile's block as it computes it,
/// and the backward pass send each window's gradient straight into its tile.
pub(crate) fn pools_tiles(shape: &ConvShape, pool: &PoolShape) -> bool {
    (pool.kernel, pool.stride) == (2, 2)
        && shape.out_height().is_multiple_of(2)
        && shape.out_width().is_multiple_of(2)
}

/// Where the forward pass of a chunk puts its results.
pub(crate) enum ChunkOutput<'a> {
    /// `Z = conv(X) + b`, `(images, out_channels·out_h·out_w)`
    Values(ArrayViewMut2<'a, f32>),
    /// `Z` max-pooled over each tile's block (see [`pools_tiles`]): the pooled values
    /// `(images, out_channels·tiles)` and, for each, the index of its winner in its image's `Z`
    /// `(images·out_channels·tiles)`.
    Pooled(ArrayViewMut2<'a, f32>, &'a mut [u32]),
}

/// What the backward pass of a chunk starts from.
pub(crate) enum ChunkGrad<'a> {
    /// `dZ`, `(images, out_channels·out_h·out_w)`
    Values(ArrayView2<'a, f32>),
    /// The gradient of [`ChunkOutput::Pooled`]'s values `(images, out_channels·tiles)`, their
    /// winners, and the pooled values if a ReLU followed the pooling (its mask).
    Pooled {
        grad: ArrayView2<'a, f32>,
        winners: ArrayView2<'a, u32>,
        relu_output: Option<ArrayView2<'a, f32>>,
    },
}

/// The forward pass of a chunk of images `(images, C·H·W)`: their `Z = conv(X) + b`, or its
/// pooling, into `output`, given `U` from [`transform_weights`].
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
    output: ChunkOutput,
) {
    let tiles = Tiles::new(shape);
    buffers.prepare(&tiles, images.nrows());
    transform_input(&tiles, images, buffers);
    for xi in 0..TILE {
        matmul(
            u.index_axis(Axis(0), xi),
            buffers.transformed_input.index_axis(Axis(0), xi),
            false,
            buffers.products.index_axis_mut(Axis(0), xi),
        );
    }
    transform_output(&tiles, bias, buffers, output);
}

/// `Y = Aᵀ·M·A` for every tile, into the channel's plane of blocks; then, plus the bias, where
/// each value lies in its image's output, or pooled.
#[inline(always)]
fn transform_output(tiles: &Tiles, bias: &[f32], buffers: &mut ChunkBuffers, output: ChunkOutput) {
    let mut z = match output {
        ChunkOutput::Values(z) => z,
        ChunkOutput::Pooled(y, winners) => return pool_output(tiles, bias, buffers, y, winners),
    };
    let (shape, n) = (&tiles.shape, z.nrows());
    let (out_h, out_w, blocks_w) = (shape.out_height(), shape.out_width(), 2 * tiles.cols);
    let m = buffers.products.as_slice().expect("standard layout");
    let plane = &mut buffers.output_plane;
    for (o, &b) in bias.iter().enumerate() {
        for (t, ty, tx) in tiles.all() {
            let at = tiles.transformed(t, o, shape.out_channels, n);
            let out = tiles.block((ty, tx), blocks_w, n);
            two_sided(&AT, &AT, (m, at), (plane, out), false);
        }
        let channel = o * out_h * out_w;
        from_plane(plane, tiles.output_region(), channel, z.view_mut());
        for mut z in z.rows_mut() {
            let z = &mut z.as_slice_mut().expect("contiguous rows")[channel..][..out_h * out_w];
            z.iter_mut().for_each(|z| *z += b);
        }
    }
}

/// [`transform_output`] with the pooling over each tile's block: for each tile, its four values
/// plus the bias, the largest (PyTorch's scan: a later value wins only if larger or NaN) into the
/// pooled values `(images, out_channels·tiles)` and its index in the image's `Z` into `winners`.
#[inline(always)]
fn pool_output(
    tiles: &Tiles,
    bias: &[f32],
    buffers: &mut ChunkBuffers,
    mut y: ArrayViewMut2<f32>,
    winners: &mut [u32],
) {
    let (shape, n) = (&tiles.shape, y.nrows());
    let (out_w, blocks_w, per_image) = (shape.out_width(), 2 * tiles.cols, tiles.per_image());
    let row_len = y.ncols();
    let y = y.as_slice_mut().expect("contiguous rows");
    let m = buffers.products.as_slice().expect("standard layout");
    let plane = &mut buffers.output_plane;
    for (o, &b) in bias.iter().enumerate() {
        for (t, ty, tx) in tiles.all() {
            let at = tiles.transformed(t, o, shape.out_channels, n);
            two_sided(
                &AT,
                &AT,
                (m, at),
                (plane, tiles.block((ty, tx), blocks_w, n)),
                false,
            );
            // The block's four values, images side by side, and their indices in Z.
            let top_left = 2 * ty * blocks_w + 2 * tx;
            let value = |a: usize, x: usize| &plane[(top_left + a * blocks_w + x) * n..][..n];
            let (v00, v01, v10, v11) = (value(0, 0), value(0, 1), value(1, 0), value(1, 1));
            let first = (o * shape.out_pixels() + 2 * ty * out_w + 2 * tx) as u32;
            let below = first + out_w as u32;
            let pooled = &mut buffers.pooled[t * n..][..n];
            let won = &mut buffers.winners[t * n..][..n];
            let lanes = v00.iter().zip(v01).zip(v10.iter().zip(v11));
            for ((pooled, won), ((&y00, &y01), (&y10, &y11))) in
                pooled.iter_mut().zip(won.iter_mut()).zip(lanes)
            {
                let upper = later_wins((y00 + b, first), (y01 + b, first + 1));
                let lower = later_wins((y10 + b, below), (y11 + b, below + 1));
                (*pooled, *won) = later_wins(upper, lower);
            }
        }
        let (pooled, won) = (&buffers.pooled[..], &buffers.winners[..]);
        copy_transposed(
            (pooled, n),
            (&mut y[o * per_image..], row_len),
            per_image,
            n,
        );
        copy_transposed(
            (won, n),
            (&mut winners[o * per_image..], row_len),
            per_image,
            n,
        );
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
/// 16 registers: a block of a tile's lanes) instead of the baseline x86-64 ones (4 lanes). The
/// transforms are additions and multiplications by constants, which give the same bits either
/// way (Rust never fuses them into FMAs on its own). Measured on the fast recipe's layer
/// (`cargo bench --bench kernels -- "fast 24"`): forward 4.1-4.9 ms against 5.8-6.1 ms per 128
/// images; the backward pass differed by less than the noise.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn backward_chunk_avx2(shape: &ConvShape, u: &Array3<f32>, args: BackwardArgs) {
    backward_chunk_body(shape, u, args)
}

#[inline(always)]
fn backward_chunk_body(shape: &ConvShape, u: &Array3<f32>, args: BackwardArgs) {
    let (images, grad_output, buffers, du, accumulate, grad_input) = args;
    let tiles = Tiles::new(shape);
    buffers.prepare(&tiles, images.nrows());
    transform_output_grad(&tiles, grad_output, buffers);
    // V again: recomputing it costs less than keeping a batch's V in memory.
    transform_input(&tiles, images, buffers);
    if du.dim() != (TILE, shape.out_channels, shape.in_channels) {
        *du = Array3::zeros((TILE, shape.out_channels, shape.in_channels));
    }
    let dm = &buffers.products;
    for xi in 0..TILE {
        let dm = dm.index_axis(Axis(0), xi);
        let v = buffers.transformed_input.index_axis(Axis(0), xi);
        // dU[ξ] = dM[ξ]·V[ξ]ᵀ: (out_channels, columns)·(columns, in_channels)
        matmul(dm, v.t(), accumulate, du.index_axis_mut(Axis(0), xi));
    }
    let Some(grad_input) = grad_input else {
        return;
    };
    for xi in 0..TILE {
        // dV[ξ] = U[ξ]ᵀ·dM[ξ]: (in_channels, out_channels)·(out_channels, columns)
        matmul(
            u.index_axis(Axis(0), xi).t(),
            dm.index_axis(Axis(0), xi),
            false,
            buffers.transformed_input_grad.index_axis_mut(Axis(0), xi),
        );
    }
    transform_input_grad(&tiles, buffers, grad_input);
}

/// `dM = A·dY·Aᵀ` for every tile of every output channel of the chunk's `dZ`
/// `(images, out_channels·out_h·out_w)` (or of the blocks its pooling's gradient is sent to),
/// into `dM` `(16, out_channels, tiles·images)`.
#[inline(always)]
fn transform_output_grad(tiles: &Tiles, grad_output: ChunkGrad, buffers: &mut ChunkBuffers) {
    let s = &tiles.shape;
    let (out_h, out_w, blocks_w) = (s.out_height(), s.out_width(), 2 * tiles.cols);
    let dm = buffers.products.as_slice_mut().expect("standard layout");
    let plane = &mut buffers.output_grad_plane;
    let per_image = tiles.per_image();
    for o in 0..s.out_channels {
        let n = match &grad_output {
            ChunkGrad::Values(dz) => {
                to_plane(*dz, o * out_h * out_w, tiles.output_region(), plane);
                dz.nrows()
            }
            ChunkGrad::Pooled {
                grad,
                winners,
                relu_output,
            } => {
                // Each window's gradient onto its winner in the tile's block, zeros elsewhere
                // (and nothing where the ReLU after the pooling was off).
                let n = grad.nrows();
                let pooled = &mut buffers.pooled[..per_image * n];
                to_plane(*grad, o * per_image, Region::run(per_image), pooled);
                let won = &mut buffers.winners[..per_image * n];
                to_plane(*winners, o * per_image, Region::run(per_image), won);
                if let Some(relu_output) = relu_output {
                    let on = &mut buffers.pooled_relu[..per_image * n];
                    to_plane(*relu_output, o * per_image, Region::run(per_image), on);
                    for (g, &y) in pooled.iter_mut().zip(on.iter()) {
                        *g = if y > 0.0 { *g } else { 0.0 };
                    }
                }
                for (t, ty, tx) in tiles.all() {
                    let top_left = 2 * ty * blocks_w + 2 * tx;
                    let first = (o * s.out_pixels() + 2 * ty * out_w + 2 * tx) as u32;
                    let offsets = [0, 1, out_w as u32, out_w as u32 + 1];
                    for (position, offset) in offsets.into_iter().enumerate() {
                        let (a, b) = (position / 2, position % 2);
                        let to = &mut plane[(top_left + a * blocks_w + b) * n..][..n];
                        let from = pooled[t * n..].iter().zip(&won[t * n..]);
                        for (to, (&g, &w)) in to.iter_mut().zip(from) {
                            *to = if w == first + offset { g } else { 0.0 };
                        }
                    }
                }
                n
            }
        };
        for (t, ty, tx) in tiles.all() {
            let dy = tiles.block((ty, tx), blocks_w, n);
            let at = tiles.transformed(t, o, s.out_channels, n);
            two_sided(&A, &A, (plane, dy), (dm, at), false);
        }
    }
}

/// `dd = B·dV·Bᵀ` for every tile, added onto the tile's pixels of a zero plane per channel, whose
/// middle (the image without its padding) goes into `grad_input` `(images, C·H·W)`.
#[inline(always)]
fn transform_input_grad(
    tiles: &Tiles,
    buffers: &mut ChunkBuffers,
    mut grad_input: ArrayViewMut2<f32>,
) {
    let s = tiles.shape;
    let (n, width) = (grad_input.nrows(), tiles.plane_width());
    let dv = buffers
        .transformed_input_grad
        .as_slice()
        .expect("standard layout");
    let plane = &mut buffers.input_grad_plane;
    for c in 0..s.in_channels {
        plane.fill(0.0);
        for (t, ty, tx) in tiles.all() {
            let at = tiles.transformed(t, c, s.in_channels, n);
            let tile = tiles.block((ty, tx), width, n);
            two_sided(&B, &B, (dv, at), (plane, tile), true);
        }
        let channel = c * s.height * s.width;
        from_plane(plane, tiles.image_region(), channel, grad_input.view_mut());
    }
}
