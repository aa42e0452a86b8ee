//! Turning any picture of one handwritten digit into an image like MNIST's.
//!
//! MNIST's digits were made this way (LeCun et al.): ink as high values on a zero background, the
//! digit's bounding box scaled to fit 20x20 pixels keeping its aspect ratio (anti-aliased, hence
//! grey levels), then placed in a 28x28 field so that its centre of mass is at the centre.
//! A network trained on MNIST only understands digits prepared the same way.
//!
//! Fashion-MNIST's pictures were made differently: each product photo, trimmed, was scaled so its
//! longer side is 28 pixels, as a whole. [`whole_picture`] does that for the other data sets, with
//! the same handling of colour, transparency and polarity.

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, Luma};

use super::{DataSet, IMAGE_SIDE};

/// The 28x28 pixels of `picture` prepared as the images of `set` were made: [`mnist_like`] for
/// the digit sets, [`whole_picture`] for the others.
pub fn prepare(set: DataSet, picture: &DynamicImage) -> Result<Vec<u8>, String> {
    if set.is_digits() {
        mnist_like(picture)
    } else {
        whole_picture(picture)
    }
}

/// What [`prepare`] does to a picture for `set`, in one sentence.
pub fn preparation(set: DataSet) -> &'static str {
    if set.is_digits() {
        "the ink's bounding box scaled to 20x20, centred by its centre of mass, as MNIST's digits were made"
    } else {
        "the whole picture scaled to 28 pixels on its longer side and centred, as the set's images were made"
    }
}

/// The side of the box the digit is scaled into.
const DIGIT_BOX: u32 = 20;
/// Ink below this fraction of the strongest ink does not count for the bounding box.
const INK_THRESHOLD: f32 = 0.25;

/// The 28x28 pixels (0 = background, 255 = ink) of the digit in `picture`, which may be of any
/// size, grey or colour, with or without alpha, dark ink on light paper or the reverse.
pub fn mnist_like(picture: &DynamicImage) -> Result<Vec<u8>, String> {
    let ink = ink_map(picture);
    let (width, height) = (picture.width(), picture.height());

    // Bounding box of the ink.
    let strongest = ink.iter().copied().fold(0.0f32, f32::max);
    if strongest < 0.1 {
        return Err("no ink found: the picture is blank or has no contrast".into());
    }
    let inked = |x: u32, y: u32| ink[(y * width + x) as usize] >= INK_THRESHOLD * strongest;
    let (mut left, mut top, mut right, mut bottom) = (width, height, 0, 0);
    for y in 0..height {
        for x in 0..width {
            if inked(x, y) {
                (left, top) = (left.min(x), top.min(y));
                (right, bottom) = (right.max(x), bottom.max(y));
            }
        }
    }
    let (box_w, box_h) = (right - left + 1, bottom - top + 1);

    // Crop, and scale the longer side to 20 pixels.
    let cropped = grey_crop(&ink, width, strongest, (left, top, box_w, box_h));
    let digit = fit_longer_side(&cropped, DIGIT_BOX);

    // Centre of mass, moved to the centre of the 28x28 field.
    let (mut mass, mut sum_x, mut sum_y) = (0.0f64, 0.0f64, 0.0f64);
    for (x, y, pixel) in digit.enumerate_pixels() {
        let m = pixel[0] as f64;
        mass += m;
        sum_x += m * (x as f64 + 0.5);
        sum_y += m * (y as f64 + 0.5);
    }
    if mass == 0.0 {
        return Err("no ink left after scaling the digit down".into());
    }
    let centre = IMAGE_SIDE as f64 / 2.0;
    let offset_x = (centre - sum_x / mass).round() as i64;
    let offset_y = (centre - sum_y / mass).round() as i64;
    let mut out = vec![0u8; IMAGE_SIDE * IMAGE_SIDE];
    for (x, y, pixel) in digit.enumerate_pixels() {
        let (tx, ty) = (x as i64 + offset_x, y as i64 + offset_y);
        if (0..IMAGE_SIDE as i64).contains(&tx) && (0..IMAGE_SIDE as i64).contains(&ty) {
            out[ty as usize * IMAGE_SIDE + tx as usize] = pixel[0];
        }
    }
    Ok(out)
}

