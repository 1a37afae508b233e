"""``linclf sweep``: search hyperparameters on the validation split."""
from __future__ import annotations

from pathlib import Path

import click

from ..fsutil import shell_path
from .app import cli, command_config, config_options, data_options, out_option, quiet_option, show_progress, workers


@cli.command("sweep", short_help="Search hyperparameters on the validation split.")
@config_options
@data_options
@click.option("--param", "params", multiple=True, required=True, metavar="KEY=SPEC",
              help="A config key to vary (repeatable): log:LOW:HIGH, uniform:LOW:HIGH, grid:A,B,C or choice:a,b,c, "
                   "e.g. --param optimizer.lr=log:1e-4:3e-3 --param optimizer.update=choice:sgd,adam.")
@click.option("--trials", type=click.IntRange(1), default=None,
              help="Random search: number of trials (default 20). Not allowed when every --param is a grid: "
                   "then all combinations run.")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Trials at once: worker processes, or the workers of --scheduler local (default: the usable "
                   "CPUs).")
@click.option("--search", type=click.Choice(["random", "tpe"]), default="random", show_default=True,
              help="random: random draws (the full grid when every --param is a grid); tpe: Optuna's TPE "
                   "sampler picks each next trial from the results so far (pip install 'linclf[optuna]').")
@click.option("--prune", type=click.Choice(["none", "median", "hyperband"]), default="none", show_default=True,
              help="With --search tpe: stop trials whose per-epoch validation accuracy is behind (status "
                   "pruned).")
@click.option("--storage", default=None, metavar="URL",
              help="With --search tpe: the Optuna storage of the study, journal:PATH (processes on one "
                   "machine) or an RDB URL such as postgresql://user@host/db (machines sharing no disk); "
                   "the same command on several machines cooperates on one study, a rerun resumes it "
                   "(default: journal:<out>/study.log).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Run the trials on a Dask cluster: tcp://host:8786 (started with `dask scheduler` and "
                   "`dask worker`), or local for a LocalCluster of --jobs processes (pip install "
                   "'linclf[dask]').")
@click.option("--connect-timeout", type=click.FloatRange(0, min_open=True), default=10.0, show_default=True,
              help="Seconds to wait for the --scheduler to answer.")
@out_option("Sweep folder (default: runs/sweep-<config name>-<timestamp>/); the same --out continues an "
            "interrupted sweep, skipping finished trials.")
@quiet_option
def sweep_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
              params: tuple[str, ...], trials: int | None, jobs: int | None, search: str, prune: str,
              storage: str | None, scheduler: str | None, connect_timeout: float, out: str | None,
              quiet: bool) -> None:
    """Search hyperparameters: train each trial on the training split, score it on the validation split.

    Random search by default (values drawn from a generator seeded by the config
    seed; trial i trains with seed + 1 + i), the full grid when every --param is
    a grid, or --search tpe. Never reads the test split. Writes results.csv,
    results.json and best.yaml (ready for `linclf train --config best.yaml`) and
    prints the trials, best validation accuracy first.
    """
    import time

    from ..training.sweep import default_jobs, default_sweep_dir, format_table, parse_spec, run_sweep

    cfg = command_config(config_path, overrides, {"data.archive": archive, "data.dir": data_dir})
    specs = [parse_spec(p) for p in params]
    out_dir = Path(out) if out else default_sweep_dir(config_path)
    jobs = jobs or min(default_jobs(), workers())
    t0 = time.perf_counter()
    rows = run_sweep(cfg, specs, trials=trials, jobs=jobs, out_dir=out_dir, data_dir=data_dir,
                     progress=show_progress(quiet), search=search, prune=prune, storage=storage, scheduler=scheduler,
                     connect_timeout=connect_timeout)
    click.echo(format_table(rows, [p.key for p in specs]))
    if not quiet:
        statuses = ("ok", "diverged", "pruned", "failed", "interrupted")
        counts = ", ".join(f"{sum(r['status'] == s for r in rows)} {s}" for s in statuses
                           if s in ("ok", "diverged", "failed") or any(r["status"] == s for r in rows))
        best = next(r for r in rows if r["status"] == "ok")
        epochs = sum(r["history"][-1]["epoch"] for r in rows if r.get("history"))
        where = f"--scheduler {scheduler}" if scheduler else f"--jobs {jobs}"
        for line in (f"sweep folder: {out_dir}",
                     f"{len(rows)} trials ({counts}), {epochs:.0f} training epochs, {where}, "
                     f"{time.perf_counter() - t0:.1f} s",
                     f"best: trial {best['trial']}, val accuracy {best['val_accuracy']:.4f}; "
                     f"train it with `linclf train --config {shell_path(out_dir / 'best.yaml')}`"):
            click.echo(line, err=True)
