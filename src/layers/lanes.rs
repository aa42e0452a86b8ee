//! Vectors of 8 images: the layout the convolutions computed a chunk of images at a time
//! (Winograd's, in the `winograd` module, and the direct one, in `direct`) compute in.
//!
//! A chunk of up to 8 images is copied into "planes" with the images innermost, `(pixel, image)`:
//! every value is then a vector `[f32; 8]` of "lanes", one per image, and every step of the
//! algorithms is the same arithmetic on whole vectors, one AVX2 instruction each, with no
//! shuffles and nothing special at the images' edges. The lanes of images a chunk does not have
//! are zeros.

use ndarray::{ArrayView2, ArrayViewMut2};

use super::{ConvShape, PoolShape};

/// Lanes computed together: one AVX2 vector register of `f32`.
pub(super) const LANES: usize = 8;

/// One value of each of a chunk's images (or of [`LANES`] filters): what every step of the
/// chunked algorithms computes on.
pub(super) type Lanes = [f32; LANES];

/// `values` as vectors of lanes.
#[inline(always)]
pub(super) fn vectors(values: &[f32]) -> &[Lanes] {
    values.as_chunks().0
}

/// `values` as vectors of lanes, to write.
#[inline(always)]
pub(super) fn vectors_mut(values: &mut [f32]) -> &mut [Lanes] {
    values.as_chunks_mut().0
}

/// Lane-by-lane arithmetic on vectors of lanes: plain loops the compiler turns into one vector
/// instruction each. (Plain loops here and below, not `array::from_fn` or `flatten`, which the
/// compiler left as calls: what is not inlined into the AVX2 functions runs without AVX2.)
#[inline(always)]
pub(super) fn lanewise(x: Lanes, y: Lanes, op: impl Fn(f32, f32) -> f32) -> Lanes {
    let mut out = x;
    for (out, &y) in out.iter_mut().zip(&y) {
        *out = op(*out, y);
    }
    out
}

#[inline(always)]
pub(super) fn add(x: Lanes, y: Lanes) -> Lanes {
    lanewise(x, y, |x, y| x + y)
}

#[inline(always)]
pub(super) fn sub(x: Lanes, y: Lanes) -> Lanes {
    lanewise(x, y, |x, y| x - y)
}

#[inline(always)]
pub(super) fn half(x: Lanes) -> Lanes {
    lanewise(x, x, |x, _| 0.5 * x)
}

#[inline(always)]
pub(super) fn neg(x: Lanes) -> Lanes {
    lanewise(x, x, |x, _| -x)
}

/// `max_pool`'s `later_wins` in every lane: the value and index of `second`
/// where its value is larger or NaN, of `first` elsewhere. The choice is a mask of bits (all
/// ones where `second` wins) that selects both the value and the index: one vector comparison and
/// bitwise selects (a `bool` choosing the indices compiles to eight scalar `cmov`s instead).
#[inline(always)]
pub(super) fn later_wins_lanes(
    first: (Lanes, [u32; LANES]),
    second: (Lanes, [u32; LANES]),
) -> (Lanes, [u32; LANES]) {
    let mut won = first;
    for lane in 0..LANES {
        let (a, b) = (first.0[lane], second.0[lane]);
        let later = (((b > a) | b.is_nan()) as u32).wrapping_neg();
        let select = |b: u32, a: u32| (b & later) | (a & !later);
        won.0[lane] = f32::from_bits(select(b.to_bits(), a.to_bits()));
        won.1[lane] = select(second.1[lane], first.1[lane]);
    }
    won
}

/// `g` where `y > 0`, zero elsewhere (a gradient through a ReLU whose output was `y`), as a mask
/// of bits: the compiler turns `if y > 0.0 { g } else { 0.0 }` into a branch, which the processor
/// mispredicts half the time.
#[inline(always)]
pub(crate) fn where_positive(g: f32, y: f32) -> f32 {
    f32::from_bits(g.to_bits() & ((y > 0.0) as u32).wrapping_neg())
}

/// The gradients of a chunk's pooled values `grad` `(images, out_channels·windows)` into lanes,
/// `pooled` `(out_channels·windows, lanes)`, zero where the ReLU after the pooling was off (its
/// output `relu_output`, the same shape as `grad`): the mask is applied as the values are
/// transposed, so each value is read once and written once.
#[inline(always)]
pub(super) fn pooled_grads_into_lanes(
    grad: ArrayView2<f32>,
    relu_output: Option<ArrayView2<f32>>,
    pooled: &mut [f32],
) {
    let (images, row_len) = grad.dim();
    let grad = grad.as_slice().expect("contiguous rows");
    let relu_output = relu_output.map(|y| y.to_slice().expect("contiguous rows"));
    let from = Rows {
        values: grad,
        relu_output,
        stride: row_len,
    };
    rows_into_lanes(from, images, row_len, pooled);
}

