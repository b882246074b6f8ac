"""Build of the optional C accelerators; everything else is declared in pyproject.toml.

``flowagent.agent._speedups`` is the recorder's per-call hot path in C and
``flowagent.agent._cores`` holds the tracer cores (the ``monitor`` backend's sys.monitoring
callbacks). Both are optional: where no C compiler is available the build goes on without
them, and the recorder runs its pure-Python twin (``FLOWAGENT_PURE=1`` forces the twin, and the
Python callbacks, where the extensions exist).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("flowagent.agent._speedups", ["flowagent/agent/_speedups.c"],
                             depends=["flowagent/agent/_guard.h", "flowagent/agent/_hotpath.h",
                                      "flowagent/agent/_shapekey.h"], optional=True),
                   Extension("flowagent.agent._cores", ["flowagent/agent/_cores.c"],
                             depends=["flowagent/agent/_guard.h", "flowagent/agent/_hotpath.h"], optional=True),
                   Extension("flowagent.sidecar._fold", ["flowagent/sidecar/_fold.c"],
                             optional=True)])
