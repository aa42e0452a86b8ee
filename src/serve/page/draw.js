// The drawing page: strokes on a canvas go to POST /api/predict as a PNG while you draw.
"use strict";

const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const statusLine = document.getElementById("status");
const predictionOutput = document.getElementById("prediction");
const bars = document.getElementById("bars");
const inputCanvas = document.getElementById("input");
let classes = [...Array(10).keys()].map(String);

// Strokes as thick as MNIST's pen relative to the box (the server scales the ink to 20x20).
pen.lineWidth = 18;
pen.lineCap = "round";
pen.lineJoin = "round";
pen.strokeStyle = "#000";

let inked = false;
let lastPoint = null;
let inFlight = false;
let wanted = false;

function clearPad() {
  pen.fillStyle = "#fff";
  pen.fillRect(0, 0, pad.width, pad.height);
  inked = false;
  predictionOutput.textContent = "–";
  showBars(new Array(classes.length).fill(0));
  drawDigit(inputCanvas, new Array(784).fill(0));
  statusLine.textContent = "Draw one digit in the box; the network reads it as you draw.";
}

// The pointer's position in the canvas's own pixels (it may be displayed at another size).
function pointOf(event) {
  const box = pad.getBoundingClientRect();
  return {
    x: ((event.clientX - box.left) * pad.width) / box.width,
    y: ((event.clientY - box.top) * pad.height) / box.height,
  };
}

function strokeTo(point) {
  pen.beginPath();
  pen.moveTo(lastPoint.x, lastPoint.y);
  pen.lineTo(point.x, point.y);
  pen.stroke();
  lastPoint = point;
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId);
  lastPoint = pointOf(event);
  strokeTo(lastPoint); // a dot
  inked = true;
  askForPrediction();
});

pad.addEventListener("pointermove", (event) => {
  if (lastPoint === null) return;
  strokeTo(pointOf(event));
  askForPrediction();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, () => {
    lastPoint = null;
    askForPrediction();
  });
}

document.getElementById("clear").addEventListener("click", clearPad);

// One request at a time: strokes drawn while one is on its way are sent once it is answered.
function askForPrediction() {
  if (!inked) return;
  wanted = true;
  if (!inFlight) sendDrawing();
}

function sendDrawing() {
  wanted = false;
  inFlight = true;
  pad.toBlob(async (png) => {
    try {
      const answer = await fetchJson("/api/predict", {
        method: "POST",
        headers: { "Content-Type": "image/png" },
        body: png,
      });
      if (inked) showPrediction(answer);
    } catch (error) {
      statusLine.textContent = `The server could not read the drawing: ${error.message}`;
    } finally {
      inFlight = false;
      if (wanted) sendDrawing();
    }
  }, "image/png");
}

function showPrediction(answer) {
  predictionOutput.textContent = answer.class;
  showBars(answer.probabilities);
  drawDigit(inputCanvas, answer.input);
  statusLine.textContent = `The network reads ${answer.class} (${percent(answer.probabilities[answer.prediction])} sure).`;
}

function showBars(probabilities) {
  bars.replaceChildren(
    ...probabilities.map((p, i) => {
      const item = document.createElement("li");
      const label = document.createElement("span");
      label.className = "label";
      label.textContent = classes[i];
      const bar = document.createElement("span");
      bar.className = "bar";
      const fill = document.createElement("span");
      fill.className = "fill";
      fill.style.width = percent(p);
      bar.append(fill);
      const value = document.createElement("span");
      value.className = "value";
      value.textContent = percent(p);
      item.append(label, bar, value);
      return item;
    }),
  );
}

function describeModel(info) {
  const facts = [
    ["File", info.file],
    ["Data set", info.dataset_title],
    ["Layers", info.layers.join(" → ")],
    ["Parameters", info.parameters.toLocaleString("en")],
    ["Trained by", info.trained],
    ["Test accuracy", `${(100 * info.test_accuracy).toFixed(2)}% of ${info.test_images.toLocaleString("en")} images`],
  ];
  document.getElementById("model").replaceChildren(
    ...facts.flatMap(([term, value]) => {
      const dt = document.createElement("dt");
      dt.textContent = term;
      const dd = document.createElement("dd");
      dd.textContent = value;
      return [dt, dd];
    }),
  );
}

clearPad();
fetchJson("/api/model")
  .then((info) => {
    classes = info.classes;
    document.getElementById("preparation").textContent = `: ${info.preparation}`;
    describeModel(info);
    showBars(new Array(classes.length).fill(0));
  })
  .catch((error) => {
    document.getElementById("model").textContent = `Could not load the model's description: ${error.message}`;
  });
