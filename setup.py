"""Build of the optional C accelerator; everything else is declared in pyproject.toml.

``flowagent.agent._speedups`` is the recorder's per-call hot path in C. It is optional: where
no C compiler is available the build goes on without it, and the recorder runs its
pure-Python twin (``FLOWAGENT_PURE=1`` forces the twin where the extension exists).
"""

from setuptools import Extension, setup

setup(ext_modules=[Extension("flowagent.agent._speedups", ["flowagent/agent/_speedups.c"],
                             optional=True)])
