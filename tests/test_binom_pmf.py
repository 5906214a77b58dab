"""``binom_pmf`` (the slotted on-off chain's kernel, without ``scipy.stats``) is ``scipy.stats.binom.pmf``.

The discrete :class:`~federation.calculus.arrivals.MMOO` builds its count chain from binomial
probabilities; :func:`~federation.calculus.arrivals.binom_pmf` calls the kernel that
``binom.pmf`` calls so that ``trefed bound`` need not import ``scipy.stats`` (0.8 s). SciPy's
``binom.pmf`` stays the reference: the same values to the last bit.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from federation.calculus.arrivals import MMOO, binom_pmf

PS = [0.0, 1e-300, 1e-12, 0.05, 0.1, 0.3, 1.0 / 3.0, 0.5, 0.7, 0.9, 0.95, 1.0 - 1e-12, 1.0]


@pytest.mark.parametrize("n", [0, 1, 2, 3, 5, 10, 31, 100, 1000])
@pytest.mark.parametrize("p", PS)
def test_binom_pmf_is_scipys(n, p):
    got = binom_pmf(n, p)
    want = stats.binom.pmf(np.arange(n + 1), n, p)
    assert got.dtype == want.dtype and got.shape == want.shape == (n + 1,)
    assert got.tobytes() == want.tobytes()


def test_slotted_mmoo_chain_rows_are_scipys():
    """The chain itself, as it was built with ``binom.pmf`` (rows: convolutions of two binomials)."""
    m = MMOO.discrete(0.9, 0.8, 0.35, n=6)
    p, rates = m.markov()
    for k in range(m.n + 1):
        stay = stats.binom.pmf(np.arange(k + 1), k, m.stay_on)
        turn = stats.binom.pmf(np.arange(m.n - k + 1), m.n - k, 1.0 - m.stay_off)
        assert p[k].tobytes() == np.convolve(stay, turn).tobytes()
    assert rates.tolist() == [0.35 * i for i in range(m.n + 1)]
