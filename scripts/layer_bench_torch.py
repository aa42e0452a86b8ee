"""Times PyTorch CPU's layers at the shapes of `cargo bench`'s `layers` group, on one thread.

Usage: python scripts/layer_bench_torch.py   (needs torch)
A batch of 256 images of 24 maps of 24x24 (float32): max and average pooling 2x2, BatchNorm2d
(training mode), dropout 0.5 and tanh, forward and backward (the backward of the layer alone:
autograd from the output with a given gradient). Prints the median of 50 runs after 5 warm-ups.
"""
import time

import torch

torch.set_num_threads(1)
torch.manual_seed(0)
N, C, S = 256, 24, 24
LAYERS = [
    ("maxpool 2", torch.nn.MaxPool2d(2)),
    ("avgpool 2", torch.nn.AvgPool2d(2)),
    ("batchnorm2d", torch.nn.BatchNorm2d(C).train()),
    ("dropout 0.5", torch.nn.Dropout(0.5).train()),
    ("tanh", torch.nn.Tanh()),
]


def median_ms(work, runs=50, warmup=5):
    for _ in range(warmup):
        work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2] * 1e3


print(f"torch {torch.__version__}, 1 thread, input {N}x{C}x{S}x{S}")
print(f"{'layer':<14} {'forward ms':>11} {'backward ms':>12}")
for name, layer in LAYERS:
    x = torch.randn(N, C, S, S, requires_grad=True)
    forward = median_ms(lambda: layer(x))
    y = layer(x)
    dy = torch.randn_like(y)
    backward = median_ms(lambda: torch.autograd.grad(y, x, dy, retain_graph=True))
    print(f"{name:<14} {forward:>11.3f} {backward:>12.3f}")
