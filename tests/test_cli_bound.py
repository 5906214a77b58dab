"""``trefed bound``: in-process and as a subprocess."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from agents.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
MODS = ("agents.cli.bound",)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["bound", *argv], MODS)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_delay_mode_json_mm1(capsys):
    code, out, _ = _run(capsys, "--arrival", "poisson:rate=0.8,size=exp", "--hop", "rate=1", "--delay", "10", "--json")
    assert code == 0
    obj = json.loads(out)
    # a packet's sojourn in M/M/1: P(S > d) = exp(-(mu - lambda) d), its own service included
    assert obj["violation_probability"] == pytest.approx(math.exp(-2.0), rel=1e-9)
    assert obj["method"] == "martingale"
    assert obj["theta"] == pytest.approx(0.2)
    assert len(obj["hops"]) == 1 and obj["hops"][0]["rate"] == 1.0
    assert sum(p["delay"] for p in obj["per_domain"]) <= 10 + 1e-9
    assert sum(p["epsilon"] for p in obj["per_domain"]) <= obj["violation_probability"] * (1 + 1e-9)
    # one hop: its budget is the bound itself, backed
    assert obj["per_domain"][0]["backed"] and obj["per_domain"][0]["hop_bound"] <= obj["per_domain"][0]["epsilon"]


def test_per_hop_budgets_give_every_hop_a_packets_pass_and_say_which_are_backed(capsys):
    """Fixed-size packets of 2 bits through links of 1 bit/s: no hop before the last can hold a
    packet less than 2 s (it used to give hop 1 a budget of 0 s); a budget is backed only where
    the hop's own bound at d_i is within eps_i, and the text says so hop by hop."""
    argv = ["--arrival", "poisson:rate=0.2,mean_size=2", "--hop", "rate=1", "--hop", "rate=1", "--hop", "rate=1",
            "--epsilon", "1e-3"]
    code, out, _ = _run(capsys, *argv, "--json")
    assert code == 0
    per = json.loads(out)["per_domain"]
    assert all(p["delay"] >= 2.0 - 1e-9 for p in per[:-1]), per
    for p in per:
        assert 0.0 <= p["hop_bound"] <= 1.0 and p["backed"] == (p["hop_bound"] <= p["epsilon"])
    code, out, _ = _run(capsys, *argv)
    lines = [ln for ln in out.splitlines() if ln.strip().startswith("hop ")]
    assert len(lines) == 3 and all(("[backed]" in ln) != ("not backed" in ln) for ln in lines)
    code, out, _ = _run(capsys, "--arrival", "token-bucket:sigma=1,rho=0.5", "--hop", "rate=1", "--hop", "rate=2",
                        "--epsilon", "1e-3", "--json")
    per = json.loads(out)["per_domain"]
    assert per[0]["delay"] < 1.0 and not per[0]["backed"]  # a greedy burst holds hop 1 for 1 s


def test_epsilon_mode_discrete_with_cross(capsys):
    argv = [
        "--time", "discrete",
        "--arrival", "mmoo:stay_on=0.9,stay_off=0.9,peak=1,n=10",
        "--hop", "rate=7", "--hop", "rate=8,service=exp,latency=2",
        "--cross", "2=poisson:rate=0.5",
        "--epsilon", "1e-3", "--json",
    ]
    code, out, _ = _run(capsys, *argv)
    assert code == 0
    obj = json.loads(out)
    assert obj["delay"] >= 2 and float(obj["delay"]).is_integer()
    assert obj["method"] == "mgf-tandem" and obj["theta"] > 0
    assert [p["hop"] for p in obj["per_domain"]] == [1, 2]
    assert sum(p["delay"] for p in obj["per_domain"]) <= obj["delay"] + 1e-9
    assert sum(p["epsilon"] for p in obj["per_domain"]) <= 1e-3 * (1 + 1e-9)
    # consistent with delay mode at the returned delay
    code, out2, _ = _run(capsys, *argv[:-3], "--delay", str(obj["delay"]), "--json")
    assert json.loads(out2)["violation_probability"] <= 1e-3
    # dependent aggregation can only loosen the bound
    code, out3, _ = _run(
        capsys, *argv[:4], "--arrival", "poisson:rate=0.3", *argv[4:-1], "--dependent", "--json"
    )
    code, out4, _ = _run(capsys, *argv[:4], "--arrival", "poisson:rate=0.3", *argv[4:])
    assert json.loads(out3)["delay"] >= json.loads(out4)["delay"]


