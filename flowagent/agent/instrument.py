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
suspended, and a call spans the generator's whole iteration. Each statement holding a
``yield`` is also wrapped in ``try: ... except: __fa_reenter__(17); raise``: an exception
thrown into the suspended generator (``throw()``, ``close()``, ``athrow()``) is raised at the
``yield`` itself, before ``__fa_resume__`` could run, and the handler makes the generator the
current call again before any of its own handlers, ``finally`` blocks or context managers
run. An exception table entry costs nothing until an exception passes, and a bare ``raise``
re-raises without touching the traceback.

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

Speed: a module is walked once over its statements, and a function's expressions only when
its lines contain ``yield`` (``return`` is a statement, ``yield`` can hide in any
expression); injected nodes are positioned as they are made, so no whole-tree
``fix_missing_locations`` pass is needed. Compiled results are cached across processes by
:mod:`flowagent.agent.codecache`.
"""

from __future__ import annotations

import ast
from typing import Callable, TypedDict, TypeVar

from .helpernames import HELPERS, LAMBDA, OPENERS, lambda_qualname  # noqa: F401  (read from here too)

Register = Callable[[str, str, str, int, tuple[str, ...], str], int]

_LOAD = ast.Load()
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
# Statement lists, the only places a `def`, `class` or `return` can be, and the nodes that
# have them besides definitions (a walk over statements only descends into these).
_STMT_LISTS = ("body", "orelse", "finalbody", "handlers", "cases")
_COMPOUND = frozenset(getattr(ast, name) for name in (
    "If", "For", "AsyncFor", "While", "With", "AsyncWith", "Try", "TryStar", "Match",
    "ExceptHandler", "match_case") if hasattr(ast, name))
# Per node type, its statement-list fields in the node's own field order (source order).
_STMT_FIELDS = {t: tuple(f for f in t._fields if f in _STMT_LISTS)
                for t in (*_COMPOUND, ast.Module, ast.FunctionDef, ast.AsyncFunctionDef,
                          ast.ClassDef)}
# A nested scope's parts that the *enclosing* scope evaluates (decorators, defaults, bases):
# a `yield` there belongs to the enclosing function; the nested body does not.
_ENCLOSING_PARTS: dict[type, tuple[str, ...]] = {
    ast.FunctionDef: ("decorator_list", "args", "returns"),
    ast.AsyncFunctionDef: ("decorator_list", "args", "returns"),
    ast.Lambda: ("args",),
    ast.ClassDef: ("decorator_list", "bases", "keywords"),
}
_POSITION = ("lineno", "col_offset", "end_lineno", "end_col_offset")



# (parent node, field name, index in the field's list or None, the Yield/YieldFrom node)
YieldSite = tuple[ast.AST, str, int | None, ast.Yield | ast.YieldFrom]
_Node = TypeVar("_Node", bound=ast.AST)


class _Position(TypedDict):
    lineno: int
    col_offset: int
    end_lineno: int
    end_col_offset: int


def _at(node: _Node, loc: ast.AST) -> _Node:
    """Give an injected node ``loc``'s position (all four attributes)."""
    for attr in _POSITION:
        setattr(node, attr, getattr(loc, attr, 1 if attr == "lineno" else 0))
    return node


def _call(fn: str, args: list[ast.expr], loc: ast.AST) -> ast.Call:
    """``fn(*args)`` positioned at ``loc``; ``args`` must already be positioned."""
    return _at(ast.Call(func=_at(ast.Name(id=fn, ctx=_LOAD), loc), args=args, keywords=[]),
               loc)


def _const(value: int | None, loc: ast.AST) -> ast.Constant:
    return _at(ast.Constant(value), loc)


def _returns(body: list[ast.stmt], out: list[ast.Return]) -> None:
    """The ``return <value>`` statements of one function, not of the scopes nested in it."""
    for stmt in body:
        t = type(stmt)
        if isinstance(stmt, ast.Return):
            if stmt.value is not None:
                out.append(stmt)
        elif t in _COMPOUND:
            for field in _STMT_FIELDS[t]:
                _returns(getattr(stmt, field), out)


