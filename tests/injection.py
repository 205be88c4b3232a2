"""Exceptions injected where CPython can run a signal handler.

A Ctrl-C becomes a KeyboardInterrupt where the interpreter runs signal
handlers: on entering a function, on a loop's back edge, and right after a
call returns (CPython 3.10 and later check there and nowhere else; 3.9
checks between most instructions). `Injector` raises `Injected` at the k-th
such point that the traced code objects reach: at each 'call' event, before
each backward jump, and at the instruction after each call (Python-level
calls included, which is more than 3.11+ needs). Run a scenario once to count
the points, then once per point with the exception fired there, and check
the invariants after each run: an asynchronous exception at every place one
can land, deterministically. (A 'line' event is not such a place: the exit
of a with block, say, is attributed to the with's line, and nothing checks
for signals before its __exit__ runs.)
"""

from __future__ import annotations

import dis
import linecache
import sys
import types
from collections.abc import Iterable
from typing import Any, Callable

CALL_OPS = frozenset(
    {
        "CALL",
        "CALL_KW",
        "CALL_FUNCTION",
        "CALL_FUNCTION_KW",
        "CALL_FUNCTION_EX",
        "CALL_METHOD",
    }
)


class Injected(BaseException):
    """Stands for the KeyboardInterrupt a signal handler raises: a
    BaseException, so `except Exception` does not swallow it."""


def code_objects(*owners: Any) -> set[types.CodeType]:
    """The code of every function and method of the given modules and
    classes, nested code (comprehensions, lambdas) included."""
    found: set[types.CodeType] = set()

    def add(code: types.CodeType) -> None:
        if code in found:
            return
        found.add(code)
        for const in code.co_consts:
            if isinstance(const, types.CodeType):
                add(const)

    def visit(obj: Any, seen: set[int]) -> None:
        if id(obj) in seen:
            return
        seen.add(id(obj))
        for value in vars(obj).values():
            if isinstance(value, (staticmethod, classmethod)):
                value = value.__func__
            if isinstance(value, property):
                for accessor in (value.fget, value.fset, value.fdel):
                    if accessor is not None:
                        add(accessor.__code__)
            elif isinstance(value, types.FunctionType):
                if value.__module__ == owner_module(obj):
                    add(value.__code__)
            elif isinstance(value, type) and value.__module__ == owner_module(obj):
                visit(value, seen)

    for owner in owners:
        visit(owner, set())
    return found


def owner_module(obj: Any) -> str:
    return obj.__name__ if isinstance(obj, types.ModuleType) else obj.__module__


def _points(code: types.CodeType) -> frozenset[int]:
    """The offsets of the instructions before which the interpreter may run
    a signal handler: right after a call, and a backward jump."""
    instructions = list(dis.get_instructions(code))
    # The interpreter checks as the call's last step, so the exception comes
    # from the call; raised at the next instruction instead, it is the same
    # unless the two lie in different try regions (3.11+ exception tables;
    # e.g. `return f()` as a with block's last line): those are left out.
    entries = getattr(dis.Bytecode(code), "exception_entries", [])

    def handler(offset: int) -> object:
        for entry in entries:
            if entry.start <= offset < entry.end:
                return entry.target
        return None

    after_calls = {
        after.offset
        for call, after in zip(instructions, instructions[1:])
        if call.opname in CALL_OPS and handler(call.offset) == handler(after.offset)
    }
    back_edges = {
        instruction.offset
        for instruction in instructions
        if "JUMP" in instruction.opname
        and "NO_INTERRUPT" not in instruction.opname
        and isinstance(instruction.argval, int)
        and instruction.argval < instruction.offset
    }
    return frozenset(after_calls | back_edges)


