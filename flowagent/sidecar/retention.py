"""Which full session trees the sidecar keeps: the retention settings and the ``tree_kept``
markers, defined with the store's other limits (:mod:`flowagent.store.limit`) and named here
so the sidecar's command line can name the defaults without importing the ingestion
machinery."""

from __future__ import annotations

from ..store.api import EXEMPLAR, FAILED, PRUNED, RECENT
from ..store.limit import Retention

__all__ = ["EXEMPLAR", "FAILED", "PRUNED", "RECENT", "Retention"]
