"""twin.fixedmath: exp and ln in binary fixed point, against 100-digit decimal arithmetic.

The documented bound is ERR units of 2^-Q for each function (a few thousand units, from the
k ln 2 reduction); the values are checked over many magnitudes, including the edges of the
table reduction (arguments at and next to the table points) and the ends of the ranges.
"""

from __future__ import annotations

import random
from decimal import Decimal, localcontext

import pytest

from twin import fixedmath as fx

S = Decimal(1 << fx.Q)  # exact (an integer)


def _exp_ref(x: int) -> Decimal:
    return (-(Decimal(x) / S)).exp() * S


def _ln_ref(y: int) -> Decimal:
    return (Decimal(y) / S).ln() * S


@pytest.mark.parametrize("seed", range(3))
def test_exp_neg_and_ln_within_the_bound(seed):
    rng = random.Random(seed)
    with localcontext() as ctx:
        ctx.prec = 130
        for _ in range(300):
            # exp(-x) for x from 2^-(Q - 24) to 150 (beyond that the value is below one unit)
            x = rng.randrange(0, 1 << (fx.Q - rng.randrange(-7, fx.Q - 24)))
            assert abs(Decimal(fx.exp_neg(x)) - _exp_ref(x)) <= fx.ERR
            # ln y for y from 2^-(Q - 24) to 2^300, near 1 included
            y = rng.randrange(1, 1 << (fx.Q + rng.randrange(24 - fx.Q, 300)))
            assert abs(Decimal(fx.ln(y)) - _ln_ref(y)) <= fx.ERR
            z = fx.ONE + rng.randrange(-1, 2) * rng.randrange(1, 1 << rng.randrange(1, fx.Q))
            assert abs(Decimal(fx.ln(z)) - _ln_ref(z)) <= fx.ERR


def test_exact_points_and_edges():
    with localcontext() as ctx:
        ctx.prec = 130
        assert fx.exp_neg(0) in (fx.ONE - 1, fx.ONE)  # e^0 = 1, floored
        assert fx.ln(fx.ONE) == 0  # ln 1 = 0 exactly
        assert abs(fx.ln(2 * fx.ONE) - fx.LN2) <= 1
        assert fx.exp_neg(fx.LN2 * fx.Q + 1) == 0  # below 2^-Q: no unit left
        for level, table in enumerate(fx._TAB, start=1):
            for j in (1, 31, 63, 64):  # at a table point and one unit either side
                for d in (-1, 0, 1):
                    x = table[j] + d
                    assert abs(Decimal(fx.exp_neg(x)) - _exp_ref(x)) <= fx.ERR
                    y = fx.ONE + (j << (fx.Q - 6 * level)) + d
                    assert abs(Decimal(fx.ln(y)) - _ln_ref(y)) <= fx.ERR


def test_ln_ratio_is_the_log_of_the_ratio():
    with localcontext() as ctx:
        ctx.prec = 130
        for num, den in ((3, 1), (1, 3), (2**53 - 1, 1), (6004799503160661, 2**52)):
            ref = (Decimal(num) / Decimal(den)).ln() * S
            assert abs(Decimal(fx.ln_ratio(num, den)) - ref) <= 2 * fx.ERR


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: fx.exp_neg(-1), "x >= 0"),
        (lambda: fx.ln(0), "y > 0"),
        (lambda: fx.ln(1 << (fx.Q + 5000)), "out of the range"),
        (lambda: fx.ln_ratio(1, 0), "positive integers"),
    ],
)
def test_bad_arguments_are_refused(call, match):
    with pytest.raises(ValueError, match=match):
        call()
