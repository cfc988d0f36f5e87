#!/usr/bin/env python3
"""python scripts/ratio_from_counts.py K/N:K0/N0 ...  (docs/benchmarks.md, "Descend first")

Rate ratio of k/n runs against the engine-free ratchet's k0/n0 (percentile bootstrap over both,
2000 resamples, seed 0, as bench_search does) and Wilson lo / Wilson hi."""
import math, random, sys
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from bench_search import wilson
def ratio(k, n, k0, n0, resamples=2000):
    rng = random.Random(0)
    a_runs, b_runs = [1] * k + [0] * (n - k), [1] * k0 + [0] * (n0 - k0)
    r = sorted((sum(rng.choices(a_runs, k=n)) / n) / max(sum(rng.choices(b_runs, k=n0)) / n0, 1e-12)
               for _ in range(resamples))
    lo, hi = r[int(0.025 * (resamples - 1))], r[int(math.ceil(0.975 * (resamples - 1)))]
    return (k / n) / (k0 / n0), lo, hi, wilson(k, n)[0] / wilson(k0, n0)[1], wilson(k, n)
for spec in sys.argv[1:]:
    (k, n), (k0, n0) = [tuple(map(int, p.split("/"))) for p in spec.split(":")]
    point, lo, hi, w, (wl, wh) = ratio(k, n, k0, n0)
    print(f"{k}/{n} = {k/n:.0%} [{wl:.0%}, {wh:.0%}] against {k0}/{n0}: {point:.2f}x [{lo:.1f}, {hi:.1f}], Wilson ratio {w:.2f}")
