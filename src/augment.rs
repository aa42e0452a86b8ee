//! Data augmentation: every epoch sees each training image moved, turned or warped a little, so
//! that the network learns the digit and not its exact pixels.
//!
//! Each distortion is a map from a pixel of the output image to a point of the input image, and
//! the output pixel takes the input's value there by **bilinear interpolation**: with
//! `x = i + a`, `y = j + b` (`i`, `j` whole, `a`, `b` in `[0, 1)`),
//!
//! ```text
//! out = (1-a)(1-b)·in[j][i] + a(1-b)·in[j][i+1] + (1-a)b·in[j+1][i] + ab·in[j+1][i+1]
//! ```
//!
//! with the background (0) outside the image. Coordinates are pixel centres, `(13.5, 13.5)` the
//! image's centre.
//!
//! - [`Distortion::Translate`]: a shift by whole pixels, `dx, dy ~ U{-T..T}` (exact: no blur).
//! - [`Distortion::Affine`]: the digit turned by `θ ~ U(-R, R)` degrees about the centre, scaled
//!   by `s ~ U(1-S, 1+S)`, squeezed (`x` by `1+q`, `y` by `1/(1+q)`, `q ~ U(-Q, Q)`), sheared
//!   horizontally (`x += h·y`, `h ~ U(-H, H)`) and moved by `t ~ U(-T, T)²` pixels: the forward
//!   map is `p' = A(p - c) + c + t` with `A = rotation · shear · squeeze · scale`, and the output
//!   samples the input at `A⁻¹(p' - c - t) + c`.
//! - [`Distortion::Elastic`]: Simard, Steinkraus and Platt (2003): two fields of displacements
//!   `U(-1, 1)` per pixel, each smoothed by a Gaussian of standard deviation `σ` pixels (zero
//!   beyond the image) and scaled by `α`; the output at `p` samples the input at
//!   `p + α·(G_σ * u, G_σ * v)(p)`. Their MNIST network used `σ = 4`, `α = 34`.
//!
//! Randomness: image `k` of epoch `e` draws from its own ChaCha8 stream (the seed mixed with `e`,
//! stream `k`), so an epoch's images are the same whatever the number of cores, and a run resumed
//! mid-way sees the same images as one that was never stopped.

use std::fmt;
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use ndarray::Array2;

use crate::data::{Preprocessing, IMAGE_PIXELS, IMAGE_SIDE};
use crate::SeededRng;

/// One random distortion.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distortion {
    /// A shift by whole pixels, up to `max_shift` each way.
    Translate {
        /// Largest shift, pixels.
        max_shift: u32,
    },
    /// Rotation, scaling, squeezing, horizontal shear and translation.
    Affine {
        /// Largest rotation, degrees.
        max_rotation: f32,
        /// Largest relative change of size (0.1: 90% to 110%).
        max_scale: f32,
        /// Largest squeeze (0.1: x by up to 1.1 while y by 1/1.1, or the reverse).
        max_squeeze: f32,
        /// Largest horizontal shear (x moves by `shear · y`).
        max_shear: f32,
        /// Largest translation, pixels.
        max_shift: f32,
    },
    /// Simard et al.'s elastic distortion.
    Elastic {
        /// Standard deviation of the smoothing Gaussian, pixels.
        sigma: f32,
        /// Scale of the smoothed displacements, pixels.
        alpha: f32,
    },
}

/// Distortions applied one after the other (each resamples the image).
#[derive(Debug, Clone, PartialEq)]
pub struct Augmentation {
    /// In order.
    pub distortions: Vec<Distortion>,
}

/// A 28x28 image, row by row (0 = background, 255 = ink).
pub type Image = [u8; IMAGE_PIXELS];

/// The centre of the image, in pixel coordinates.
const CENTRE: f32 = (IMAGE_SIDE as f32 - 1.0) / 2.0;

/// Background pixels around a [`Padded`] image: a point less than this far outside the image
/// still finds all four neighbours in the array.
const PAD: usize = 2;
/// The side of a padded image.
const PADDED: usize = IMAGE_SIDE + 2 * PAD;

/// An image as `f32`, with [`PAD`] pixels of background around it, so that interpolation needs no
/// test per neighbour.
struct Padded([f32; PADDED * PADDED]);

