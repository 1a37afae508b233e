"""``linclf config`` and ``linclf download``: the resolved config, CIFAR-10 onto disk."""
from __future__ import annotations

import click

from .app import cli, command_config, config_options, data_options, quiet_option, show_progress


# --------------------------------------------------------------------- config


@cli.command("config", short_help="Print the resolved config.")
@config_options
def config_cmd(config_path: str | None, overrides: tuple[str, ...]) -> None:
    """Print the resolved config (defaults, then FILE, then --set) as YAML."""
    from ..config import to_yaml

    click.echo(to_yaml(command_config(config_path, overrides)), nl=False)


# ------------------------------------------------------------------- download


@cli.command(short_help="Download, verify, extract and cache CIFAR-10.")
@data_options
@click.option("--format", "fmt", type=click.Choice(["binary", "python"]), default=None,
              help="Archive format: binary (default; no pickle is loaded unless only python batches are at hand) or python.")
@click.option("--url", "urls", multiple=True, metavar="URL",
              help="A mirror to try before the official URL (repeatable, tried in order).")
@click.option("--md5", default=None, metavar="HEX", help="Expected md5 of the archive (a mirror's or --archive's).")
@click.option("--force", is_flag=True, help="Verify, download and extract again even if already present.")
@config_options
@quiet_option
def download(data_dir: str | None, archive: str | None, fmt: str | None, urls: tuple[str, ...], md5: str | None,
             force: bool, config_path: str | None, overrides: tuple[str, ...], quiet: bool) -> None:
    """Download, verify, extract and cache CIFAR-10 (or take an archive already on disk)."""
    from ..data.cifar10 import load_prepared, prepare, resolve_data_dir

    cfg = command_config(config_path, overrides, {"data.format": fmt, "data.md5": md5, "data.archive": archive,
                                                "data.urls": list(urls) or None})
    d = cfg.data
    target = resolve_data_dir(data_dir, d.dir)
    prepared = prepare(target, d.format, archive=d.archive, md5=d.md5, urls=d.urls, download=True, force=force,
                       timeout=d.timeout, retries=d.retries, quiet=not show_progress(quiet))
    data = load_prepared(prepared, target, rebuild=force)     # every batch read and validated once, then cached
    if not quiet:
        click.echo(f"CIFAR-10 ({prepared.format}) {prepared.status}: {prepared.folder} "
                   f"({len(data.y_train)} training and {len(data.y_test)} test images)", err=True)
