"""``python -m flowagent ...`` is the same as the ``flowagent`` command."""

from .cli import main

main()
