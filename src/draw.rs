//! Pictures of digits: in the terminal with shade characters, or as a PNG strip with captions.

use image::{GrayImage, Luma};

use crate::data::IMAGE_SIDE;

/// Shades from background to full ink.
const SHADES: [char; 5] = [' ', '░', '▒', '▓', '█'];

/// Draws a 28x28 digit (0 = background, 255 = ink) as 14 lines of 28 characters: each character
/// stands for two pixels one above the other (terminal cells are about twice as tall as wide),
/// shaded by their mean.
pub fn terminal(pixels: &[u8]) -> Vec<String> {
    assert_eq!(
        pixels.len(),
        IMAGE_SIDE * IMAGE_SIDE,
        "terminal: expects 28x28 pixels"
    );
    (0..IMAGE_SIDE / 2)
        .map(|row| {
            (0..IMAGE_SIDE)
                .map(|x| {
                    let top = pixels[2 * row * IMAGE_SIDE + x] as usize;
                    let bottom = pixels[(2 * row + 1) * IMAGE_SIDE + x] as usize;
                    SHADES[((top + bottom) / 2 * SHADES.len() / 256).min(SHADES.len() - 1)]
                })
                .collect()
        })
        .collect()
}

/// Glyphs 3 pixels wide and 5 tall for captions, one `u16` row mask per line (bit 2 = left).
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [0b111, 0b101, 0b101, 0b101, 0b111],
        '1' => [0b010, 0b110, 0b010, 0b010, 0b111],
        '2' => [0b111, 0b001, 0b111, 0b100, 0b111],
        '3' => [0b111, 0b001, 0b111, 0b001, 0b111],
        '4' => [0b101, 0b101, 0b111, 0b001, 0b001],
        '5' => [0b111, 0b100, 0b111, 0b001, 0b111],
        '6' => [0b111, 0b100, 0b111, 0b101, 0b111],
        '7' => [0b111, 0b001, 0b010, 0b010, 0b010],
        '8' => [0b111, 0b101, 0b111, 0b101, 0b111],
        '9' => [0b111, 0b101, 0b111, 0b001, 0b111],
        '/' => [0b001, 0b001, 0b010, 0b100, 0b100],
        '-' => [0b000, 0b000, 0b111, 0b000, 0b000],
        ' ' => [0; 5],
        _ => return None,
    })
}

/// Draws `digits` (each 28x28 pixels with a caption of digits, spaces, `/` or `-`) side by side,
/// enlarged `scale` times, dark ink on white, each caption centred under its digit. Returns the
/// PNG file's bytes.
pub fn png_strip(digits: &[(&[u8], String)], scale: u32) -> Result<Vec<u8>, image::ImageError> {
    assert!(scale > 0, "png_strip: scale must be positive");
    let side = IMAGE_SIDE as u32 * scale;
    let (gap, font) = (scale * 2, scale.max(2));
    let caption_height = 5 * font + 2 * gap;
    let count = digits.len().max(1) as u32;
    let mut canvas = GrayImage::from_pixel(
        gap + count * (side + gap),
        gap + side + caption_height,
        Luma([255]),
    );
    for (i, (pixels, caption)) in digits.iter().enumerate() {
        assert_eq!(
            pixels.len(),
            IMAGE_SIDE * IMAGE_SIDE,
            "png_strip: expects 28x28 pixels"
        );
        let left = gap + i as u32 * (side + gap);
        for y in 0..side {
            for x in 0..side {
                let ink = pixels[(y / scale) as usize * IMAGE_SIDE + (x / scale) as usize];
                canvas.put_pixel(left + x, gap + y, Luma([255 - ink]));
            }
        }
        let width = caption.chars().count() as u32 * 4 * font;
        let mut pen = left + side.saturating_sub(width) / 2;
        for c in caption.chars() {
            let rows = glyph(c).unwrap_or_else(|| panic!("png_strip: no glyph for {c:?}"));
            for (gy, mask) in rows.iter().enumerate() {
                for gx in 0..3 {
                    if mask & (0b100 >> gx) != 0 {
                        for dy in 0..font {
                            for dx in 0..font {
                                let (x, y) = (
                                    pen + gx * font + dx,
                                    gap + side + gap + gy as u32 * font + dy,
                                );
                                if x < canvas.width() {
                                    canvas.put_pixel(x, y, Luma([0]));
                                }
                            }
                        }
                    }
                }
            }
            pen += 4 * font;
        }
    }
    let mut bytes = std::io::Cursor::new(Vec::new());
    canvas.write_to(&mut bytes, image::ImageFormat::Png)?;
    Ok(bytes.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_drawing_is_14_lines_of_28_and_shades_ink() {
        let mut pixels = vec![0u8; 784];
        pixels[..56].fill(255); // the first two pixel rows: one full line of ink
        let lines = terminal(&pixels);
        assert_eq!(lines.len(), 14);
        assert!(lines.iter().all(|l| l.chars().count() == 28));
        assert!(lines[0].chars().all(|c| c == '█'));
        assert!(lines[1].chars().all(|c| c == ' '));
    }

    #[test]
    fn png_strip_has_the_expected_size_and_ink() {
        let ink = vec![255u8; 784];
        let blank = vec![0u8; 784];
        let bytes = png_strip(&[(&ink, "7".into()), (&blank, "2".into())], 2).unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap().to_luma8();
        // gap 4, two digits of 56 px: 4 + 2 * (56 + 4) = 124 wide.
        assert_eq!(decoded.width(), 124);
        assert_eq!(decoded.get_pixel(4 + 10, 4 + 10)[0], 0, "ink is dark");
        assert_eq!(
            decoded.get_pixel(64 + 10, 4 + 10)[0],
            255,
            "background is white"
        );
    }
}
