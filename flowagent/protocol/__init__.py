"""The contract between the program side and the sidecar.

* ``wire``: the batch format (msgpack + zstd frames, the call-record fields, the result codes
  and their names) that the agent writes, the sidecar decodes and the store keeps;
* ``ring``: the shared-memory ring file (header layout, the agent's writer, the sidecar's
  reader);
* ``rundir``: the run directory's file names, process keys, ring names and session ids;
* ``clock``: call times from the agent's monotonic clock to unix nanoseconds;
* ``env``: the words a yes/no setting is spelled with.

Standard library only and importing nothing else of flowagent: the recorded program imports
it, so it must stay as cheap and as dependency-free as the agent itself.
"""
