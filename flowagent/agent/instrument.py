"""Definition-time instrumentation by rewriting function *bodies* (the ``wrap`` backend).

Every ``def`` of a selected module keeps its function object; only its body changes::

    def f(a, b):                                  def f(a, b):
        \"\"\"doc\"\"\"                                   \"\"\"doc\"\"\"
        if a: return b                    →          __fa_f__ = __fa_enter__(17, a, b)
        x = yield a                                  __fa_rv__ = None
                                                     try:
                                                         if a: __fa_rv__ = b; return __fa_rv__
                                                         x = __fa_resume__(__fa_f__, (yield __fa_suspend__(__fa_f__, a)))
                                                     except BaseException:
                                                         __fa_error__(__fa_f__); raise
                                                     finally:
                                                         __fa_leave__(__fa_f__, __fa_rv__)

Why bodies and not wrappers: the function object stays the user's own, so decorators that
run while the module executes (``@app.route``, dispatch tables, ``from x import f``) capture
an instrumented function, and ``inspect.signature``, ``iscoroutinefunction``, pickling by
reference, ``functools.wraps`` chains and descriptors (property, classmethod, staticmethod)
all behave exactly as before. There is no extra Python frame per call either: a wrapper costs
a whole frame, the rewrite costs two helper calls.

The helpers are installed in :mod:`builtins` (dunder names, so no user name is shadowed and
``from m import *`` never exports them), which also keeps functions working whose globals a
library swaps (``types.FunctionType(code, other_globals)``).

Source positions of the user's nodes are untouched, so tracebacks show the same lines.
"""

from __future__ import annotations

import ast
from typing import Callable

F = "__fa_f__"
RV = "__fa_rv__"
HELPERS = ("__fa_enter__", "__fa_leave__", "__fa_error__", "__fa_suspend__",
           "__fa_asuspend__", "__fa_resume__", "__fa_delegate__")

Register = Callable[[str, str, str, int, tuple, str], int]
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _name(id_: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(id=id_, ctx=ctx or ast.Load())


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=[])


