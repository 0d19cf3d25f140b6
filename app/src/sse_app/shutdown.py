"""End open event streams as soon as the worker is told to stop.

Uvicorn handles SIGTERM by closing the listener and then waiting for every in-flight
response to finish, and it only runs the lifespan shutdown after that. An event
stream never finishes on its own, so without help a restart waits out Gunicorn's
whole --graceful-timeout and then SIGKILLs the worker. We therefore chain a handler
in front of the server's own one: it ends the streams and then lets the server
proceed with its normal graceful shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

# SIGTERM: systemd stop and Gunicorn's graceful stop/reload. SIGINT/SIGQUIT: Gunicorn's
# quick shutdown, which Uvicorn still treats as "wait for open responses".
SHUTDOWN_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)

Handler = Callable[[int, "FrameType | None"], Any]


@contextlib.contextmanager
def on_shutdown_signal(callback: Callable[[], None]) -> Iterator[None]:
    """Run `callback` on the running loop when a shutdown signal arrives.

    Must be entered from the event loop that serves requests (e.g. the lifespan).
    The previous handlers keep running after ours and are restored on exit. Outside
    the main thread (an embedded server in tests) signals cannot be hooked, and this
    is a no-op: whoever runs that server has to call `callback` itself.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    loop = asyncio.get_running_loop()
    previous: dict[signal.Signals, Any] = {}

    def handler(signum: int, frame: FrameType | None) -> None:
        # A signal handler interrupts the loop between bytecodes; only hand the work
        # over to the loop here, never touch loop state directly.
        loop.call_soon_threadsafe(callback)
        sig = signal.Signals(signum)
        if sig is signal.SIGQUIT and callable(previous.get(signal.SIGTERM)):
            # Gunicorn's quick shutdown (master got SIGINT/SIGQUIT) sends workers SIGQUIT,
            # which the Uvicorn worker routes to a handler that the server never checks,
            # so the worker idles until it is SIGKILLed after --graceful-timeout. Stopping
            # the server the way SIGTERM does is the quickest exit that still runs cleanup.
            previous[signal.SIGTERM](signal.SIGTERM, frame)
        chained = previous.get(sig)
        if callable(chained):
            # The server's handler (Uvicorn's handle_exit). For SIGQUIT the Uvicorn
            # worker registered through loop.add_signal_handler; that path is driven by
            # the loop's wakeup fd and keeps working with any Python-level handler.
            chained(signum, frame)
        elif chained == signal.SIG_DFL:
            # Nobody handled it before us: keep the default action (terminate).
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in SHUTDOWN_SIGNALS:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            # The server may already have restored its own handlers; leave those alone.
            if signal.getsignal(sig) is handler:
                signal.signal(sig, old)
