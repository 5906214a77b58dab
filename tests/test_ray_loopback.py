"""Ray runs on 127.0.0.1 only, and so do the agents' gRPC servers (read from /proc, no tools needed)."""

from __future__ import annotations

import os
from pathlib import Path

import agents.runtime
from agents.runtime import Runtime


def _listeners() -> dict[int, list[tuple[str, int]]]:
    """inode -> [(local ip, port)] of every listening TCP socket (IPv4 and IPv6)."""
    out: dict[int, list[tuple[str, int]]] = {}
    for name, v6 in (("tcp", False), ("tcp6", True)):
        path = Path("/proc/net") / name
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            parts = line.split()
            local, state, inode = parts[1], parts[3], int(parts[9])
            if state != "0A":  # LISTEN
                continue
            hexip, hexport = local.split(":")
            if v6:
                words = [hexip[i:i + 8] for i in range(0, 32, 8)]
                raw = b"".join(bytes.fromhex(w)[::-1] for w in words)
                if raw[:12] == b"\0" * 10 + b"\xff\xff":
                    ip = ".".join(str(b) for b in raw[12:])
                else:
                    ip = ":".join(raw[i:i + 2].hex() for i in range(0, 16, 2))
            else:
                ip = ".".join(str(b) for b in bytes.fromhex(hexip)[::-1])
            out.setdefault(inode, []).append((ip, int(hexport, 16)))
    return out


def _descendants(root: int) -> set[int]:
    parent: dict[int, int] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            parent[int(d.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in found]
        found.update(kids)
        frontier.extend(kids)
    return found


def _listening_sockets_of(pids: set[int]) -> list[tuple[int, str, int]]:
    listeners = _listeners()
    out = []
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            fds = list(fd_dir.iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                for ip, port in listeners.get(int(target[8:-1]), []):
                    out.append((pid, ip, port))
    return out


def test_public_names():
    assert all(hasattr(agents.runtime, n) for n in agents.runtime.__all__)


def test_ray_node_address_is_loopback(ray_runtime):
    assert Runtime.is_running()
    assert ray_runtime.node_ip_address() == "127.0.0.1"
    assert ray_runtime.gcs_address().startswith("127.0.0.1:")


def test_every_ray_and_agent_listener_binds_loopback(fast_federation):
    sockets = _listening_sockets_of(_descendants(os.getpid()))
    assert len(sockets) >= 6, sockets  # GCS, raylet, object manager, workers, our gRPC servers
    not_loopback = [(pid, ip, port) for pid, ip, port in sockets if ip not in ("127.0.0.1", "::1")]
    assert not not_loopback, f"listeners not on loopback: {not_loopback}"
    ports = {port for _, ip, port in sockets}
    for address in (fast_federation.broker_address, *fast_federation.domain_addresses.values()):
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) in ports, f"{address} is not a listener of this session"
