"""``exp`` and ``ln`` of a :class:`~decimal.Decimal`, equal to ``x.exp(ctx)`` and ``x.ln(ctx)``,
several times faster.

The :mod:`decimal` module rounds ``exp`` and ``ln`` correctly (to the nearest value with the
context's precision, ties to even) but is slow at high precision (about 60 us for a 60-digit
exponential, 130 us for a logarithm). The prediction markets (:mod:`twin.mechanisms.prediction`)
evaluate the LMSR with 60-digit decimals several times per bet, so here the same functions are
computed in binary fixed point with Python integers, with an error bound, and rounded to the
context's precision. Where the bound does not settle the rounding (the value is too close to a
midpoint between two neighbouring decimals, or to a power of ten), the :mod:`decimal` method is
called. Either way the result is the correctly rounded value, hence the one :mod:`decimal`
returns: same value, same digits and exponent (an inexact correctly rounded result has exactly
``prec`` digits; the exact cases ``exp(0)`` and ``ln(1)`` are left to :mod:`decimal`).

Method, with ``q`` working bits (``3.33 prec + 40``, more for a logarithm near 0):

- ``exp(x)``: ``x = k ln 2 + r`` with ``0 <= r < ln 2``; then, level by level (``L = 1..5``), ``r``
  loses the largest tabulated ``ln(1 + j 2^(-6L))`` (``j = 0..64``) not above it, so that
  ``r < 2^-30`` is left; ``exp(r)`` by its Taylor series (Horner); ``exp(x) = 2^k exp(r)
  prod (1 + j_L 2^(-6L))`` (each factor a multiplication by a small integer).
- ``ln(y)``: ``y = 2^k m`` with ``1 <= m < 2``; level by level ``m`` is divided by the largest
  ``1 + j 2^(-6L)`` not above it (a division by a small integer), leaving ``w < 1 + 2^-30``;
  ``ln w`` by the series of ``ln(1 + s)``; ``ln y = k ln 2 + sum ln(1 + j_L 2^(-6L)) + ln w``.
  ``q`` is raised by the number of leading zero bits of ``|y - 1|`` so that a logarithm near 0
  keeps its significant bits.

The tables (``ln 2`` and ``ln(1 + j 2^(-6L))`` to ``_BITS`` bits, from ``ln(1 + f) =
2 atanh(f / (2 + f))``) are built on first use. Each step truncates; the error bound used in
the rounding test, a few hundred units of the last working bit, is over ten times the sum of
the truncation errors.
"""

from __future__ import annotations

import math
from decimal import ROUND_HALF_EVEN, Context, Decimal, Inexact, Rounded

_BITS = 1200  # table precision: inputs of up to 600 digits (``prec`` up to 300)
_LEVELS = 5  # table levels: 6 bits each
_LOG10_2 = math.log10(2.0)
_LOG2_10 = math.log2(10.0)

_ln2: int = 0  # ln 2 * 2^_BITS
_tab: list[list[int]] = []  # _tab[L - 1][j] = ln(1 + j 2^(-6L)) * 2^_BITS, j = 0..64
_p10: list[int] = [1]
_exact_ctx: dict[int, Context] = {}
_recip: dict[tuple[int, int, int], int] = {}  # (s, shift, g) -> ceil(2^(shift + g) / 10^s)
_series: dict[int, tuple[list[int], list[int]]] = {}  # q -> (1/n!, 1/n) coefficients
_shifted: dict[int, tuple[int, list[list[int]]]] = {}  # q -> ln 2 and the tables at scale 2^q


def _atanh_ratio(a: int, c: int, bits: int) -> int:
    """``atanh(a / c) * 2^bits`` for ``0 <= a / c <= 1/3``, truncated (error below 2 units for
    the few hundred terms it takes)."""
    g = bits + 16
    term = (a << g) // c
    aa, cc = a * a, c * c
    total, i = 0, 1
    while term:
        total += term // i
        term = term * aa // cc
        i += 2
    return total >> 16


def _tables() -> None:
    global _ln2
    if _ln2:
        return
    _ln2 = 2 * _atanh_ratio(1, 3, _BITS)  # ln 2 = 2 atanh(1/3)
    for level in range(1, _LEVELS + 1):
        s = 6 * level
        # ln(1 + j/2^s) = 2 atanh(j / (2^(s+1) + j))
        _tab.append([2 * _atanh_ratio(j, (1 << (s + 1)) + j, _BITS) for j in range(65)])


def _at_scale(q: int) -> tuple[int, list[list[int]]]:
    """``ln 2`` and the tables truncated to scale ``2^q`` (kept for the scales of exponentials
    and of logarithms away from 0)."""
    t = _shifted.get(q)
    if t is None:
        _tables()
        sh = _BITS - q
        t = (_ln2 >> sh, [[v >> sh for v in level] for level in _tab])
        if len(_shifted) < 8:
            _shifted[q] = t
    return t


