"""The ``linclf`` group: error handling, exit codes and the options commands share.

Library errors become one line on stderr and an exit code: 0 ok, 1 runtime
failure, 2 usage or config error, 3 accuracy below ``--expect-accuracy``, 130
interrupted, 143 / 129 stopped by SIGTERM / SIGHUP (handled as Ctrl-C). ``linclf --debug
COMMAND`` shows the traceback instead. A reader that stops early (``linclf ...
| head -1``) ends a command quietly with 141 (128 + SIGPIPE), as for ``git log
| head``. The commands live in the sibling modules and register themselves on
``cli``.
"""
from __future__ import annotations

import os
import stat
import sys
import traceback
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

import click

from .. import __version__
from ..errors import AccuracyError, Interrupted, LinclfError
from ..fsutil import shell_path

if TYPE_CHECKING:
    from ..config import Config

__all__ = ["check_accuracy", "cli", "command_config", "config_options", "data_options", "echo_json", "main",
           "model_option", "out_option", "quiet_option", "show_progress", "workers"]

_DEBUG = False
_CLOSED_STDOUT_EXIT = 141     # 128 + SIGPIPE: what a shell reports for `git log | head`'s git
_signal_exit: int | None = None   # SIGTERM or SIGHUP arrived: the interrupt it became exits 128 + its number
_FILE_OPTIONS = {".yaml": "--config", ".yml": "--config", ".npz": "--model"}   # files a command takes by option


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Warnings as one line on stderr: ``warning: ...``."""
    click.echo(f"warning: {message}", err=True)


def _usage_message(error: click.UsageError) -> str:
    """Click's message, the same from every Click version for an unknown option (8.2 and 8.5 word it differently)."""
    if isinstance(error, click.NoSuchOption):
        hint = f" (did you mean {' or '.join(sorted(error.possibilities))}?)" if error.possibilities else ""
        return f"No such option '{error.option_name}'{hint}"
    return error.format_message().rstrip(".")


def _stdout_closed(error: OSError) -> bool:
    """Whether ``error`` is the reader of stdout having gone (``linclf ... | head -1``), not another broken pipe
    (a worker's, a socket's), which is a failure to report."""
    if not isinstance(error, BrokenPipeError):
        return False
    try:
        import select

        poll = select.poll()
        poll.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poll.poll(0))
    except (AttributeError, OSError, ValueError):     # no poll() (Windows); stdout not a file (CliRunner)
        return False


