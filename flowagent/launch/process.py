"""The launcher process as the program's stand-in: the standard descriptors it hands on and
its exit with the program's status.

Imported by every ``flowagent run``, the switched-off one too (which then becomes the program
with ``exec``): ``os`` and ``sys`` only, so a disabled run loads nothing of the launcher's run
machinery (supervision, summary, run directory).
"""

from __future__ import annotations

import os
import sys


def reserve_std_fds() -> None:
    """Standard descriptors the launcher was started without (``2>&-``) get /dev/null,
    close-on-exec: the launcher's own files and pipes then never take their numbers (where the
    program would find them open), the program still finds them closed, and the launcher's
    messages go nowhere instead of failing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            try:
                null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            except OSError:
                return
            if null != fd:  # a lower one is open: put it where it belongs
                os.dup2(null, fd, inheritable=False)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115


def exit_like(rc: int, end_process: bool = False) -> None:
    """Exit with the program's status; if a signal killed it, die by the same signal.
    ``end_process`` (the console command, not a caller of :func:`flowagent.cli.main`): end
    the process once its output is flushed, without tearing the interpreter down (tens of
    milliseconds at the end of every run, after everything is said)."""
    if rc < 0:
        import signal

        sys.stdout.flush()
        sys.stderr.flush()
        if -rc not in (signal.SIGKILL, signal.SIGSTOP):  # those cannot be caught anyway
            signal.signal(-rc, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, (-rc,))
        os.kill(os.getpid(), -rc)
        import time

        time.sleep(1)
        os._exit(128 - rc)
    if end_process:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass  # gone (a closed pipe): the exit status still counts
        os._exit(rc)
    sys.exit(rc)