/// Columns `0..len` of the `images` rows of `from` into `len` vectors of lanes `to`, one lane per
/// image, zeros in the lanes of images the chunk does not have.
#[inline(always)]
fn rows_into_lanes(from: Rows, images: usize, len: usize, to: &mut [f32]) {
    let to = &mut to[..len * LANES];
    copy_transposed(from, (to, LANES), images, len);
    if images < LANES {
        for lanes in to.chunks_exact_mut(LANES) {
            lanes[images..].fill(0.0);
        }
    }
}

/// What a transposed copy reads: the rows of a matrix, `stride` values apart in `values`, and if
/// `relu_output` (the same layout) is given, each value only where it is positive (a gradient
/// through a ReLU, see [`where_positive`]), zero elsewhere.
#[derive(Clone, Copy)]
pub(super) struct Rows<'a> {
    values: &'a [f32],
    relu_output: Option<&'a [f32]>,
    stride: usize,
}

impl<'a> Rows<'a> {
    /// The rows of `values`, each value as it is.
    pub(super) fn of(values: &'a [f32], stride: usize) -> Self {
        Rows {
            values,
            relu_output: None,
            stride,
        }
    }

    /// The rows from row `i`, column `j` on.
    #[inline(always)]
    fn starting_at(&self, (i, j): (usize, usize)) -> Self {
        let at = i * self.stride + j;
        Rows {
            values: &self.values[at..],
            relu_output: self.relu_output.map(|y| &y[at..]),
            stride: self.stride,
        }
    }

    /// Row `i`, column `j`.
    #[inline(always)]
    fn value(&self, (i, j): (usize, usize)) -> f32 {
        let at = i * self.stride + j;
        match self.relu_output {
            Some(y) => where_positive(self.values[at], y[at]),
            None => self.values[at],
        }
    }
}

/// `to[j·to_stride + i] = from[i][j]` for `i < rows` and `j < cols`: a transposed copy, by blocks
/// of 8x8 read and written a block row at a time (copying value by value along one side scatters
/// the accesses of the other, several times slower). With AVX, each block is transposed in
/// registers ([`transpose_8x8_avx`]); without, value by value.
#[inline(always)]
pub(super) fn copy_transposed(from: Rows, to: (&mut [f32], usize), rows: usize, cols: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has AVX, checked just above.
        return unsafe { copy_transposed_avx(from, to, rows, cols) };
    }
    copy_transposed_by_blocks(from, to, (rows, cols), transpose_8x8);
}

/// [`copy_transposed`] with its whole blocks transposed by AVX shuffles.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn copy_transposed_avx(from: Rows, to: (&mut [f32], usize), rows: usize, cols: usize) {
    copy_transposed_by_blocks(from, to, (rows, cols), |from, to| {
        // SAFETY: this function runs only where the CPU has AVX.
        unsafe { transpose_8x8_avx(from, to) }
    });
}

/// [`copy_transposed`]'s loops, each whole 8x8 block copied by `transpose_block(from, to)`
/// (`to[j][i] = from[i][j]`, the rows of `to` `to.1` values apart), the edges value by value.
#[inline(always)]
fn copy_transposed_by_blocks(
    from: Rows,
    (to, to_stride): (&mut [f32], usize),
    (rows, cols): (usize, usize),
    transpose_block: impl Fn(Rows, (&mut [f32], usize)),
) {
    for i0 in (0..rows).step_by(8) {
        for j0 in (0..cols).step_by(8) {
            if i0 + 8 <= rows && j0 + 8 <= cols {
                let to = &mut to[j0 * to_stride + i0..];
                transpose_block(from.starting_at((i0, j0)), (to, to_stride));
            } else {
                for i in i0..rows.min(i0 + 8) {
                    for j in j0..cols.min(j0 + 8) {
                        to[j * to_stride + i] = from.value((i, j));
                    }
                }
            }
        }
    }
}

/// An 8x8 block transposed value by value (on CPUs without AVX).
#[inline(always)]
fn transpose_8x8(from: Rows, (to, to_stride): (&mut [f32], usize)) {
    for j in 0..8 {
        for (i, to) in to[j * to_stride..][..8].iter_mut().enumerate() {
            *to = from.value((i, j));
        }
    }
}

