"""Trace files (schema ``trefed.trace/1``): exact round trips, and bad files refused naming the file,
the row and the column; the synthetic generator; the data plane's replay."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from federation.dataplane.traffic import TraceReplay
from federation.errors import InputError
from federation.trace import SCHEMA, Trace, read_trace, synthetic_trace, write_trace
from federation.trace.schema import ECHO_CHARS


@pytest.fixture
def trace() -> Trace:
    rng = np.random.default_rng(0)
    t = np.cumsum(rng.exponential(0.01, 500))
    return Trace(t, rng.uniform(100, 12_000, 500), float(t[-1]) + 0.5, "test")


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_a_trace_reads_back_bit_for_bit(trace, tmp_path, suffix):
    path = write_trace(trace, tmp_path / f"t{suffix}")
    back = read_trace(path)
    assert np.array_equal(back.times_s, trace.times_s) and np.array_equal(back.sizes_bits, trace.sizes_bits)
    assert back.duration_s == trace.duration_s and back.source == "test"


def test_a_csv_carries_the_schema_in_its_header(trace, tmp_path):
    text = write_trace(trace, tmp_path / "t.csv").read_text()
    assert text.startswith(f"# schema: {SCHEMA}\n# duration_s: ")
    assert "\ntime_s,size_bits\n" in text
    # columns in another order and no metadata at all: the duration defaults to last + mean gap
    (tmp_path / "b.csv").write_text("size_bits,time_s\n8,0\n8,1\n8,3\n")
    b = read_trace(tmp_path / "b.csv")
    assert list(b.times_s) == [0, 1, 3] and b.duration_s == 4.5 and b.mean_rate_bps == 24 / 4.5


CSV_HEAD = "time_s,size_bits\n"


@pytest.mark.parametrize("body, match", [
    (CSV_HEAD + "0,8\n1,x\n", r"b\.csv: row 2, column size_bits: 'x' is not a number"),
    (CSV_HEAD + "0,8\n0.5,-3\n", r"b\.csv: row 2, column size_bits: -3\.0 must be > 0 and finite"),
    (CSV_HEAD + "0,8\n2,8\n1,8\n", r"b\.csv: row 3, column time_s: 1\.0 is before the previous row's 2\.0"),
    (CSV_HEAD + "-1,8\n", r"b\.csv: row 1, column time_s: -1\.0 must be >= 0"),
    (CSV_HEAD + "0,8\n1,8,9\n", r"b\.csv: row 2: '1,8,9' has 3 fields, expected 2"),
    (CSV_HEAD + "0,nan\n", r"row 1, column size_bits: nan must be > 0"),
    ("time,size\n0,8\n", r"b\.csv: line 1: header 'time,size' must name exactly the columns time_s, size_bits"),
    ("# schema: trefed.trace/2\n" + CSV_HEAD + "0,8\n", r"b\.csv: schema 'trefed\.trace/2' is not 'trefed\.trace/1'"),
    ("# duration_s: soon\n" + CSV_HEAD + "0,8\n", r"b\.csv: metadata duration_s 'soon' is not a number"),
    ("# duration_s: 1\n" + CSV_HEAD + "0,8\n2,8\n", r"duration_s\(=1\.0\) must be finite and > the last time_s"),
    ("# only comments\n", r"b\.csv: no header line"),
    (CSV_HEAD, r"b\.csv: no packets"),
])
def test_a_bad_csv_is_refused_naming_the_file_the_row_and_the_column(tmp_path, body, match):
    (tmp_path / "b.csv").write_text(body)
    with pytest.raises(InputError, match=match) as info:
        read_trace(tmp_path / "b.csv")
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)


def test_the_echo_of_a_bad_cell_is_bounded(tmp_path):
    (tmp_path / "b.csv").write_text(CSV_HEAD + "0," + "9" * 5 + "z" * 10_000 + "\n")
    with pytest.raises(InputError) as info:
        read_trace(tmp_path / "b.csv")
    assert "row 1, column size_bits" in str(info.value) and len(str(info.value)) < ECHO_CHARS + 120


def test_bad_parquet_files_are_refused(tmp_path, trace):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"time_s": [0.0, 1.0], "bits": [1.0, 2.0]}), tmp_path / "cols.parquet")
    with pytest.raises(InputError, match=r"cols\.parquet: columns 'time_s, bits' must be exactly time_s, size_bits"):
        read_trace(tmp_path / "cols.parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0], "size_bits": ["a", "b"]}), tmp_path / "typ.parquet")
    with pytest.raises(InputError, match=r"typ\.parquet: column size_bits has type string"):
        read_trace(tmp_path / "typ.parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0, None], "size_bits": [1.0, 2.0, 3.0]}), tmp_path / "null.parquet")
    with pytest.raises(InputError, match=r"null\.parquet: row 3, column time_s: missing value"):
        read_trace(tmp_path / "null.parquet")
    pq.write_table(pa.table({"time_s": [0.0, 1.0], "size_bits": [1.0, 0.0]}), tmp_path / "zero.parquet")
    with pytest.raises(InputError, match=r"zero\.parquet: row 2, column size_bits: 0\.0 must be > 0"):
        read_trace(tmp_path / "zero.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(InputError, match=r"junk\.parquet: not a Parquet trace"):
        read_trace(tmp_path / "junk.parquet")
    with pytest.raises(InputError, match=r"missing\.csv: no such trace file"):
        read_trace(tmp_path / "missing.csv")
    with pytest.raises(InputError, match=r"unknown trace format '\.json'"):
        write_trace(trace, tmp_path / "t.json")


def test_the_synthetic_trace_is_heavy_tailed_on_off_and_reproducible():
    a = synthetic_trace(400.0, peak_bps=2e6, mean_on_s=0.5, mean_off_s=1.5, packet_bits=12_000.0, seed=5)
    b = synthetic_trace(400.0, peak_bps=2e6, mean_on_s=0.5, mean_off_s=1.5, packet_bits=12_000.0, seed=5)
    assert np.array_equal(a.times_s, b.times_s) and a.duration_s == 400.0
    assert not np.array_equal(a.times_s, synthetic_trace(400.0, seed=6).times_s)
    gaps = np.diff(a.times_s)
    assert np.isclose(gaps.min(), 12_000 / 2e6)  # back to back at the peak while on
    assert 0.1 * 5e5 < a.mean_rate_bps < 3 * 5e5  # mean peak * 1/4 (heavy tails: loose)
    off = gaps[gaps > 0.01]
    assert off.max() > 20 * np.median(off)  # heavy-tailed off periods
    with pytest.raises(InputError, match=r"alpha\(=1\) must be > 1"):
        synthetic_trace(10.0, alpha=1.0)


def test_the_replay_is_the_trace_from_its_offset_looped_and_chunk_invariant():
    t = np.array([0.0, 0.5, 1.0, 1.5])
    sizes = np.array([1.0, 2.0, 3.0, 4.0])
    loop = TraceReplay(t, sizes, 2.0, offset=0.7)
    g = loop.generator(np.random.SeedSequence(0))
    a = [g.take(u) for u in (0.31, 1.0, 4.9)]
    times = np.concatenate([x[0] for x in a])
    assert np.allclose(times, [0.3, 0.8, 1.3, 1.8, 2.3, 2.8, 3.3, 3.8, 4.3, 4.8])
    assert list(np.concatenate([x[1] for x in a])) == [3, 4, 1, 2, 3, 4, 1, 2, 3, 4]
    once = TraceReplay(t, sizes, 2.0, offset=0.7, loop=False).generator(np.random.SeedSequence(0))
    assert list(once.take(100.0)[1]) == [3, 4] and len(once.take(200.0)[0]) == 0
    # many blocks: the same packets whatever the windows asked
    rng = np.random.default_rng(2)
    big_t = np.sort(rng.uniform(0, 10, 200_000))
    big = TraceReplay(big_t, np.ones(200_000), 10.0, offset=3.0)
    whole = big.generator(np.random.SeedSequence(0)).take(25.0)[0]
    g = big.generator(np.random.SeedSequence(0))
    parts = np.concatenate([g.take(u)[0] for u in np.linspace(0.1, 25.0, 37)])
    expected = np.concatenate([big_t[big_t >= 3.0] + -3.0, big_t + 7.0, big_t + 17.0])
    assert np.array_equal(whole, parts) and np.array_equal(whole, expected[expected < 25.0])
    with pytest.raises(InputError, match=r"trace offset\(=-1\) must be >= 0"):
        TraceReplay(t, sizes, 2.0, offset=-1.0)
