"""The in-process federation the mTLS benchmarks share (``bench_fuzz.py``, ``bench_soak.py``).

Three domain controllers (FAST-style config of ``bench_admission.py``), a broker and an auditor
served in the calling process on grpc.aio, 127.0.0.1, mutual TLS when a CA is given (every agent
with its certificate of that CA), no Ray. Also the two memory gauges the benchmarks print: this
process's resident set, and the size of the federation's SQLite files.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_admission import CONFIG as ADMISSION_CONFIG  # noqa: E402  (benchmarks/ is on sys.path)

from agents.auditor.servicer import AuditorAgent  # noqa: E402
from agents.broker.logic import TrustEntry  # noqa: E402
from agents.broker.servicer import BrokerAgent  # noqa: E402
from agents.domain.servicer import DomainControllerAgent  # noqa: E402
from federation.config import FederationConfig  # noqa: E402
from federation.tre.ca import CertificateAuthority  # noqa: E402
from federation.tre.signing import SigningKey  # noqa: E402

__all__ = ["CONFIG", "Served", "rss_mb", "sqlite_mb"]

CONFIG: dict[str, Any] = {**copy.deepcopy(ADMISSION_CONFIG), "name": "fuzz"}  # three domains, ample capacity


class Served:
    """Domains, broker and auditor served in this process (mTLS when ``ca`` is given).

    The domains keep their SQLite files in ``state`` (``DOMAIN.db``); with ``broker_db`` the broker
    keeps its store there too (``_broker.db``, as ``trefed run`` does), else in memory. Every agent
    keeps finished state ``config.broker.retention_s`` (as ``trefed run`` passes it).
    """

    def __init__(self, config: FederationConfig, state: Path, ca: CertificateAuthority | None, *,
                 broker_db: bool = False) -> None:
        self.config, self.state, self.ca, self.broker_db = config, state, ca, broker_db
        self.domains: dict[str, DomainControllerAgent] = {}
        self.keys: dict[str, SigningKey] = {}
        self.addresses: dict[str, str] = {}
        self.broker: BrokerAgent | None = None
        self.auditor: AuditorAgent | None = None

    def creds(self, role: str, name: str) -> Any:
        """Credentials of ``role`` / ``name`` issued by the CA (None without one: plaintext)."""
        return None if self.ca is None else self.ca.issue(role, name)

    async def start(self) -> Served:
        trust = []
        for d in self.config.domains:
            key = SigningKey.generate(d.id)
            agent = DomainControllerAgent(d.envelope_body(key.key_id).SerializeToString(), key.private_pem(),
                                          str(self.state / f"{d.id}.db"), sweep_interval_s=0.25,
                                          max_hold_s=self.config.broker.hold_timeout_s,
                                          retention_s=self.config.broker.retention_s,
                                          credentials=self.creds("domain", d.id))
            await agent.start()
            self.domains[d.id], self.keys[d.id] = agent, key
            self.addresses[d.id] = await agent.address()
            trust.append(TrustEntry(key.key_id, d.id, key.public_key_bytes()))
        self.broker = BrokerAgent(self.config, self.addresses, trust, credentials=self.creds("broker", "broker"),
                                  state_path=str(self.state / "_broker.db") if self.broker_db else None)
        await self.broker.start()
        akey = SigningKey.generate("auditor")
        self.auditor = AuditorAgent(akey.private_pem(), [(e.key_id, e.domain_id, e.public_key) for e in trust],
                                    await self.broker.address(), credentials=self.creds("auditor", "auditor"))
        await self.auditor.start()
        return self

    async def stop(self) -> None:
        if self.auditor is not None:
            await self.auditor.stop(0)
        if self.broker is not None:
            await self.broker.stop(0)
        for a in self.domains.values():
            await a.stop(0)


def rss_mb() -> float:
    """This process's resident set size, MiB (``/proc/self/statm``)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def sqlite_mb(state: Path) -> dict[str, float]:
    """Each SQLite database in ``state``: its file plus its ``-wal`` file, MiB, keyed by file name."""
    out = {}
    for db in sorted(state.glob("*.db")):
        wal = db.with_name(db.name + "-wal")
        out[db.name] = (db.stat().st_size + (wal.stat().st_size if wal.exists() else 0)) / 2**20
    return out