def _pow10(n: int) -> int:
    if n > 700:
        return 10**n
    while len(_p10) <= n:
        _p10.append(_p10[-1] * 10)
    return _p10[n]


def _coefficients(q: int) -> tuple[list[int], list[int]]:
    """Series coefficients at scale ``2^q`` for arguments below ``2^-30``: ``2^q / n!`` for the
    exponential and ``2^q / n`` for ``ln(1 + z)``, ``n = 0..N``, each series with the terms that
    leave a remainder below ``2^-(q + 8)``."""
    c = _series.get(q)
    if c is None:
        n_exp = n_ln = 1
        while 30 * (n_exp + 1) + math.lgamma(n_exp + 2) / math.log(2) < q + 8:
            n_exp += 1
        while 30 * (n_ln + 1) + math.log2(n_ln + 1) < q + 8:
            n_ln += 1
        one = 1 << q
        inv_fact, f = [one], 1
        for i in range(1, n_exp + 1):
            f *= i
            inv_fact.append(one // f)
        inv = [one] + [one // i for i in range(1, n_ln + 1)]
        c = _series[q] = (inv_fact, inv)
    return c


def _check_context(ctx: Context) -> int | None:
    """``ctx.prec`` when the fixed-point path serves this context, else None."""
    if (ctx.rounding != ROUND_HALF_EVEN or ctx.prec > 300 or ctx.Emax < 999_999
            or ctx.Emin > -999_999):  # fmt: skip
        return None  # (results here never overflow or underflow the default exponent range)
    return ctx.prec


def _coefficient(x: Decimal, prec: int) -> tuple[int, int] | None:
    """``(c, s)`` with ``x = c * 10^-s`` exactly, ``c`` an integer of ``prec`` digits at most
    (None when ``x`` has more digits than ``prec``)."""
    ectx = _exact_ctx.get(prec)
    if ectx is None:
        ectx = _exact_ctx[prec] = Context(prec=prec, traps=[Inexact, Rounded])
    s = prec - 1 - x.adjusted()
    try:
        return int(x.scaleb(s, ectx)), s
    except (Inexact, Rounded):
        return None


def _scaled(c: int, s: int, shift: int, prec: int) -> int:
    """``c * 10^-s * 2^shift`` (``0 <= c < 10^prec``, ``shift >= 0`` when ``s > 0``), floored
    or one unit above the floor: within one unit of the exact value."""
    if s <= 0:
        v = c * _pow10(-s)
        return v << shift if shift >= 0 else v >> -shift
    g = int(prec * _LOG2_10) + 64  # c < 2^(g - 64): c r / 2^g exceeds the exact value by < 2^-64
    key = (s, shift, g)
    r = _recip.get(key)
    if r is None:
        r = _recip[key] = -(-(1 << (shift + g)) // _pow10(s))
    return (c * r) >> g


def _to_decimal(v: int, f: int, err: int, prec: int, ctx: Context) -> Decimal | None:
    """The ``prec``-digit decimal nearest ``v / 2^f``, given that the true value is within
    ``err / 2^f`` of it; None when that does not settle the rounding."""
    neg = v < 0
    if neg:
        v = -v
    if v <= err:
        return None
    bl = v.bit_length()
    top = v >> (bl - 60) if bl > 60 else v
    lg = math.log10(top) + (bl - 60 if bl > 60 else 0) * _LOG10_2 - f * _LOG10_2
    e10 = math.floor(lg) - (prec - 1)
    lo, hi = _pow10(prec - 1), _pow10(prec)
    for _ in range(3):  # (once, unless the estimate of the exponent is one off)
        q10 = -e10
        if q10 >= 0:
            num, e = v * _pow10(q10), err * _pow10(q10)
            if f >= 0:
                n = num >> f
                rem, den = num - (n << f), 1 << f
            else:
                n, rem, den, e = num << -f, 0, 1, e << -f
        else:
            den = _pow10(-q10) << f if f >= 0 else _pow10(-q10)
            num, e = (v, err) if f >= 0 else (v << -f, err << -f)
            n, rem = divmod(num, den)
        if n >= hi:
            e10 += 1
        elif n < lo:
            e10 -= 1
        else:
            break
    else:  # pragma: no cover - the estimate is off by one at most
        return None
    if 2 * e >= den or abs(2 * rem - den) <= 2 * e or (n == lo and rem <= e):
        return None  # near a midpoint, or just above a power of ten: undecided
    if 2 * rem > den:
        n += 1
        if n == hi:
            n, e10 = lo, e10 + 1
    return Decimal(-n if neg else n).scaleb(e10, ctx)  # exact: n has prec digits


def exp(x: Decimal, ctx: Context) -> Decimal:
    """``x.exp(ctx)``."""
    prec = _check_context(ctx)
    if prec is None or not x.is_finite() or not x or not -100 <= x.adjusted() <= 3:
        return x.exp(ctx)  # exact (x = 0), special, or outside the range served here
    cs = _coefficient(x, prec)
    if cs is None:
        return x.exp(ctx)
    c, s = cs
    q = int(prec * _LOG2_10) + 40
    ln2, tab = _at_scale(q)
    xq = _scaled(abs(c), s, q, prec)  # |x| 2^q, error < 1 unit
    if c < 0:
        xq = -xq
    k = xq // ln2
    r = xq - k * ln2  # 0 <= r < ln 2, error < 2 + |k| units (x and ln 2's truncation)
    # levels: r -= ln(1 + j/2^(6L)), the largest table entry not above r
    factors = []
    for level in range(1, _LEVELS + 1):
        t = tab[level - 1]
        b = 6 * level
        # first guess: j = 2^b expm1(r) (float) on the first level; below, r < 2^-6 and
        # floor(r 2^b) is at most one short (ln(1 + f) <= f)
        j = min(63, int(math.expm1(r / (1 << q)) * 64)) if level == 1 else (r >> (q - b))
        while t[j] > r:
            j -= 1
        while j < 64 and t[j + 1] <= r:
            j += 1
        if j:
            r -= t[j]
            factors.append((j + (1 << b), b))
    inv_fact, _ = _coefficients(q)
    y = inv_fact[-1]
    for cn in reversed(inv_fact[:-1]):  # exp(r), Horner
        y = cn + ((y * r) >> q)
    for m, b in factors:
        y = (y * m) >> b
    # error, in units of y (about 2^q): input 2, reduction 2|k|, tables 2 per level, series and
    # products one per step; y <= 2 exp(r) scales them by 2 at most
    err = 2 * (8 + 2 * abs(k) + 3 * _LEVELS + len(inv_fact)) + 64
    d = _to_decimal(y, q - k, err, prec, ctx)
    return x.exp(ctx) if d is None else d


def ln(x: Decimal, ctx: Context) -> Decimal:
    """``x.ln(ctx)``."""
    prec = _check_context(ctx)
    if prec is None or not x.is_finite() or x <= 0 or not -300 <= x.adjusted() <= 300:
        return x.ln(ctx)  # special, zero, negative, or outside the range served here
    cs = _coefficient(x, prec)
    if cs is None:
        return x.ln(ctx)
    c, s = cs
    dist = c - _pow10(s) if s >= 0 else c  # (y - 1) 10^s
    if not dist:
        return x.ln(ctx)  # ln 1 = 0 exactly
    # leading zero bits of |y - 1|: that many more working bits keep ln y's significant bits
    lead = max(0, int(s * _LOG2_10) - abs(dist).bit_length() - 2) if s >= 0 else 0
    q = int(prec * _LOG2_10) + 40 + lead
    if q > _BITS - 64:
        return x.ln(ctx)
    if lead:  # this scale's tables are not kept: shift each entry used
        _tables()
        sh = _BITS - q
        ln2, tab = _ln2 >> sh, None
    else:
        ln2, tab = _at_scale(q)
    # y = 2^k m, 1 <= m < 2; m 2^q = y 2^(q - k)
    k = math.floor(math.log2(c) - s * _LOG2_10)
    m = _scaled(c, s, q - k, prec)
    one, two = 1 << q, 2 << q
    while m >= two:
        k += 1
        m = _scaled(c, s, q - k, prec)
    while m < one:
        k -= 1
        m = _scaled(c, s, q - k, prec)
    res = k * ln2
    for level in range(1, _LEVELS + 1):
        b = 6 * level
        j = (m - one) >> (q - b)  # m >= 1 + j/2^b (j <= 64)
        if j:
            m = (m << b) // ((1 << b) + j)
            res += tab[level - 1][j] if tab is not None else _tab[level - 1][j] >> sh
    _, inv = _coefficients(q)
    z = m - one  # w = 1 + z, 0 <= z < 2^-30 (up to rounding)
    y = 0
    for i in range(len(inv) - 1, 0, -1):  # ln(1 + z) = z (1 - z (1/2 - z (1/3 - ...)))
        y = inv[i] - ((y * z) >> q)
    res += (y * z) >> q
    # error, in units of 2^-q: m 2 + |k| (ln 2), per level 1 (division) + 1 (table), series 1
    # per step
    err = 2 * (4 + abs(k) + 2 * _LEVELS + len(inv)) + 64
    d = _to_decimal(res, q, err, prec, ctx)
    return x.ln(ctx) if d is None else d
