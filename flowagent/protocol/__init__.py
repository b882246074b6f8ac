"""The contract between the program side and the sidecar.

``wire`` is the batch format (msgpack + zstd frames, the call-record fields, the result codes
and their names) that the agent writes, the sidecar decodes and the store keeps. Standard
library only and importing nothing else of flowagent: the recorded program imports it, so it
must stay as cheap and as dependency-free as the agent itself.
"""
