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

/// Glyphs 3 pixels wide and 5 tall for captions, one row mask per line (bit 2 = left): digits,
/// capital letters (small ones are drawn as capitals), `/`, `-` and space.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c.to_ascii_uppercase() {
        'A' => [0b010, 0b101, 0b111, 0b101, 0b101],
        'B' => [0b110, 0b101, 0b110, 0b101, 0b110],
        'C' => [0b011, 0b100, 0b100, 0b100, 0b011],
        'D' => [0b110, 0b101, 0b101, 0b101, 0b110],
        'E' => [0b111, 0b100, 0b110, 0b100, 0b111],
        'F' => [0b111, 0b100, 0b110, 0b100, 0b100],
        'G' => [0b011, 0b100, 0b101, 0b101, 0b011],
        'H' => [0b101, 0b101, 0b111, 0b101, 0b101],
        'I' => [0b111, 0b010, 0b010, 0b010, 0b111],
        'J' => [0b001, 0b001, 0b001, 0b101, 0b010],
        'K' => [0b101, 0b101, 0b110, 0b101, 0b101],
        'L' => [0b100, 0b100, 0b100, 0b100, 0b111],
        'M' => [0b101, 0b111, 0b111, 0b101, 0b101],
        'N' => [0b110, 0b101, 0b101, 0b101, 0b101],
        'O' => [0b010, 0b101, 0b101, 0b101, 0b010],
        'P' => [0b110, 0b101, 0b110, 0b100, 0b100],
        'Q' => [0b010, 0b101, 0b101, 0b110, 0b011],
        'R' => [0b110, 0b101, 0b110, 0b101, 0b101],
        'S' => [0b011, 0b100, 0b010, 0b001, 0b110],
        'T' => [0b111, 0b010, 0b010, 0b010, 0b010],
        'U' => [0b101, 0b101, 0b101, 0b101, 0b111],
        'V' => [0b101, 0b101, 0b101, 0b101, 0b010],
        'W' => [0b101, 0b101, 0b111, 0b111, 0b101],
        'X' => [0b101, 0b101, 0b010, 0b101, 0b101],
        'Y' => [0b101, 0b101, 0b010, 0b010, 0b010],
        'Z' => [0b111, 0b001, 0b010, 0b100, 0b111],
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

/// Draws `digits` (each 28x28 pixels with a caption of letters, digits, spaces, `/` or `-`, on
/// one line or several separated by `\n`) in a grid of `columns` columns, enlarged `scale` times,
/// dark ink on white, each caption line centred under its picture (in smaller letters where a
/// line would be wider than the picture). Returns the PNG file's bytes.
pub fn png_grid(
    digits: &[(&[u8], String)],
    columns: usize,
    scale: u32,
) -> Result<Vec<u8>, image::ImageError> {
    assert!(
        scale > 0 && columns > 0,
        "png_grid: scale and columns must be positive"
    );
    let side = IMAGE_SIDE as u32 * scale;
    let (gap, font) = (scale * 2, scale.max(2));
    let lines = digits
        .iter()
        .map(|(_, caption)| caption.lines().count() as u32)
        .max()
        .unwrap_or(1)
        .max(1);
    let cell_width = side + gap;
    let cell_height = side + lines * (5 * font + gap) + 2 * gap;
    let columns = columns.min(digits.len().max(1));
    let rows = digits.len().div_ceil(columns).max(1);
    let mut canvas = GrayImage::from_pixel(
        gap + columns as u32 * cell_width,
        gap + rows as u32 * cell_height,
        Luma([255]),
    );
    for (i, (pixels, caption)) in digits.iter().enumerate() {
        assert_eq!(
            pixels.len(),
            IMAGE_SIDE * IMAGE_SIDE,
            "png_grid: expects 28x28 pixels"
        );
        let left = gap + (i % columns) as u32 * cell_width;
        let top = gap + (i / columns) as u32 * cell_height;
        for y in 0..side {
            for x in 0..side {
                let ink = pixels[(y / scale) as usize * IMAGE_SIDE + (x / scale) as usize];
                canvas.put_pixel(left + x, top + y, Luma([255 - ink]));
            }
        }
        for (line_number, line) in caption.lines().enumerate() {
            let chars = line.chars().count().max(1) as u32;
            let font = font.min((side / (4 * chars)).max(1));
            let width = chars * 4 * font;
            let pen = left + side.saturating_sub(width) / 2;
            let y = top + side + gap + line_number as u32 * (5 * scale.max(2) + gap);
            write_text(&mut canvas, line, pen, y, font, Luma([0]));
        }
    }
    encode(&canvas)
}

