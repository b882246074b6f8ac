"""The merged graph as the architecture page draws it: filtered, collapsed, grouped.

Input is the merged-graph contract (``model.graph.to_contract``). Filters apply to functions
first (error paths, module, minimum frequency), then functions collapse to the chosen level:

* ``function``: one node per function, inside class and module boxes;
* ``class``: methods fold into their class, nested functions into their outer function;
* ``module``: one node per module, inside package boxes;
* ``package``: one node per parent package (``shop.cart`` → ``shop``).

Edges between collapsed nodes add up their counts per result; calls inside one collapsed node
become its ``internal_calls`` instead of a loop. The layout itself is the browser's job.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

LEVELS = ("function", "class", "module", "package")
# The page opens at the finest level with at most this many nodes: a layered picture of ~40
# boxes fits a laptop screen with 11 px labels; past that it is a poster, not a map. The page
# steps further up when the laid-out picture still does not fit (graph.js), and the reader
# opens boxes in place from there.
AUTO_NODE_LIMIT = 40
OPEN_LIMIT = 200  # opened boxes per view (query arguments are untrusted)
# Modules whose calls are synthetic session roots: where requests and imports enter.
ENTRY_MODULES = ("<request>", "<import>")


def package_of(module: str) -> str:
    return module.rsplit(".", 1)[0] if "." in module else module


def scope_of(qualname: str) -> str:
    """The class (or outer function) a qualname belongs to: ``Cart.add`` → ``Cart``,
    ``outer.<locals>.inner`` → ``outer``, ``helper`` → ``helper``."""
    return qualname.split(".", 1)[0]


def group_of(node: dict[str, Any], level: str) -> str:
    module = node.get("module") or ""
    if level == "function":
        return node["id"]
    if level == "class":
        return f"{module}:{scope_of(node.get('qualname') or node['id'])}"
    if level == "module":
        return module
    return package_of(module)


def auto_level(contract: dict[str, Any]) -> str:
    """The finest level whose picture has at most ``AUTO_NODE_LIMIT`` nodes (else the
    coarsest one that still shows more than one node)."""
    nodes = contract["nodes"]
    previous = "function"
    for level in LEVELS:
        count = len({group_of(n, level) for n in nodes})
        if count <= AUTO_NODE_LIMIT:
            return level if count > 1 or level == "function" else previous
        previous = level
    return "package"


def finer(level: str) -> str:
    return LEVELS[max(LEVELS.index(level) - 1, 0)]


def effective_group(node: dict[str, Any], level: str, opened: frozenset[str],
                    class_sizes: Mapping[str, int] | None = None) -> tuple[str, str]:
    """The group a function falls in when the groups in ``opened`` are drawn open: a module
    opened at module level shows its classes, an opened class its methods. A "class" of one
    function (a plain function, or a class with one recorded method) is that function."""
    while True:
        gid = group_of(node, level)
        if level == "class" and class_sizes is not None and class_sizes.get(gid, 0) <= 1:
            return node["id"], "function"
        if level == "function" or gid not in opened:
            return gid, level
        level = finer(level)


def entry_kind(node: dict[str, Any]) -> str | None:
    """How a function enters the program, if it does: ``request``, ``import``, ``main``,
    ``test`` or ``root`` (any other function that started sessions)."""
    if not node.get("roots"):
        return None
    module = node.get("module") or ""
    qual = node.get("qualname") or ""
    if module == "<request>" or node["id"].startswith("<request>:"):
        return "request"
    if module == "<import>" or node["id"].startswith("<import>:"):
        return "import"
    if module == "__main__":
        return "main"
    if qual.rsplit(".", 1)[-1].startswith("test") or module.rsplit(".", 1)[-1].startswith("test"):
        return "test"
    return "root"


def options_from(args: Mapping[str, str], contract: dict[str, Any]) -> dict[str, Any]:
    """``view_graph`` keyword arguments from a query string (``level``, ``errors``,
    ``module``, ``min_freq``); anything malformed falls back to its default."""
    level = args.get("level") or auto_level(contract)
    opened = frozenset(o.strip()[:300] for o in args.getlist("open")[:OPEN_LIMIT] if o.strip()) \
        if hasattr(args, "getlist") else frozenset()
    try:
        min_frequency = max(0, min(int(args.get("min_freq") or 0), 10**12))
    except ValueError:
        min_frequency = 0
    return {"level": level if level in LEVELS else "function",
            "errors_only": args.get("errors") in ("1", "true", "on"),
            "module": (args.get("module") or "").strip()[:300] or None,
            "min_frequency": min_frequency, "opened": opened,
            "auto": not args.get("level")}


def in_module(module: str, wanted: str) -> bool:
    return module == wanted or module.startswith(wanted + ".")


def filter_functions(contract: dict[str, Any], *, errors_only: bool = False,
                     module: str | None = None, min_frequency: int = 0
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Function nodes and (per-branch) edges that pass the filters."""
    nodes = {n["id"]: n for n in contract["nodes"]}
    edges = list(contract["edges"])
    if module:
        nodes = {k: n for k, n in nodes.items() if in_module(n.get("module") or "", module)}
    if min_frequency > 1:
        # Edges by their total over all results; a function stays when it is called that
        # often or still has such an edge (one call of it may call another many times).
        totals: dict[tuple[str, str], int] = {}
        for e in edges:
            totals[(e["from"], e["to"])] = totals.get((e["from"], e["to"]), 0) + e["frequency"]
        edges = [e for e in edges if totals[(e["from"], e["to"])] >= min_frequency]
        touched = {x for e in edges for x in (e["from"], e["to"])}
        nodes = {k: n for k, n in nodes.items()
                 if n["occurrences"] >= min_frequency or k in touched}
    if errors_only:
        # An error path runs from a root down to the call that raised: every call on it
        # ended in "error" (it propagated) or "partial" (it was handled somewhere below).
        pairs = {(e["from"], e["to"]) for e in edges if e["branch"] in ("error", "partial")}
        edges = [e for e in edges if (e["from"], e["to"]) in pairs]
        keep = {x for pair in pairs for x in pair}
        keep |= {k for k, n in nodes.items() if n["errors"] or n["partials"]}
        nodes = {k: n for k, n in nodes.items() if k in keep}
    edges = [e for e in edges if e["from"] in nodes and e["to"] in nodes]
    return list(nodes.values()), edges


