"""W3C Trace Context in the host process: header parsing, joining a caller's trace, and the
span ids outgoing calls send (the entries the flusher ships to the sidecar)."""

from __future__ import annotations

import pytest

from flowagent.agent import recorder, tracecontext as tc

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.fixture(autouse=True)
def clean() -> None:
    tc.reset_after_fork()
    yield
    tc.reset_after_fork()


def _frame(cid: int, ses: int) -> list:
    frame = [None] * 14
    frame[recorder.CID], frame[recorder.SES] = cid, ses
    return frame


@pytest.mark.parametrize("value", [f"00-{TRACE}-{SPAN}-01", f"00-{TRACE}-{SPAN}-00".encode(),
                                   f" 00-{TRACE}-{SPAN}-01 ", f"01-{TRACE}-{SPAN}-01-later"])
def test_valid_traceparent(value: object) -> None:
    parsed = tc.parse(value)
    assert parsed is not None and parsed[:2] == (TRACE, SPAN)


@pytest.mark.parametrize("value", [None, 42, "", "00-xyz", f"ff-{TRACE}-{SPAN}-01",
                                   f"00-{'0' * 32}-{SPAN}-01", f"00-{TRACE}-{'0' * 16}-01",
                                   f"00-{TRACE.upper()}-{SPAN}-01", f"00-{TRACE}-{SPAN}-01-x",
                                   "00-" + "a" * 600])
def test_invalid_traceparent_is_ignored(value: object) -> None:
    assert tc.parse(value) is None


def test_a_joined_session_sends_its_trace_and_tracestate_on() -> None:
    root = _frame(10, 10)
    tc.join(root, f"00-{TRACE}-{SPAN}-01", b"vendor=abc")
    header, state = tc.outgoing(_frame(12, 10))
    version, trace, span, flags = header.split("-")
    assert (version, trace, flags, state) == ("00", TRACE, "01", "vendor=abc")
    assert span != SPAN and tc.parse(header) is not None
    assert tc.take() == [[10, tc.JOINED, TRACE, SPAN, 10], [10, tc.SENT, TRACE, span, 12]]
    assert tc.take() == []
    tc.forget(root)
    assert tc.outgoing(_frame(13, 10))[0].split("-")[1] != TRACE


def test_a_session_without_a_caller_starts_one_trace_for_all_its_calls() -> None:
    first, _ = tc.outgoing(_frame(2, 1))
    second, state = tc.outgoing(_frame(3, 1))
    other, _ = tc.outgoing(_frame(5, 4))
    assert first.split("-")[1] == second.split("-")[1] != other.split("-")[1]
    assert first.split("-")[2] != second.split("-")[2] and state is None


def test_the_programs_own_header_is_adopted() -> None:
    tc.adopt(_frame(7, 6), f"00-{TRACE}-{SPAN}-01")
    tc.adopt(_frame(8, 6), "garbage")
    assert tc.take() == [[6, tc.SENT, TRACE, SPAN, 7]]


def test_a_bad_incoming_header_joins_nothing() -> None:
    tc.join(_frame(3, 3), "00-nope", None)
    tc.join(_frame(0, 0), f"00-{TRACE}-{SPAN}-01", None)  # a sampled-out request
    assert tc.take() == []


def test_ids_leave_the_programs_random_state_alone() -> None:
    import random

    random.seed(7)
    expected = random.random()
    random.seed(7)
    tc.outgoing(_frame(2, 1))
    assert random.random() == expected
