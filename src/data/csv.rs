//! The CSV layout of seed 000 (`mnist_train.csv`, `mnist_test.csv`): one image per line,
//! `label,p0,p1,...,p783`, no header, the label a digit 0-9 and each pixel an integer 0-255.

use std::path::Path;

use super::{DataError, IMAGE_PIXELS};

/// Parses CSV text into `(count, pixels, labels)`. `what` names the source in error messages.
pub fn parse_csv(text: &str, what: &str) -> Result<(usize, Vec<u8>, Vec<u8>), DataError> {
    let mut pixels = Vec::new();
    let mut labels = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let bad = |message: String| DataError::Format {
            file: format!("{what}, line {}", number + 1),
            message,
        };
        let fields: Vec<&str> = line.split(',').collect();
        if fields.len() != 1 + IMAGE_PIXELS {
            return Err(bad(format!(
                "expected 785 comma-separated values (label and 784 pixels), found {}",
                fields.len()
            )));
        }
        let parse = |field: &str, column: usize, max: u8| -> Result<u8, DataError> {
            match field.trim().parse::<u16>() {
                Ok(v) if v <= max as u16 => Ok(v as u8),
                Ok(v) => Err(bad(format!(
                    "value {v} in column {} is above {max}",
                    column + 1
                ))),
                Err(_) => Err(bad(format!(
                    "'{field}' in column {} is not a whole number",
                    column + 1
                ))),
            }
        };
        labels.push(parse(fields[0], 0, 9)?);
        for (column, field) in fields.iter().enumerate().skip(1) {
            pixels.push(parse(field, column, 255)?);
        }
    }
    if labels.is_empty() {
        return Err(DataError::Format {
            file: what.to_string(),
            message: "no images in the file".to_string(),
        });
    }
    Ok((labels.len(), pixels, labels))
}

/// Reads a CSV file of labelled images.
pub fn read_csv(path: &Path) -> Result<(usize, Vec<u8>, Vec<u8>), DataError> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    parse_csv(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(label: &str, pixel: &str) -> String {
        let mut fields = vec![label.to_string()];
        fields.extend(std::iter::repeat_n(pixel.to_string(), IMAGE_PIXELS));
        fields.join(",")
    }

    #[test]
    fn parses_lines_into_labels_and_pixels() {
        let text = format!("{}\r\n{}\n\n", line("7", "0"), line("3", "255"));
        let (count, pixels, labels) = parse_csv(&text, "t.csv").unwrap();
        assert_eq!(count, 2);
        assert_eq!(labels, vec![7, 3]);
        assert_eq!(pixels.len(), 2 * IMAGE_PIXELS);
        assert_eq!(pixels[IMAGE_PIXELS], 255);
    }

    #[test]
    fn refuses_broken_lines_with_their_number() {
        let err = |text: &str| parse_csv(text, "t.csv").unwrap_err().to_string();
        let short = "5,1,2,3";
        assert!(err(short).contains("line 1") && err(short).contains("found 4"));
        let text = format!("{}\n{}", line("1", "0"), line("1", "abc"));
        assert!(err(&text).contains("line 2") && err(&text).contains("'abc'"));
        assert!(err(&line("1", "256")).contains("above 255"));
        assert!(err(&line("12", "0")).contains("above 9"));
        assert!(err("").contains("no images"));
    }
}
