"""Command line: the ``flowagent`` parser and :func:`main`; each command family has its module
(``run``, ``browse``, ``export``, ``analyse``, ``ops``, ``view``, ``report``, ``otlp``).

The single exit point is :func:`main`: a :class:`FlowagentError` becomes one line on stderr
and exit status 2; ``flowagent run`` exits with the program's own status.
"""

from __future__ import annotations

import sys

from ..errors import FlowagentError

TYPE_CHECKING = False  # `flowagent run` imports as little as it can: no typing, no argparse
if TYPE_CHECKING:
    import argparse


def _read_parser() -> argparse.ArgumentParser:
    from .common import _parser

    p = _parser(prog="flowagent", description="Record how a Python program really flows.")
    p.add_argument("--version", action="store_true")
    sub = p.add_subparsers(dest="command", parser_class=type(p))
    sub.add_parser("run", help="run a program under the agent (see 'flowagent run --help')",
                   add_help=False)

    def fleet_filters(sp: argparse.ArgumentParser, what: str) -> None:
        sp.add_argument("--service", metavar="NAME", help=f"without --run: {what}")
        sp.add_argument("--host", metavar="NAME", help=f"without --run: {what}")

    def common(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--data-dir", metavar="DIR")
        sp.add_argument("--store", metavar="URL",
                        help="store to read: a path, sqlite:///PATH or postgresql://... "
                             "(default: the data directory's flowagent.db)")

    sp = sub.add_parser("runs", help="list recorded runs")
    common(sp)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("sessions", help="list the sessions of a run")
    common(sp)
    sp.add_argument("--run", metavar="RUN", help="run id or prefix (default: latest)")
    fleet_filters(sp, "the sessions of every run of that service (and host), newest first")
    sp.add_argument("--result", choices=("success", "error", "partial", "incomplete"))
    sp.add_argument("--limit", type=int, default=200)
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("trace", help="show one session as a call tree")
    common(sp)
    sp.add_argument("session_id")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("export", help="write graphs in standard formats")
    common(sp)
    sp.add_argument("--format", "-f", required=True,
                    choices=("json", "dot", "mermaid", "chrome", "speedscope", "collapsed",
                             "otlp", "otlp-json"))
    sp.add_argument("--run", action="append", metavar="RUN",
                    help="run id, data directory or DIR:RUN (repeatable: runs are merged "
                         "and requests between their services stitched); default: latest")
    sp.add_argument("--session", metavar="ID", help="export one session instead")
    sp.add_argument("--aggregate", action="store_true",
                    help="speedscope only: one sampled profile of all sessions (a merged "
                         "flame graph) instead of one evented profile per thread")
    sp.add_argument("-o", "--output", metavar="FILE")
    sp.add_argument("--service", metavar="NAME",
                    help="the runs of that service, merged (without --run); otlp: the "
                         "service.name of the spans (default: the program's name)")
    sp.add_argument("--host", metavar="NAME", help="the runs recorded on that host, merged "
                    "(without --run)")
    sp = sub.add_parser("stats", help="profiles, flow variants, error clusters, paths")
    common(sp)
    sp.add_argument("--run", metavar="RUN")
    fleet_filters(sp, "the latest run of that service (and host)")
    sp.add_argument("--top", type=int, default=15, help="rows per table (15)")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("diff", help="what changed between two runs")
    common(sp)
    sp.add_argument("run_a", metavar="RUN_A")
    sp.add_argument("run_b", metavar="RUN_B")
    sp.add_argument("--json", action="store_true")
    sp = sub.add_parser("stubs", help="write .pyi stubs with TypedDicts from observed shapes")
    common(sp)
    sp.add_argument("--run", metavar="RUN")
    sp.add_argument("-o", "--output", metavar="DIR", required=True)
    sp = sub.add_parser("control", help="pause/resume a running recording, change sampling")
    common(sp)
    sp.add_argument("--run", metavar="RUN", help="default: latest")
    sp.add_argument("--service", metavar="NAME",
                    help="every running recording of that service, on every host writing "
                         "into this store (instead of one run)")
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--pause", action="store_true")
    g.add_argument("--resume", action="store_true")
    sp.add_argument("--sample-rate", type=float, metavar="FRACTION")
    sp.add_argument("--include", action="append", metavar="GLOB",
                    help="also record modules matching it, imported from now on "
                         "(repeatable; replaces the globs of an earlier control)")
    sp.add_argument("--exclude", action="append", metavar="GLOB",
                    help="stop recording modules matching it, imported from now on "
                         "(repeatable; replaces the globs of an earlier control)")
    sp = sub.add_parser("sidecar", help="re-drain the rings of a run (after a sidecar crash)")
    common(sp)
    sp.add_argument("--resume", metavar="RUN", required=True)
    from .view import add_parser as add_view_parser

    add_view_parser(sub)
    from .report import add_parser as add_report_parser

    add_report_parser(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    console = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "run":
            from ..launch.process import exit_like
            from .run import cmd_run

            exit_like(cmd_run(argv[1:], ends_process=console), end_process=console)
        from .analyse import cmd_diff, cmd_stats, cmd_stubs
        from .browse import cmd_runs, cmd_sessions, cmd_trace
        from .export import cmd_export
        from .ops import cmd_control, cmd_sidecar
        from .view import cmd_view
        from .report import cmd_report

        ns = _read_parser().parse_args(argv)
        if ns.version:
            from .. import __version__

            print(f"flowagent {__version__}")
            sys.exit(0)
        handlers = {"runs": cmd_runs, "sessions": cmd_sessions, "trace": cmd_trace,
                    "export": cmd_export, "stats": cmd_stats, "diff": cmd_diff, "stubs": cmd_stubs, "control": cmd_control, "view": cmd_view, "report": cmd_report,
                    "sidecar": cmd_sidecar}
        if ns.command not in handlers:
            _read_parser().print_help()
            sys.exit(0 if not argv else 2)
        sys.exit(handlers[ns.command](ns, sys.stdout))
    except FlowagentError as exc:
        sys.stderr.write(f"flowagent: error: {exc}\n")
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        sys.exit(0)
    except Exception as exc:
        # A database that opened but turns out damaged further in (a corrupt page met by a
        # query) is the same one clear line as one that does not open.
        from ..store.api import damage_error

        damaged = damage_error(exc)
        if damaged is None:
            raise
        sys.stderr.write(f"flowagent: error: {damaged}\n")
        sys.exit(getattr(damaged, "exit_code", 2))


if __name__ == "__main__":
    main()