/// The 28x28 pixels (0 = background, 255 = the strongest ink) of the whole `picture`, scaled so
/// its longer side is 28 pixels and centred: the preparation of pictures for data sets other than
/// MNIST, whose images were made from whole pictures rather than from a digit's bounding box.
pub fn whole_picture(picture: &DynamicImage) -> Result<Vec<u8>, String> {
    let ink = ink_map(picture);
    let (width, height) = (picture.width(), picture.height());
    let strongest = ink.iter().copied().fold(0.0f32, f32::max);
    if strongest < 0.1 {
        return Err("nothing found: the picture is blank or has no contrast".into());
    }
    let grey = grey_crop(&ink, width, strongest, (0, 0, width, height));
    let side = IMAGE_SIDE as u32;
    let scaled = fit_longer_side(&grey, side);
    let (new_w, new_h) = scaled.dimensions();
    let (left, top) = ((side - new_w) / 2, (side - new_h) / 2);
    let mut out = vec![0u8; IMAGE_SIDE * IMAGE_SIDE];
    for (x, y, pixel) in scaled.enumerate_pixels() {
        out[((top + y) * side + left + x) as usize] = pixel[0];
    }
    Ok(out)
}

/// The rectangle `(left, top, width, height)` of an ink map `width` pixels wide as a grey picture,
/// the `strongest` ink at 255.
fn grey_crop(ink: &[f32], width: u32, strongest: f32, rect: (u32, u32, u32, u32)) -> GrayImage {
    let (left, top, w, h) = rect;
    GrayImage::from_fn(w, h, |x, y| {
        let value = ink[((top + y) * width + left + x) as usize] / strongest;
        Luma([(value.clamp(0.0, 1.0) * 255.0).round() as u8])
    })
}

/// `picture` scaled (anti-aliased) so that its longer side is `side` pixels, keeping its aspect
/// ratio (the shorter side at least 1 pixel).
fn fit_longer_side(picture: &GrayImage, side: u32) -> GrayImage {
    let (width, height) = picture.dimensions();
    let scale = side as f32 / width.max(height) as f32;
    let (new_w, new_h) = (
        ((width as f32 * scale).round() as u32).clamp(1, side),
        ((height as f32 * scale).round() as u32).clamp(1, side),
    );
    imageops::resize(picture, new_w, new_h, FilterType::Triangle)
}

