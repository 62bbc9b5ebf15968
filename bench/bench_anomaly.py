"""Anomaly benchmark: recall of injected anomalies by the anomaly score, against χ² without the learned scatter.

For each seed: a survey with 1 % anomalous stars (four kinds, simulator/anomalies.py), an sVAE trained on
it with the demo's recipe (batch 256, lr 2e-3, one cosine cycle), every star scored (bench/anomaly_recall.py).
Prints recall per kind in the top 1 % and 5 % of each ranking, averaged over seeds, recall of the two weaker
halves of each kind's strength range, and how often a normal star gets p below 5 %, 1 %, 0.1 % (the
calibration of the tail probability). With 1 % anomalies a perfect ranking has recall 1 at the top 1 %.
Run: python -m bench anomaly [--quick]. Figures are quoted in the README ("Anomalies").
"""
from __future__ import annotations

import numpy as np

from bench.anomaly_recall import measure, table


def main(quick: bool = False) -> None:
    n, epochs, seeds = (6000, 40, (1,)) if quick else (20000, 100, (1, 2))
    print(f"{len(seeds)} survey(s) of {n:,} stars (G ≤ 16), 1 % anomalies, sVAE {epochs} epochs each")
    results = []
    for seed in seeds:
        r = measure(n, seed, anomaly_fraction=0.01, epochs=epochs)
        results.append(r)
        print(f"seed {seed}: trained in {r.seconds_train:.0f} s; injected {r.counts}; "
              f"normal stars with p < 5 % / 1 % / 0.1 %: "
              + " / ".join(f"{v:.2%}" for v in r.normal_p_below.values()), flush=True)
        print(table([r]), flush=True)
    print("\nmean recall over seeds (share of each kind's injected stars in the top f of all stars):")
    print(table(results))
    print("\nrecall of the score in the top 5 %, weaker vs stronger half of each kind (strength: see anomalies.py):")
    for k in results[0].counts:
        weak, strong = [], []
        for r in results:
            m = r.extra["kind"] == k
            s, score = r.extra["strength"][m], r.extra["score"]
            cut = np.quantile(score[np.isfinite(score)], 0.95)
            found = np.nan_to_num(score[m], nan=-np.inf) >= cut
            med = np.median(s)
            weak.append(found[s <= med].mean())
            strong.append(found[s > med].mean())
        print(f"  {k:9s} weaker half {np.mean(weak):.2f}   stronger half {np.mean(strong):.2f}")


if __name__ == "__main__":
    main()
