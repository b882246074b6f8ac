"""flowagent bootstrap: put on PYTHONPATH by ``flowagent run`` only, never installed.

Runs at interpreter start in every Python process of a recorded run. The kill switch comes
first and costs one environment lookup; nothing is imported unless this process belongs to a
run. Afterwards the user's own ``sitecustomize`` (if any, further along ``sys.path``) is run,
as it would have been without us.
"""


def _flowagent_bootstrap() -> None:
    import os

    env = os.environ
    if env.get("FLOWAGENT_RUN_DIR") and env.get("FLOWAGENT_ENABLED", "1").lower() not in (
            "0", "false", "no", "off"):
        try:
            from flowagent.agent import bootstrap
        except ImportError:
            pass  # another interpreter or environment without flowagent: stay out of the way
        else:
            bootstrap.start()
    _chain_user_sitecustomize()


def _chain_user_sitecustomize() -> None:
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.origin is None or spec.loader is None:
        return
    if os.path.dirname(os.path.abspath(spec.origin)) == here:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_flowagent_bootstrap()
del _flowagent_bootstrap
