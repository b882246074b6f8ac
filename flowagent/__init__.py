"""flowagent: zero-code recording of how a Python program really flows.

Host-side code lives in :mod:`flowagent.agent` and imports only the standard library,
msgpack and zstandard. Everything heavier (networkx, flask, psutil) belongs to the sidecar,
the CLI and the viewer.
"""

__version__ = "0.1.0"
