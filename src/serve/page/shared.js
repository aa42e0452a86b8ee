// What both pages need: drawing a 28x28 digit, and asking the server for JSON.
"use strict";

// Draws 784 pixels (0 = background, 255 = ink) on a 28x28 canvas, ink dark on white paper.
function drawDigit(canvas, pixels) {
  const context = canvas.getContext("2d");
  const picture = context.createImageData(28, 28);
  pixels.forEach((value, i) => {
    const shade = 255 - value;
    picture.data.set([shade, shade, shade, 255], 4 * i);
  });
  context.putImageData(picture, 0, 0);
}

// The JSON answer of `url`, or an Error carrying the server's explanation.
async function fetchJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error || `HTTP ${response.status}`);
  }
  return body;
}

// A percentage with one decimal.
function percent(probability) {
  return `${(100 * probability).toFixed(1)}%`;
}
