"""What the readers see: reports computed from the store, never inside the recorded program.

``stats`` and ``diff`` are the reports behind ``flowagent stats`` and ``flowagent diff`` (and
the viewer's stats and compare pages), ``stitch`` joins the runs of several services into one
distributed request, ``html`` writes the one-file HTML report, ``shapetree``, ``drift`` and
``stubs`` are pure functions over shape text (merging, change over time, ``.pyi`` stubs), and
``export/`` holds one module per export format.
"""
