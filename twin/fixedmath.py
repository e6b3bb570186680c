"""``exp`` and ``ln`` in binary fixed point on Python integers: deterministic, exact to a stated
error bound, and fast enough to price every bet of the prediction markets.

A value ``v`` stands for ``v / 2^Q`` (:data:`Q` fractional bits). Integer arithmetic gives the
same digits on every machine, unlike ``libm`` floats; the error of each function is bounded
below, so callers that round money to the wei (:mod:`twin.mechanisms.prediction`) know how far
the value can be from the real one.

Method (argument reduction by tables, then a short Taylor series):

- ``exp(-x)``, ``x >= 0``: ``x = k ln 2 + r`` with ``0 <= r < ln 2``, so
  ``exp(-x) = 2^-(k + 1) exp(ln 2 - r)`` with ``s = ln 2 - r`` in ``(0, ln 2]``. Level by level
  (``L = 1..5``) ``s`` loses the largest tabulated ``ln(1 + j 2^(-6L))`` (``j = 0..64``) not above
  it, leaving ``s < 2^-30``; ``exp(s)`` by its series (Horner), times the product of the factors
  ``(2^(6L) + j_L) / 2^(6L)`` (integers, exact).
- ``ln(y)``: ``y = 2^k m`` with ``1 <= m < 2``; level by level ``m`` is divided by the largest
  ``1 + j 2^(-6L)`` not above it, leaving ``m < 1 + 2^-30``; ``ln m`` by the series of
  ``ln(1 + z)``; ``ln y = k ln 2 + sum ln(1 + j_L 2^(-6L)) + ln m``.

The tables (``ln 2`` and ``ln(1 + j 2^(-6L))``, from ``ln(1 + f) = 2 atanh(f / (2 + f))``) are
computed once, at import, with 64 guard bits and truncated to ``Q`` bits. Every step truncates
(floors); the errors add up to at most :data:`ERR` units of ``2^-Q`` for ``exp_neg`` and
``ln`` (of an argument known exactly). With ``Q = 192`` that is below ``2^-178`` absolute.
"""

from __future__ import annotations

import math

Q = 192  #: fractional bits of every value here
ONE = 1 << Q
_WIDTH = 6  # bits per table level
_LEVELS = 5  # levels: arguments reduced below 2^-30
_TOP = 1 << _WIDTH
_GUARD = 64  # extra bits of the tables while they are computed
_FLOAT_SHIFT = Q - 60  # a value's top bits as a float: (v >> _FLOAT_SHIFT) * _FLOAT_UNIT
_FLOAT_UNIT = 2.0**-60


def _atanh_ratio(a: int, c: int, bits: int) -> int:
    """``atanh(a / c) 2^bits`` for ``0 <= a / c <= 1/3``, truncated (error below 2 units)."""
    g = bits + 16
    term = (a << g) // c
    aa, cc = a * a, c * c
    total, i = 0, 1
    while term:
        total += term // i
        term = term * aa // cc
        i += 2
    return total >> 16