impl Padded {
    fn new(image: &Image) -> Padded {
        let mut padded = [0.0; PADDED * PADDED];
        for (row, pixels) in image.chunks(IMAGE_SIDE).enumerate() {
            let start = (row + PAD) * PADDED + PAD;
            for (to, &from) in padded[start..start + IMAGE_SIDE].iter_mut().zip(pixels) {
                *to = from as f32;
            }
        }
        Padded(padded)
    }

    /// The value at the point `(x, y)` of the image by bilinear interpolation, background
    /// outside.
    #[inline]
    fn bilinear(&self, x: f32, y: f32) -> f32 {
        let (px, py) = (x + PAD as f32, y + PAD as f32);
        let last = (PADDED - 1) as f32;
        // Also false for NaN.
        if !(px >= 0.0 && py >= 0.0 && px < last && py < last) {
            return 0.0;
        }
        // Truncation is the floor of a non-negative number (and needs no call to libm).
        let (i, j) = (px as usize, py as usize);
        let (a, b) = (px - i as f32, py - j as f32);
        let p = &self.0[j * PADDED + i..];
        (1.0 - a) * (1.0 - b) * p[0]
            + a * (1.0 - b) * p[1]
            + (1.0 - a) * b * p[PADDED]
            + a * b * p[PADDED + 1]
    }
}

/// The image whose pixel `(x, y)` is `image` sampled at `source(x, y)`.
fn resample(image: &Image, source: impl Fn(usize, usize) -> (f32, f32)) -> Image {
    let padded = Padded::new(image);
    let mut out = [0u8; IMAGE_PIXELS];
    for (y, row) in out.chunks_mut(IMAGE_SIDE).enumerate() {
        for (x, pixel) in row.iter_mut().enumerate() {
            let (sx, sy) = source(x, y);
            // Rounded to the nearest level (`as` saturates at 255; the value is never negative).
            *pixel = (padded.bilinear(sx, sy) + 0.5) as u8;
        }
    }
    out
}

/// `image` moved by `(dx, dy)` whole pixels, background where nothing moved in.
fn shift(image: &Image, dx: i64, dy: i64) -> Image {
    let side = IMAGE_SIDE as i64;
    let mut out = [0u8; IMAGE_PIXELS];
    for y in (0..side).filter(|y| (0..side).contains(&(y - dy))) {
        for x in (0..side).filter(|x| (0..side).contains(&(x - dx))) {
            out[(y * side + x) as usize] = image[((y - dy) * side + x - dx) as usize];
        }
    }
    out
}

/// Where the affine map `p' = A(p - c) + c + shift`, `A = rotation(θ) · shear · diag(scale·squeeze,
/// scale/squeeze)`, takes each output pixel from: `A⁻¹(p' - c - shift) + c`.
fn affine_source(
    theta: f32,
    scale: f32,
    squeeze: f32,
    shear: f32,
    shift: (f32, f32),
) -> impl Fn(usize, usize) -> (f32, f32) {
    let (sx, sy) = (scale * squeeze, scale / squeeze);
    let (cos, sin) = (theta.cos(), theta.sin());
    // A = [[cos, -sin], [sin, cos]] · [[1, shear], [0, 1]] · diag(sx, sy) = [[a, b], [c, d]].
    let (a, b, c, d) = (
        cos * sx,
        (cos * shear - sin) * sy,
        sin * sx,
        (sin * shear + cos) * sy,
    );
    // A⁻¹ = [[d, -b], [-c, a]] / det.
    let det = a * d - b * c;
    let (ia, ib, ic, id) = (d / det, -b / det, -c / det, a / det);
    move |x, y| {
        let (u, v) = (x as f32 - CENTRE - shift.0, y as f32 - CENTRE - shift.1);
        (ia * u + ib * v + CENTRE, ic * u + id * v + CENTRE)
    }
}

/// The weights `g(d) ∝ exp(-d² / 2σ²)` for `d = -r..=r`, `r = ⌈3σ⌉`, summing to 1.
fn gaussian_kernel(sigma: f32) -> Vec<f32> {
    let radius = (3.0 * sigma).ceil() as usize;
    let weights: Vec<f32> = (0..=2 * radius)
        .map(|k| {
            let d = k as f32 - radius as f32;
            (-d * d / (2.0 * sigma * sigma)).exp()
        })
        .collect();
    let total: f32 = weights.iter().sum();
    weights.iter().map(|w| w / total).collect()
}

