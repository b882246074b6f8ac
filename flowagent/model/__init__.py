"""The read-side model shared by the sidecar, the store, the reports and the viewer.

``graph`` is the merged architecture graph (networkx), ``histogram`` the mergeable duration
distributions, ``contract`` the plain-dict shapes of a session graph and of a merged graph,
``shapes`` how a stored input shape decodes. Nothing here imports the agent, the sidecar, the
store or the viewer: data flows from the store into these types, never back.
"""
