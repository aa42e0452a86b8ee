"""Compares mnist-nn's optimisers and learning-rate schedules with torch.optim, step by step.

Usage: python scripts/optimizer_check.py   (from the repository; needs numpy and torch)

For each case it draws 10,000 parameters and 60 gradients (float32, seed 0), runs them through
`torch.optim` and through mnist-nn (`cargo run --release --example optimizer_steps`), and prints
the largest difference of the learning rates and of the parameters over all steps, absolute and
and in units of 1.19e-7, the float32 spacing at 1.0 (the parameters are drawn from N(0, 1), so one
rounding of a typical parameter is about that much).
"""
import json, subprocess, sys

import numpy as np
import torch

STEPS, SIZE, STEPS_PER_EPOCH = 60, 10_000, 10

CASES = [
    # (name, mnist-nn optimizer, torch optimizer, lr, mnist-nn schedule, torch scheduler, warm-up)
    ("SGD", {"name": "sgd", "momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
     lambda p, lr: torch.optim.SGD(p, lr=lr), 0.1, {"name": "constant"}, None, 0),
    ("SGD momentum 0.9, weight decay 5e-4", {"name": "sgd", "momentum": 0.9, "nesterov": False, "weight_decay": 5e-4},
     lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, weight_decay=5e-4), 0.05, {"name": "constant"}, None, 0),
    ("SGD Nesterov 0.9, step decay", {"name": "sgd", "momentum": 0.9, "nesterov": True, "weight_decay": 0.0},
     lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True), 0.05,
     {"name": "step", "every_epochs": 2, "gamma": 0.5},
     lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=2 * STEPS_PER_EPOCH, gamma=0.5), 0),
    ("Adam, cosine", {"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.0},
     lambda p, lr: torch.optim.Adam(p, lr=lr, foreach=False), 1e-3, {"name": "cosine", "min_lr": 1e-5},
     lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=STEPS, eta_min=1e-5), 0),
    ("Adam betas (0.7, 0.9), one-cycle", {"name": "adam", "betas": [0.7, 0.9], "eps": 1e-8, "weight_decay": 0.0},
     lambda p, lr: torch.optim.Adam(p, lr=lr, betas=(0.7, 0.9), foreach=False), 1e-2,
     {"name": "onecycle", "pct_start": 0.3, "div_factor": 25.0, "final_div_factor": 1e4},
     lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=STEPS, pct_start=0.3,
                                                  div_factor=25.0, final_div_factor=1e4,
                                                  cycle_momentum=False), 0),
    ("Adam, L2 weight decay 1e-2", {"name": "adam", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 1e-2},
     lambda p, lr: torch.optim.Adam(p, lr=lr, weight_decay=1e-2, foreach=False), 1e-3, {"name": "constant"}, None, 0),
    ("AdamW 0.01, warm-up 10", {"name": "adamw", "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.01},
     lambda p, lr: torch.optim.AdamW(p, lr=lr, weight_decay=0.01, foreach=False), 1e-3, {"name": "constant"},
     lambda o: torch.optim.lr_scheduler.LinearLR(o, start_factor=1 / 10, end_factor=1.0, total_iters=9), 10),
]

rng = np.random.default_rng(0)
theta0 = rng.standard_normal(SIZE).astype(np.float32)
grads = (rng.standard_normal((STEPS, SIZE)) * 0.1).astype(np.float32)

print(f"{'case':<40} {'max |lr diff|':>14} {'max |θ diff|':>13} {'ulps of 1':>9}")
worst = 0.0
for name, ours, make_torch, lr, schedule, make_scheduler, warmup in CASES:
    request = {"optimizer": ours, "schedule": schedule, "lr": lr, "steps_per_epoch": STEPS_PER_EPOCH,
               "warmup_steps": warmup, "theta": theta0.tolist(), "grads": grads.tolist()}
    result = subprocess.run(["cargo", "run", "--quiet", "--release", "--example", "optimizer_steps"],
                            input=json.dumps(request), capture_output=True, text=True, check=True)
    mine = json.loads(result.stdout)
    param = torch.nn.Parameter(torch.tensor(theta0))
    optimizer = make_torch([param], lr)
    scheduler = make_scheduler(optimizer) if make_scheduler else None
    lr_diff = theta_diff = ulps = 0.0
    for step in range(STEPS):
        torch_lr = optimizer.param_groups[0]["lr"]
        param.grad = torch.tensor(grads[step])
        optimizer.step()
        if scheduler:
            scheduler.step()
        theirs = param.detach().numpy().astype(np.float64)
        ours_theta = np.array(mine["thetas"][step], dtype=np.float64)
        lr_diff = max(lr_diff, abs(torch_lr - mine["lrs"][step]))
        diff = np.abs(theirs - ours_theta)
        theta_diff = max(theta_diff, diff.max())
        ulps = max(ulps, diff.max() / float(np.spacing(np.float32(1.0))))
    worst = max(worst, ulps)
    print(f"{name:<40} {lr_diff:>14.2e} {theta_diff:>13.2e} {ulps:>9.1f}")
print(f"torch {torch.__version__}, {STEPS} steps of {SIZE} parameters; largest difference {worst:.1f} ulps")
sys.exit(0 if worst <= 16 else 1)
