"""The sidecar is started first, with ``posix_spawn``: it must get what ``subprocess`` gave it
(its own session, stdin and stdout pipes to the launcher, stderr into its log) and nothing the
launcher inherited for the program: a descriptor passed to ``flowagent run`` goes to the
program only, so a reader waiting for its end is never held up by the sidecar."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from helpers import _clean_env, flowagent_cmd, write_files

pytestmark = pytest.mark.e2e

# The program looks at its sibling, the sidecar (the launcher's other child), while both run.
LOOK = """
import json, os, sys
launcher = os.getppid()
with open(f"/proc/{launcher}/task/{launcher}/children") as f:
    kids = [int(p) for p in f.read().split() if int(p) != os.getpid()]
seen = {}
for pid in kids:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        if b"flowagent.sidecar" not in f.read():
            continue
    fds = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    seen = {"pid": pid, "sid": os.getsid(pid), "fds": fds}
mine = os.readlink(f"/proc/self/fd/{sys.argv[1]}")
print(json.dumps({"sidecar": seen, "program_has": mine}))
"""


def test_the_sidecar_gets_its_pipes_and_log_and_none_of_the_programs_fds(tmp_path: Path) -> None:
    write_files(tmp_path, {"look.py": LOOK})
    r, w = os.pipe()
    try:
        proc = subprocess.run(flowagent_cmd("run", "--data-dir", "data", "look.py", str(w)),
                              cwd=tmp_path, env=_clean_env(None), pass_fds=(w,),
                              capture_output=True, timeout=120)
    finally:
        os.close(w)
    try:
        assert proc.returncode == 0, proc.stderr.decode()[-2000:]
        said = json.loads(proc.stdout)
        pipe = f"pipe:[{os.fstat(r).st_ino}]"
    finally:
        os.close(r)
    assert said["program_has"] == pipe  # the program got the descriptor, as plainly
    sidecar = said["sidecar"]
    assert sidecar, "the program found no sidecar beside it"
    assert sidecar["sid"] == sidecar["pid"]  # its own session: no signal to the program's group
    fds = sidecar["fds"]
    assert pipe not in fds.values(), fds
    assert fds["0"].startswith("pipe:") and fds["1"].startswith("pipe:"), fds
    (run_dir,) = (tmp_path / "data" / "runs").iterdir()
    assert fds["2"] == str(run_dir / "sidecar.log"), fds
    assert b"0 errors" in proc.stderr  # and its summary came back through the pipe