/// A field of `U(-1, 1)` values smoothed by the Gaussian `kernel` ([`gaussian_kernel`]; zero
/// beyond the image), row by row.
///
/// The 2-D Gaussian is separable, so it is two 1-D passes, each along the columns (where whole
/// rows are added at once, which vectorises): one on the field, one on its transpose. The result
/// is the smoothing of the transposed field, which is as random as the field itself: the draws
/// fill the field column by column.
fn smooth_random_field(kernel: &[f32], rng: &mut SeededRng) -> [f32; IMAGE_PIXELS] {
    let mut field = [0.0f32; IMAGE_PIXELS];
    for value in field.iter_mut() {
        *value = rng.random_range(-1.0f32..1.0);
    }
    let radius = kernel.len() / 2;
    let along_columns = |input: &[f32; IMAGE_PIXELS]| {
        let mut out = [0.0f32; IMAGE_PIXELS];
        for (y, out_row) in out.chunks_mut(IMAGE_SIDE).enumerate() {
            let (lo, hi) = (y.saturating_sub(radius), (y + radius).min(IMAGE_SIDE - 1));
            // A row's sums stay in registers while the rows around it are added.
            let mut sums = [0.0f32; IMAGE_SIDE];
            for row in lo..=hi {
                let w = kernel[row + radius - y];
                let in_row = &input[row * IMAGE_SIDE..(row + 1) * IMAGE_SIDE];
                for (sum, &v) in sums.iter_mut().zip(in_row) {
                    *sum += w * v;
                }
            }
            out_row.copy_from_slice(&sums);
        }
        out
    };
    let once = along_columns(&field);
    let mut transposed = [0.0f32; IMAGE_PIXELS];
    for y in 0..IMAGE_SIDE {
        for x in 0..IMAGE_SIDE {
            transposed[x * IMAGE_SIDE + y] = once[y * IMAGE_SIDE + x];
        }
    }
    along_columns(&transposed)
}

impl Distortion {
    /// `image` distorted with draws from `rng`.
    pub fn apply(&self, image: &Image, rng: &mut SeededRng) -> Image {
        match *self {
            Distortion::Translate { max_shift } => {
                let max = max_shift as i64;
                let dx = rng.random_range(-max..=max);
                let dy = rng.random_range(-max..=max);
                shift(image, dx, dy)
            }
            Distortion::Affine {
                max_rotation,
                max_scale,
                max_squeeze,
                max_shear,
                max_shift,
            } => {
                let mut uniform = |max: f32| {
                    if max > 0.0 {
                        rng.random_range(-max..=max)
                    } else {
                        0.0
                    }
                };
                let theta = uniform(max_rotation).to_radians();
                let scale = 1.0 + uniform(max_scale);
                let squeeze = 1.0 + uniform(max_squeeze);
                let shear = uniform(max_shear);
                let shift = (uniform(max_shift), uniform(max_shift));
                resample(image, affine_source(theta, scale, squeeze, shear, shift))
            }
            Distortion::Elastic { sigma, alpha } => {
                let kernel = gaussian_kernel(sigma);
                let dx = smooth_random_field(&kernel, rng);
                let dy = smooth_random_field(&kernel, rng);
                resample(image, |x, y| {
                    let k = y * IMAGE_SIDE + x;
                    (x as f32 + alpha * dx[k], y as f32 + alpha * dy[k])
                })
            }
        }
    }
}

impl Augmentation {
    /// `image` (784 pixels) through every distortion in turn, with draws from `rng`.
    pub fn apply(&self, image: &[u8], rng: &mut SeededRng) -> Image {
        let mut current: Image = image.try_into().expect("augment: 784 pixels");
        for distortion in &self.distortions {
            current = distortion.apply(&current, rng);
        }
        current
    }