/// [`png_grid`] with every digit in one row.
pub fn png_strip(digits: &[(&[u8], String)], scale: u32) -> Result<Vec<u8>, image::ImageError> {
    png_grid(digits, digits.len().max(1), scale)
}

/// A confusion matrix as a heat map: row = true digit, column = predicted digit, darker = more
/// examples (on a logarithmic scale, so that rare mistakes show), each cell with its count.
pub fn confusion_png(matrix: &[[usize; 10]; 10]) -> Result<Vec<u8>, image::ImageError> {
    let (cell, font) = (56u32, 2u32);
    let margin = 5 * font * 2 + 8;
    let size = margin + 10 * cell + 8;
    let mut canvas = GrayImage::from_pixel(size, size, Luma([255]));
    let max = matrix.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    for (t, row) in matrix.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            let shade = if count == 0 {
                0.0
            } else {
                (1.0 + count as f64).ln() / (1.0 + max).ln()
            };
            let grey = (255.0 - 215.0 * shade) as u8;
            let (x0, y0) = (margin + p as u32 * cell, margin + t as u32 * cell);
            for y in y0 + 1..y0 + cell {
                for x in x0 + 1..x0 + cell {
                    canvas.put_pixel(x, y, Luma([grey]));
                }
            }
            let text = count.to_string();
            let ink = if grey < 128 { Luma([255]) } else { Luma([0]) };
            let width = text.len() as u32 * 4 * font;
            write_text(
                &mut canvas,
                &text,
                x0 + (cell - width) / 2,
                y0 + (cell - 5 * font) / 2,
                font,
                ink,
            );
        }
        // Labels: predicted digits along the top, true digits down the left.
        let label = t.to_string();
        write_text(
            &mut canvas,
            &label,
            margin + t as u32 * cell + cell / 2 - 3 * font / 2,
            4,
            font * 2 - 1,
            Luma([0]),
        );
        write_text(
            &mut canvas,
            &label,
            4,
            margin + t as u32 * cell + cell / 2 - 5 * font / 2,
            font * 2 - 1,
            Luma([0]),
        );
    }
    encode(&canvas)
}

/// Writes `text` with the 3x5 glyphs, each pixel `font` pixels square, top-left at `(x, y)`.
fn write_text(canvas: &mut GrayImage, text: &str, x: u32, y: u32, font: u32, ink: Luma<u8>) {
    for (i, c) in text.chars().enumerate() {
        let rows = glyph(c).unwrap_or_else(|| panic!("no glyph for {c:?}"));
        for (gy, mask) in rows.iter().enumerate() {
            for gx in 0..3u32 {
                if mask & (0b100 >> gx) == 0 {
                    continue;
                }
                for dy in 0..font {
                    for dx in 0..font {
                        let px = x + i as u32 * 4 * font + gx * font + dx;
                        let py = y + gy as u32 * font + dy;
                        if px < canvas.width() && py < canvas.height() {
                            canvas.put_pixel(px, py, ink);
                        }
                    }
                }
            }
        }
    }
}

fn encode(canvas: &GrayImage) -> Result<Vec<u8>, image::ImageError> {
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