/// How much ink each pixel holds, 0 to 1, row by row, with the paper's own level removed.
fn ink_map(picture: &DynamicImage) -> Vec<f32> {
    let rgba = picture.to_rgba8();
    let (width, height) = rgba.dimensions();
    let luma = |p: &image::Rgba<u8>| {
        (0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32) / 255.0
    };
    let transparent = rgba.pixels().any(|p| p[3] < 250);
    let ink: Vec<f32> = if transparent {
        // Strokes are the opaque pixels: their colour tells whether ink is dark or light.
        let opaque: Vec<f32> = rgba.pixels().filter(|p| p[3] >= 128).map(luma).collect();
        let dark_strokes = opaque.iter().sum::<f32>() / (opaque.len().max(1) as f32) < 0.5;
        rgba.pixels()
            .map(|p| {
                let alpha = p[3] as f32 / 255.0;
                alpha * if dark_strokes { 1.0 - luma(p) } else { luma(p) }
            })
            .collect()
    } else {
        // The border is paper: if it is light, the ink is dark.
        let border: Vec<f32> = rgba
            .enumerate_pixels()
            .filter(|(x, y, _)| *x == 0 || *y == 0 || *x + 1 == width || *y + 1 == height)
            .map(|(_, _, p)| luma(p))
            .collect();
        let light_paper = border.iter().sum::<f32>() / border.len() as f32 > 0.5;
        rgba.pixels()
            .map(|p| if light_paper { 1.0 - luma(p) } else { luma(p) })
            .collect()
    };
    // Remove the paper's level: the median ink on the border.
    let mut border: Vec<f32> = (0..width)
        .flat_map(|x| [ink[x as usize], ink[((height - 1) * width + x) as usize]])
        .chain((0..height).flat_map(|y| {
            [
                ink[(y * width) as usize],
                ink[(y * width + width - 1) as usize],
            ]
        }))
        .collect();
    border.sort_by(f32::total_cmp);
    let paper = border[border.len() / 2];
    ink.into_iter().map(|v| (v - paper).max(0.0)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Rgba, RgbaImage};

    /// A dark bar on light paper, off centre, in a large colour picture.
    fn bar_picture() -> DynamicImage {
        let mut picture = RgbaImage::from_pixel(280, 200, Rgba([240, 235, 220, 255]));
        for y in 20..120 {
            for x in 200..220 {
                picture.put_pixel(x, y, Rgba([20, 20, 40, 255]));
            }
        }
        DynamicImage::ImageRgba8(picture)
    }

    #[test]
    fn a_bar_becomes_a_centred_20_pixel_stroke() {
        let pixels = mnist_like(&bar_picture()).unwrap();
        let column_ink: Vec<u32> = (0..28)
            .map(|x| (0..28).map(|y| pixels[y * 28 + x] as u32).sum())
            .collect();
        let row_ink: Vec<u32> = (0..28)
            .map(|y| (0..28).map(|x| pixels[y * 28 + x] as u32).sum())
            .collect();
        let inked_rows = row_ink.iter().filter(|&&v| v > 0).count();
        assert!((19..=21).contains(&inked_rows), "{inked_rows} rows of ink");
        // The stroke is centred: its centre of mass is at 14 (the middle of the 28 columns).
        let mass: u32 = column_ink.iter().sum();
        let centre = column_ink
            .iter()
            .enumerate()
            .map(|(x, &v)| (x as f64 + 0.5) * v as f64)
            .sum::<f64>()
            / mass as f64;
        assert!(
            (centre - 14.0).abs() <= 0.5,
            "centre of mass at column {centre}"
        );
        assert_eq!(pixels[0], 0, "background is zero");
    }

    #[test]
    fn light_ink_on_dark_paper_and_transparent_backgrounds_give_the_same_digit() {
        let dark_on_light = mnist_like(&bar_picture()).unwrap();
        let mut inverted = bar_picture().to_rgba8();
        for p in inverted.pixels_mut() {
            (p[0], p[1], p[2]) = (255 - p[0], 255 - p[1], 255 - p[2]);
        }
        assert_eq!(
            mnist_like(&DynamicImage::ImageRgba8(inverted)).unwrap(),
            dark_on_light
        );
        let mut transparent = RgbaImage::from_pixel(280, 200, Rgba([0, 0, 0, 0]));
        for y in 20..120 {
            for x in 200..220 {
                transparent.put_pixel(x, y, Rgba([0, 0, 0, 255]));
            }
        }
        assert_eq!(
            mnist_like(&DynamicImage::ImageRgba8(transparent)).unwrap(),
            dark_on_light
        );
    }

    #[test]
    fn a_whole_picture_is_scaled_to_28_on_its_longer_side_and_centred() {
        // A light rectangle inside a 56x28 black picture, which becomes 28x14 in rows 7 to 20.
        let picture = DynamicImage::ImageLuma8(GrayImage::from_fn(56, 28, |x, y| {
            Luma([if (8..48).contains(&x) && (4..24).contains(&y) {
                200
            } else {
                0
            }])
        }));
        let pixels = whole_picture(&picture).unwrap();
        let at = |x: usize, y: usize| pixels[y * IMAGE_SIDE + x];
        assert_eq!(
            (at(14, 3), at(14, 24)),
            (0, 0),
            "rows outside the 14 scaled ones"
        );
        assert_eq!(at(14, 14), 255, "the strongest ink becomes 255");
        assert_eq!(at(1, 14), 0, "the black margin stays background");
    }

    #[test]
    fn a_blank_picture_has_no_ink() {
        let blank = DynamicImage::ImageLuma8(GrayImage::from_pixel(50, 50, Luma([200])));
        assert!(mnist_like(&blank).unwrap_err().contains("no ink"));
    }
}
