"""``<run dir>/sidecar.state``: one line saying what the sidecar is doing now (``storing``,
``waiting for room: ...``, ``finished``), for people and tools looking at a live run.

The file's block is taken when the sidecar starts and the line is rewritten in place, so it
can still be written when the disk is full, which is when it matters most: the log on the
same disk may no longer grow.
"""

from __future__ import annotations

import os

from ..protocol.rundir import SIDECAR_STATE

SIZE = 512  # bytes; a line longer than this is cut


class StateFile:
    def __init__(self, run_dir: str) -> None:
        self.path = os.path.join(run_dir, SIDECAR_STATE)
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError:
            self.fd = -1
            return
        try:
            os.posix_fallocate(self.fd, 0, SIZE)
        except OSError:
            pass  # no room already: the line is written when there is

    def set(self, line: str) -> None:
        """Replace the line (padded with spaces to the file's size: read it stripped)."""
        if self.fd < 0:
            return
        data = " ".join(line.split()).encode()[:SIZE - 1] + b"\n"
        try:
            os.pwrite(self.fd, data.ljust(SIZE, b" "), 0)
        except OSError:
            pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def read_state(run_dir: str) -> str:
    """The sidecar's line, or '' when it wrote none."""
    try:
        with open(os.path.join(run_dir, SIDECAR_STATE), "rb") as f:
            return f.read(SIZE).decode(errors="replace").strip()
    except OSError:
        return ""