    /// Training image number `index` (its 784 `pixels`) as epoch `epoch` of a run seeded `seed`
    /// sees it: distorted with draws from stream `index` of a generator seeded by `seed` and
    /// `epoch`.
    pub fn image(&self, pixels: &[u8], seed: u64, epoch: u64, index: usize) -> Image {
        let mut rng = SeededRng::seed_from_u64(seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.set_stream(index as u64);
        self.apply(pixels, &mut rng)
    }

    /// The training images `pixels` (784 each) as epoch `epoch` of a run seeded `seed` sees them
    /// ([`image`](Self::image) for each), as network inputs: each pixel through `preprocessing`,
    /// written into `inputs` `(images, 784)`. Runs on all cores.
    pub fn epoch_inputs(
        &self,
        pixels: &[u8],
        seed: u64,
        epoch: u64,
        preprocessing: &Preprocessing,
        inputs: &mut Array2<f32>,
    ) {
        assert_eq!(
            inputs.dim(),
            (pixels.len() / IMAGE_PIXELS, IMAGE_PIXELS),
            "epoch_inputs: one row of 784 inputs per image"
        );
        let rows = inputs.as_slice_mut().expect("a standard-layout matrix");
        rows.par_chunks_mut(IMAGE_PIXELS)
            .zip(pixels.par_chunks(IMAGE_PIXELS))
            .enumerate()
            .for_each(|(k, (to, from))| {
                for (input, pixel) in to.iter_mut().zip(self.image(from, seed, epoch, k)) {
                    *input = preprocessing.apply(pixel);
                }
            });
    }
}

/// Parses one distortion's values after its name.
fn values<const N: usize>(
    text: &str,
    given: &[&str],
    defaults: [f32; N],
) -> Result<[f32; N], String> {
    if given.len() > N {
        return Err(format!("'{text}' has more than {N} values"));
    }
    let mut out = defaults;
    for (slot, value) in out.iter_mut().zip(given) {
        *slot = value
            .parse::<f32>()
            .ok()
            .filter(|v| v.is_finite() && *v >= 0.0)
            .ok_or_else(|| format!("'{value}' in '{text}' is not a number ≥ 0"))?;
    }
    Ok(out)
}

impl FromStr for Distortion {
    type Err = String;

    /// `translate[:T]` (default 2), `affine[:ROTATION[:SCALE[:SQUEEZE[:SHEAR[:SHIFT]]]]]`
    /// (defaults 10, 0.1, 0.1, 0.2, 2), `elastic[:SIGMA[:ALPHA]]` (defaults 4, 34).
    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split(':');
        let name = parts.next().unwrap_or_default();
        let given: Vec<&str> = parts.collect();
        match name {
            "translate" => {
                let [shift] = values(text, &given, [2.0])?;
                if shift.fract() != 0.0 {
                    return Err(format!("'{text}': translations are whole pixels"));
                }
                Ok(Distortion::Translate {
                    max_shift: shift as u32,
                })
            }
            "affine" => {
                let [rotation, scale, squeeze, shear, shift] =
                    values(text, &given, [10.0, 0.1, 0.1, 0.2, 2.0])?;
                if scale >= 1.0 || squeeze >= 1.0 {
                    return Err(format!("'{text}': scale and squeeze must be below 1"));
                }
                Ok(Distortion::Affine {
                    max_rotation: rotation,
                    max_scale: scale,
                    max_squeeze: squeeze,
                    max_shear: shear,
                    max_shift: shift,
                })
            }
            "elastic" => {
                let [sigma, alpha] = values(text, &given, [4.0, 34.0])?;
                if sigma <= 0.0 {
                    return Err(format!("'{text}': sigma must be above 0"));
                }
                Ok(Distortion::Elastic { sigma, alpha })
            }
            _ => Err(format!(
                "unknown distortion '{name}': use translate[:T], \
                 affine[:ROTATION[:SCALE[:SQUEEZE[:SHEAR[:SHIFT]]]]] or elastic[:SIGMA[:ALPHA]]"
            )),
        }
    }
}

impl FromStr for Augmentation {
    type Err = String;

    /// Distortions joined by `+`, applied in that order: `affine+elastic`.
    fn from_str(text: &str) -> Result<Self, String> {
        let distortions = text
            .split('+')
            .map(|part| part.trim().parse())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Augmentation { distortions })
    }
}

