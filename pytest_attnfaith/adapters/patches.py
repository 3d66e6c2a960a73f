"""Process-wide patches shared by concurrent audits: counted, routed per thread, restored under a lock.

Intercepting a softmax computed inline (``softmax``) or tracing packed sequences (``partial``) replaces functions
that every thread of the process calls (``F.softmax``, ``torch.softmax``, ``Tensor.softmax``,
``F.scaled_dot_product_attention``, ``nn.utils.rnn``'s packing helpers). Two audits in two threads would each save
the other's replacement as "the original" and leave it installed. ``Patch`` installs one dispatcher instead, when
the first audit needs it, and puts the original back when the last one is done (a count under one lock); the
dispatcher routes each call to the innermost handler of the calling thread, and calls from threads without one
(another audit's model, the user's code) to the original.

One patch is not ours to route: ``torch.fx`` replaces ``nn.Module.__call__`` for every thread while it traces a
wrapped model (``partial``), so a model called by another thread meanwhile would be traced into the wrong graph.
``tracing()`` therefore waits until no audit's pass runs, and passes (``calling()``) wait while a trace runs.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

_LOCK = threading.RLock()


class Patch:
    """``owner.name`` replaced by a per-thread dispatcher while any thread has a handler installed."""

    def __init__(self, owner: Any, name: str) -> None:
        self.owner, self.name = owner, name
        self.original: Callable[..., Any] | None = None
        self.users = 0
        self._local = threading.local()

    @contextlib.contextmanager
    def routed(self, handler: Callable[..., Any]) -> Iterator[Callable[..., Any]]:
        """Route this thread's calls to ``handler`` while the block runs; yields the original function."""
        with _LOCK:
            if self.users == 0:
                self.original = getattr(self.owner, self.name)
                setattr(self.owner, self.name, self._dispatcher())
            self.users += 1
            original = self.original
        assert original is not None
        stack = self._handlers()
        stack.append(handler)
        try:
            yield original
        finally:
            stack.pop()
            with _LOCK:
                self.users -= 1
                if self.users == 0:
                    setattr(self.owner, self.name, self.original)
                    self.original = None

    def unpatched(self) -> Callable[..., Any]:
        """The original function, whether or not the patch is installed now."""
        with _LOCK:
            return self.original if self.original is not None else getattr(self.owner, self.name)  # type: ignore[no-any-return]

    def _handlers(self) -> list[Callable[..., Any]]:
        stack: list[Callable[..., Any]] | None = getattr(self._local, "handlers", None)
        if stack is None:
            stack = self._local.handlers = []
        return stack

    def _dispatcher(self) -> Callable[..., Any]:
        """A plain function (so that, set on a class, it binds ``self`` as the original method does)."""
        original, local = self.original, self._local

        def dispatch(*args: Any, **kwargs: Any) -> Any:
            handlers = getattr(local, "handlers", None)
            if handlers:
                return handlers[-1](*args, **kwargs)
            return original(*args, **kwargs)  # type: ignore[misc]

        return dispatch


_PATCHES: dict[tuple[int, str], Patch] = {}


def patch(owner: Any, name: str) -> Patch:
    """The one ``Patch`` of ``owner.name`` in this process."""
    with _LOCK:
        return _PATCHES.setdefault((id(owner), name), Patch(owner, name))


def installed() -> dict[str, int]:
    """``owner.name`` → how many sessions use its patch now (what a test checks is empty after an audit)."""
    with _LOCK:
        return {f"{getattr(p.owner, '__name__', type(p.owner).__name__)}.{p.name}": p.users for p in _PATCHES.values() if p.users}


_MODELS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()


@contextlib.contextmanager
def exclusive(module: Any) -> Iterator[None]:
    """One audit session per model at a time: a session on a model that another thread audits waits until that
    audit ends (its train/eval flags, hooks, attention implementation and device restored), then runs. The lock is
    re-entrant, so that a session opened inside another on the same thread does not wait for itself."""
    with _LOCK:
        lock = _MODELS.get(module)
        if lock is None:
            lock = _MODELS[module] = threading.RLock()
    with lock:
        yield


class _Passes:
    """Audits' model calls (shared: any number at once) against ``torch.fx`` traces (exclusive)."""

    def __init__(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._calling: Counter[int] = Counter()  # thread → passes it is inside
        self._tracer: int | None = None

    @contextlib.contextmanager
    def calling(self) -> Iterator[None]:
        """A pass of an audit's model: waits while another thread traces."""
        me = threading.get_ident()
        with self._changed:
            self._changed.wait_for(lambda: self._tracer in (None, me))
            self._calling[me] += 1
        try:
            yield
        finally:
            with self._changed:
                self._calling[me] -= 1
                if not self._calling[me]:
                    del self._calling[me]
                self._changed.notify_all()

    @contextlib.contextmanager
    def tracing(self) -> Iterator[None]:
        """A trace: waits until no other thread is inside a pass (this thread's own passes are set aside meanwhile,
        so that two threads that each trace from inside a pass take turns instead of waiting for each other)."""
        me = threading.get_ident()
        with self._changed:
            mine = self._calling.pop(me, 0)
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._tracer is None and not self._calling)
            self._tracer = me
        try:
            yield
        finally:
            with self._changed:
                self._tracer = None
                if mine:
                    self._calling[me] = mine
                self._changed.notify_all()


_PASSES = _Passes()
calling = _PASSES.calling
tracing = _PASSES.tracing
