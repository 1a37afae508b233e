"""Search efficiency: training epochs --search tpe --prune hyperband needs to reach a random search's best.

For each sweep seed: a random search of --trials trials, then a TPE + Hyperband
study of the same budget over the same params; prints one JSON object a line:
the random search's best validation accuracy and total epochs, and the epochs
the TPE study had trained (trials in the order they were asked, pruned ones
with the epochs they ran) when a trial first reached that accuracy. Run from the repository root, e.g.

    python scripts/sweep_efficiency.py --config configs/kmeans.yaml --data-dir /work/devdata \\
        --set optimizer.epochs=9 --set data.num_val=5000 --tpe-trials 48 \\
        --param optimizer.lr=log:1e-4:1e-1 --param model.reg=log:1e-5:1e-2

Use a validation split large enough to rank the trials: on 1,000 images one
standard error of an accuracy near 0.7 is 1.4 points, so the best of 32 random
trials is mostly the luckiest draw of the noise, which no search can aim at
(5,000 images: 0.65 points). Each sweep seed also seeds the k-means fit, so
each seed builds its own features once (cached afterwards); the validation
split is the same (the end of the training images). With --out the sweep
folders are kept, and a rerun resumes them (run_sweep's own resume): delete
the tpe-* folders to measure the TPE study again against the same random ones.
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from linclf.config import load_config, with_values
from linclf.training.sweep import parse_spec, run_sweep


def epochs(row: dict) -> float:
    return row["history"][-1]["epoch"] if row.get("history") else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", required=True)
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--param", dest="params", action="append", required=True)
    ap.add_argument("--trials", type=int, default=32)
    ap.add_argument("--tpe-trials", type=int, default=None,
                    help="the TPE study's budget (default: --trials); what counts is the epochs it took to reach")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--prune", default="hyperband")
    ap.add_argument("--out", type=Path, default=None,
                    help="keep every sweep's folder (results.csv, study.log) here; default: a temporary folder")
    a = ap.parse_args()
    base = load_config(a.config, a.sets)
    specs = [parse_spec(p) for p in a.params]
    tmp = a.out or Path(tempfile.mkdtemp(prefix="sweep-eff-"))
    ratios = []
    try:
        for seed in a.seeds:
            cfg = with_values(base, {"seed": seed})
            t0 = time.perf_counter()
            rnd = run_sweep(cfg, specs, trials=a.trials, jobs=a.jobs, out_dir=tmp / f"random-{seed}",
                            data_dir=a.data_dir)
            t_rnd = time.perf_counter() - t0
            target = max(r["val_accuracy"] for r in rnd if r["status"] == "ok")
            rnd_epochs = sum(epochs(r) for r in rnd)
            t0 = time.perf_counter()
            tpe = run_sweep(cfg, specs, trials=a.tpe_trials or a.trials, jobs=a.jobs, out_dir=tmp / f"tpe-{seed}",
                            data_dir=a.data_dir, search="tpe", prune=a.prune)
            t_tpe = time.perf_counter() - t0
            spent, reached = 0.0, None
            for r in sorted(tpe, key=lambda r: r["trial"]):
                spent += epochs(r)
                if reached is None and r["status"] == "ok" and r["val_accuracy"] >= target:
                    reached = spent
            tpe_best = max(r["val_accuracy"] for r in tpe if r["status"] == "ok")
            ratio = None if reached is None else reached / rnd_epochs
            ratios.append(ratio)
            print(json.dumps({"seed": seed, "random_best_val": target, "random_epochs": rnd_epochs,
                              "random_seconds": round(t_rnd, 1), "tpe_best_val": tpe_best,
                              "tpe_total_epochs": sum(epochs(r) for r in tpe),
                              "tpe_epochs_to_reach_random_best": reached, "ratio": ratio,
                              "tpe_pruned": sum(r["status"] == "pruned" for r in tpe),
                              "tpe_seconds": round(t_tpe, 1)}), flush=True)
        ok = [r for r in ratios if r is not None]
        print(json.dumps({"mean_ratio": statistics.mean(ok) if len(ok) == len(ratios) else None,
                          "ratios": ratios, "target": "<= 0.5"}), flush=True)
    finally:
        if a.out is None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