class _OwnScope(ast.NodeTransformer):
    """Rewrites ``return`` and ``yield`` of one function, not of the scopes nested in it."""

    def __init__(self, is_async: bool) -> None:
        self.is_async = is_async
        self.has_yield = False

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            return node
        return super().generic_visit(node)

    def visit_Return(self, node: ast.Return) -> list[ast.stmt]:
        value = self.visit(node.value) if node.value is not None else ast.Constant(None)
        assign = ast.Assign(targets=[_name(RV, ast.Store())], value=value)
        ast.copy_location(assign, node)
        ret = ast.Return(value=_name(RV))
        ast.copy_location(ret, node)
        return [assign, ret]

    def visit_Yield(self, node: ast.Yield) -> ast.expr:
        self.has_yield = True
        value = self.visit(node.value) if node.value is not None else ast.Constant(None)
        susp = "__fa_asuspend__" if self.is_async else "__fa_suspend__"
        inner = ast.Yield(value=_call(susp, _name(F), value))
        return ast.copy_location(_call("__fa_resume__", _name(F), ast.copy_location(inner, node)),
                                 node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.expr:
        self.has_yield = True
        inner = ast.YieldFrom(value=_call("__fa_delegate__", _name(F), self.visit(node.value)))
        return ast.copy_location(_call("__fa_resume__", _name(F), ast.copy_location(inner, node)),
                                 node)


def _has_yield(fn: ast.AST) -> bool:
    stack = list(ast.iter_child_nodes(fn))
    while stack:
        n = stack.pop()
        if isinstance(n, (ast.Yield, ast.YieldFrom)):
            return True
        if not isinstance(n, _SCOPES):
            stack.extend(ast.iter_child_nodes(n))
    return False


def _params(args: ast.arguments) -> tuple[list[str], list[str]]:
    """(names as passed to the recorder, display names for shapes)."""
    names: list[str] = []
    shown: list[str] = []
    for a in (*args.posonlyargs, *args.args):
        names.append(a.arg)
        shown.append(a.arg)
    if args.vararg:
        names.append(args.vararg.arg)
        shown.append("*" + args.vararg.arg)
    for a in args.kwonlyargs:
        names.append(a.arg)
        shown.append(a.arg)
    if args.kwarg:
        names.append(args.kwarg.arg)
        shown.append("**" + args.kwarg.arg)
    return names, shown


def _kind(node: ast.FunctionDef | ast.AsyncFunctionDef, in_class: bool, gen: bool) -> str:
    decos = {d.id if isinstance(d, ast.Name) else d.attr if isinstance(d, ast.Attribute) else ""
             for d in node.decorator_list}
    if isinstance(node, ast.AsyncFunctionDef):
        base = "async_generator" if gen else "async"
    else:
        base = "generator" if gen else "function"
    for special in ("staticmethod", "classmethod", "property"):
        if special in decos:
            return special if base == "function" else f"{special}:{base}"
    if {"setter", "getter", "deleter"} & decos:
        return "property"
    if in_class:
        return "method" if base == "function" else f"method:{base}"
    return base


def _locate(nodes: list[ast.stmt], line: int, col: int) -> None:
    for top in nodes:
        for n in ast.walk(top):
            if "lineno" in n._attributes:
                n.lineno = n.end_lineno = line  # type: ignore[attr-defined]
                n.col_offset = n.end_col_offset = col  # type: ignore[attr-defined]


class Instrumenter:
    """Rewrites every (selected) function definition of one module's AST."""

    def __init__(self, module: str, filename: str, register: Register, nested: bool = True) -> None:
        self.module = module
        self.filename = filename
        self.register = register
        self.nested = nested
        self.count = 0

    def transform(self, tree: ast.Module) -> ast.Module:
        self._children(tree, "", in_function=False, in_class=False)
        return tree

    def _children(self, node: ast.AST, prefix: str, in_function: bool, in_class: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                qual = prefix + child.name
                self._children(child, qual + ".<locals>.", True, False)
                if not in_function or self.nested:
                    self._instrument(child, qual, in_class)
            elif isinstance(child, ast.ClassDef):
                self._children(child, prefix + child.name + ".", in_function, True)
            elif isinstance(child, ast.Lambda):
                continue
            elif isinstance(child, (ast.stmt, ast.excepthandler, ast.match_case)):
                self._children(child, prefix, in_function, in_class)

    def _instrument(self, node: ast.FunctionDef | ast.AsyncFunctionDef, qual: str,
                    in_class: bool) -> None:
        is_async = isinstance(node, ast.AsyncFunctionDef)
        gen = _has_yield(node)
        names, shown = _params(node.args)
        fid = self.register(self.module, qual, self.filename, node.lineno, tuple(shown),
                            _kind(node, in_class, gen))
        body = node.body
        doc: list[ast.stmt] = []
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc, body = body[:1], body[1:]
        rewriter = _OwnScope(is_async)
        new_body: list[ast.stmt] = []
        for stmt in body:
            out = rewriter.visit(stmt)
            new_body.extend(out if isinstance(out, list) else [out])
        if not new_body:
            new_body = [ast.Pass()]
            _locate(new_body, node.lineno, node.col_offset)
        pre = [
            ast.Assign(targets=[_name(F, ast.Store())],
                       value=_call("__fa_enter__", ast.Constant(fid), *(_name(n) for n in names))),
            ast.Assign(targets=[_name(RV, ast.Store())], value=ast.Constant(None)),
        ]
        handler = ast.ExceptHandler(type=_name("BaseException"), name=None,
                                    body=[ast.Expr(_call("__fa_error__", _name(F))), ast.Raise()])
        final = [ast.Expr(_call("__fa_leave__", _name(F), _name(RV)))]
        # Injected code sits on the `def` line: a debugger stepping in or a coverage tool
        # sees no foreign line numbers.
        _locate(pre, node.lineno, node.col_offset)
        _locate([handler], node.lineno, node.col_offset)
        _locate(final, node.lineno, node.col_offset)
        trystmt = ast.Try(body=new_body, handlers=[handler], orelse=[], finalbody=final)
        trystmt.lineno = trystmt.end_lineno = node.lineno
        trystmt.col_offset = trystmt.end_col_offset = node.col_offset
        node.body = doc + pre + [trystmt]
        self.count += 1


def instrument_source(source: str | bytes, filename: str, module: str, register: Register,
                      nested: bool = True) -> tuple[object, int]:
    """Parse, instrument and compile a module; returns (code object, functions instrumented)."""
    tree = ast.parse(source, filename)
    inst = Instrumenter(module, filename, register, nested)
    inst.transform(tree)
    ast.fix_missing_locations(tree)  # helper calls inside rewritten returns/yields
    return compile(tree, filename, "exec", dont_inherit=True), inst.count
