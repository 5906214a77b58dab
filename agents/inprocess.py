"""The :class:`agents.runtime.Runtime` interface without Ray: the agents in this process.

:class:`InProcessRuntime` builds each agent from its plain class (agents are plain classes; they
become Ray actors only in :mod:`agents.runtime`) and runs its async methods on one event loop in a
background thread. The agents still serve and call each other over gRPC on 127.0.0.1, so a
:class:`~agents.runner.Federation` on it runs exactly the code of ``trefed run``, in one process:
what each point of ``trefed sweep`` does inside its Ray task (:mod:`agents.sweep`), and what the unit
tests use to run the agents without Ray.

It imports no Ray itself: :class:`~agents.runtime.ActorRef` (and so Ray) is imported when the first
agent is spawned.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agents.runtime import ActorRef

__all__ = ["InProcessRuntime"]


class InProcessRuntime:
    """The :class:`agents.runtime.Runtime` interface without Ray (see the module docstring).

    ``spawn`` builds the agent in this process; ``call`` runs its (async) method on the
    runtime's event loop thread; ``kill`` stops an agent that has ``stop`` (freeing its port)
    and forgets it. ``address`` is None: it stands for a local runtime.
    """

    address: str | None = None

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._actors: dict[str, ActorRef] = {}
        self.started = 0

    def start(self) -> InProcessRuntime:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._loop.run_forever, name="in-process-runtime", daemon=True)
            self._thread.start()
            self.started += 1
        return self

    def shutdown(self) -> None:
        for ref in list(self._actors.values()):
            self.kill(ref)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            assert self._thread is not None
            self._thread.join(timeout=10)
            self._loop.close()
            self._loop = self._thread = None

    def spawn(self, cls: type, *args: Any, name: str, **kwargs: Any) -> ActorRef:
        from agents.runtime import ActorRef

        if name in self._actors:
            raise ValueError(f"actor name {name!r} is taken")
        ref = ActorRef(name=name, handle=cls(*args, **kwargs))
        self._actors[name] = ref
        return ref

    def call(self, actor: ActorRef, method: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        return self.call_many([(actor, method, args, kwargs)], timeout=timeout)[0]

    def call_many(
        self, calls: Sequence[tuple[ActorRef, str, tuple[Any, ...], dict[str, Any]]], *, timeout: float = 60.0
    ) -> list[Any]:
        assert self._loop is not None, "start() the runtime first"

        async def run(actor: ActorRef, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            result = getattr(actor.handle, method)(*args, **kwargs)
            return await result if inspect.isawaitable(result) else result

        futures = [asyncio.run_coroutine_threadsafe(run(*c), self._loop) for c in calls]
        try:
            return [f.result(timeout=timeout) for f in futures]
        except TimeoutError as exc:
            from agents.runtime import ActorCallError

            raise ActorCallError(f"actor call timed out after {timeout:g} s") from exc

    def placement(self, actors: Sequence[ActorRef], *, timeout: float = 30.0) -> dict[str, str]:
        """Every agent runs here: actor name -> ``"local"``."""
        return {a.name: "local" for a in actors}

    def kill(self, actor: ActorRef) -> None:
        if self._actors.pop(actor.name, None) is not None and hasattr(actor.handle, "stop") and self._loop:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(actor.handle.stop(0), self._loop).result(timeout=10)

    def forget(self, actor: ActorRef) -> None:
        self._actors.pop(actor.name, None)
