//! The geometry shared by the pooling layers ([`MaxPool2d`](super::MaxPool2d),
//! [`AvgPool2d`](super::AvgPool2d)): windows of `kernel x kernel` pixels, `stride` apart, over
//! each channel of an image on its own.
//!
//! Images travel as rows of `channels·height·width` values, channel after channel, as for
//! [`Conv2d`](super::Conv2d); the output row is laid out the same way, with
//!
//! ```text
//! out_h = (height - kernel) / stride + 1        (likewise out_w; no padding, windows that
//!                                                 would cross the edge are dropped, as PyTorch's
//!                                                 default ceil_mode=False does)
//! ```

use serde::{Deserialize, Serialize};

/// The shape of a pooling layer: its input images and its window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolShape {
    /// Channels (each pooled on its own).
    pub channels: usize,
    /// Input image height.
    pub height: usize,
    /// Input image width.
    pub width: usize,
    /// The window is `kernel x kernel` pixels.
    pub kernel: usize,
    /// Step between neighbouring windows.
    pub stride: usize,
}

impl PoolShape {
    /// Output height: `(height - kernel) / stride + 1`.
    pub fn out_height(&self) -> usize {
        (self.height - self.kernel) / self.stride + 1
    }

    /// Output width.
    pub fn out_width(&self) -> usize {
        (self.width - self.kernel) / self.stride + 1
    }

    /// Values per input row: `channels · height · width`.
    pub fn input_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Values per output row: `channels · out_h · out_w`.
    pub fn output_len(&self) -> usize {
        self.channels * self.out_height() * self.out_width()
    }

    /// Whether this is a possible pooling, and if not why.
    pub fn check(&self) -> Result<(), String> {
        if [
            self.channels,
            self.height,
            self.width,
            self.kernel,
            self.stride,
        ]
        .contains(&0)
        {
            return Err("channels, image size, kernel and stride must be positive".into());
        }
        if self.kernel > self.height || self.kernel > self.width {
            return Err(format!(
                "a {k}x{k} window does not fit in a {h}x{w} image",
                k = self.kernel,
                h = self.height,
                w = self.width
            ));
        }
        Ok(())
    }

    /// Calls `visit(channel, output index, index of the window's top-left input)` for every
    /// output value of one image, in the output's order: the window's inputs are at
    /// `top_left + ky·width + kx` for `ky, kx < kernel`.
    pub(crate) fn for_each_window(&self, mut visit: impl FnMut(usize, usize, usize)) {
        let (out_h, out_w) = (self.out_height(), self.out_width());
        let mut out = 0;
        for c in 0..self.channels {
            let plane = c * self.height * self.width;
            for oy in 0..out_h {
                let row = plane + oy * self.stride * self.width;
                for ox in 0..out_w {
                    visit(c, out, row + ox * self.stride);
                    out += 1;
                }
            }
        }
    }
}
