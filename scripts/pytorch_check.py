"""Loads an mnist-nn model into PyTorch, as docs/MODEL_FORMAT.md says, and evaluates it on MNIST.

Usage: python scripts/pytorch_check.py MODEL.safetensors DATA_DIR
Prints the test loss and accuracy, to compare with `mnist-nn eval --model MODEL.safetensors`.
Needs numpy, torch and safetensors (pip install numpy torch safetensors).
"""
import gzip, json, struct, sys

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = struct.unpack(">" + "I" * data[3], data[4:4 + 4 * data[3]])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * data[3]).reshape(dims)


def build(layers):
    """nn.Sequential with one module per mnist-nn layer, in the same order (so the same indices)."""
    modules = []
    for spec in layers:
        kind = spec["type"]
        if kind == "Linear":
            modules.append(torch.nn.Linear(spec["inputs"], spec["outputs"]))
        elif kind == "ReLU":
            modules.append(torch.nn.ReLU())
        elif kind == "BatchNorm1d":
            modules.append(torch.nn.BatchNorm1d(spec["features"], eps=1e-5, momentum=0.1))
        elif kind == "Flatten":
            modules.append(torch.nn.Flatten())
        elif kind == "Conv2d":
            modules.append(torch.nn.Conv2d(spec["in_channels"], spec["out_channels"], spec["kernel"],
                                           stride=spec["stride"], padding=spec["padding"],
                                           dilation=spec["dilation"]))
        elif kind == "MaxPool2d":
            modules.append(torch.nn.MaxPool2d(spec["kernel"], stride=spec["stride"]))
        elif kind == "AvgPool2d":
            modules.append(torch.nn.AvgPool2d(spec["kernel"], stride=spec["stride"]))
        elif kind == "BatchNorm2d":
            modules.append(torch.nn.BatchNorm2d(spec["channels"], eps=1e-5, momentum=0.1))
        elif kind == "Tanh":
            modules.append(torch.nn.Tanh())
        elif kind == "Dropout":
            modules.append(torch.nn.Dropout(spec["p"]))
        else:
            raise ValueError(f"unknown layer {kind}")
    return torch.nn.Sequential(*modules), layers[0]


path, data_dir = sys.argv[1], sys.argv[2]
with safe_open(path, framework="pt") as f:
    metadata = f.metadata()
layers = json.loads(metadata["layers"])
preprocessing = json.loads(metadata["preprocessing"])
net, first = build(layers)
state = load_file(path)
# PyTorch's BatchNorm also counts batches; mnist-nn does not save that counter.
missing, unexpected = net.load_state_dict(state, strict=False)
assert not unexpected and all(k.endswith("num_batches_tracked") for k in missing), (missing, unexpected)
net.eval()

x = idx(f"{data_dir}/t10k-images-idx3-ubyte.gz").reshape(-1, 784).astype(np.float64)
y = torch.tensor(idx(f"{data_dir}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
if preprocessing["kind"] == "Scale255":
    x = x / 255.0
else:
    x = (x - preprocessing["mean"]) / preprocessing["std"]
x = torch.tensor(x, dtype=torch.float32)
if first["type"] in ("Conv2d", "MaxPool2d", "AvgPool2d", "BatchNorm2d"):  # images (n, 1, 28, 28)
    x = x.reshape(-1, 1, 28, 28)
with torch.no_grad():
    logits = net(x)
loss = torch.nn.functional.cross_entropy(logits, y).item()
accuracy = (logits.argmax(1) == y).double().mean().item()
print(f"test loss: {loss:.4f}")
print(f"test accuracy: {accuracy:.4f}")