def test_fifo_multiplexing_is_chosen_on_the_command_line(capsys):
    argv = ["--arrival", "poisson:rate=0.3", "--hop", "rate=1", "--hop", "rate=1",
            "--cross", "1=poisson:rate=0.3", "--cross", "2=poisson:rate=0.3", "--epsilon", "1e-3", "--json"]
    code, out, _ = _run(capsys, *argv)
    blind = json.loads(out)
    assert code == 0 and blind["multiplexing"] == "blind" and blind["method"] == "mgf-tandem"
    code, out, _ = _run(capsys, *argv, "--multiplexing", "fifo")
    fifo = json.loads(out)
    assert code == 0 and fifo["multiplexing"] == "fifo" and fifo["method"] == "fifo-recursion"
    assert fifo["theta_unit"] == "1/s" and blind["theta_unit"] == "1/bit"
    code, out, _ = _run(capsys, *argv[:-1], "--multiplexing", "fifo")
    assert code == 0 and "[fifo-recursion]" in out and "1/s" in out
    assert fifo["delay"] < blind["delay"]
    code, out, _ = _run(capsys, "--arrival", "poisson:rate=0.3", "--hop", "rate=1", "--cross", "1=poisson:rate=0.3",
                        "--multiplexing", "fifo", "--delay", "5", "--json")
    assert code == 0 and json.loads(out)["method"] == "martingale-fifo"
    # slotted: the slotted busy-period bound, theta per slot
    code, out, _ = _run(capsys, "--time", "discrete", "--arrival", "exp-increments:lamb=3.3333", "--hop", "rate=1",
                        "--hop", "rate=1", "--cross", "1=poisson:rate=0.3,size=exp", "--cross", "2=poisson:rate=0.3,size=exp",
                        "--multiplexing", "fifo", "--epsilon", "1e-3", "--json")
    slotted = json.loads(out)
    assert code == 0 and slotted["method"] == "fifo-slotted" and slotted["theta_unit"] == "1/slot"
    assert float(slotted["delay"]).is_integer()


def test_deterministic_text_output(capsys):
    code, out, _ = _run(
        capsys, "--arrival", "token-bucket:sigma=1000,rho=100", "--hop", "rate=1000,latency=0.01,prop=0.002",
        "--hop", "rate=500", "--epsilon", "1e-3",
    )
    assert code == 0
    assert "deterministic" in out and "2.012" in out
    assert "hop 2" in out


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--arrival", "poisson:rate=1,sizee=exp", "--hop", "rate=2", "--delay", "1"], "sizee"),
        (["--arrival", "poisson:rate=1", "--hop", "rate=2,latncy=1", "--delay", "1"], "latncy"),
        (["--arrival", "poisson:rate=1", "--hop", "rate=2", "--cross", "3=poisson:rate=1", "--delay", "1"], "HOP"),
        (["--arrival", "exp-increments:lamb=1", "--hop", "rate=2", "--delay", "1"], "continuous time"),
        (["--arrival", "poisson:rate=1", "--hop", "rate=2", "--epsilon", "2"], "epsilon"),
        (["--arrival", "mmoo:on=1,off=1,peak=-1", "--hop", "rate=2", "--delay", "1"], "peak"),
    ],
)
def test_bad_specs_exit_2_naming_the_key(capsys, argv, needle):
    code, _, err = _run(capsys, *argv)
    assert code == 2
    assert needle in err and "Traceback" not in err


@pytest.mark.parametrize("argv,where", [
    (["--arrival", "poisson:rate=5", "--hop", "rate=10", "--hop", "rate=4"], "load rho = 1.25 >= 1 at hop 2"),
    (["--arrival", "poisson:rate=5", "--hop", "rate=10", "--hop", "rate=10", "--cross", "2=poisson:rate=6"],
     "load rho = 1.1 >= 1 at hop 2 (mean arrival rate 11 bits/s, 6 of it cross traffic"),
    # rho = 1 up to rounding (ten sources of mean 0.5): the calculus used to answer a vacuous P <= 1
    (["--time", "discrete", "--arrival", "mmoo:stay_on=0.9,stay_off=0.9,peak=1,n=10", "--hop", "rate=5"],
     "load rho = 1 >= 1 at hop 1"),
])
def test_unstable_exits_2_with_reason(capsys, argv, where):
    code, out, err = _run(capsys, *argv, "--delay", "1")
    assert code == 2 and out == ""
    assert err.startswith("trefed bound: error: unstable model: ") and where in err, err


def test_help_says_what_is_bounded(capsys):
    with pytest.raises(SystemExit):
        main(["bound", "--help"], MODS)
    out = capsys.readouterr().out
    assert "virtual delay" in out and "slotted" in out


def test_subprocess_console_entry():
    """The installed console script itself (no fallback: a broken entry point must fail here)."""
    script = Path(sys.executable).with_name("trefed")
    assert script.exists(), f"console script {script} missing: pip install -e ."
    argv = ["bound", "--arrival", "poisson:rate=0.5,size=exp", "--hop", "rate=1", "--epsilon", "1e-3", "--json"]
    res = subprocess.run([str(script), *argv], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    obj = json.loads(res.stdout)
    assert obj["delay"] == pytest.approx(math.log(1 / 1e-3) / 0.5, rel=1e-4)  # M/M/1 sojourn
    bad = subprocess.run([str(script), "bound", "--arrival", "poisson:rate=0.5,sizee=exp", "--hop", "rate=1",
                          "--delay", "1"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "sizee" in bad.stderr
    module = subprocess.run([sys.executable, "-m", "agents.cli", *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert module.returncode == 0 and json.loads(module.stdout) == obj, module.stderr
