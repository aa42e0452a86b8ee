"""Speed table: mnist-nn beside its peers (NumPy float64, NumPy float32, PyTorch CPU), side by side.

Runs `mnist-nn bench --json` and `../shared/bench/mnist_ref.py` on the same machine, in rounds that
interleave the implementations (so a noisy spell hits them all), and prints a Markdown table of
the medians over rounds of each one's median seconds per epoch, the ratios within each round
(their median over the rounds), and the GEMM bound. The `fast` workload (the published one-epoch
99% recipe) is compared with `../shared/bench/fast_ref.py` (PyTorch) alone: two seeds per round,
the second one's training time (the first pays PyTorch's warm-up, as mnist-nn's bench drops its
first epoch).

Usage, with a Python that has numpy and torch (a virtualenv outside the repository):
  python scripts/speed_table.py [--rounds 3] [--data-dir DIR] [--peers PATH/mnist_ref.py]
                                [--fast-peer PATH/fast_ref.py]
                                [--workloads fullbatch minibatch cnn fast] [--json FILE]
  python scripts/speed_table.py --from-json FILE      # reprint the table of a saved run
"""
import argparse, json, os, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = ("numpy64", "numpy32", "torch")
# Epochs per measurement: each side reports the median of those after its warm-up epoch.
EPOCHS = {"fullbatch": 6, "minibatch": 5, "cnn": 3, "fast": 2}


def peers_of(workload):
    return ("fast_ref",) if workload == "fast" else PEERS


def ours(binary, workload, data_dir):
    out = subprocess.run([binary, "bench", "--json", "--workload", workload,
                          "--epochs", str(EPOCHS[workload] - 1), "--data-dir", data_dir],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)[workload]


def fast_peer(script, data_dir):
    """fast_ref.py with two seeds: the second one's training seconds."""
    out = subprocess.run([sys.executable, script, data_dir, "2", "1"],
                         check=True, capture_output=True, text=True).stdout
    per_seed = [json.loads(line) for line in out.strip().splitlines() if '"seed"' in line]
    return {"s_per_epoch": per_seed[-1]["train_seconds"]}


def peer(script, backend, workload, data_dir):
    out = subprocess.run([sys.executable, script, data_dir, backend, workload, str(EPOCHS[workload])],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", default=os.environ.get("MNIST_DIR", os.path.join(ROOT, "..", "shared", "data", "mnist")))
    parser.add_argument("--peers", default=os.path.join(ROOT, "..", "shared", "bench", "mnist_ref.py"))
    parser.add_argument("--fast-peer", default=os.path.join(ROOT, "..", "shared", "bench", "fast_ref.py"))
    parser.add_argument("--workloads", nargs="+", default=list(EPOCHS), choices=list(EPOCHS))
    parser.add_argument("--json", help="also write every measurement to this file")
    parser.add_argument("--from-json", help="only reprint the table of a run saved with --json")
    args = parser.parse_args()
    if args.from_json:
        return from_json(args.from_json)

    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    binary = os.path.join(ROOT, "target", "release", "mnist-nn")
    seconds = {(w, impl): [] for w in args.workloads for impl in ("mnist-nn",) + peers_of(w)}
    bound = {w: [] for w in args.workloads}
    peak = []
    started = time.time()
    for r in range(1, args.rounds + 1):
        for w in args.workloads:
            mine = ours(binary, w, args.data_dir)
            seconds[(w, "mnist-nn")].append(mine["s_per_epoch"])
            bound[w].append(mine["bound_s"])
            peak.append(mine["peak_gflops"])
            line = [f"round {r} {w}: mnist-nn {mine['s_per_epoch']:.3f}"]
            for backend in peers_of(w):
                if w == "fast":
                    result = fast_peer(args.fast_peer, args.data_dir)
                else:
                    result = peer(args.peers, backend, w, args.data_dir)
                seconds[(w, backend)].append(result["s_per_epoch"])
                line.append(f"{backend} {result['s_per_epoch']:.3f}")
            print(", ".join(line), f"({time.time() - started:.0f} s)", file=sys.stderr, flush=True)

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"seconds": {f"{w}/{impl}": v for (w, impl), v in seconds.items()},
                       "bound_s": bound, "peak_gflops": peak}, f, indent=1)
    print_table(seconds, bound, peak, args.rounds)


def print_table(seconds, bound, peak, rounds):
    """The Markdown table. Ratios are taken within each round (both sides measured minutes apart),
    then the median over the rounds: on a noisy machine that is steadier than a ratio of medians."""
    med = {key: statistics.median(values) for key, values in seconds.items()}
    ratio = lambda w, peer: statistics.median(p / m for p, m in zip(seconds[(w, peer)], seconds[(w, "mnist-nn")]))
    print(f"Medians over {rounds} rounds of each side's median seconds per epoch; ratios are the median "
          f"of the rounds' ratios. GEMM peak {statistics.median(peak):.0f} GFLOP/s (median over the rounds "
          f"of mnist-nn bench's median 2048³ product).\n")
    over_bound = lambda w: statistics.median(m / b for m, b in zip(seconds[(w, "mnist-nn")], bound[w]))
    workloads = [w for w in EPOCHS if (w, "mnist-nn") in seconds and w != "fast"]
    if workloads:
        print("| workload | mnist-nn | NumPy float64 | NumPy float32 | PyTorch | vs NumPy f32 | vs PyTorch | GEMM bound | mnist-nn / bound |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for w in workloads:
        print(f"| {w} | {med[(w, 'mnist-nn')]:.3f} s | {med[(w, 'numpy64')]:.3f} s | {med[(w, 'numpy32')]:.3f} s | "
              f"{med[(w, 'torch')]:.3f} s | {ratio(w, 'numpy32'):.2f}x | {ratio(w, 'torch'):.2f}x | "
              f"{statistics.median(bound[w]):.3f} s | {over_bound(w):.2f}x |")
    if ("fast", "mnist-nn") in seconds:
        print("\n| workload | mnist-nn | PyTorch (fast_ref.py) | vs PyTorch | GEMM bound | mnist-nn / bound |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        print(f"| fast | {med[('fast', 'mnist-nn')]:.3f} s | {med[('fast', 'fast_ref')]:.3f} s | "
              f"{ratio('fast', 'fast_ref'):.2f}x | {statistics.median(bound['fast']):.3f} s | {over_bound('fast'):.2f}x |")


def from_json(path):
    """Reprints the table of a run saved with --json."""
    with open(path) as f:
        saved = json.load(f)
    seconds = {tuple(key.split("/")): values for key, values in saved["seconds"].items()}
    rounds = len(next(iter(seconds.values())))
    print_table(seconds, saved["bound_s"], saved["peak_gflops"], rounds)


if __name__ == "__main__":
    main()