def _box_parents(node: dict[str, Any], level: str, boxes: dict[str, dict[str, Any]]
                 ) -> str | None:
    """Register the compound boxes a node sits in at ``level``; returns its direct box."""
    module = node.get("module") or ""
    if level in ("function", "class"):
        pkg_id = "p:" + package_of(module)
        boxes.setdefault(pkg_id, {"id": pkg_id, "label": package_of(module), "kind": "package",
                                  "parent": None})
    if level == "function":
        mod_id = "m:" + module
        boxes.setdefault(mod_id, {"id": mod_id, "label": module, "kind": "module",
                                  "parent": pkg_id})
        qual = node.get("qualname") or ""
        if "." in qual and node.get("kind") in ("method", "property", "classmethod",
                                                 "staticmethod"):
            cls_id = f"c:{module}:{scope_of(qual)}"
            boxes.setdefault(cls_id, {"id": cls_id, "label": scope_of(qual), "kind": "class",
                                      "parent": mod_id})
            return cls_id
        return mod_id
    if level == "class":
        mod_id = "m:" + module
        boxes.setdefault(mod_id, {"id": mod_id, "label": module, "kind": "module",
                                  "parent": pkg_id})
        return mod_id
    if level == "module":
        pkg = package_of(module)
        pkg_id = "p:" + pkg
        boxes.setdefault(pkg_id, {"id": pkg_id, "label": pkg, "kind": "package",
                                  "parent": None})
        return pkg_id
    return None


def view_graph(contract: dict[str, Any], *, level: str = "function", errors_only: bool = False,
               module: str | None = None, min_frequency: int = 0,
               opened: frozenset[str] = frozenset(), auto: bool = False) -> dict[str, Any]:
    """Nodes, compound boxes and edges ready for the page's graph library.

    ``opened`` holds groups of ``level`` (or of a finer level inside an opened one) drawn as
    open boxes around their members instead of as one node; ``auto`` says the level was
    chosen by :func:`auto_level`, so the page may still step up when the picture is too big.
    """
    fnodes, fedges = filter_functions(contract, errors_only=errors_only, module=module,
                                      min_frequency=min_frequency)
    class_sizes: dict[str, int] = {}
    if opened and level != "function":
        for n in fnodes:
            key = group_of(n, "class")
            class_sizes[key] = class_sizes.get(key, 0) + 1
    placed = {n["id"]: effective_group(n, level, opened, class_sizes if opened else None)
              for n in fnodes}
    group = {k: gid for k, (gid, _lv) in placed.items()}
    groups: dict[str, dict[str, Any]] = {}
    boxes: dict[str, dict[str, Any]] = {}
    for n in fnodes:
        gid, lv = placed[n["id"]]
        g = groups.get(gid)
        if g is None:
            label = n.get("qualname") or n["id"] if lv == "function" else (
                gid.split(":", 1)[1] if lv == "class" else gid)
            if lv == "module" and "." in gid:
                label = gid.rsplit(".", 1)[1]  # its package is the box around it
            g = groups[gid] = {
                "id": gid, "label": label, "level": lv, "module": n.get("module") or "",
                "kind": n.get("kind") if lv == "function" else lv,
                "parent": _box_parents(n, lv, boxes), "members": [],
                "calls": 0, "errors": 0, "partials": 0, "roots": 0, "total_ns": 0,
                "self_ns": 0, "internal_calls": 0, "entry": None,
            }
        g["members"].append(n["id"])
        g["entry"] = g["entry"] or entry_kind(n)
        for k in ("errors", "partials", "roots", "self_ns"):
            g[k] += n[k]
        g["calls"] += n["occurrences"]
        g["total_ns"] += n["total_ns"]
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for e in fedges:
        a, b = group[e["from"]], group[e["to"]]
        if a == b and groups[a]["level"] != "function":
            groups[a]["internal_calls"] += e["frequency"]
            continue
        edge = edges.get((a, b))
        if edge is None:
            edge = edges[(a, b)] = {"id": f"e{len(edges)}", "source": a, "target": b,
                                    "frequency": 0, "branches": {}}
        edge["frequency"] += e["frequency"]
        edge["branches"][e["branch"]] = edge["branches"].get(e["branch"], 0) + e["frequency"]
    for g in groups.values():
        if len(g["members"]) > 1:
            # Summing members' totals would count a member called by another member twice,
            # and the aggregates do not split a total by caller: only self time adds up.
            g["total_ns"] = None
    max_freq = max((e["frequency"] for e in edges.values()), default=1)
    for e in edges.values():
        e["errors"] = e["branches"].get("error", 0)
        e["partials"] = e["branches"].get("partial", 0)
        # Width grows with the log of the count: 1 call and 10 000 calls stay both visible.
        e["width"] = round(1 + 7 * math.log1p(e["frequency"]) / math.log1p(max_freq), 2)
    used_boxes = _unique_ids(_used_boxes(groups, boxes), groups)
    for box in used_boxes.values():
        box["opened"] = _box_group(box) in opened
    return {
        "level": level, "levels": list(LEVELS), "auto": auto,
        "opened": sorted(opened),
        "filters": {"errors_only": errors_only, "module": module or "",
                    "min_frequency": min_frequency},
        "nodes": sorted(groups.values(), key=lambda g: g["id"]),
        "boxes": sorted(used_boxes.values(), key=lambda b: b["id"]),
        "edges": sorted(edges.values(), key=lambda e: (e["source"], e["target"])),
        "total_functions": len(contract["nodes"]), "shown_functions": len(fnodes),
        "total_sessions": contract.get("stats", {}).get("total_sessions", 0),
    }