def _build_tables() -> tuple[int, list[list[int]], list[int], list[int]]:
    bits = Q + _GUARD
    ln2 = (2 * _atanh_ratio(1, 3, bits)) >> _GUARD  # ln 2 = 2 atanh(1/3)
    tab = []
    for level in range(1, _LEVELS + 1):
        s = _WIDTH * level  # ln(1 + j/2^s) = 2 atanh(j / (2^(s+1) + j))
        tab.append([(2 * _atanh_ratio(j, (1 << (s + 1)) + j, bits)) >> _GUARD
                    for j in range(_TOP + 1)])  # fmt: skip
    # series for |arguments| < 2^-30: terms until the remainder is below 2^-(Q + 8)
    reduced = _WIDTH * _LEVELS
    n_exp = 1
    while reduced * (n_exp + 1) + math.lgamma(n_exp + 2) / math.log(2) < Q + 8:
        n_exp += 1
    n_ln = 1
    while reduced * (n_ln + 1) + math.log2(n_ln + 1) < Q + 8:
        n_ln += 1
    inv_fact, fact = [ONE], 1
    for i in range(1, n_exp + 1):
        fact *= i
        inv_fact.append(ONE // fact)  # 2^Q / i!
    inv = [ONE] + [ONE // i for i in range(1, n_ln + 1)]  # 2^Q / i
    return ln2, tab, inv_fact, inv


LN2, _TAB, _INV_FACT, _INV = _build_tables()  #: ln 2 at scale 2^Q (truncated)
_KMAX = 1 << 12  # ln serves arguments 2^(-_KMAX) .. 2^_KMAX
#: error bound of :func:`exp_neg` and :func:`ln`, in units of 2^-Q: reduction by k ln 2 (k + 1
#: units for the truncated ln 2; k stays below _KMAX), 2 per level (table truncation and the
#: floor), one per series step, the product's floor, and a margin
ERR = 2 * (_KMAX + 2 * _LEVELS + len(_INV_FACT) + len(_INV) + 8)
_T1 = _TAB[0]
_SHIFT_ALL = _WIDTH * _LEVELS * (_LEVELS + 1) // 2  # 6 + 12 + 18 + 24 + 30 = 90
_Y_TOP, _HORNER = _INV_FACT[-1], tuple(_INV_FACT[-2::-1])  # exp's series, highest term first
_INV_DESC = tuple(_INV[:0:-1])  # ln's series coefficients 2^Q / i, i = n .. 1
#: the levels L = 1.._LEVELS: (table, b = 6 L, Q - b, 2^b)
_LN_LEVELS = tuple((t, _WIDTH * (i + 1), Q - _WIDTH * (i + 1), 1 << (_WIDTH * (i + 1)))
                   for i, t in enumerate(_TAB))  # fmt: skip
#: exp's levels 2.._LEVELS: (table, 2^b, Q - b)
_LOWER = tuple((t, scale, sh) for t, _, sh, scale in _LN_LEVELS[1:])


def exp_neg(x: int) -> int:
    """``exp(-x / 2^Q) 2^Q`` for ``x >= 0``, within :data:`ERR` units (0 when the value is
    below one unit)."""
    if x < 0:
        raise ValueError(f"exp_neg needs x >= 0, got {x}")
    k, r = divmod(x, LN2)
    if k >= Q:
        return 0
    s = LN2 - r  # in (0, ln 2]: exp(-x) = 2^-(k + 1) exp(s)
    # Level by level s -= ln(1 + j 2^-b), j the largest with the table entry not above s; the
    # factors (2^b + j) multiply into prod, over 2^(6 + 12 + 18 + 24 + 30) = 2^90 (j = 0 too).
    # Level 1: j = floor(64 expm1(s)) from a float, corrected either way. Below it s < 2^-(b-6),
    # and floor(s 2^b) is never above j (ln(1 + f) <= f) and at most one short. (Comparisons
    # instead of min(): this runs for every bet.)
    t = _T1
    j = int(math.expm1((s >> _FLOAT_SHIFT) * _FLOAT_UNIT) * _TOP)
    if j > _TOP:
        j = _TOP
    while t[j] > s:
        j -= 1
    while j < _TOP and t[j + 1] <= s:
        j += 1
    s -= t[j]
    prod = _TOP + j
    for t, b, sh in _LOWER:  # levels 2-5
        j = s >> sh
        if j > _TOP:
            j = _TOP
        while j < _TOP and t[j + 1] <= s:
            j += 1
        s -= t[j]
        prod *= b + j
    y = _Y_TOP
    for c in _HORNER:  # exp(s), Horner
        y = c + ((y * s) >> Q)
    return (y * prod) >> (_SHIFT_ALL + k + 1)


def ln(y: int) -> int:
    """``ln(y / 2^Q) 2^Q`` for an integer ``y > 0`` (whose value ``y / 2^Q`` lies between
    ``2^-4000`` and ``2^4000``), within :data:`ERR` units."""
    if y <= 0:
        raise ValueError(f"ln needs y > 0, got {y}")
    k = y.bit_length() - 1 - Q  # y / 2^Q = 2^k m, 1 <= m < 2
    if not -_KMAX < k < _KMAX:
        raise ValueError(f"ln: the argument 2^{k} is out of the range served (2^+-{_KMAX})")
    m = y >> k if k >= 0 else y << -k  # m 2^Q (truncated when k > 0: one unit at most)
    res = k * LN2
    for t, b, sh, scale in _LN_LEVELS:
        j = (m - ONE) >> sh  # m >= 1 + j/2^b
        if j:
            m = (m << b) // (scale + j)
            res += t[j]
    z = m - ONE  # 0 <= z < 2^-30
    acc = 0
    for c in _INV_DESC:  # ln(1 + z) = z (1 - z (1/2 - z (1/3 - ...)))
        acc = c - ((acc * z) >> Q)
    return res + ((acc * z) >> Q)


def ln_ratio(num: int, den: int) -> int:
    """``ln(num / den) 2^Q`` for positive integers, within 2 :data:`ERR` units (each side's
    logarithm taken exactly from its integer)."""
    if num <= 0 or den <= 0:
        raise ValueError(f"ln_ratio needs positive integers, got {num} / {den}")
    return ln(num << Q) - ln(den << Q)
