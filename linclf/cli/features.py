"""``linclf features``: build the feature cache ahead of training; list it, clear it."""
from __future__ import annotations

import time
from datetime import datetime
from typing import TYPE_CHECKING

import click

from ..errors import UsageError
from .app import cli, command_config, config_options, data_options, echo_json, quiet_option, show_progress, workers

if TYPE_CHECKING:
    from ..features.cache_contents import CacheEntry


@cli.command("features", short_help="Build the feature cache ahead of training; list or clear it.")
@config_options
@data_options
@click.option("--list", "list_", is_flag=True,
              help="List what the feature cache holds (size, when last used, settings) instead of building.")
@click.option("--clear", is_flag=True, help="Delete the feature cache's entries instead of building.")
@click.option("--unused-days", type=click.FloatRange(0), default=None, metavar="DAYS",
              help="With --clear: delete only the entries not used for DAYS days.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object on stdout.")
@quiet_option
def features_cmd(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, archive: str | None,
                 list_: bool, clear: bool, unused_days: float | None, as_json: bool, quiet: bool) -> None:
    """Build the features the config's `features` section asks for, ahead of training.

    Fits the extractor on the training split (k-means: patches, whitening,
    centroids) and writes the train, val and test features (float16) into the
    feature cache in the data folder (<data dir>/features-cache/); `linclf
    train`, `sweep` and `eval` then reuse them. A stale or corrupt cache entry
    is rebuilt with a notice.

    Entries of other settings stay until you delete them (the 60,000 images'
    features of configs/kmeans.yaml take 1.5 GB): `--list` shows each entry's
    size, when it was last used and its settings; `--clear` deletes them all, or
    with `--unused-days N` those not used for N days. Deleting only costs a
    rebuild.
    """
    if list_ and clear:
        raise UsageError("--list and --clear do different things: give one of them")
    if unused_days is not None and not clear:
        raise UsageError("--unused-days goes with --clear: linclf features --clear --unused-days N")
    if list_ or clear:
        _manage_cache(config_path, overrides, data_dir, clear, unused_days, as_json, quiet)
        return
    from ..training.featurize import run_features

    cfg = command_config(config_path, overrides, {"data.archive": archive})
    info = run_features(cfg, data_dir=data_dir, progress=show_progress(quiet), quiet=not show_progress(quiet),
                        workers=workers())
    if as_json:
        echo_json(info)
    if not quiet:
        for name, shape in [*info["splits"].items(), *((f"{n} mirrors", v) for n, v in info["mirrors"].items())]:
            click.echo(f"{name}: {shape[0]} rows x {shape[1]} features", err=as_json)
        click.echo(f"{info['kind']} features ready in {info['cache']} ({info['seconds']:.1f} s)", err=as_json)


def _manage_cache(config_path: str | None, overrides: tuple[str, ...], data_dir: str | None, clear: bool,
                  unused_days: float | None, as_json: bool, quiet: bool) -> None:
    """``features --list`` (``clear`` false) / ``--clear``: the cache of the data folder the options and the
    config name."""
    from ..features import cache_contents as cache
    from ..training.featurize import cache_root

    root = cache_root(command_config(config_path, overrides), data_dir)
    entries = cache.contents(root)
    if clear:
        now = time.time()
        chosen = [e for e in entries if unused_days is None or now - e.used >= unused_days * 86400]
        count, freed = cache.remove(root, chosen, now)
        if as_json:
            echo_json({"cache": str(root), "removed": count, "bytes_freed": freed, "kept": len(entries) - count})
        if not quiet:
            click.echo(f"{root}: removed {count} of {len(entries)} entries, {_size(freed)} freed", err=as_json)
        return
    if as_json:
        echo_json({"cache": str(root), "bytes": sum(e.size for e in entries),
                   "entries": [_entry_json(e) for e in entries]})
        return
    click.echo(f"{root}: " + (f"{len(entries)} entries, {_size(sum(e.size for e in entries))}" if entries
                              else "empty"))
    for e in entries:
        click.echo(f"  {_date(e.used)}  {_size(e.size):>9}  {_describe(e)}")
        click.echo(f"      {e.paths[0].relative_to(root)}")


def _size(n: float) -> str:
    """Bytes as "20 B", "744.2 KB", "1.5 GB" (powers of 1000)."""
    units = ("B", "KB", "MB", "GB")
    i = 0
    while n >= 1000 and i < len(units) - 1:
        n, i = n / 1000, i + 1
    return f"{n:.0f} B" if i == 0 else f"{n:.1f} {units[i]}"


def _date(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t))


def _settings_text(about: dict) -> str:
    values = {**about.get("settings", {}), **({"seed": about["seed"]} if about.get("seed") is not None else {})}
    return " ".join(f"{k}={v}" for k, v in values.items())


def _describe(e: CacheEntry) -> str:
    """One line of what an entry is: its kind, which images or that it is a fit, and its settings."""
    if e.what == "unfinished":
        return "an unfinished write (left by a killed or running process)"
    unknown = "(settings not recorded: written by an older linclf)"
    if e.what == "extractor":
        return f"{e.kind} extractor, fitted: {_settings_text(e.about) or unknown}"
    rows = f"{e.shape[0]} x {e.shape[1]}" if e.shape else "unreadable record"
    images = e.about.get("images", "")
    return f"{e.kind} features of {images or 'images'} ({rows}): {_settings_text(e.about) or unknown}"


def _entry_json(e: CacheEntry) -> dict:
    used = datetime.fromtimestamp(e.used).astimezone().isoformat(timespec="seconds")     # ISO 8601, UTC offset
    return {"what": e.what, "kind": e.kind, "paths": [str(p) for p in e.paths], "bytes": e.size,
            "last_used": used, "shape": list(e.shape) if e.shape else None, **e.about}