/// An 8x8 block transposed in eight registers, rows `a..h` into columns, in three rounds of
/// shuffles: interleave pairs of rows (`a0 b0 a1 b1 | a4 b4 a5 b5`), then pairs of pairs
/// (`a0 b0 c0 d0 | a4 b4 c4 d4`), then swap the 128-bit halves between the upper and lower four
/// (`a0 .. h0`). 8 loads, 24 shuffles and 8 stores where value by value takes 128 moves. A ReLU's
/// mask is one comparison and one `and` per row.
///
/// # Safety
/// The CPU must have AVX.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
unsafe fn transpose_8x8_avx(from: Rows, (to, to_stride): (&mut [f32], usize)) {
    use std::arch::x86_64::*;
    let mut r = [_mm256_setzero_ps(); 8];
    for (i, r) in r.iter_mut().enumerate() {
        let row = &from.values[i * from.stride..][..8];
        // SAFETY: `row` has 8 values.
        *r = unsafe { _mm256_loadu_ps(row.as_ptr()) };
        if let Some(y) = from.relu_output {
            let y = &y[i * from.stride..][..8];
            // SAFETY: `y` has 8 values.
            let y = unsafe { _mm256_loadu_ps(y.as_ptr()) };
            // All ones where y > 0 (false for NaN, as `where_positive`).
            let positive = _mm256_cmp_ps::<_CMP_GT_OQ>(y, _mm256_setzero_ps());
            *r = _mm256_and_ps(*r, positive);
        }
    }
    // Each instruction works within the two 128-bit halves separately. `unpacklo/hi(x, y)`
    // interleave the first/last two values of each half of x and y.
    let mut t = [_mm256_setzero_ps(); 8];
    for pair in 0..4 {
        let (x, y) = (r[2 * pair], r[2 * pair + 1]);
        t[2 * pair] = _mm256_unpacklo_ps(x, y);
        t[2 * pair + 1] = _mm256_unpackhi_ps(x, y);
    }
    // `shuffle::<0x44>(x, y)` takes the first two values of each half of x, then of y (`a0 b0 c0
    // d0`); `0xEE` the last two (`a1 b1 c1 d1`).
    let s = [
        _mm256_shuffle_ps::<0x44>(t[0], t[2]),
        _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
        _mm256_shuffle_ps::<0x44>(t[1], t[3]),
        _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
        _mm256_shuffle_ps::<0x44>(t[4], t[6]),
        _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
        _mm256_shuffle_ps::<0x44>(t[5], t[7]),
        _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
    ];
    // `permute2f128::<0x20>(x, y)` joins the lower halves of x and y (column j), `0x31` the upper
    // halves (column j + 4).
    for j in 0..4 {
        let low = &mut to[j * to_stride..][..8];
        // SAFETY: `low` has 8 values.
        unsafe {
            _mm256_storeu_ps(
                low.as_mut_ptr(),
                _mm256_permute2f128_ps::<0x20>(s[j], s[j + 4]),
            )
        };
        let high = &mut to[(j + 4) * to_stride..][..8];
        // SAFETY: `high` has 8 values.
        unsafe {
            _mm256_storeu_ps(
                high.as_mut_ptr(),
                _mm256_permute2f128_ps::<0x31>(s[j], s[j + 4]),
            )
        };
    }
}

/// Where the `height x width` pixels of a channel lie in a plane: row `y` from pixel
/// `start + y·stride`.
#[derive(Clone, Copy)]
pub(super) struct Region {
    pub(super) start: usize,
    pub(super) stride: usize,
    pub(super) height: usize,
    pub(super) width: usize,
}

