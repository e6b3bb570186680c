"""twin.decimal_math: exp and ln equal to decimal's correctly rounded ones, digit for digit.

The expected values are decimal's own ``x.exp(ctx)`` and ``x.ln(ctx)`` (correctly rounded,
ties to even); equality is checked on ``str`` (same digits and exponent), over inputs shaped as
the LMSR's (:mod:`twin.mechanisms.prediction`) and over wide random ones.
"""

from __future__ import annotations

import random
from decimal import ROUND_DOWN, ROUND_FLOOR, Context, Decimal, localcontext

import pytest

from twin import decimal_math as dm


def _inputs(rnd: random.Random, ctx: Context, n: int) -> list[Decimal]:
    out = []
    with localcontext(ctx):
        for i in range(n):
            kind = i % 7
            if kind == 0:  # the LMSR's e^{(lo - hi)/b}: wei differences over b = 10 tokens
                x = Decimal(-rnd.randint(0, 10**21)) / 10**19
            elif kind == 1:  # and ln(1 + that)
                x = 1 + (Decimal(-rnd.randint(0, 10**21)) / 10**19).exp()
            elif kind == 2:  # near 1, both sides (ln near 0)
                x = 1 + Decimal(rnd.uniform(-1, 1)) * Decimal(10) ** -rnd.randint(1, ctx.prec - 2)
            elif kind == 3:  # logits p / (1 - p)
                p = Decimal(rnd.random())
                x = p / (1 - p)
            elif kind == 4:
                x = Decimal(rnd.randint(1, 10**ctx.prec)) / Decimal(10) ** rnd.randint(
                    0, 2 * ctx.prec
                )
            elif kind == 5:
                x = Decimal(rnd.uniform(-300, 300))
            else:
                x = Decimal(rnd.uniform(0.5, 2.0)) * Decimal(10) ** rnd.randint(-40, 40)
            out.append(+x)  # rounded to the context, as the LMSR's operands are
    return out


@pytest.mark.parametrize("prec", [28, 60, 100])
def test_exp_and_ln_equal_decimal(prec):
    ctx = Context(prec=prec)
    for x in _inputs(random.Random(prec), ctx, 700):
        if x.adjusted() <= 4:
            assert str(dm.exp(x, ctx)) == str(x.exp(ctx)), x
        if x > 0:
            assert str(dm.ln(x, ctx)) == str(x.ln(ctx)), x


def test_special_and_exact_cases_are_decimals():
    ctx = Context(prec=60)
    for x in ("0", "-0", "1", "Infinity", "-Infinity", "1E+5", "-1E+5", "1E-200"):
        assert str(dm.exp(Decimal(x), ctx)) == str(Decimal(x).exp(ctx))
    for x in ("1", "1.000", "Infinity", "1E+500", "1E-500"):
        assert str(dm.ln(Decimal(x), ctx)) == str(Decimal(x).ln(ctx))
    # more digits than the precision: decimal's own method, same result
    long = Decimal("0." + "3" * 90)
    assert dm.exp(long, ctx) == long.exp(ctx) and dm.ln(long, ctx) == long.ln(ctx)
    # other rounding modes go to decimal
    down = Context(prec=60, rounding=ROUND_DOWN)
    assert dm.exp(Decimal("0.5"), down) == Decimal("0.5").exp(down)


def test_fixed_point_path_settles_lmsr_values(monkeypatch):
    """The fixed-point result is used (not decimal's fallback) for LMSR-shaped values: the
    rounding test settles them. ln 2 to 60 digits (the 61st is 0): 0.693147180559945309417232121
    458176568075500134360255254120680."""
    ctx = Context(prec=60)
    f = dm.DecimalFunctions(ctx)
    assert f._to_decimal(3 << 300, 301, 1000) == Decimal("1.5")  # an exact binary value
    assert str(f.ln(Decimal(2))) == "0.693147180559945309417232121458176568075500134360255254120680"
    results = []
    real = dm.DecimalFunctions._nearest
    monkeypatch.setattr(
        dm.DecimalFunctions, "_nearest", lambda *a: results.append(r := real(*a)) or r
    )
    xs = [x for x in _inputs(random.Random(1), ctx, 210)[::7] if x]  # kind 0: e^{(lo - hi)/b}
    for x in xs:
        f.exp(x)
        f.ln(ctx.add(1, x.exp(ctx)))
    assert len(results) == 2 * len(xs) and None not in results


@pytest.mark.parametrize("prec", [28, 60])
def test_pair_arithmetic_equals_the_context(prec):
    """add, mul, division by an integer and rounding on (coefficient, exponent) pairs give the
    context's values (ties to even included: operands built to land on exact midpoints)."""
    ctx = Context(prec=prec)
    f = dm.DecimalFunctions(ctx)
    rnd = random.Random(prec + 1)

    def rand_pair():
        c = rnd.choice(
            [
                rnd.randint(-(10**prec), 10**prec),
                rnd.randint(-99, 99),
                rnd.randint(10 ** (prec - 1), 10**prec) * 10 + 5,
            ]
        )
        return c, rnd.randint(-2 * prec, prec)

    for _ in range(1500):
        x, y = rand_pair(), rand_pair()
        with localcontext(Context(prec=10**6)):  # exact operands
            dx, dy = Decimal(x[0]).scaleb(x[1]), Decimal(y[0]).scaleb(y[1])
        assert f.decimal(f.round_parts(*x)) == ctx.plus(dx)
        assert f.decimal(f.add_parts(f.round_parts(*x), f.round_parts(*y))) == ctx.add(
            ctx.plus(dx), ctx.plus(dy)
        )
        assert f.decimal(f.mul_parts(f.round_parts(*x), f.round_parts(*y))) == ctx.multiply(
            ctx.plus(dx), ctx.plus(dy)
        )
        den = rnd.choice([rnd.randint(1, 10**25), 2, 8, 10**19, 3])
        assert f.decimal(f.div_parts(f.round_parts(*x), den)) == ctx.divide(ctx.plus(dx), den)
        assert f.floor_parts(f.round_parts(*x)) == int(ctx.plus(dx).to_integral_value(ROUND_FLOOR))
