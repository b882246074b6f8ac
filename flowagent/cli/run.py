"""``flowagent run``: its options, the split of its command line into ours and the program's,
and the hand-over to the launcher.
"""

from __future__ import annotations

import os
import sys

from ..errors import UsageError
from ..protocol.env import is_false

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    from typing import Any


# Our options: option -> (setting, value name or None for a flag, the flag's value, help).
# One table for the parser below and for `flowagent run --help`.
RUN_OPTIONS: dict[str, tuple[str, str | None, object, str]] = {
    "--include": ("include", "GLOB", None,
                  "record modules matching this dotted-name glob (repeatable)"),
    "--exclude": ("exclude", "GLOB", None,
                  "never record modules matching this glob (repeatable)"),
    "--data-dir": ("data_dir", "DIR", None, "where runs are stored (.flowagent)"),
    "--store": ("store", "URL", None,
                "store to write into: a path, sqlite:///PATH or postgresql://... "
                "(the data directory's flowagent.db)"),
    "--backend": ("backend", "NAME", None, "auto, wrap, profile or monitor (auto)"),
    "--ring-size": ("ring_size", "SIZE", None, "bytes per process ring, e.g. 16MiB"),
    "--flush-interval-ms": ("flush_interval_ms", "MS", None,
                            "how often recorded calls are flushed to the ring (50)"),
    "--sample-rate": ("sample_rate", "FRACTION", None, "fraction of sessions recorded (1.0)"),
    "--max-data-size": ("max_data_size", "SIZE", None,
                        "data directory limit, oldest runs pruned first (2GiB; 0: none)"),
    "--cpu-time": ("cpu_time", None, True,
                   "also measure each call's CPU time (thread CPU clock)"),
    "--shape-every-call": ("shape_every_call", None, True,
                           "describe every call's shapes, not a budgeted sample"),
    "--no-nested": ("nested", None, False,
                    "do not record functions defined inside functions"),
    "--verbose": ("verbose", None, True,
                  "debug lines: backend choice, where each setting came from"),
    "--otlp-endpoint": ("otlp_endpoint", "URL", None,
                        "send each finished session as OpenTelemetry spans to this OTLP/HTTP "
                        "receiver (needs the otlp extra)"),
    "--service": ("service", "NAME", None,
                  "service name of this run (default: the script, module or program name)"),
}
_RUN_SHORT = {"-v": "--verbose"}
_REPEATABLE = {"include", "exclude"}
_RUN_USAGE = "flowagent run [OPTIONS] (SCRIPT | -m MODULE | -- PROGRAM) [ARGS...]"


def _takes_value(option: str) -> bool:
    spec = RUN_OPTIONS.get(_RUN_SHORT.get(option, option))
    return spec is not None and spec[1] is not None


def _run_help() -> None:
    from .common import _parser

    p = _parser(prog="flowagent run", description="Run a program under the agent.",
                usage=_RUN_USAGE)
    for option, (_, metavar, _, text) in RUN_OPTIONS.items():
        short = [s for s, long in _RUN_SHORT.items() if long == option]
        if metavar is None:
            p.add_argument(*short, option, action="store_true", help=text)
        else:
            p.add_argument(*short, option, metavar=metavar, help=text)
    p.print_help()


def split_run_argv(argv: list[str]) -> tuple[list[str], str, str, list[str]]:
    """Split ``run`` arguments into (our options, target kind, target, program args).

    Our options end at the first positional argument, ``-m MODULE`` or ``--``: everything
    after belongs to the program, even if it looks like one of our options.
    """
    opts: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--":
            if i + 1 >= len(argv):
                raise UsageError("'--' must be followed by a program to run")
            return opts, "program", argv[i + 1], argv[i + 2:]
        if a == "-m":
            if i + 1 >= len(argv):
                raise UsageError("-m needs a module name, e.g. 'flowagent run -m pkg.main'")
            return opts, "module", argv[i + 1], argv[i + 2:]
        if a.startswith("-m") and len(a) > 2 and not a.startswith("--"):
            return opts, "module", a[2:], argv[i + 1:]
        if a.startswith("-") and a != "-":
            opts.append(a)
            if _takes_value(a):
                if i + 1 >= len(argv):
                    raise UsageError(f"{a} needs a value")
                opts.append(argv[i + 1])
                i += 1
            i += 1
            continue
        return opts, "script", a, argv[i + 1:]
    if any(o in ("-h", "--help") for o in opts):
        _run_help()
        raise SystemExit(0)
    raise UsageError("nothing to run: give a script, '-m module' or '-- program' "
                     "(e.g. 'flowagent run app.py')")


def parse_run_options(opts: list[str]) -> dict[str, object]:
    """Our options, as :func:`split_run_argv` found them, as command-line settings for
    :func:`~flowagent.config.load_config` (which checks their values)."""
    settings: dict[str, Any] = {}
    i = 0
    while i < len(opts):
        arg = opts[i]
        i += 1
        name, eq, value = arg.partition("=")
        if name in ("-h", "--help"):
            _run_help()
            raise SystemExit(0)
        spec = RUN_OPTIONS.get(_RUN_SHORT.get(name, name))
        if spec is None:
            raise UsageError(f"unrecognized option {arg!r} (see 'flowagent run --help')")
        key, metavar, flag, _ = spec
        if metavar is None:
            if eq:
                raise UsageError(f"{name} takes no value (see 'flowagent run --help')")
            settings[key] = flag
            continue
        if not eq:
            value = opts[i]  # split_run_argv made sure it is there
            i += 1
        if key in _REPEATABLE:
            settings.setdefault(key, []).append(value)
        else:
            settings[key] = value
    return settings


def cmd_run(argv: list[str], ends_process: bool = False) -> int:
    """``flowagent run ARGV``: the program's exit status (see :func:`flowagent.launch.run.run`
    for ``ends_process``)."""
    from ..launch.process import reserve_std_fds
    from ..launch.target import exec_plain

    reserve_std_fds()
    opts, kind, name, args = split_run_argv(argv)
    settings = parse_run_options(opts)

    # The kill switch, read before config.py is even imported, with the words it reads.
    if is_false(os.environ.get("FLOWAGENT_ENABLED")):
        # The production switch, taken before anything else is imported or read (a config
        # file too: a switched-off flowagent never stops a program): exec the program as is.
        exec_plain(kind, name, args)
    from ..config import load_config
    from ..launch.run import run
    from ..launch.target import resolve_target

    try:
        cwd = os.getcwd()
    except OSError as exc:  # deleted while the shell stood in it: the program may not care
        sys.stderr.write(f"flowagent: error: the working directory is unreadable "
                         f"({exc.strerror}); running the program without recording\n")
        exec_plain(kind, name, args)
    cfg = load_config(cwd, os.environ, settings)
    if not cfg.enabled:
        exec_plain(kind, name, args)
    target = resolve_target(kind, name, args, cwd)
    return run(cfg, target, cwd, ends_process)
