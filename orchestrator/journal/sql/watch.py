"""Waiting for runs to end on Postgres: one listening connection per process, shared.

``orc.result()`` waits for a run's close notification. Opening a connection to LISTEN on
every call cost more than the rest of a short workflow's round trip, and a listener left
idle between calls would let notifications pile up in the server's queue. So one thread
per process holds the only ``LISTEN`` and wakes the waiters of the run each notification
names. A notification is a hint, never the answer: a woken waiter reads the run again, and
so does a waiter whose listener was reconnected (notifications sent meanwhile are lost) or
that has waited a few seconds with no news.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

log = logging.getLogger(__name__)

#: Seconds the listening connection is kept after its last waiter left.
LINGER = 30.0
#: Seconds between checks for new waiters, idleness and close() while nothing arrives.
TICK = 1.0


class ClosedWatcher:
    """Wakes the threads waiting for a run when ``channel`` names it."""

    def __init__(self, connect: Callable[[], psycopg.Connection[Any]], channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self._reset()
        # A forked child inherits neither the thread nor the right to the parent's socket.
        os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[threading.Event]] = {}
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._closing = False

    @contextmanager
    def watching(self, run_id: str) -> Iterator[threading.Event]:
        """An event set whenever ``run_id`` may have ended (or news may have been lost)."""
        event = threading.Event()
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(event)
            if self._thread is None:
                self._closing = False
                self._thread = threading.Thread(
                    target=self._listen, name="continuum-closed-watcher", daemon=True
                )
                self._thread.start()
        try:
            yield event
        finally:
            with self._lock:
                waiting = self._waiters.get(run_id, set())
                waiting.discard(event)
                if not waiting:
                    self._waiters.pop(run_id, None)

    def listening(self, timeout: float) -> bool:
        """Whether notifications are being received (waits up to ``timeout`` for it)."""
        return self._listening.wait(timeout)

    def close(self) -> None:
        with self._lock:
            self._closing = True

    def _listen(self) -> None:
        idle_since = time.monotonic()
        pause = 0.05
        while True:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = self._connect()
                conn.execute(f"LISTEN {self._channel}")
                self._listening.set()
                self._wake_all()  # whatever ended while nobody listened
                pause = 0.05
                while True:
                    for note in conn.notifies(timeout=TICK):
                        self._wake(note.payload)
                    with self._lock:
                        if self._waiters:
                            idle_since = time.monotonic()
                        elif self._closing or time.monotonic() - idle_since > LINGER:
                            self._thread = None
                            return
            except Exception as exc:  # a lost connection, mostly: the thread must go on
                lost = exc
            finally:
                self._listening.clear()
                if conn is not None:
                    conn.close()
            with self._lock:
                if self._closing or not self._waiters:
                    self._thread = None
                    return
            log.warning("listener for ended runs lost (%s); connecting again", lost)
            self._wake_all()  # waiters fall back to reading the run until we are back
            time.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _wake(self, run_id: str) -> None:
        with self._lock:
            for event in self._waiters.get(run_id, ()):
                event.set()

    def _wake_all(self) -> None:
        with self._lock:
            for waiting in self._waiters.values():
                for event in waiting:
                    event.set()


__all__ = ["ClosedWatcher"]
