// The mistakes page: the test set's confusion matrix; a cell's images on demand.
"use strict";

const matrixTable = document.getElementById("matrix");
const gallery = document.getElementById("gallery");
const cellStatus = document.getElementById("cell-status");
let classes = [];

function showMatrix(confusion) {
  classes = confusion.classes;
  const total = confusion.matrix.flat().reduce((a, b) => a + b, 0);
  document.getElementById("summary").textContent =
    `Test accuracy ${(100 * confusion.accuracy).toFixed(2)}% of ${total.toLocaleString("en")} images.`;
  const head = document.createElement("tr");
  head.append(cellOf("th", "true \\ predicted"));
  classes.forEach((name) => head.append(cellOf("th", name, "col")));
  const rows = confusion.matrix.map((row, truth) => {
    const tr = document.createElement("tr");
    tr.append(cellOf("th", classes[truth], "row"));
    const rowTotal = row.reduce((a, b) => a + b, 0);
    row.forEach((count, predicted) => {
      const td = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = count;
      button.dataset.truth = truth;
      button.dataset.predicted = predicted;
      button.setAttribute("aria-label", `${count} images of ${classes[truth]} predicted as ${classes[predicted]}`);
      button.className = truth === predicted ? "correct" : "mistake";
      // Shade mistakes by their share of the row, so the worst confusions stand out.
      if (truth !== predicted && count > 0) {
        button.style.setProperty("--share", Math.min(1, (20 * count) / rowTotal).toFixed(3));
      }
      button.addEventListener("click", () => showCell(truth, predicted));
      td.append(button);
      tr.append(td);
    });
    return tr;
  });
  matrixTable.replaceChildren(head, ...rows);
}

function cellOf(tag, text, scope) {
  const cell = document.createElement(tag);
  cell.textContent = text;
  if (scope) cell.scope = scope;
  return cell;
}

async function showCell(truth, predicted) {
  for (const button of matrixTable.querySelectorAll("button")) {
    const chosen = Number(button.dataset.truth) === truth && Number(button.dataset.predicted) === predicted;
    button.setAttribute("aria-pressed", String(chosen));
  }
  cellStatus.textContent = "Loading…";
  try {
    const cell = await fetchJson(`/api/mistakes?truth=${truth}&predicted=${predicted}&limit=100`);
    const shown = cell.images.length < cell.count ? `the first ${cell.images.length} of ` : "";
    cellStatus.textContent =
      `True ${classes[truth]}, predicted ${classes[predicted]}: ${shown}${cell.count} images.`;
    gallery.replaceChildren(...cell.images.map((image) => figureOf(image, truth, predicted)));
  } catch (error) {
    cellStatus.textContent = `Could not load the cell: ${error.message}`;
  }
}

// One test image with its probabilities: the predicted class's, the true class's, and the others
// above 1%.
function figureOf(image, truth, predicted) {
  const item = document.createElement("li");
  const canvas = document.createElement("canvas");
  canvas.width = 28;
  canvas.height = 28;
  canvas.className = "digit";
  canvas.setAttribute("aria-label", `test image ${image.index}`);
  drawDigit(canvas, image.pixels);
  const caption = document.createElement("p");
  const ranked = image.probabilities
    .map((p, c) => [c, p])
    .filter(([c, p]) => c === truth || c === predicted || p >= 0.01)
    .sort((a, b) => b[1] - a[1]);
  caption.textContent = `#${image.index}: ` + ranked.map(([c, p]) => `${classes[c]} ${percent(p)}`).join(", ");
  item.append(canvas, caption);
  return item;
}

fetchJson("/api/confusion")
  .then(showMatrix)
  .catch((error) => {
    document.getElementById("summary").textContent = `Could not load the confusion matrix: ${error.message}`;
  });
