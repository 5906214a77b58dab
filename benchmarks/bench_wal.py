"""Why a busy domain's WAL file sits at the checkpoint backstop (``agents/domain/store.py``).

``python benchmarks/bench_wal.py [--seconds S]``

One :class:`~agents.domain.store.ReservationStore` (``background_checkpoint=True``, as a domain
controller opens it) in a temporary directory; this thread commits 8 finished reservations and 8
logged responses every ~2 ms (a domain at a few hundred admissions/s), a worker thread runs the
store's PASSIVE checkpoint every 0.25 s (as the controller's sweep does). Each checkpoint's result
(``busy``, frames in the WAL, frames copied) and the WAL file's size are recorded. A checkpoint that
copies every frame it saw does not restart the WAL: the writer restarts it only when it begins a
transaction with nothing left to copy, and here frames are always appended while the threaded
checkpoint runs; the log restarts when the backstop automatic checkpoint (20 000 pages) runs inside
a commit. JSON to ``benchmarks/out/wal.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.domain.store import ReservationRecord, ReservationStore  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"


def run(seconds: float) -> dict:
    """Write and checkpoint for ``seconds``; the checkpoints' results and the WAL's sizes."""
    with tempfile.TemporaryDirectory(prefix="trefed-wal-") as tmp:
        path = Path(tmp) / "d.db"
        store = ReservationStore(path, background_checkpoint=True)
        stop = time.monotonic() + seconds
        log: list[dict] = []

        def checkpointer() -> None:
            store.checkpoint()  # opens the second connection
            while time.monotonic() < stop:
                time.sleep(0.25)
                with store._checkpoint_lock:  # noqa: SLF001 - the store's own checkpoint, with its answer
                    assert store._checkpointer is not None  # noqa: SLF001
                    busy, frames, copied = store._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()  # noqa: SLF001
                wal = path.with_name(path.name + "-wal")
                log.append({"busy": busy, "wal_frames": frames, "copied": copied,
                            "wal_mb": wal.stat().st_size / 2**20 if wal.exists() else 0.0})

        worker = threading.Thread(target=checkpointer)
        worker.start()
        rows = 0
        try:
            while time.monotonic() < stop:
                with store.transaction():
                    for _ in range(8):
                        store.put(ReservationRecord(f"r{rows}", "t", "c", 1e6, 1e4, 0.01, 1e-3, 5, 0.0, 5.0, 0.0,
                                                    b"f" * 32))
                        store.put_response("Prepare", f"p{rows}", b"f" * 32, b"x" * 300, 0.0)
                        rows += 1
                time.sleep(0.002)
        finally:
            worker.join()
            store.close()
    complete = sum(1 for c in log if c["copied"] == c["wal_frames"])
    restarts = sum(1 for a, b in zip(log, log[1:]) if b["wal_frames"] < a["wal_frames"])
    return {"seconds": seconds, "rows": rows, "checkpoints": len(log), "complete": complete, "restarts": restarts,
            "max_wal_frames": max((c["wal_frames"] for c in log), default=0),
            "max_wal_mb": max((c["wal_mb"] for c in log), default=0.0), "log": log}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="how long to write, s (default 15)")
    args = ap.parse_args(argv)
    if not 0 < args.seconds <= 600:
        ap.error(f"--seconds(={args.seconds!r}) must be in (0, 600]")
    r = run(args.seconds)
    print(f"{r['rows']} rows in {args.seconds:g} s; {r['checkpoints']} PASSIVE checkpoints, {r['complete']} copied every "
          f"frame they saw; the WAL restarted {r['restarts']} times, at most {r['max_wal_frames']} frames "
          f"({r['max_wal_mb']:.1f} MiB file)")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "wal.json").write_text(json.dumps(r, indent=2))
    print(f"  wrote {OUT / 'wal.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
