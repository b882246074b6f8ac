"""The interface of the C recorder hot path (``_speedups.c``), the twin of recorder.py.

Every function above the "Module-only" line has a pure-Python twin in recorder.py under the
same name (``current`` and ``set_current`` are recorder's ``_get`` and ``_set``); when the
extension is active, recorder binds the C function itself. tests/unit/test_twin_parity.py
checks both directions in each twin.
"""

from types import CodeType, FrameType
from typing import Any, Callable

ABI: int
FRAME_LAYOUT: tuple[int, ...]
FLAG_BITS: tuple[int, int, int, int]
IN_PLACE: bool
IN_PLACE_WHY: str
NOEXIT: Any
_C_API: Any  # capsule: open_call/close_call for other extensions (_hotpath.h)

class State:
    on: bool
    sync_sessions: bool
    user_functions: bool
    cpu: bool
    sample_ppm: int
    max_buf: int
    flush_at: int
    dropped: int
    agent_errors: int
    sampled_out: int
    gen: object
    session_starts: list[tuple[Any, ...]]
    wake: Callable[[], None]
    flush_now: Callable[[], None]
    @property
    def buffered(self) -> int: ...
    def next_id(self) -> int: ...

S: State

def call(fid: int, *args: Any) -> Any: ...
def open_call(fid: int, args: tuple[Any, ...]) -> list[Any] | None: ...
def close_call(frame: list[Any], exc_type: type | None) -> None: ...
def ret(fid: int, value: Any) -> Any: ...
def take_calls(limit: int = 0) -> tuple[int, bytes, set[int]]: ...
def current() -> list[Any] | None: ...
def set_current(frame: list[Any] | None) -> None: ...

# Module-only (no recorder twin):
def context_sets() -> int: ...
def clock() -> int: ...
def reset() -> None: ...
def fingerprint(value: Any) -> tuple[int, int] | None: ...
def shape_cache_stats() -> dict[str, int]: ...
def configure(*, input_sid: Callable[..., Any], output_sid: Callable[..., Any],
              exc_sid: Callable[..., Any], yield_sid: Callable[..., Any],
              session_start: Callable[..., Any], random: Callable[[], float],
              thread_time: Callable[[], int], shape_first: int, shape_every: int, shape_warm: int,
              shape_hot_every: int, program_exception: Callable[[BaseException], bool],
              unknown_error: type) -> None: ...
def set_const(code: CodeType, index: int, value: Any) -> None: ...
def setprofile(callback: Callable[[FrameType, str, Any], Any] | None) -> None: ...
def profile_on_error(handler: Callable[[FrameType, str, BaseException], Any] | None
                     ) -> None: ...
