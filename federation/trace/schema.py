"""A tenant's packet trace: the :class:`Trace` value and its files (CSV and Parquet).

Schema ``trefed.trace/1`` (one row per packet, in time order):

====================  ========  ==========================================================
column                type      meaning
====================  ========  ==========================================================
``time_s``            float64   arrival time of the packet, s since the trace's start, >= 0,
                                nondecreasing, < ``duration_s``
``size_bits``         float64   packet size, bits, > 0 and finite
====================  ========  ==========================================================

Metadata: ``schema`` (``trefed.trace/1``), ``duration_s`` (the trace's length, s: the period
when it is replayed in a loop; default: the last time plus the mean gap between packets) and
``source`` (free text, e.g. how it was generated).

* **Parquet**: the two columns (any float or integer type, read as float64) and the metadata as
  Arrow schema metadata (keys ``trefed.schema``, ``trefed.duration_s``, ``trefed.source``).
* **CSV**: optional leading comment lines ``# key: value`` carrying the metadata
  (``# schema: trefed.trace/1``, ``# duration_s: 600``, ``# source: ...``), then the header
  line ``time_s,size_bits`` (columns in any order, extra columns refused), then one row per packet::

      # schema: trefed.trace/1
      # duration_s: 10
      time_s,size_bits
      0.0,12000
      0.0125,12000

A file whose ``schema`` names another schema or version is refused. Every problem is an
:class:`~federation.errors.InputError` naming the file, and for bad values the (1-based, data)
row and the column, with the offending text cut to :data:`ECHO_CHARS` characters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from federation.errors import InputError

__all__ = ["SCHEMA", "COLUMNS", "ECHO_CHARS", "MAX_PACKETS", "Trace", "read_trace", "write_trace"]

#: Name and version of the trace schema (in every file written).
SCHEMA = "trefed.trace/1"
#: The columns, in file order.
COLUMNS = ("time_s", "size_bits")
#: Longest piece of a bad file echoed in an error message (characters).
ECHO_CHARS = 60
#: Most packets a trace may hold (a bound on memory: 16 bytes a packet).
MAX_PACKETS = 50_000_000

_META_PREFIX = "trefed."


def _echo(text: str) -> str:
    text = text if len(text) <= ECHO_CHARS else text[:ECHO_CHARS] + "..."
    return repr(text)


@dataclass(frozen=True, eq=False)
class Trace:
    """One tenant's packets: arrival times (s) and sizes (bits), with metadata.

    Attributes
    ----------
    times_s : numpy.ndarray
        float64, nondecreasing, in ``[0, duration_s)`` (s).
    sizes_bits : numpy.ndarray
        float64, > 0 and finite (bits), one per packet.
    duration_s : float
        The trace's length (s), > the last time: the period of a looped replay. Default: the
        last time plus the mean gap between packets (so a loop keeps the mean rate).
    source : str
        Free text: where the trace comes from.

    Both arrays are made read-only. Equality is identity (arrays); compare the arrays.
    """

    times_s: np.ndarray
    sizes_bits: np.ndarray
    duration_s: float = math.nan
    source: str = ""

    def __post_init__(self) -> None:
        t = np.array(self.times_s, dtype=np.float64)
        s = np.array(self.sizes_bits, dtype=np.float64)
        if t.ndim != 1 or s.shape != t.shape:
            raise InputError(f"trace: times_s and sizes_bits must be 1-d of one length, got shapes {t.shape} and {s.shape}")
        if len(t) == 0:
            raise InputError("trace: no packets")
        if len(t) > MAX_PACKETS:
            raise InputError(f"trace: {len(t)} packets, more than the {MAX_PACKETS} a trace may hold")
        bad = ~np.isfinite(t) | (t < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"trace: row {i + 1}, column time_s: {float(t[i])!r} must be >= 0 and finite (s)")
        dec = np.diff(t) < 0
        if dec.any():
            i = int(np.argmax(dec)) + 1
            raise InputError(f"trace: row {i + 1}, column time_s: {float(t[i])!r} is before the previous row's "
                             f"{float(t[i - 1])!r} (times must be nondecreasing)")
        bad = ~(np.isfinite(s) & (s > 0))
        if bad.any():
            i = int(np.argmax(bad))
            raise InputError(f"trace: row {i + 1}, column size_bits: {float(s[i])!r} must be > 0 and finite (bits)")
        duration = float(self.duration_s)
        last = float(t[-1])
        if math.isnan(duration):
            gap = last / (len(t) - 1) if len(t) > 1 and last > 0 else 1.0
            duration = last + gap
        if not (math.isfinite(duration) and duration > last):
            raise InputError(f"trace: duration_s(={duration!r}) must be finite and > the last time_s ({last!r})")
        t.setflags(write=False)
        s.setflags(write=False)
        object.__setattr__(self, "times_s", t)
        object.__setattr__(self, "sizes_bits", s)
        object.__setattr__(self, "duration_s", duration)
        object.__setattr__(self, "source", str(self.source))

    def __len__(self) -> int:
        return len(self.times_s)

    @property
    def total_bits(self) -> float:
        """Bits in the whole trace."""
        return float(self.sizes_bits.sum())

    @property
    def mean_rate_bps(self) -> float:
        """Mean rate over the trace's duration, bits/s."""
        return self.total_bits / self.duration_s

    @property
    def mean_size_bits(self) -> float:
        """Mean packet size, bits."""
        return float(self.sizes_bits.mean())

    @property
    def max_size_bits(self) -> float:
        """Largest packet, bits."""
        return float(self.sizes_bits.max())


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise InputError(f"{path}: unknown trace format {path.suffix!r} (use .csv or .parquet)")