impl fmt::Display for Distortion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Distortion::Translate { max_shift } => write!(f, "translate:{max_shift}"),
            Distortion::Affine {
                max_rotation,
                max_scale,
                max_squeeze,
                max_shear,
                max_shift,
            } => write!(
                f,
                "affine:{max_rotation}:{max_scale}:{max_squeeze}:{max_shear}:{max_shift}"
            ),
            Distortion::Elastic { sigma, alpha } => write!(f, "elastic:{sigma}:{alpha}"),
        }
    }
}

impl fmt::Display for Augmentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.distortions.iter().map(|d| d.to_string()).collect();
        f.write_str(&parts.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 28x28 image with one bright pixel at `(x, y)` and a dimmer one beside it.
    fn dot(x: usize, y: usize) -> Image {
        let mut image = [0u8; IMAGE_PIXELS];
        image[y * IMAGE_SIDE + x] = 200;
        image[y * IMAGE_SIDE + x + 1] = 100;
        image
    }

    #[test]
    fn bilinear_interpolation_weighs_the_four_neighbours() {
        let padded = Padded::new(&dot(10, 10));
        assert_eq!(padded.bilinear(10.0, 10.0), 200.0);
        assert_eq!(padded.bilinear(10.5, 10.0), 150.0);
        assert_eq!(
            padded.bilinear(10.25, 10.5),
            0.5 * (0.75 * 200.0 + 0.25 * 100.0)
        );
        assert_eq!(padded.bilinear(-1.0, 10.0), 0.0);
        // Half a pixel outside the corner: a quarter of the corner pixel.
        let corner = Padded::new(&dot(0, 0));
        assert_eq!(corner.bilinear(-0.5, -0.5), 50.0);
        assert_eq!(corner.bilinear(f32::NAN, 3.0), 0.0);
        assert_eq!(corner.bilinear(1e9, -1e9), 0.0);
    }

    #[test]
    fn the_smoothing_is_a_normalised_gaussian_away_from_the_borders() {
        // The field is linear in its random values, so compare one value of it with the sum the
        // definition gives, from the same draws.
        let sigma = 2.0;
        let smooth = smooth_random_field(&gaussian_kernel(sigma), &mut crate::seeded_rng(9));
        let mut rng = crate::seeded_rng(9);
        let draws: Vec<f32> = (0..IMAGE_PIXELS)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        // The draws fill the field column by column.
        let raw: Vec<f32> = (0..IMAGE_PIXELS)
            .map(|k| draws[(k % 28) * 28 + k / 28])
            .collect();
        let (cx, cy) = (14i64, 12i64);
        let g = |d: i64| (-(d * d) as f32 / (2.0 * sigma * sigma)).exp();
        let norm: f32 = (-6..=6).map(g).sum();
        let mut expected = 0.0;
        for dy in -6..=6 {
            for dx in -6..=6 {
                let k = ((cy + dy) * 28 + cx + dx) as usize;
                expected += g(dx) * g(dy) / (norm * norm) * raw[k];
            }
        }
        let got = smooth[(cy * 28 + cx) as usize];
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
    }

    #[test]
    fn translations_move_pixels_exactly() {
        let image = dot(10, 12);
        let mut rng = crate::seeded_rng(3);
        for _ in 0..20 {
            let out = Distortion::Translate { max_shift: 2 }.apply(&image, &mut rng);
            let at = out
                .iter()
                .position(|&p| p == 200)
                .expect("the dot survives");
            let (x, y) = (at % IMAGE_SIDE, at / IMAGE_SIDE);
            assert!(x.abs_diff(10) <= 2 && y.abs_diff(12) <= 2, "({x}, {y})");
            assert_eq!(out[at + 1], 100);
            assert_eq!(out.iter().map(|&p| p as u32).sum::<u32>(), 300);
        }
    }

    #[test]
    fn an_affine_map_without_range_and_a_weightless_elastic_one_change_nothing() {
        let image = dot(7, 20);
        let mut rng = crate::seeded_rng(0);
        let still = Distortion::Affine {
            max_rotation: 0.0,
            max_scale: 0.0,
            max_squeeze: 0.0,
            max_shear: 0.0,
            max_shift: 0.0,
        };
        assert_eq!(still.apply(&image, &mut rng), image);
        let limp = Distortion::Elastic {
            sigma: 4.0,
            alpha: 0.0,
        };
        assert_eq!(limp.apply(&image, &mut rng), image);
    }

    #[test]
    fn the_affine_map_moves_a_pixel_where_its_matrix_says() {
        let image = dot(20, 13);
        let at = |out: &Image, x: usize, y: usize| out[y * IMAGE_SIDE + x];
        // A quarter turn: (20, 13) - c = (6.5, -0.5) → [[0, -1], [1, 0]] → (0.5, 6.5) → (14, 20).
        let turn = resample(
            &image,
            affine_source(90f32.to_radians(), 1.0, 1.0, 0.0, (0.0, 0.0)),
        );
        assert_eq!(at(&turn, 14, 20), 200);
        // A horizontal shear of 1 then a shift by (-2.5, 2): (6.5, -0.5) → (6, -0.5) → (17, 15).
        let sheared = resample(&image, affine_source(0.0, 1.0, 1.0, 1.0, (-2.5, 2.0)));
        assert_eq!(at(&sheared, 17, 15), 200);
        // Squeezing by 1.25: (6.5, -0.5) → (8.125, -0.4) → (21.625, 13.1): between pixels, the
        // bright one lands spread over its neighbours.
        let squeezed = resample(&image, affine_source(0.0, 1.0, 1.25, 0.0, (0.0, 0.0)));
        assert!(at(&squeezed, 21, 13) > 0 && at(&squeezed, 22, 13) > 0);
    }

    #[test]
    fn the_smoothed_field_has_the_expected_spread() {
        // Var(U(-1,1)) = 1/3, and a normalised Gaussian of σ pixels in 2-D divides the variance
        // by about 4πσ² away from the borders: std ≈ 0.577 / (2√π·σ) = 0.041 for σ = 4.
        let mut rng = crate::seeded_rng(5);
        let mut sum_sq = 0.0f64;
        let mut n = 0;
        for _ in 0..200 {
            let field = smooth_random_field(&gaussian_kernel(4.0), &mut rng);
            let centre = field[14 * IMAGE_SIDE + 14] as f64;
            sum_sq += centre * centre;
            n += 1;
        }
        let std = (sum_sq / n as f64).sqrt();
        assert!((0.03..0.055).contains(&std), "std {std}");
    }

    #[test]
    fn an_epoch_is_reproducible_and_each_epoch_differs() {
        let images: Vec<u8> = (0..5).flat_map(|k| dot(8 + k, 9 + k)).collect();
        let augmentation: Augmentation = "affine+elastic".parse().unwrap();
        let scale = Preprocessing::Scale255;
        let epoch = |pixels: &[u8], seed, epoch| {
            let mut inputs = Array2::zeros((pixels.len() / IMAGE_PIXELS, IMAGE_PIXELS));
            augmentation.epoch_inputs(pixels, seed, epoch, &scale, &mut inputs);
            inputs
        };
        let first = epoch(&images, 7, 1);
        assert_eq!(first, epoch(&images, 7, 1));
        assert_ne!(first, epoch(&images, 7, 2));
        assert_ne!(first, epoch(&images, 8, 1));
        // Image k is `image(.., k)` scaled: it depends on its own stream only.
        for k in 0..5 {
            let pixels = &images[k * IMAGE_PIXELS..(k + 1) * IMAGE_PIXELS];
            let alone: Vec<f32> = augmentation
                .image(pixels, 7, 1, k)
                .into_iter()
                .map(|p| scale.apply(p))
                .collect();
            assert_eq!(first.row(k).to_vec(), alone);
        }
    }

    #[test]
    fn specs_parse_print_and_refuse() {
        let parsed: Augmentation = "translate:3+affine:15+elastic".parse().unwrap();
        assert_eq!(
            parsed.to_string(),
            "translate:3+affine:15:0.1:0.1:0.2:2+elastic:4:34"
        );
        assert_eq!(parsed, parsed.to_string().parse().unwrap());
        for bad in [
            "",
            "rotate",
            "translate:1.5",
            "affine:1:2",
            "elastic:0",
            "elastic:4:-1",
            "translate:1:2",
        ] {
            assert!(bad.parse::<Augmentation>().is_err(), "{bad}");
        }
    }
}