def _yields(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> list[YieldSite]:
    """Every ``yield`` / ``yield from`` of one function's own scope, each with where it sits.

    Sites come out parents first (a stack walk finds a node before its descendants), so
    rewriting them in reverse order rewrites ``yield (yield x)``'s inner yield first."""
    sites: list[YieldSite] = []
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        for field in _ENCLOSING_PARTS.get(type(node), node._fields):
            value = getattr(node, field, None)
            if type(value) is list:
                for i, child in enumerate(value):
                    if isinstance(child, ast.AST):
                        if isinstance(child, (ast.Yield, ast.YieldFrom)):
                            sites.append((node, field, i, child))
                        stack.append(child)
            elif isinstance(value, ast.AST):
                if isinstance(value, (ast.Yield, ast.YieldFrom)):
                    sites.append((node, field, None, value))
                stack.append(value)
    return sites


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
    """Rewrites every (selected) function definition of one module's AST.

    ``lines`` (the source split into lines, as bytes) lets a function whose lines never say
    ``yield`` skip the walk over its expressions; without it every function is walked."""

    def __init__(self, module: str, filename: str, register: Register, nested: bool = True,
                 lines: list[bytes] | None = None) -> None:
        self.module = module
        self.filename = filename
        self.register = register
        self.nested = nested
        self.lines = lines
        self.count = 0

    def transform(self, tree: ast.Module, lambdas: bool = True) -> ast.Module:
        self._children(tree, "", in_function=False, in_class=False)
        if lambdas:
            self._lambdas(tree, "", in_function=False)
        return tree

    def _lambdas(self, node: ast.AST, prefix: str, in_function: bool) -> None:
        """Instrument every lambda below ``node``, named by the scope it is written in.

        A lambda's body is one expression, which a ``with`` cannot surround: it becomes
        ``__fa_lret__(__fa_lcall__(fid, a, b), BODY)`` (arguments run left to right: the
        call opens, the body runs, the call closes with the body's value). A body that
        raises leaves its call open; the next recorded call below it on the stack that ends
        closes it as having raised what propagates (see ``recorder._close_abandoned``)."""
        for field, value in ast.iter_fields(node):
            inner, inner_fn = prefix, in_function
            if field == "body" and isinstance(node, _DEFS):
                inner, inner_fn = prefix + node.name + ".<locals>.", True
            elif field == "body" and isinstance(node, ast.ClassDef):
                inner = prefix + node.name + "."
            elif field == "body" and isinstance(node, ast.Lambda):
                inner, inner_fn = prefix + LAMBDA + ".<locals>.", True
            for child in (value if isinstance(value, list) else (value,)):
                if isinstance(child, ast.AST):
                    self._lambdas(child, inner, inner_fn)
                    if isinstance(child, ast.Lambda) and (not inner_fn or self.nested):
                        self._instrument_lambda(child, inner + LAMBDA)

    def _instrument_lambda(self, node: ast.Lambda, qual: str) -> None:
        names, shown = _params(node.args)
        fid = self.register(self.module, lambda_qualname(qual, node.lineno), self.filename,
                            node.lineno, tuple(shown), "function")
        body = node.body
        opened = _call("__fa_lcall__", [_const(fid, body),
                                        *(_at(ast.Name(id=n, ctx=_LOAD), body) for n in names)],
                       body)
        node.body = _call("__fa_lret__", [opened, body], body)
        self.count += 1

    def _children(self, node: ast.AST, prefix: str, in_function: bool, in_class: bool) -> None:
        for field in _STMT_FIELDS[type(node)]:
            for child in getattr(node, field):
                if isinstance(child, _DEFS):
                    qual = prefix + child.name
                    self._children(child, qual + ".<locals>.", True, False)
                    if not in_function or self.nested:
                        self._instrument(child, qual, in_class)
                elif isinstance(child, ast.ClassDef):
                    self._children(child, prefix + child.name + ".", in_function, True)
                elif type(child) in _COMPOUND:
                    self._children(child, prefix, in_function, in_class)

    def _may_yield(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
        lines = self.lines
        if lines is None:
            return True
        return any(b"yield" in line for line in lines[node.lineno - 1:node.end_lineno])

    def _instrument(self, node: ast.FunctionDef | ast.AsyncFunctionDef, qual: str,
                    in_class: bool) -> None:
        is_async = isinstance(node, ast.AsyncFunctionDef)
        yields = _yields(node) if self._may_yield(node) else []
        gen = bool(yields)
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
        # Yields before returns: `return (yield x)` rewrites the yield inside the return value.
        for site in reversed(yields):
            _rewrite_yield(site, fid, is_async)
        if gen:
            _guard_yields(body, fid)
        returns: list[ast.Return] = []
        _returns(body, returns)
        for ret in returns:
            value = ret.value
            ret.value = _call("__fa_ret__", [_const(fid, value), value], value)  # type: ignore
        # Injected code sits on the `def` line: a debugger stepping in or a coverage tool
        # sees no foreign line numbers.
        at: _Position = {"lineno": node.lineno, "col_offset": node.col_offset,
                         "end_lineno": node.lineno, "end_col_offset": node.col_offset}
        helper = "__fa_gcall__" if gen else "__fa_call__"
        enter = ast.Call(func=ast.Name(id=helper, ctx=_LOAD, **at),
                         args=[ast.Constant(fid, **at),
                               *(ast.Name(id=n, ctx=_LOAD, **at) for n in names)],
                         keywords=[], **at)
        if not body:  # only a docstring
            body = [ast.Pass(**at)]
        wrapper = ast.With(items=[ast.withitem(context_expr=enter, optional_vars=None)],
                           body=body, **at)
        node.body = doc + [wrapper]
        self.count += 1


def _rewrite_yield(site: YieldSite, fid: int, is_async: bool) -> None:
    """``yield v`` → ``__fa_resume__(__fa_own__(fid), (yield __fa_suspend__(fid, v)))``, and
    ``yield from it`` → ``__fa_resume__(__fa_own__(fid), (yield from __fa_delegate__(fid, it)))``.
    The Yield node itself is kept (its position is the user's); only what wraps it is new."""
    parent, field, index, node = site
    if isinstance(node, ast.Yield):
        value = node.value if node.value is not None else _const(None, node)
        susp = "__fa_asuspend__" if is_async else "__fa_suspend__"
        node.value = _call(susp, [_const(fid, node), value], node)
    else:
        node.value = _call("__fa_delegate__", [_const(fid, node), node.value], node)
    own = _call("__fa_own__", [_const(fid, node)], node)
    wrapped = _call("__fa_resume__", [own, node], node)
    if index is None:
        setattr(parent, field, wrapped)
    else:
        getattr(parent, field)[index] = wrapped


def _has_yield(value: object) -> bool:
    """Does ``value`` (a node, a list of nodes, or a plain field value) hold a ``yield`` of
    the scope it is written in? (Nested scopes count only for what the enclosing scope
    evaluates: decorators, defaults, bases.)"""
    stack = [value]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(node)
        elif isinstance(node, ast.AST):
            if isinstance(node, (ast.Yield, ast.YieldFrom)):
                return True
            stack.extend(getattr(node, f, None)
                         for f in _ENCLOSING_PARTS.get(type(node), node._fields))
    return False


def _guard_yields(stmts: list[ast.stmt], fid: int) -> None:
    """Wrap each innermost statement holding a ``yield`` in ``try/except: __fa_reenter__``.

    A compound statement is wrapped whole only when a ``yield`` sits in what it evaluates
    itself (a loop's condition, a ``with``'s items, an ``except`` clause's type): one inside
    its body is guarded by the body's own statement, so the handler runs before the
    compound statement's own handlers, ``finally`` and context manager exits."""
    for i, stmt in enumerate(stmts):
        t = type(stmt)
        if t in _COMPOUND:
            header = False
            for field in t._fields:
                value = getattr(stmt, field)
                if field in ("handlers", "cases"):
                    for part in value:
                        header = header or any(_has_yield(getattr(part, f, None))
                                               for f in part._fields if f != "body")
                        _guard_yields(part.body, fid)
                elif field in _STMT_LISTS:
                    _guard_yields(value, fid)
                else:
                    header = header or _has_yield(value)
            if header:
                stmts[i] = _guarded(stmt, fid)
        elif _has_yield(stmt):
            stmts[i] = _guarded(stmt, fid)


def _guarded(stmt: ast.stmt, fid: int) -> ast.Try:
    """``try: stmt`` / ``except: __fa_reenter__(fid); raise`` (the call itself in a ``try``
    that lets a missing helper pass). The ``try`` sits on
    ``stmt``'s first line; the handler has no line at all, so a tracer or coverage tool sees
    no line event when an exception passes (a bare ``raise`` keeps the traceback as it is,
    and a bare ``except`` looks up no name the program could have rebound)."""
    at: _Position = {"lineno": stmt.lineno, "col_offset": stmt.col_offset,
                     "end_lineno": stmt.lineno, "end_col_offset": stmt.col_offset}
    nowhere: _Position = {"lineno": -1, "col_offset": -1, "end_lineno": -1,
                          "end_col_offset": -1}
    reenter = ast.Expr(value=ast.Call(func=ast.Name(id="__fa_reenter__", ctx=_LOAD, **nowhere),
                                      args=[ast.Constant(fid, **nowhere)], keywords=[],
                                      **nowhere), **nowhere)
    # At interpreter shutdown CPython restores builtins as they were before the agent
    # started: a generator closed then finds no helper, and closes as it would plainly.
    gone = ast.ExceptHandler(type=ast.Name(id="NameError", ctx=_LOAD, **nowhere), name=None,
                             body=[ast.Pass(**nowhere)], **nowhere)
    guarded = ast.Try(body=[reenter], handlers=[gone], orelse=[], finalbody=[], **nowhere)
    handler = ast.ExceptHandler(type=None, name=None, body=[guarded, ast.Raise(**nowhere)],
                                **nowhere)
    return ast.Try(body=[stmt], handlers=[handler], orelse=[], finalbody=[], **at)


def _accessor(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    for d in node.decorator_list:
        if isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter"):
            return d.attr
    return ""


def instrument_source(source: str | bytes, filename: str, module: str, register: Register,
                      nested: bool = True) -> tuple[object, int]:
    """Parse, instrument and compile a module; returns (code object, functions instrumented)."""
    tree = ast.parse(source, filename)
    raw = source if isinstance(source, bytes) else source.encode("utf-8", "surrogatepass")
    inst = Instrumenter(module, filename, register, nested,
                        raw.splitlines() if b"yield" in raw else [])
    inst.transform(tree, lambdas=b"lambda" in raw)
    return compile(tree, filename, "exec", dont_inherit=True), inst.count