def _exit_quietly() -> NoReturn:
    """End like a Unix tool whose reader has gone: no message, exit 141; what is still buffered goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # so the flush at exit cannot fail
    sys.exit(_CLOSED_STDOUT_EXIT)


class _Group(click.Group):
    """A group that maps library exceptions to one-line messages and exit codes."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        """Click's own usage errors (unknown option or command, bad value) as one line, exit 2, like ours."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as e:       # `linclf` alone: the help, as Click shows it
            click.echo(e.format_message(), err=True)
            sys.exit(e.exit_code)
        except click.UsageError as e:
            where = f"; see `{e.ctx.command_path} --help`" if e.ctx is not None else ""
            given = sys.argv[1:] if args is None else list(args)
            message = (self._misplaced(e, given) or self._global_option(e, given)
                       or self._file_without_option(e, given))
            click.echo(f"error: {message or _usage_message(e) + where}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.exceptions.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)

    def _misplaced(self, error: click.UsageError, args: list[str]) -> str:
        """A command's option given before the command (``linclf --quiet train``): a message saying where it goes."""
        if not isinstance(error, click.NoSuchOption) or error.ctx is None or error.ctx.command is not self:
            return ""
        name = next((a for a in args if a in self.commands), None)
        if name is None:
            return ""
        if not any(error.option_name in p.opts + p.secondary_opts for p in self.commands[name].params):
            return ""
        return (f"{error.option_name} is an option of the command, not of `{error.ctx.command_path}`: "
                f"write `{error.ctx.command_path} {name} {error.option_name} ...`")

    def _global_option(self, error: click.UsageError, args: list[str]) -> str:
        """An option of the group given after the command (``linclf train --workers 2``): a message saying it
        goes before the command."""
        ctx = error.ctx
        if not isinstance(error, click.NoSuchOption) or ctx is None or ctx.command is self:
            return ""
        name = error.option_name
        option = next((p for p in self.params if name in p.opts + p.secondary_opts), None)
        if option is None:
            return ""
        root = ctx.find_root().command_path
        if option.is_eager:                                   # --version: it runs alone
            return f"No such option '{name}'; {name} is a global option: `{root} {name}`"
        given = name
        if not getattr(option, "is_flag", False):            # with its value as typed (or its metavar)
            i = args.index(name) + 1 if name in args else len(args)
            value = args[i] if i < len(args) and not args[i].startswith("-") else option.metavar or "VALUE"
            given = next((a for a in args if a.startswith(name + "=")), f"{name} {value}")
        return (f"No such option '{name}'; {name} is a global option: "
                f"`{root} {given}{ctx.command_path[len(root):]} ...`")

    def _file_without_option(self, error: click.UsageError, args: list[str]) -> str:
        """A config or model file given bare (``linclf train configs/svm.yaml``, ``linclf train svm``): a message
        naming its option."""
        ctx = error.ctx
        extra = error.format_message().startswith("Got unexpected extra argument")
        if ctx is None or ctx.command is self or not (extra or isinstance(error, click.MissingParameter)):
            return ""
        from ..config import shipped_configs

        options = {o: p for p in ctx.command.params if isinstance(p, click.Option) for o in p.opts}
        shipped = set(shipped_configs())
        rest = args[args.index(ctx.info_name) + 1:] if ctx.info_name in args else []
        for before, arg in zip([None, *rest], rest):
            value_of_option = before in options and not options[before].is_flag
            option = "--config" if arg in shipped else _FILE_OPTIONS.get(Path(arg).suffix.lower())
            if not arg.startswith("-") and not value_of_option and option in options and option not in rest:
                return f"{arg} goes after {option}: write `{ctx.command_path} {option} {arg} ...`"
        return ""

    def make_context(self, info_name: str | None, args: list[str], parent: click.Context | None = None,
                     **extra: Any) -> click.Context:
        """The group's own output (``linclf --help | head -1``) ends on a closed stdout as a command's does."""
        try:
            return super().make_context(info_name, args, parent, **extra)
        except BrokenPipeError as e:
            if _stdout_closed(e):
                _exit_quietly()
            raise

    def invoke(self, ctx: click.Context) -> Any:
        from ..errors import LinclfWarning

        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            warnings.simplefilter("always", LinclfWarning)     # each of ours once per command, every command
            # deprecation notices are for developers (Python hides them outside __main__); a test
            # runner's filters must not turn them into user-facing lines
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                return super().invoke(ctx)
            except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
                raise
            except LinclfError as e:
                if _DEBUG:
                    traceback.print_exc()
                click.echo(f"error: {e}", err=True)
                ctx.exit(_signal_exit if _signal_exit and isinstance(e, Interrupted) else e.exit_code)
            except KeyboardInterrupt:
                click.echo("error: interrupted", err=True)
                ctx.exit(_signal_exit or Interrupted.exit_code)
            except OSError as e:
                if _stdout_closed(e):
                    _exit_quietly()
                if _DEBUG:
                    traceback.print_exc()
                where = f" ({e.filename})" if getattr(e, "filename", None) else ""
                click.echo(f"error: {e.strerror or e}{where}", err=True)
                ctx.exit(1)
            except Exception as e:  # a bug: say so in one line, the traceback with --debug
                if _DEBUG:
                    traceback.print_exc()
                click.echo(f"internal error: {type(e).__name__}: {e} (run `linclf --debug ...` for the "
                           "traceback and please report it)", err=True)
                ctx.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="linclf")