impl Region {
    /// Runs of pixels that follow each other both in the channel and in the plane: `(first pixel
    /// in the channel, first pixel in the plane, pixels)`. The whole channel is one run when the
    /// plane has no border.
    #[inline(always)]
    pub(super) fn runs(&self) -> impl Iterator<Item = (usize, usize, usize)> {
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
/// `region` of a plane `(pixels, lanes)`, zeros in the lanes of images the chunk does not have.
#[inline(always)]
pub(super) fn to_plane(rows: ArrayView2<f32>, first: usize, region: Region, plane: &mut [f32]) {
    let (images, row_len) = rows.dim();
    let rows = rows.as_slice().expect("contiguous rows");
    for (value, pixel, len) in region.runs() {
        let from = Rows::of(&rows[first + value..], row_len);
        rows_into_lanes(from, images, len, &mut plane[pixel * LANES..]);
    }
}

/// `region` of a plane `(pixels, lanes)` into the channel starting at value `first` of every
/// image's row of `rows` `(images, row_len)`.
#[inline(always)]
pub(super) fn from_plane(
    plane: &[f32],
    region: Region,
    first: usize,
    mut rows: ArrayViewMut2<f32>,
) {
    let (images, row_len) = rows.dim();
    let rows = rows.as_slice_mut().expect("contiguous rows");
    for (value, pixel, len) in region.runs() {
        let to = (&mut rows[first + value..], row_len);
        copy_transposed(Rows::of(&plane[pixel * LANES..], LANES), to, len, images);
    }
}

/// Whether a max pooling's windows are 2x2 blocks of outputs 2 apart, on an output of even height
/// and width: the chunked algorithms compute their outputs by such blocks (a Winograd tile's, two
/// of the direct algorithm's), so they can pool each block as they compute it, and the backward
/// pass can send each window's gradient straight into its block.
pub(crate) fn pools_blocks(shape: &ConvShape, pool: &PoolShape) -> bool {
    (pool.kernel, pool.stride) == (2, 2)
        && shape.out_height().is_multiple_of(2)
        && shape.out_width().is_multiple_of(2)
}

/// Where the forward pass of a chunk puts its results.
pub(crate) enum ChunkOutput<'a> {
    /// `Z = conv(X) + b`, `(images, out_channels·out_h·out_w)`
    Values(ArrayViewMut2<'a, f32>),
    /// `Z` max-pooled over 2x2 blocks (see [`pools_blocks`]): the pooled values
    /// `(images, out_channels·windows)` and, for each, the index of its winner in its image's `Z`,
    /// in the lanes' layout `(out_channels·windows, lanes)` (the backward pass reads them so).
    Pooled(ArrayViewMut2<'a, f32>, &'a mut [u32]),
}

/// What the backward pass of a chunk starts from.
pub(crate) enum ChunkGrad<'a> {
    /// `dZ`, `(images, out_channels·out_h·out_w)`
    Values(ArrayView2<'a, f32>),
    /// The gradient of [`ChunkOutput::Pooled`]'s values `(images, out_channels·windows)`, their
    /// winners as it left them, and the pooled values if a ReLU followed the pooling (its mask).
    Pooled {
        grad: ArrayView2<'a, f32>,
        winners: &'a [u32],
        relu_output: Option<ArrayView2<'a, f32>>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whole blocks, edges and both at once, with strides wider than the rows: every value lands
    /// at its transposed place (masked by a ReLU's output, if given) and nothing else in `to` is
    /// touched, by the CPU's own blocks (AVX here) and value by value.
    #[test]
    fn copy_transposed_is_the_transpose() {
        for masked in [false, true] {
            check_transpose(masked, copy_transposed);
            check_transpose(masked, |from, to, rows, cols| {
                copy_transposed_by_blocks(from, to, (rows, cols), transpose_8x8)
            });
        }
    }

    fn check_transpose(masked: bool, copy: impl Fn(Rows, (&mut [f32], usize), usize, usize)) {
        for (rows, cols) in [(8, 8), (16, 24), (13, 11), (3, 20), (9, 7), (1, 1)] {
            let (from_stride, to_stride) = (cols + 3, rows + 5);
            let from: Vec<f32> = (0..rows * from_stride).map(|v| v as f32 + 0.5).collect();
            // Positive, zero, negative and NaN outputs of a ReLU (its mask), in turn.
            let relu_output: Vec<f32> = (0..from.len())
                .map(|v| [1.0, 0.0, -1.0, f32::NAN][v % 4])
                .collect();
            let rows_of = Rows {
                values: &from,
                relu_output: masked.then_some(&relu_output[..]),
                stride: from_stride,
            };
            let mut to = vec![-1.0; cols * to_stride];
            copy(rows_of, (&mut to, to_stride), rows, cols);
            for j in 0..cols {
                for k in 0..to_stride {
                    let at = k * from_stride + j;
                    let want = match k < rows {
                        true if masked && relu_output[at] > 0.0 => from[at],
                        true if masked => 0.0,
                        true => from[at],
                        false => -1.0,
                    };
                    assert_eq!(to[j * to_stride + k], want, "{rows}x{cols} at ({j}, {k})");
                }
            }
        }
    }
}
