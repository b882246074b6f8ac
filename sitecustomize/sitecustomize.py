"""flowagent bootstrap: put on PYTHONPATH by ``flowagent run`` only, never installed.

Runs at interpreter start in every Python process of a recorded run, including Pythons of
other versions (or Python 2) that the program starts with PYTHONPATH inherited. The kill
switch comes first and costs one environment lookup; nothing is imported unless this
process belongs to a run and runs the run's own interpreter. Afterwards the user's own
``sitecustomize`` (if any, further along ``sys.path``) is run, as it would have been without
us. This file stays valid Python 2 and never prints: an interpreter that is not the run's
must behave exactly as if we were not there.
"""


def _flowagent_bootstrap():
    import os
    import sys

    env = os.environ
    # The words of flowagent.protocol.env.FALSE_WORDS, spelled out: the kill switch imports
    # nothing (a test keeps the two equal).
    enabled = env.get("FLOWAGENT_ENABLED", "1").strip().lower()
    if env.get("FLOWAGENT_RUN_DIR") and enabled not in (
            "0", "false", "no", "off") and _is_the_runs_interpreter(env, sys):
        try:
            from flowagent.agent import bootstrap
        except Exception:
            pass  # an environment without (a working) flowagent: stay out of the way
        else:
            bootstrap.start()
    _chain_user_sitecustomize()


def _is_the_runs_interpreter(env, sys):
    """The launcher names its interpreter's prefix; another Python (another version, another
    virtualenv) would fail to import flowagent, or import it and record into a run whose
    sidecar expects the launcher's interpreter."""
    import os

    prefix = env.get("FLOWAGENT_PREFIX")
    if not prefix:
        return sys.version_info >= (3, 11)
    return os.path.realpath(prefix) == os.path.realpath(sys.prefix)


def _chain_user_sitecustomize():
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        import importlib.machinery
    except ImportError:  # Python 2
        _chain_python2(rest, here)
        return
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.origin is None or spec.loader is None:
        return
    if os.path.dirname(os.path.abspath(spec.origin)) == here:
        return
    import importlib.util  # only with a sitecustomize to run: it costs every process ~2 ms

    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


def _chain_python2(rest, here):
    import imp
    import os
    import sys

    try:
        found, path, desc = imp.find_module("sitecustomize", rest)
    except ImportError:
        return
    try:
        if os.path.dirname(os.path.abspath(path)) != here:
            sys.modules["sitecustomize"] = imp.load_module("sitecustomize", found, path, desc)
    finally:
        if found is not None:
            found.close()


_flowagent_bootstrap()
del _flowagent_bootstrap
