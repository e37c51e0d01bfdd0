"""Stop signals outside the supervisor, and clean-up that no signal cuts short.

While code is fetched and installed, the first stop signal raises `Stopped`
so that every `finally` (tools, temporary folders) runs on the way out; a
later one only waits for that clean-up, as the README promises. Clean-up runs
`uninterruptible()`: a first stop that arrives during it is raised when it is
done, or, for the last clean-up of a run (`final=True`), only noted, so the
run still ends with the service's own status. The supervisor takes over the
same signals while the service runs (`supervisor/base.py`).
"""

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from runner.errors import Stopped

#: SIGHUP is a terminal closing: a stop like SIGTERM. SIGQUIT stops without a grace period.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
Handler = Callable[[int, FrameType | None], Any] | int | signal.Handlers | None


class _State:
    """The run's stop: the first signal, whether `Stopped` was raised, clean-up depth."""

    received: int | None = None
    raised = False
    cleaning = 0


_state = _State()


def quitting() -> bool:
    """Whether the run was stopped by SIGQUIT (children are then killed without grace)."""
    return _state.received == signal.SIGQUIT


def install() -> dict[signal.Signals, Handler]:
    """Take the stop signals for a new run; returns the previous handlers."""
    _state.received, _state.raised, _state.cleaning = None, False, 0
    return {s: signal.signal(s, _on_stop) for s in STOP_SIGNALS}


def _on_stop(signum: int, _frame: FrameType | None) -> None:
    if _state.received is None:
        _state.received = signum
    if not _state.cleaning and not _state.raised:
        _state.raised = True
        raise Stopped(signum)


@contextmanager
def stoppable() -> Iterator[None]:
    """Stop signals raise `Stopped` meanwhile, as they do while code is fetched and installed.

    For install work the supervisor does while it holds the signals (`--watch`'s
    reinstall after a dependency file changed): its loop would see a stop only
    once the install was done.
    """
    previous = {s: signal.signal(s, _on_stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def uninterruptible(final: bool = False) -> Iterator[None]:
    """Run clean-up to its end whatever signals come; then raise a stop that came meanwhile.

    `final`: the run is over; a stop arriving now changes nothing and is not raised.
    """
    _state.cleaning += 1
    try:
        yield
    finally:
        _state.cleaning -= 1
    if not final and not _state.cleaning and _state.received is not None and not _state.raised:
        _state.raised = True
        raise Stopped(_state.received)
