"""The one module that talks to Ray: start (or join) a Ray cluster, place actors, call them.

Every other module of trefed is written against :class:`Runtime` and :class:`ActorRef`; neither
exposes Ray object refs. Agents are plain classes (they run in-process in unit tests) and become
Ray actors only here, at creation: ``ray.remote(cls).options(...)``.

Loopback only. A local Ray (the default) is started with ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
set *before* Ray starts, which makes every Ray listener (GCS, raylet, object manager, workers)
bind 127.0.0.1, and with ``_node_ip_address="127.0.0.1"``; the dashboard is off. Only an explicit
address (``Runtime(address=...)``, ``trefed serve --address``, or ``RAY_ADDRESS``) joins an
existing cluster, and then Ray 2.60's token authentication is required
(``RAY_AUTH_MODE=token``, set here when absent).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

_LOOPBACK = "127.0.0.1"


def _host_port(address: str) -> tuple[str, int | None]:
    """``(host, port)`` of a Ray address (``host:port``, ``[v6]:port`` or ``ray://host:port``)."""
    rest = address.split("://", 1)[-1].rstrip("/")
    host, _, port = rest.rpartition(":") if rest.count(":") == 1 or rest.startswith("[") else (rest, "", "")
    host = host.strip("[]") or rest
    return host, int(port) if port.isdigit() else None


def is_loopback_address(address: str | None) -> bool:
    """True for no address (a local Ray) or a cluster whose head is on this machine's loopback."""
    if not address:
        return True
    host, _ = _host_port(address)
    return host in ("localhost", "::1") or host.startswith("127.")


# Ray reads this when it is imported: with it off, Ray takes 127.0.0.1 as the node address and
# every Ray listener binds loopback. Left alone when the address of a cluster elsewhere is given
# in the environment (a multi-node cluster needs the routable address); kept for a head on
# loopback (`ray start --head --node-ip-address=127.0.0.1`), which Ray would otherwise look for
# at the machine's network address.
if is_loopback_address(os.environ.get("RAY_ADDRESS")):
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402 - must follow the environment set-up above

from federation.errors import InputError  # noqa: E402

__all__ = ["Runtime", "ActorRef", "ActorCallError", "NodeInfo", "TaskLost", "is_loopback_address", "current_node",
           "in_task"]


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast (``InputError``) when nothing listens at a cluster address; Ray would retry for minutes."""
    if address == "auto":
        return
    host, port = _host_port(address)
    if port is None:
        return
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        raise InputError(f"--address {address}: no Ray cluster answers there ({exc})") from None


class ActorCallError(RuntimeError):
    """A Ray call failed: the actor died, timed out, or raised (the message says which)."""


@dataclass(frozen=True)
class ActorRef:
    """A handle on one actor; callers use :meth:`Runtime.call`, never Ray directly.

    Attributes
    ----------
    name : the actor's name (unique within a :class:`Runtime`).
    handle : the Ray actor handle (opaque to callers).
    """

    name: str
    handle: Any


@dataclass(frozen=True)
class NodeInfo:
    """A node of the Ray cluster: its id (hex), address, CPUs, and whether it is alive."""

    node_id: str
    address: str
    cpus: float
    alive: bool


@dataclass(frozen=True)
class TaskLost:
    """What :meth:`Runtime.map_unordered` yields for a task Ray could not finish: its retries ran out
    (its node or worker died each time) or it raised; ``error`` says which."""

    error: str


def in_task() -> bool:
    """True inside a Ray task or actor (not in a driver, not without Ray)."""
    return ray.is_initialized() and ray.get_runtime_context().get_task_id() is not None


def _node_of_actor(_self: Any) -> str:
    return str(ray.get_runtime_context().get_node_id())


def current_node() -> tuple[str, str]:
    """``(node id, node IP)`` of the Ray node this code runs on (in a task or the driver)."""
    return ray.get_runtime_context().get_node_id(), ray.util.get_node_ip_address()


class Runtime:
    """A Ray runtime: local on loopback by default, or an existing cluster by address.

    Parameters
    ----------
    address : str, optional
        Address of an existing Ray cluster (``ray://...`` or ``host:port``). ``None`` starts a
        local Ray on 127.0.0.1 (unless ``RAY_ADDRESS`` is set in the environment).
    num_cpus : int, optional
        CPUs of a local Ray (default 2). Ignored when joining a cluster.
    log_to_driver : bool
        Forward actors' stdout/stderr to this process (off by default: clean CLI output).

    Notes
    -----
    If Ray is already initialised in this process (e.g. the test session's Ray), the runtime
    uses it and does not shut it down on :meth:`shutdown`.
    """

    def __init__(self, address: str | None = None, *, num_cpus: int | None = None, log_to_driver: bool = False):
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus or 2
        self.log_to_driver = log_to_driver
        self._owns_ray = False
        self._actors: dict[str, ActorRef] = {}
        self._spawned = 0  # actors placed so far (round robin over a joined cluster's nodes)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Runtime:
        """Start (or join) Ray; idempotent."""
        if ray.is_initialized():
            return self
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if not self.log_to_driver:
            logging.getLogger("ray").setLevel(logging.ERROR)
        if self.address:
            os.environ.setdefault("RAY_AUTH_MODE", "token")
            _check_reachable(self.address)
            ray.init(
                address=self.address,
                logging_level=logging.WARNING if self.log_to_driver else logging.ERROR,
                log_to_driver=self.log_to_driver,
            )
        else:
            os.environ.pop("RAY_ADDRESS", None)
            # Set at import above; workers inherit it from here.
            os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            ray.init(
                address="local",  # a new local instance, never a cluster found on the machine
                num_cpus=self.num_cpus,
                include_dashboard=False,
                _node_ip_address=_LOOPBACK,
                logging_level=logging.WARNING if self.log_to_driver else logging.ERROR,
                log_to_driver=self.log_to_driver,
            )
        self._owns_ray = True
        return self

    def shutdown(self) -> None:
        """Kill the actors this runtime created; stop Ray if this runtime started it."""
        for ref in list(self._actors.values()):
            self.kill(ref)
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    @staticmethod
    def node_ip_address() -> str:
        """The IP address of this Ray node (127.0.0.1 for a local runtime)."""
        return ray.util.get_node_ip_address()

    @staticmethod
    def gcs_address() -> str:
        """``host:port`` of the Ray cluster's GCS."""
        return ray.get_runtime_context().gcs_address

    @staticmethod
    def is_running() -> bool:
        return ray.is_initialized()

    @staticmethod
    def nodes() -> list[NodeInfo]:
        """Every node the cluster knows (alive or dead), as Ray lists them."""
        return [NodeInfo(str(n["NodeID"]), str(n.get("NodeManagerAddress", "")),
                         float(n.get("Resources", {}).get("CPU", 0.0)), bool(n.get("Alive")))
                for n in ray.nodes()]

    # ------------------------------------------------------------------ tasks

    def map_unordered(
        self,
        fn: Callable[[Any], Any],
        items: Sequence[Any],
        *,
        num_cpus: float = 1.0,
        max_retries: int = 3,
        max_in_flight: int | None = None,
        spread: bool = True,
        poll_s: float = 1.0,
    ) -> Iterator[tuple[int, Any]]:
        """Run ``fn(item)`` for every item as a Ray task; yield ``(index, result)`` as each finishes.

        At most ``max_in_flight`` tasks are submitted at a time (default: twice the cluster's CPUs),
        so the driver holds only their results; each is fetched as it finishes (``ray.wait``) and
        dropped once yielded. ``spread`` asks Ray to spread the tasks over the nodes (the ``SPREAD``
        strategy). A task whose worker or node dies is retried by Ray up to ``max_retries`` times,
        wherever there is room; when the retries run out, or ``fn`` raises, a :class:`TaskLost` is
        yielded for it instead of a result. Between results the generator yields ``(-1, None)``
        every ``poll_s`` s, so the caller can report progress while nothing finishes.
        """
        if max_in_flight is None:
            cpus = sum(n.cpus for n in self.nodes() if n.alive) or 1.0
            max_in_flight = max(1, int(2 * cpus / max(num_cpus, 1e-9)))
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_retries": max_retries, "retry_exceptions": False}
        if spread:
            options["scheduling_strategy"] = "SPREAD"
        remote = ray.remote(fn).options(**options)
        todo = iter(enumerate(items))
        in_flight: dict[Any, int] = {}

        def submit() -> None:
            while len(in_flight) < max_in_flight:
                nxt = next(todo, None)
                if nxt is None:
                    return
                in_flight[remote.remote(nxt[1])] = nxt[0]

        submit()
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=poll_s)
            if not ready:
                yield -1, None
                continue
            for ref in ready:
                index = in_flight.pop(ref)
                try:
                    result: Any = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:
                    result = TaskLost(f"the task raised: {exc.cause if exc.cause is not None else exc}")
                except ray.exceptions.RayError as exc:
                    result = TaskLost(f"lost after {max_retries} retries: {type(exc).__name__}: "
                                      f"{str(exc).splitlines()[0] if str(exc) else ''}")
                del ref
                submit()
                yield index, result

    # ------------------------------------------------------------------ actors

    def spawn(
        self,
        cls: type,
        *args: Any,
        name: str,
        max_concurrency: int = 1000,
        num_cpus: float = 0.0,
        **kwargs: Any,
    ) -> ActorRef:
        """Create ``cls(*args, **kwargs)`` as a Ray actor named ``name`` and return its ref.

        Actors reserve no CPU by default (``num_cpus=0``): agents are I/O bound and must all fit
        on a small machine. ``max_concurrency`` bounds concurrent calls of an async actor. On a
        cluster joined by address the actors go round robin over its alive nodes by node id, with a
        hard node affinity (Ray's ``SPREAD`` and a soft affinity both put every 0-CPU actor on one
        node in CI runs; an actor needs no resources, so any alive node takes it, and one that died
        since fails the actor's start within the caller's timeout); :meth:`placement` says where
        each runs.
        """
        if name in self._actors:
            raise ValueError(f"actor name {name!r} is taken")
        options: dict[str, Any] = {"num_cpus": num_cpus, "max_concurrency": max_concurrency, "max_restarts": 0}
        if self.address:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            alive = sorted(n.node_id for n in self.nodes() if n.alive)
            if alive:
                node = alive[self._spawned % len(alive)]
                options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
            else:
                options["scheduling_strategy"] = "SPREAD"
            self._spawned += 1
        remote_cls: Any = ray.remote(cls).options(**options)
        handle = remote_cls.remote(*args, **kwargs)
        ref = ActorRef(name=name, handle=handle)
        self._actors[name] = ref
        return ref

    def placement(self, actors: Sequence[ActorRef], *, timeout: float = 30.0) -> dict[str, str]:
        """actor name -> id (hex) of the node each of ``actors`` runs on (asked of each actor itself)."""
        refs = [a.handle.__ray_call__.remote(_node_of_actor) for a in actors]
        return dict(zip((a.name for a in actors), ray.get(refs, timeout=timeout)))

    def call(self, actor: ActorRef, method: str, *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Call ``actor.method(*args, **kwargs)`` and wait for its result (at most ``timeout`` s)."""
        return self.call_many([(actor, method, args, kwargs)], timeout=timeout)[0]

    def call_many(
        self,
        calls: Sequence[tuple[ActorRef, str, tuple[Any, ...], dict[str, Any]]],
        *,
        timeout: float = 60.0,
    ) -> list[Any]:
        """Issue several actor calls at once and wait for all results, in order."""
        refs = [getattr(a.handle, m).remote(*args, **kw) for a, m, args, kw in calls]
        try:
            return list(ray.get(refs, timeout=timeout))
        except ray.exceptions.GetTimeoutError as exc:
            for r in refs:
                ray.cancel(r, force=False)
            raise ActorCallError(f"actor call timed out after {timeout:g} s") from exc
        except ray.exceptions.RayActorError as exc:
            raise ActorCallError(f"actor died: {exc}") from exc
        except ray.exceptions.RayTaskError as exc:
            cause = exc.cause if getattr(exc, "cause", None) is not None else exc
            raise cause from None

    def kill(self, actor: ActorRef) -> None:
        """Kill an actor at once (no clean-up runs in it); forget its name."""
        self._actors.pop(actor.name, None)
        try:
            ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already dead, or Ray already shut down
            pass

    def forget(self, actor: ActorRef) -> None:
        """Drop an actor from this runtime's books (after it stopped itself)."""
        self._actors.pop(actor.name, None)