def _check_meta(path: Path, meta: dict[str, str]) -> tuple[float, str]:
    """(duration_s, source) of the metadata; refuses another schema and a bad duration."""
    schema = meta.get("schema")
    if schema is not None and schema != SCHEMA:
        raise InputError(f"{path}: schema {_echo(schema)} is not {SCHEMA!r}")
    duration = math.nan
    if "duration_s" in meta:
        try:
            duration = float(meta["duration_s"])
        except ValueError:
            raise InputError(f"{path}: metadata duration_s {_echo(meta['duration_s'])} is not a number (s)") from None
        if not (math.isfinite(duration) and duration > 0):
            raise InputError(f"{path}: metadata duration_s(={duration!r}) must be > 0 and finite (s)")
    return duration, meta.get("source", "")


def _build(path: Path, t: np.ndarray, s: np.ndarray, meta: dict[str, str]) -> Trace:
    duration, source = _check_meta(path, meta)
    try:
        return Trace(t, s, duration, source)
    except InputError as exc:
        raise InputError(f"{path}: {str(exc).removeprefix('trace: ')}") from None


def _read_csv(path: Path) -> Trace:
    meta: dict[str, str] = {}
    try:
        fh = path.open("r", encoding="utf-8", newline="")
    except OSError as exc:
        raise InputError(f"{path}: cannot read trace ({exc.strerror or exc})") from None
    with fh:
        try:
            line_no = 0
            header = None
            for raw in fh:
                line_no += 1
                line = raw.strip()
                if not line:
                    continue
                if line.startswith("#"):
                    key, sep, value = line[1:].partition(":")
                    if sep:
                        meta[key.strip()] = value.strip()
                    continue
                header = line
                break
            if header is None:
                raise InputError(f"{path}: no header line (expected {','.join(COLUMNS)})")
            names = [h.strip() for h in header.split(",")]
            if sorted(names) != sorted(COLUMNS):
                raise InputError(f"{path}: line {line_no}: header {_echo(header)} must name exactly the columns "
                                 f"{', '.join(COLUMNS)}")
            col = {n: i for i, n in enumerate(names)}
            body = fh.read()
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: not a CSV trace: not UTF-8 text (byte {exc.start})") from None
    _check_meta(path, meta)
    rows = body.split("\n")
    if rows and rows[-1].strip() == "":
        rows.pop()
    if len(rows) > MAX_PACKETS:
        raise InputError(f"{path}: {len(rows)} rows, more than the {MAX_PACKETS} a trace may hold")
    cells = [r.split(",") for r in rows]
    for i, c in enumerate(cells):
        if len(c) != 2:
            raise InputError(f"{path}: row {i + 1}: {_echo(rows[i].rstrip())} has {len(c)} fields, expected 2 "
                             f"({','.join(names)})")
    out = {}
    for name in COLUMNS:
        j = col[name]
        texts = [c[j].strip() for c in cells]
        try:
            out[name] = np.array(texts, dtype=np.float64)
        except ValueError:
            for i, x in enumerate(texts):
                try:
                    float(x)
                except ValueError:
                    raise InputError(f"{path}: row {i + 1}, column {name}: {_echo(x)} is not a number") from None
            raise  # pragma: no cover - numpy and float() agree
    return _build(path, out["time_s"], out["size_bits"], meta)