def _box_group(box: dict[str, Any]) -> str:
    """The group a box stands for when it is closed: ``m:shop.cart`` → ``shop.cart``,
    ``c:shop.cart:Cart`` → ``shop.cart:Cart``, ``p:shop`` → ``shop``."""
    return box["id"].rstrip("'").split(":", 1)[1]


def _used_boxes(groups: dict[str, dict[str, Any]], boxes: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Boxes that help reading: a class box only when it holds two or more methods, a package
    box around modules only when it holds two or more of them (else it adds a frame, no
    information)."""
    def drop(kind: str) -> None:
        members: dict[str, int] = {}
        for item in [*groups.values(), *boxes.values()]:
            if item["parent"]:
                members[item["parent"]] = members.get(item["parent"], 0) + 1
        for box_id, box in list(boxes.items()):
            if box["kind"] == kind and members.get(box_id, 0) < 2:
                for item in [*groups.values(), *boxes.values()]:
                    if item["parent"] == box_id:
                        item["parent"] = box["parent"]
                del boxes[box_id]

    drop("class")
    drop("package")
    if any(b["kind"] == "module" for b in boxes.values()):
        packages = [b for b in boxes.values() if b["kind"] == "package"]
        if len(packages) < 2:  # one package around everything is just a frame
            for box in packages:
                for item in [*groups.values(), *boxes.values()]:
                    if item["parent"] == box["id"]:
                        item["parent"] = None
                del boxes[box["id"]]
    return boxes


def _unique_ids(boxes: dict[str, dict[str, Any]], groups: dict[str, dict[str, Any]]
                ) -> dict[str, dict[str, Any]]:
    """Box ids ("m:shop") must not clash with node ids: a store may hold a function that a
    module "m" calls "shop". A clashing box gets a suffix, and its members follow it."""
    taken = set(groups)
    for old in [b for b in boxes if b in taken]:
        new = old
        while new in taken or new in boxes:
            new += "'"
        box = boxes.pop(old)
        box["id"] = new
        boxes[new] = box
        for item in [*groups.values(), *boxes.values()]:
            if item["parent"] == old:
                item["parent"] = new
    return boxes


def modules(contract: dict[str, Any]) -> list[str]:
    """Modules and their parent packages, for the module filter."""
    names: set[str] = set()
    for n in contract["nodes"]:
        module = n.get("module") or ""
        parts = module.split(".")
        for i in range(1, len(parts) + 1):
            names.add(".".join(parts[:i]))
    return sorted(names)


def function_details(contract: dict[str, Any], name: str) -> dict[str, Any] | None:
    """One function of the merged graph with its callers and callees (counts per result)."""
    node = next((n for n in contract["nodes"] if n["id"] == name), None)
    if node is None:
        return None

    def side(key: str, other: str) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for e in contract["edges"]:
            if e[key] == name:
                d = out.setdefault(e[other], {"function_name": e[other], "frequency": 0,
                                              "branches": {}})
                d["frequency"] += e["frequency"]
                d["branches"][e["branch"]] = d["branches"].get(e["branch"], 0) + e["frequency"]
        return sorted(out.values(), key=lambda d: (-d["frequency"], d["function_name"]))

    details = dict(node)
    details["avg_ns"] = node["total_ns"] // node["occurrences"] if node["occurrences"] else None
    details["callers"] = side("to", "from")
    details["callees"] = side("from", "to")
    return details