class Injector:
    """Counts the injection points the traced code reaches and, if fire_at
    is set, raises Injected at that one."""

    def __init__(self, codes: Iterable[types.CodeType], fire_at: int | None = None) -> None:
        self.codes = frozenset(codes)
        self.fire_at = fire_at
        self.count = 0
        self.fired: str | None = None  # where it fired: function, line, event
        self.fired_source = ""  # the source line it fired on
        self._points: dict[types.CodeType, frozenset[int]] = {}
        self._lines: dict[types.CodeType, dict[int, int | None]] = {}

    def _global(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "call" and frame.f_code in self.codes:
            frame.f_trace_opcodes = True
            frame.f_trace_lines = False
            self._point(frame, event)
            return self._local
        return None

    def _local(self, frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "opcode":
            code = frame.f_code
            points = self._points.get(code)
            if points is None:
                points = self._points[code] = _points(code)
            if frame.f_lasti in points:
                self._point(frame, event)
        return self._local

    def _point(self, frame: types.FrameType, event: str) -> None:
        self._hit(frame.f_code.co_name, frame.f_lineno, frame.f_code, event)

    def _hit(self, name: str, line: int | None, code: types.CodeType, event: str) -> None:
        here = self.count
        self.count += 1
        if here == self.fire_at:
            self.fired = f"{name}:{line} ({event})"
            self.fired_source = linecache.getline(code.co_filename, line or 0).strip()
            raise Injected(self.fired)

    def run(self, scenario: Callable[[], object]) -> BaseException | None:
        """Runs the scenario traced; returns the Injected it raised, if any."""
        try:
            if hasattr(sys, "monitoring"):
                self._run_monitored(scenario)
            else:
                self._run_traced(scenario)
        except Injected as exc:
            return exc
        return None

    def _run_traced(self, scenario: Callable[[], object]) -> None:
        previous = sys.gettrace()
        sys.settrace(self._global)
        try:
            scenario()
        finally:
            sys.settrace(previous)

    def _run_monitored(self, scenario: Callable[[], object]) -> None:
        # CPython 3.12+: sys.settrace's opcode events are not reliable there
        # (3.12 gives none); sys.monitoring raises an exception from a
        # callback into the monitored code at that instruction.
        monitoring = sys.monitoring  # type: ignore[attr-defined]
        events = monitoring.events
        tool = monitoring.DEBUGGER_ID
        monitoring.use_tool_id(tool, "fastsem tests: injection")
        try:

            def on_start(code: types.CodeType, offset: int) -> None:
                self._hit(code.co_name, code.co_firstlineno, code, "call")

            def on_instruction(code: types.CodeType, offset: int) -> object:
                points = self._points.get(code)
                if points is None:
                    points = self._points[code] = _points(code)
                if offset not in points:
                    return monitoring.DISABLE
                lines = self._lines.get(code)
                if lines is None:
                    lines = self._lines[code] = {
                        i.offset: i.positions.lineno for i in dis.get_instructions(code)
                    }
                self._hit(code.co_name, lines.get(offset), code, "opcode")
                return None

            monitoring.register_callback(tool, events.PY_START, on_start)
            monitoring.register_callback(tool, events.INSTRUCTION, on_instruction)
            for code in self.codes:
                monitoring.set_local_events(tool, code, events.PY_START | events.INSTRUCTION)
            monitoring.restart_events()
            scenario()
        finally:
            for code in self.codes:
                monitoring.set_local_events(tool, code, 0)
            monitoring.register_callback(tool, events.PY_START, None)
            monitoring.register_callback(tool, events.INSTRUCTION, None)
            monitoring.free_tool_id(tool)


def every_point(
    codes: set[types.CodeType],
    make: Callable[[], Any],
    scenario: Callable[[Any], object],
    check: Callable[[Any, Injector], None],
) -> int:
    """Runs scenario(make()) once to count its points, then once per point
    with Injected fired there, calling check(state, injector) after each run
    (injector.fired says where it fired, None if the run ended before that
    point). Returns the number of points."""
    counter = Injector(codes)
    state = make()
    assert counter.run(lambda: scenario(state)) is None
    check(state, counter)
    assert counter.count > 0, "the scenario reached none of the traced code"
    for point in range(counter.count):
        injector = Injector(codes, fire_at=point)
        state = make()
        injector.run(lambda state=state: scenario(state))
        check(state, injector)
    return counter.count
