"""The merged graph as the architecture page draws it: filtered, collapsed, grouped.

Input is the merged-graph contract (``sidecar.graph.to_contract``). Filters apply to functions
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
# Over this many nodes the page opens one level up: 300 functions in one picture is a poster,
# not a map; from a module the reader drills down to its functions (the module filter).
AUTO_FUNCTION_LIMIT = 120
AUTO_CLASS_LIMIT = 80


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
    nodes = contract["nodes"]
    if len(nodes) <= AUTO_FUNCTION_LIMIT:
        return "function"
    if len({group_of(n, "class") for n in nodes}) <= AUTO_CLASS_LIMIT:
        return "class"
    return "module"


def options_from(args: Mapping[str, str], contract: dict[str, Any]) -> dict[str, Any]:
    """``view_graph`` keyword arguments from a query string (``level``, ``errors``,
    ``module``, ``min_freq``); anything malformed falls back to its default."""
    level = args.get("level") or auto_level(contract)
    try:
        min_frequency = max(0, min(int(args.get("min_freq") or 0), 10**12))
    except ValueError:
        min_frequency = 0
    return {"level": level if level in LEVELS else "function",
            "errors_only": args.get("errors") in ("1", "true", "on"),
            "module": (args.get("module") or "").strip()[:300] or None,
            "min_frequency": min_frequency}


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
               module: str | None = None, min_frequency: int = 0) -> dict[str, Any]:
    """Nodes, compound boxes and edges ready for the page's graph library."""
    fnodes, fedges = filter_functions(contract, errors_only=errors_only, module=module,
                                      min_frequency=min_frequency)
    group = {n["id"]: group_of(n, level) for n in fnodes}
    groups: dict[str, dict[str, Any]] = {}
    boxes: dict[str, dict[str, Any]] = {}
    for n in fnodes:
        gid = group[n["id"]]
        g = groups.get(gid)
        if g is None:
            label = n.get("qualname") or n["id"] if level == "function" else (
                gid.split(":", 1)[1] if level == "class" else gid)
            if level == "module" and "." in gid:
                label = gid.rsplit(".", 1)[1]  # its package is the box around it
            g = groups[gid] = {
                "id": gid, "label": label, "level": level, "module": n.get("module") or "",
                "kind": n.get("kind") if level == "function" else level,
                "parent": _box_parents(n, level, boxes), "members": [],
                "calls": 0, "errors": 0, "partials": 0, "roots": 0, "total_ns": 0,
                "self_ns": 0, "internal_calls": 0,
            }
        g["members"].append(n["id"])
        for k in ("errors", "partials", "roots", "self_ns"):
            g[k] += n[k]
        g["calls"] += n["occurrences"]
        g["total_ns"] += n["total_ns"]
    edges: dict[tuple[str, str], dict[str, Any]] = {}
    for e in fedges:
        a, b = group[e["from"]], group[e["to"]]
        if a == b and level != "function":
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
    return {
        "level": level, "levels": list(LEVELS),
        "filters": {"errors_only": errors_only, "module": module or "",
                    "min_frequency": min_frequency},
        "nodes": sorted(groups.values(), key=lambda g: g["id"]),
        "boxes": sorted(used_boxes.values(), key=lambda b: b["id"]),
        "edges": sorted(edges.values(), key=lambda e: (e["source"], e["target"])),
        "total_functions": len(contract["nodes"]), "shown_functions": len(fnodes),
        "total_sessions": contract.get("stats", {}).get("total_sessions", 0),
    }


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
    if any(b["kind"] == "module" for b in boxes.values()):
        drop("package")
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