@click.option("--debug", is_flag=True, help="Show the full traceback of an error.")
@click.option("--workers", type=click.IntRange(min=1), default=None, metavar="N",
              help="CPUs to compute on (default: $LINCLF_WORKERS, else all usable); the results do not "
                   "depend on it.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, workers: int | None) -> None:
    """Linear classifiers (multiclass SVM, softmax) on CIFAR-10 with NumPy.

    \b
    linclf download --archive cifar-10-binary.tar.gz   verify, extract, cache (user cache folder)
    linclf train --config configs/softmax.yaml         train, evaluate, write runs/<name>-<time>/
    linclf features --config configs/kmeans.yaml       build the feature cache ahead of training
    linclf eval --model runs/.../model.npz             accuracy, per class, confusion matrix
    linclf gradcheck --config configs/svm.yaml         analytic vs numerical gradients
    linclf sweep --config configs/softmax.yaml --param optimizer.lr=log:1e-4:1e-2
    linclf plot runs/...                               loss, accuracy, templates, confusion
    linclf predict --model runs/.../model.npz cat.jpg  top 3 classes of your own images

    Exit codes: 0 ok, 1 failure, 2 usage or config error, 3 accuracy below
    --expect-accuracy, 130 interrupted (143: SIGTERM, 129: SIGHUP), 141 stdout closed early (| head).
    """
    global _DEBUG
    _DEBUG = debug
    from ..threads import resolve_workers

    ctx.obj = {"workers": resolve_workers(workers)}     # a bad $LINCLF_WORKERS: exit 2 before any work


# --------------------------------------------------------------- shared options


def workers() -> int:
    """The CPUs ``linclf --workers`` (or $LINCLF_WORKERS) allows, resolved by the group."""
    return click.get_current_context().find_root().obj["workers"]


def config_options(f: Callable) -> Callable:
    """``--config FILE`` and repeatable ``--set SECTION.KEY=VALUE`` (see `command_config`)."""
    f = click.option("--set", "overrides", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override one config value (repeatable), e.g. --set optimizer.lr=1e-3.")(f)
    f = click.option("--config", "config_path", type=click.Path(dir_okay=True), default=None,
                     help="YAML config; holds only what differs from the defaults (`linclf config` shows them). "
                          "A name without a file (softmax, svm, kmeans, ...) is a config that ships with linclf.")(f)
    return f


def data_options(f: Callable) -> Callable:
    """``--archive PATH`` and ``--data-dir DIR``: where the CIFAR-10 data comes from."""
    f = click.option("--archive", type=click.Path(), default=None,
                     help="Use a CIFAR-10 archive or extracted folder already on disk instead of downloading.")(f)
    f = click.option("--data-dir", type=click.Path(file_okay=False), default=None,
                     help="Data folder (default: $LINCLF_DATA_DIR, then data.dir, then the user cache folder, "
                          "e.g. ~/.cache/linclf; a run remembers the folder it was trained from).")(f)
    return f


def _model_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A run folder stands for the model.npz in it (what `linclf train` prints is the folder)."""
    from ..errors import UsageError

    if value is None or not Path(value).is_dir():
        return value
    folder = Path(value)
    if (folder / "model.npz").is_file():
        return str(folder / "model.npz")
    if (folder / "checkpoint.npz").is_file():              # a run stopped before it saved its model
        raise UsageError(f"--model {value}: a run that was stopped before it saved model.npz; finish it with "
                         f"`linclf train --resume {shell_path(folder)}`")
    raise UsageError(f"--model {value}: a folder without a model.npz; give a model file or the run folder "
                     "`linclf train` printed")


def model_option(help: str) -> Callable[[Callable], Callable]:
    """``--model PATH``, required: a model file, or a run folder holding one (given as its model.npz)."""
    return click.option("--model", "model_path", type=click.Path(), required=True, callback=_model_file,
                        metavar="PATH", help=help)


def out_option(help: str) -> Callable[[Callable], Callable]:
    """``--out DIR``, optional; an empty value (an unset variable in a script) is a usage error, not the default."""
    def nonempty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise click.BadParameter("empty; give a folder, or leave --out out for the default")
        return value

    return click.option("--out", type=click.Path(), default=None, callback=nonempty, metavar="DIR", help=help)


def quiet_option(f: Callable) -> Callable:
    """``--quiet`` / ``-q``."""
    return click.option("--quiet", "-q", is_flag=True, help="No progress bars or summaries on stderr.")(f)


def echo_json(obj: object) -> None:
    """``obj`` as one line of strict JSON on stdout, written whole or not at all.

    A large write into a pipe whose reader leaves (``| head -c 10``) comes back short without an error
    (Python's buffered writer returns the count), so the rest is written until it fails: exit 141, not
    0 with the document cut.
    """
    from ..fsutil import json_text

    if sys.stdout is None:                  # started with stdout closed (>&-)
        raise LinclfError("stdout is closed, so the JSON result cannot be printed")
    data = memoryview((json_text(obj) + "\n").encode())
    sys.stdout.flush()
    out = sys.stdout.buffer
    while data:
        data = data[out.write(data):]
    out.flush()


def show_progress(quiet: bool) -> bool:
    """Show progress bars only on a terminal and when not asked to be quiet."""
    return not quiet and sys.stderr is not None and sys.stderr.isatty()     # None: started with stderr closed


def command_config(config_path: str | None, overrides: tuple[str, ...], extra: dict | None = None) -> Config:
    """The config of a command: defaults, then ``config_path``, then ``--set``, then ``extra`` (its own options).

    ``extra`` maps key paths to values; None means the option was not given.
    """
    from ..config import load_config, with_values

    cfg = load_config(config_path, overrides)
    if extra:
        cfg = with_values(cfg, {k: v for k, v in extra.items() if v is not None}, source="command line")
    return cfg


def check_accuracy(name: str, value: float, expect: float | None) -> None:
    """Raise AccuracyError (exit 3) when ``value`` is below the ``--expect-accuracy`` asked for."""
    if expect is not None and not value >= expect:
        raise AccuracyError(f"{name} accuracy {value:.4f} is below the expected {expect:.4f}")


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``linclf`` console script."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        # started by a shell that ignores SIGINT (a background job of a script): Ctrl-C and
        # `kill -INT` still stop every command the same way (exit 130)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for stop in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):     # no SIGHUP on Windows
        if stop is not None and signal.getsignal(stop) is signal.SIG_DFL:
            signal.signal(stop, _interrupt_on_stop)
    cli.main(args=argv, prog_name="linclf")


def _interrupt_on_stop(signum: int, frame: object) -> None:
    """SIGTERM (`timeout`, a cancelled CI job, `docker stop`) and SIGHUP (a closed terminal, a dropped ssh
    session) stop a command as Ctrl-C does, a training run with its checkpoint saved, and exit 128 + the
    signal's number (143, 129): the signal is passed on as SIGINT to whichever handler is in place."""
    import signal

    global _signal_exit
    _signal_exit = 128 + signum
    if signum == getattr(signal, "SIGHUP", None):
        # the terminal is gone: writing to it now fails (EIO; isatty already says no), so what would go there
        # goes nowhere instead; files and pipes stay as they are
        null = os.open(os.devnull, os.O_WRONLY)
        for fd in (1, 2):
            try:
                st = os.fstat(fd)
            except OSError:                     # closed
                continue
            if stat.S_ISCHR(st.st_mode) and not os.path.samestat(st, os.fstat(null)):
                os.dup2(null, fd)
        os.close(null)
    os.kill(os.getpid(), signal.SIGINT)
