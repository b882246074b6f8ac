"""Graph exports: JSON contracts, Graphviz DOT, Mermaid, and the format registry.

The DOT and Mermaid tests render or parse the output with the real tools (``dot``, the
Mermaid parser under ``tests/tools/mermaid_check``) and check that every hostile name comes
out exactly as recorded, so an escaping bug fails here rather than in a user's browser.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from flowagent.reports.export import FORMATS, dot, jsonfmt, mermaid

T0 = 1_763_822_100_123_456_789  # 2025-11-22T14:35:00.123456789Z
MERMAID_CHECK = Path(__file__).resolve().parents[1] / "tools" / "mermaid_check"

# Names a program can really produce (exec, type(), setattr, non-ASCII identifiers) or that a
# corrupt store could hold. Each one broke at least one naive exporter.
HOSTILE = [
    '<script>alert("x")</script>',
    'q"uote \\back\\ {brace} |pipe| [sq] (par)',
    "line\nbreak\r\nand\rmore",
    "semi;colon #quot; #35; &lt; &amp; %%{init: {'theme':'dark'}}%% `tick`",
    "ünïcødé 漢字 🐍 end",
    "trailing backslash \\",
    "\\N \\G \\l escapes -->|x| --- ==>",
]


def node(call_id: int, parent: int | None, name: str, start: int, end: int, **extra: Any) -> dict:
    base = {
        "id": call_id,
        "parent_id": parent,
        "function_name": name,
        "caller": None,
        "input_shape": {"item_id": "int"},
        "output_shape": "dict{name:str,price:float}",
        "result_type": "success",
        "exception_type": None,
        "timestamp_start": T0 + start,
        "timestamp_end": T0 + end,
        "thread": 140234,
        "thread_name": "MainThread",
        "pid": 4242,
    }
    base.update(extra)
    return base


def session(nodes: list[dict], **extra: Any) -> dict:
    by_id = {n["id"]: n for n in nodes}
    for n in nodes:
        parent = by_id.get(n["parent_id"])
        n["caller"] = parent["function_name"] if parent else None
    graph = {
        "session_id": "a1b2c3d4e5f6-17",
        "run_id": "20261122-145500-ab12",
        "name": "GET /items/<int:item_id>",
        "result_type": "success",
        "complete": True,
        "nodes": sorted(nodes, key=lambda n: n["timestamp_start"]),
        "edges": [
            {"from": n["parent_id"], "to": n["id"], "branch": n["result_type"]}
            for n in nodes
            if n["parent_id"] in by_id
        ],
    }
    graph.update(extra)
    return graph


def shop_session() -> dict:
    return session([
        node(17, None, "shop.api:get_item", 0, 900_000, result_type="partial"),
        node(18, 17, "shop.db:load", 100_000, 300_000, result_type="error",
             exception_type="KeyError", output_shape=None),
        node(19, 17, "shop.db:fallback", 400_000, 800_000),
    ])


def hostile_session() -> dict:
    """Every hostile string as a function name, a parameter name, a shape and an exception."""
    nodes = [node(1, None, "app:" + HOSTILE[0], 0, 10_000_000, result_type="error",
                  exception_type=HOSTILE[1])]
    for i, text in enumerate(HOSTILE, start=2):
        nodes.append(node(
            i, 1, f"mod.{i}:{text}", i * 1000, i * 1000 + 500,
            input_shape={text: f"dict{{{text}:int}}", "x": "list[int|None]"},
            output_shape=f"{text}|None",
            result_type="error" if i % 2 else "success",
            exception_type=text if i % 2 else None,
        ))
    return session(nodes, name=HOSTILE[0] + HOSTILE[2], result_type="error")


def merged(names: list[str] | None = None) -> dict:
    names = names or ["shop.api:get_item", "shop.db:load", "shop.db:fallback"]
    nodes = []
    for i, name in enumerate(names):
        module, _, qualname = name.partition(":")
        nodes.append({
            "id": name, "function_name": name, "module": module, "qualname": qualname,
            "occurrences": 12 - i, "errors": 1 if i == 1 else 0, "partials": 2 if i == 0 else 0,
            "input_shape": {"item_id": "int"}, "output_shape": "dict{name:str}",
            "input_shapes": [{"shape": {"item_id": "int"}, "count": 12 - i}],
            "output_shapes": [{"shape": "dict{name:str}", "count": 11 - i}],
            "total_ns": 123_456, "self_ns": 100_000,
        })
    edges = [{"from": names[0], "to": names[1], "branch": "success", "frequency": 11},
             {"from": names[0], "to": names[1], "branch": "error", "frequency": 1}]
    edges += [{"from": names[0], "to": name, "branch": "partial", "frequency": 1000}
              for name in names[2:]]
    return {
        "graph_type": "merged", "runs": ["20261122-145500-ab12"], "nodes": nodes, "edges": edges,
        "stats": {"total_sessions": 10, "frequent_paths": [{"path": names[:2], "count": 3}],
                  "error_nodes": [names[1]]},
    }


def hostile_merged() -> dict:
    g = merged([f"{text}:{text}" for text in HOSTILE] + ["no_module_at_all" + HOSTILE[0]])
    for text, n in zip(HOSTILE, g["nodes"]):
        n["module"] = n["qualname"] = text  # the store splits at the module's real end
    return g


# ---------------------------------------------------------------------------------------------
# JSON


def test_iso_utc_keeps_microseconds_and_z() -> None:
    assert jsonfmt.iso_utc(T0) == "2025-11-22T14:35:00.123456Z"
    assert jsonfmt.iso_utc(0) == "1970-01-01T00:00:00.000000Z"
    assert jsonfmt.iso_utc(999) == "1970-01-01T00:00:00.000000Z"  # truncated, not rounded
    assert jsonfmt.iso_utc(None) is None


def test_session_json_contract() -> None:
    g = shop_session()
    out = jsonfmt.session_json(g)
    assert out["session_id"] == "a1b2c3d4e5f6-17"
    assert list(out)[-2:] == ["nodes", "edges"]
    first = out["nodes"][0]
    assert list(first) == [
        "id", "function_name", "caller", "input_shape", "output_shape", "result_type",
        "exception_type", "timestamp_start", "timestamp_end", "duration_ms", "thread",
        "thread_name", "pid", "parent_id", "cpu_ns",
    ]
    assert first["timestamp_start"] == "2025-11-22T14:35:00.123456Z"
    assert first["timestamp_end"] == "2025-11-22T14:35:00.124356Z"
    assert first["duration_ms"] == 0.9
    assert [n["id"] for n in out["nodes"]] == [17, 18, 19]
    assert out["nodes"][1]["exception_type"] == "KeyError"
    assert out["nodes"][1]["parent_id"] == 17
    assert out["edges"] == [
        {"from": 17, "to": 18, "branch": "error"},
        {"from": 17, "to": 19, "branch": "success"},
    ]


def test_session_json_does_not_alias_the_input() -> None:
    g = shop_session()
    before = copy.deepcopy(g)
    out = jsonfmt.session_json(g)
    out["nodes"][0]["input_shape"]["item_id"] = "mutated"
    assert g == before


def test_merged_json_contract_keeps_extra_fields() -> None:
    g = merged()
    before = copy.deepcopy(g)
    out = jsonfmt.merged_json(g)
    assert out["graph_type"] == "merged"
    assert out["runs"] == ["20261122-145500-ab12"]
    assert list(out["nodes"][0])[:5] == [
        "id", "function_name", "occurrences", "input_shape", "output_shape"]
    assert out["nodes"][0]["self_ns"] == 100_000  # extras kept
    assert out["nodes"][0]["input_shapes"] == [{"shape": {"item_id": "int"}, "count": 12}]
    assert out["edges"][0] == {"from": "shop.api:get_item", "to": "shop.db:load",
                               "branch": "success", "frequency": 11}
    assert out["stats"] == {"total_sessions": 10,
                            "frequent_paths": [{"path": ["shop.api:get_item", "shop.db:load"],
                                                "count": 3}],
                            "error_nodes": ["shop.db:load"]}
    out["nodes"][0]["input_shapes"].clear()
    assert g == before


def test_dumps_round_trips_hostile_text_unescaped() -> None:
    out = jsonfmt.session_json(hostile_session())
    text = jsonfmt.dumps(out)
    assert json.loads(text) == out
    assert "漢字 🐍" in text  # ensure_ascii=False
    assert text.startswith('{\n  "session_id"')  # indent=2, order kept
    names = {n["function_name"] for n in json.loads(text)["nodes"]}
    assert {f"mod.{i}:{t}" for i, t in enumerate(HOSTILE, start=2)} <= names


# ---------------------------------------------------------------------------------------------
# DOT


def render_svg(source: str, tmp_path: Path) -> ET.Element:
    """Run the real ``dot -Tsvg``; fail with Graphviz's own message if it rejects the input."""
    if shutil.which("dot") is None:
        pytest.skip("Graphviz `dot` is not on PATH (CI installs it: apt-get install graphviz)")
    path = tmp_path / "graph.dot"
    path.write_text(source, encoding="utf-8")
    done = subprocess.run(["dot", "-Tsvg", str(path)], capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    assert b"Warning" not in done.stderr and b"Error" not in done.stderr, done.stderr
    return ET.fromstring(done.stdout)


SVG = "{http://www.w3.org/2000/svg}"


def svg_groups(svg: ET.Element, kind: str) -> dict[str, list[str]]:
    """``{title: [text lines]}`` for the nodes, edges or clusters of a rendered graph."""
    out = {}
    for group in svg.iter(f"{SVG}g"):
        if group.get("class") == kind:
            title = group.findtext(f"{SVG}title")
            out[title] = [t.text or "" for t in group.iter(f"{SVG}text")]
    return out


def svg_count(svg: ET.Element, kind: str) -> int:
    return sum(1 for group in svg.iter(f"{SVG}g") if group.get("class") == kind)


def dot_lines(text: str) -> list[str]:
    """A recorded string as Graphviz shows it: line breaks split it into text lines."""
    return re.split("\r\n|\r|\n", text)


def test_session_dot_renders_and_shows_names_verbatim(tmp_path: Path) -> None:
    g = hostile_session()
    source = dot.session_dot(g)
    svg = render_svg(source, tmp_path)
    nodes = svg_groups(svg, "node")
    assert len(nodes) == len(g["nodes"])
    assert all(re.fullmatch(r"n\d+", title) for title in nodes)  # generated ids only
    shown = ["\n".join(lines) for lines in nodes.values()]
    for i, text in enumerate(HOSTILE, start=2):
        name = "\n".join(dot_lines(f"mod.{i}:{text}"))
        assert any(s.startswith(name + " (0.0005 ms)") for s in shown), (text, shown)
    assert svg_count(svg, "edge") == len(g["edges"])


def test_session_dot_label_shape_and_colours(tmp_path: Path) -> None:
    g = shop_session()
    wide = ",".join(f"k{i}:int" for i in range(40))
    g["nodes"][1]["input_shape"] = {"rows": f"list[dict{{{wide}}}]"}
    source = dot.session_dot(g)
    svg = render_svg(source, tmp_path)
    lines = list(svg_groups(svg, "node").values())
    assert lines[0] == ["shop.api:get_item (0.9 ms)",
                        "(item_id: int) → dict{name:str,price:float}"]
    assert lines[1][0] == "shop.db:load (0.2 ms)"
    shape_in, _, shape_out = lines[1][1].partition(" → ")
    assert len(shape_in) == 60 and shape_in.endswith("…") and shape_out == "…"
    assert lines[1][2] == "raised KeyError"
    assert re.search(r'n1 \[label="[^"]*".*color="#d62728"', source)  # error node red
    assert re.search(r'n0 \[label="[^"]*".*color="#ff7f0e"', source)  # partial node orange
    assert re.search(r"n0 -> n1 \[.*#d62728.*dashed", source)


def test_merged_dot_clusters_widths_and_hostile_names(tmp_path: Path) -> None:
    g = hostile_merged()
    source = dot.merged_dot(g)
    svg = render_svg(source, tmp_path)
    clusters = svg_groups(svg, "cluster")
    assert all(re.fullmatch(r"cluster_\d+", title) for title in clusters)
    cluster_titles = ["\n".join(lines) for lines in clusters.values()]
    nodes = ["\n".join(lines) for lines in svg_groups(svg, "node").values()]
    for text in HOSTILE:
        shown = "\n".join(dot_lines(text))
        assert shown in cluster_titles
        assert f"{shown}\n{shown}\n" in "\n".join(nodes) + "\n"
    assert any(n.startswith("no_module_at_all<script>") for n in nodes)
    assert svg_count(svg, "edge") == len(g["edges"])


def test_merged_dot_styles(tmp_path: Path) -> None:
    source = dot.merged_dot(merged())
    render_svg(source, tmp_path)
    assert re.search(r'subgraph "cluster_0" \{\s*graph \[label="shop.api"', source)
    assert re.search(r'subgraph "cluster_1" \{\s*graph \[label="shop.db"', source)
    assert 'n0 [label="get_item\\nshop.api\\n12 calls", color="#ff7f0e"' in source
    assert 'n1 [label="load\\nshop.db\\n11 calls, 1 error", color="#d62728"' in source
    widths = {m[0]: float(m[1]) for m in re.findall(r'label="(\d+)", penwidth=([\d.]+)', source)}
    assert widths["1"] == 1.0 and 1.0 < widths["11"] < widths["1000"] <= 8.0
    assert re.search(r'n0 -> n1 \[label="1", penwidth=1.00, color="#d62728".*dashed', source)
    assert re.search(r'n0 -> n2 \[label="1000".*color="#ff7f0e"', source)


def test_dot_escape() -> None:
    assert dot.escape('a"b\\c') == 'a\\"b\\\\c'
    assert dot.escape("x\ny") == "x\\ny"
    assert dot.escape("&lt;") == "&amp;lt;"  # Graphviz would otherwise show "<"
    assert dot.escape("bell\x07") == "bell\ufffd"


# ---------------------------------------------------------------------------------------------
# Mermaid


def mermaid_parse(diagrams: list[str]) -> tuple[int, list[dict]]:
    """Parse with the real Mermaid parser: (exit status, one result per diagram)."""
    if shutil.which("node") is None:
        pytest.skip("node is not on PATH (CI: apt-get install nodejs npm)")
    if not (MERMAID_CHECK / "node_modules" / "mermaid").is_dir():
        pytest.skip("Mermaid parser not installed: npm ci --prefix tests/tools/mermaid_check")
    done = subprocess.run(
        ["node", str(MERMAID_CHECK / "check.mjs")], input=json.dumps(diagrams),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, [json.loads(line) for line in done.stdout.splitlines()]


def mermaid_text(text: str) -> str:
    """A recorded string as a Mermaid label shows it (line breaks become spaces)."""
    return re.sub("\r\n|\r|\n", " ", text)


def test_mermaid_checker_can_fail() -> None:
    status, results = mermaid_parse([
        'flowchart TD\n  n0["ok"] --> n1["fine"]\n',
        'flowchart TD\n  n0["a"b"]\n',  # unescaped quote
        "flowchart TD\n  n0 --> n1\n  linkStyle 3 stroke:red\n",  # no such link
    ])
    assert status == 1
    assert [r["ok"] for r in results] == [True, False, False]


def test_session_mermaid_parses_and_round_trips_hostile_names() -> None:
    g = hostile_session()
    text = mermaid.session_mermaid(g)
    assert text.startswith("flowchart TD\n")
    status, [result] = mermaid_parse([text])
    assert status == 0, result
    nodes = result["nodes"]
    assert len(nodes) == len(g["nodes"]) and all(re.fullmatch(r"n\d+", k) for k in nodes)
    labels = list(nodes.values())
    for i, raw in enumerate(HOSTILE, start=2):
        lines = next(label.split("\n") for label in labels
                     if label.startswith(f"mod.{i}:"))
        assert lines[0] == mermaid_text(f"mod.{i}:{raw}")
        assert lines[1] == "0.0005 ms"
        if i % 2:
            assert lines[3] == "raised " + mermaid_text(raw)
    assert len(result["edges"]) == len(g["edges"])
    red = [e for e in result["edges"] if any("#d62728" in s for s in e["style"])]
    assert len(red) == sum(1 for e in g["edges"] if e["branch"] == "error")


def test_session_mermaid_simple_structure() -> None:
    text = mermaid.session_mermaid(shop_session())
    status, [result] = mermaid_parse([text])
    assert status == 0, result
    assert result["nodes"] == {
        "n0": "shop.api:get_item\n0.9 ms\n(item_id: int) → dict{name:str,price:float}",
        "n1": "shop.db:load\n0.2 ms\n(item_id: int) → …\nraised KeyError",
        "n2": "shop.db:fallback\n0.4 ms\n(item_id: int) → dict{name:str,price:float}",
    }
    assert [(e["start"], e["end"], e["stroke"]) for e in result["edges"]] == [
        ("n0", "n1", "dotted"), ("n0", "n2", "normal")]
    assert "class n1 error" in text and "class n0 partial" in text


def test_merged_mermaid_parses_with_subgraphs_and_frequencies() -> None:
    texts = [mermaid.merged_mermaid(merged()), mermaid.merged_mermaid(hostile_merged())]
    assert all(t.startswith("flowchart LR\n") for t in texts)
    status, (plain, hostile) = mermaid_parse(texts)
    assert status == 0, (plain, hostile)
    assert [(s["id"], s["title"], s["nodes"]) for s in plain["subgraphs"]] == [
        ("m0", "shop.api", ["n0"]), ("m1", "shop.db", ["n1", "n2"])]
    assert plain["nodes"]["n1"] == "load\n11 calls, 1 error"
    assert [(e["text"], e["stroke"]) for e in plain["edges"]] == [
        ("11", "normal"), ("1", "dotted"), ("1000", "dotted")]
    assert any("#d62728" in s for s in plain["edges"][1]["style"])
    assert any("#ff7f0e" in s for s in plain["edges"][2]["style"])

    titles = [s["title"] for s in hostile["subgraphs"]]
    assert all(re.fullmatch(r"m\d+", s["id"]) for s in hostile["subgraphs"])
    for raw in HOSTILE:
        assert mermaid_text(raw) in titles
        assert f"{mermaid_text(raw)}\n" in "\n".join(hostile["nodes"].values())


def test_mermaid_escape_leaves_no_syntax() -> None:
    escaped = mermaid.escape("".join(HOSTILE))
    assert not set(escaped) & set('"<>{}[]|`\n\r%')
    assert re.sub(r"#\w+;", "", escaped).count("#") == 0
    assert re.sub(r"#\w+;", "", escaped).count(";") == 0


# ---------------------------------------------------------------------------------------------
# Registry


def test_formats_registry() -> None:
    assert set(FORMATS) == {"json", "dot", "mermaid", "chrome", "speedscope", "collapsed"}
    assert FORMATS["json"].inputs == {"session", "merged"}
    assert FORMATS["dot"].inputs == {"session", "merged"}
    assert FORMATS["chrome"].inputs == {"session", "sessions"}
    assert FORMATS["collapsed"].extension == ".collapsed.txt"
    g, m = hostile_session(), hostile_merged()
    for name, fmt in FORMATS.items():
        assert fmt.name == name and fmt.extension.startswith(".")
        if fmt.session:
            assert isinstance(fmt.session(g), str) and fmt.session(g)
        if fmt.merged:
            assert isinstance(fmt.merged(m), str) and fmt.merged(m)
    assert json.loads(FORMATS["json"].session(g))["session_id"] == g["session_id"]
    assert json.loads(FORMATS["chrome"].session(g))["traceEvents"]
