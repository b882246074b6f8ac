"""What :mod:`bootstrap` decided for this process, read by the parts that act on it later.

The integrations (pytest's assertion rewriter, multiprocessing's exit and spawn paths), the
lineage of child processes, the main-script shim and the transport's live control all need
the run's selector, the backend's name or the transport. They read them here, and bootstrap
only writes them, so none of them imports bootstrap (which imports them) and the agent's
modules form no import cycle. Standard library only: imported by the recorded program.
"""

from __future__ import annotations

import os
import sys

from ..protocol.rundir import CONTROL_FILE

TYPE_CHECKING = False  # typing is not imported at run time (every process's start)
if TYPE_CHECKING:  # annotations only: importing these here would load them in every process
    from .select import Selector
    from .transport import Transport

# What `--backend auto` records with on this Python (backends._auto says why: monitor on
# 3.12, wrap elsewhere) and whether that backend instruments a main script: the launcher
# names the run's backend from these without loading the backends (the recorder, the import
# hook) beside the program. A test keeps them equal to backends.choose("auto"). (On 3.12,
# a program whose .pth files took every sys.monitoring tool id before the agent started
# records with wrap under a row naming monitor, and may miss its main script.)
AUTO_BACKEND = "monitor" if sys.version_info[:2] == (3, 12) else "wrap"
AUTO_INSTRUMENTS_MAIN = AUTO_BACKEND == "wrap"

selector: Selector | None = None  # the run's include/exclude globs; None: not recording
nested = True                     # FLOWAGENT_NESTED: record nested functions and lambdas
backend_name = ""                 # "wrap", "profile" or "monitor" once recording started
transport: Transport | None = None  # this process's ring and flusher once recording started


def apply_selection(run_dir: str) -> None:
    """Module globs the run's control file adds to the configured ones (``flowagent control
    --include/--exclude``), for modules imported from now on."""
    from ..protocol.jsonline import loads  # not json: it loads re and enum

    if selector is None:
        return
    try:
        with open(os.path.join(run_dir, CONTROL_FILE)) as f:
            state = loads(f.read())
        include, exclude = state.get("include") or (), state.get("exclude") or ()
        selector.set_live(tuple(str(g) for g in include), tuple(str(g) for g in exclude))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
