"""The interface of the C tracer cores (``_cores.c``). ``MonitorCore`` exists on Python 3.12+
only; its twin is the Python callbacks in monitor.py (``_callbacks``)."""

from typing import Any, Callable

class MonitorCore:
    def __init__(self, *, classify: Callable[[Any, Any], tuple[Any, ...] | None],
                 infos: dict[Any, Any], live: dict[Any, Any], open_call: Callable[..., Any],
                 close_call: Callable[..., Any], resume: Callable[..., Any],
                 deactivate: Callable[..., Any], note_yield: Callable[..., Any],
                 is_async_yield: Callable[..., Any], unwrap_async_yield: Callable[..., Any],
                 state: Any, disable: Any, rv: int) -> None: ...
    @property
    def direct(self) -> bool:
        """True when open_call and close_call are _speedups' own: the core then calls their C
        implementations directly (``_hotpath.h``), else it calls them as Python callables."""
    # The six sys.monitoring callbacks. Each is a ``Callback`` object of its own type that
    # the interpreter calls by vectorcall (a bound method would add a method call per event);
    # every read of the attribute makes a new one, which holds the core.
    @property
    def py_start(self) -> Callable[[Any, int], Any]: ...
    @property
    def py_return(self) -> Callable[[Any, int, Any], None]: ...
    @property
    def py_yield(self) -> Callable[[Any, int, Any], None]: ...
    @property
    def py_resume(self) -> Callable[[Any, int], None]: ...
    @property
    def py_unwind(self) -> Callable[[Any, int, BaseException], None]: ...
    @property
    def py_throw(self) -> Callable[[Any, int, BaseException], None]: ...
