"""Definition-time instrumentation by rewriting function *bodies* (the ``wrap`` backend).

Every ``def`` of a selected module keeps its function object; only its body changes::

    def f(a, b):                          def f(a, b):
        \"\"\"doc\"\"\"                              \"\"\"doc\"\"\"
        if a:                                 with __fa_call__(17, a, b):
            return g(b)           →               if a:
        return None                                   return __fa_ret__(17, g(b))
                                                  return __fa_ret__(17, None)

and a generator's ``x = yield v`` becomes
``x = __fa_resume__(__fa_own__(17), (yield __fa_suspend__(17, v)))`` inside
``with __fa_gcall__(17, ...)``, so the consumer is the current call while the generator is
suspended, and a call spans the generator's whole iteration.

Why bodies and not wrappers: the function object stays the user's own, so decorators that
run while the module executes (``@app.route``, dispatch tables, ``from x import f``) capture
an instrumented function, and ``inspect.signature``, ``iscoroutinefunction``, pickling by
reference, ``functools.wraps`` chains and descriptors (property, classmethod, staticmethod)
all behave exactly as before. There is no extra Python frame per call either.

Why ``with`` and no local variable: ``locals()``, ``co_varnames`` and ``f_locals`` stay the
program's own, and the context manager's ``__exit__`` is found on the object, not by name,
so a generator finalised at interpreter shutdown (when builtins are gone) still closes
cleanly. The helpers are installed in :mod:`builtins` under dunder names, so no user name is
shadowed, ``from m import *`` never exports them, and functions whose globals a library swaps
keep working.

Source positions of the user's nodes are untouched, so tracebacks show the same lines.
"""

from __future__ import annotations

import ast
from typing import Callable

HELPERS = ("__fa_call__", "__fa_gcall__", "__fa_ret__", "__fa_own__", "__fa_suspend__",
           "__fa_asuspend__", "__fa_resume__", "__fa_delegate__")

Register = Callable[[str, str, str, int, tuple, str], int]
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


def _name(id_: str, ctx: ast.expr_context | None = None) -> ast.Name:
    return ast.Name(id=id_, ctx=ctx or ast.Load())


def _call(fn: str, *args: ast.expr) -> ast.Call:
    return ast.Call(func=_name(fn), args=list(args), keywords=[])


class _OwnScope(ast.NodeTransformer):
    """Rewrites ``return`` and ``yield`` of one function, not of the scopes nested in it."""

    def __init__(self, fid: int, is_async: bool) -> None:
        self.fid = fid
        self.is_async = is_async

    def generic_visit(self, node: ast.AST) -> ast.AST:
        if isinstance(node, _SCOPES):
            return node
        return super().generic_visit(node)

    def _fid(self) -> ast.Constant:
        return ast.Constant(self.fid)

    def visit_Return(self, node: ast.Return) -> ast.Return:
        if node.value is None:
            return node  # the output stays None, which is what a frame starts with
        node.value = ast.copy_location(_call("__fa_ret__", self._fid(), self.visit(node.value)),
                                       node.value)
        return node

    def visit_Yield(self, node: ast.Yield) -> ast.expr:
        value = self.visit(node.value) if node.value is not None else ast.Constant(None)
        susp = "__fa_asuspend__" if self.is_async else "__fa_suspend__"
        inner = ast.copy_location(ast.Yield(value=_call(susp, self._fid(), value)), node)
        return ast.copy_location(
            _call("__fa_resume__", _call("__fa_own__", self._fid()), inner), node)

    def visit_YieldFrom(self, node: ast.YieldFrom) -> ast.expr:
        inner = ast.YieldFrom(value=_call("__fa_delegate__", self._fid(), self.visit(node.value)))
        return ast.copy_location(
            _call("__fa_resume__", _call("__fa_own__", self._fid()),
                  ast.copy_location(inner, node)), node)


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
        kind = _kind(node, in_class, gen)
        accessor = _accessor(node)
        if accessor:
            # A property's setter/deleter shares its getter's qualname: keep them apart.
            qual = f"{qual}.{accessor}"
        fid = self.register(self.module, qual, self.filename, node.lineno, tuple(shown), kind)
        body = node.body
        doc: list[ast.stmt] = []
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            doc, body = body[:1], body[1:]
        rewriter = _OwnScope(fid, is_async)
        new_body = [rewriter.visit(stmt) for stmt in body] or [ast.Pass()]
        helper = "__fa_gcall__" if gen else "__fa_call__"
        item = ast.withitem(
            context_expr=_call(helper, ast.Constant(fid), *(_name(n) for n in names)),
            optional_vars=None)
        wrapper: ast.stmt = ast.With(items=[item], body=new_body)
        # Injected code sits on the `def` line: a debugger stepping in or a coverage tool
        # sees no foreign line numbers.
        _locate_shallow(wrapper, node.lineno, node.col_offset)
        node.body = doc + [wrapper]
        self.count += 1


def _accessor(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    for d in node.decorator_list:
        if isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter"):
            return d.attr
    return ""


def _locate_shallow(stmt: ast.With, line: int, col: int) -> None:
    """Position the `with` and its helper call, leaving the user's body nodes alone."""
    nodes: list[ast.AST] = [stmt]
    for item in stmt.items:
        nodes.extend(ast.walk(item.context_expr))
    for n in nodes:
        n.lineno = n.end_lineno = line  # type: ignore[attr-defined]
        n.col_offset = n.end_col_offset = col  # type: ignore[attr-defined]


def instrument_source(source: str | bytes, filename: str, module: str, register: Register,
                      nested: bool = True) -> tuple[object, int]:
    """Parse, instrument and compile a module; returns (code object, functions instrumented)."""
    tree = ast.parse(source, filename)
    inst = Instrumenter(module, filename, register, nested)
    inst.transform(tree)
    ast.fix_missing_locations(tree)  # helper calls inside rewritten returns/yields
    return compile(tree, filename, "exec", dont_inherit=True), inst.count