def _read_parquet(path: Path) -> Trace:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except OSError as exc:
        if not path.exists() or path.is_dir():
            raise InputError(f"{path}: cannot read trace ({getattr(exc, 'strerror', None) or exc})") from None
        raise InputError(f"{path}: not a Parquet trace ({_echo(str(exc))})") from None
    except (pa.ArrowException, ValueError) as exc:
        raise InputError(f"{path}: not a Parquet trace ({_echo(str(exc))})") from None
    schema = pf.schema_arrow
    names = list(schema.names)
    if sorted(names) != sorted(COLUMNS):
        raise InputError(f"{path}: columns {_echo(', '.join(names))} must be exactly {', '.join(COLUMNS)}")
    for name in COLUMNS:
        typ = schema.field(name).type
        if not (pa.types.is_floating(typ) or pa.types.is_integer(typ)):
            raise InputError(f"{path}: column {name} has type {typ}, expected a number (float64)")
    if pf.metadata.num_rows > MAX_PACKETS:
        raise InputError(f"{path}: {pf.metadata.num_rows} rows, more than the {MAX_PACKETS} a trace may hold")
    raw = schema.metadata or {}
    meta = {k.decode("utf-8", "replace").removeprefix(_META_PREFIX): v.decode("utf-8", "replace")
            for k, v in raw.items() if k.startswith(_META_PREFIX.encode())}
    try:
        table = pf.read()
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a Parquet trace ({_echo(str(exc))})") from None
    cols = {}
    for name in COLUMNS:
        c = table.column(name)
        if c.null_count:
            i = int(np.argmax(c.is_null().to_numpy(zero_copy_only=False)))
            raise InputError(f"{path}: row {i + 1}, column {name}: missing value (null)")
        cols[name] = c.to_numpy().astype(np.float64)
    return _build(path, cols["time_s"], cols["size_bits"], meta)


def read_trace(path: str | Path) -> Trace:
    """Read a trace file (``.csv`` or ``.parquet``, schema ``trefed.trace/1``; see the module docstring).

    Raises
    ------
    InputError
        The file cannot be read, is of another format or schema, or a value is bad; the message
        names the file, and the row (1-based, data rows) and column of a bad value.
    """
    path = Path(path)
    kind = _kind(path)
    if not path.is_file():
        raise InputError(f"{path}: no such trace file")
    return _read_csv(path) if kind == "csv" else _read_parquet(path)


def write_trace(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` to ``path`` (``.csv`` or ``.parquet`` by its suffix); returns the path.

    Times and sizes are written exactly (CSV: ``repr`` of each float, which reads back to the
    same float64).
    """
    path = Path(path)
    kind = _kind(path)
    meta = {"schema": SCHEMA, "duration_s": repr(trace.duration_s), "source": trace.source}
    try:
        if kind == "csv":
            with path.open("w", encoding="utf-8", newline="") as fh:
                for k, v in meta.items():
                    fh.write(f"# {k}: {v}\n")
                fh.write(",".join(COLUMNS) + "\n")
                fh.write("".join(f"{a!r},{b!r}\n" for a, b in zip(trace.times_s.tolist(), trace.sizes_bits.tolist())))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.table({"time_s": trace.times_s, "size_bits": trace.sizes_bits})
            table = table.replace_schema_metadata({_META_PREFIX + k: v for k, v in meta.items()})
            pq.write_table(table, path)
    except OSError as exc:
        raise InputError(f"{path}: cannot write trace ({exc.strerror or exc})") from None
    return path
