"""``exp`` and ``ln`` of a :class:`~decimal.Decimal`, equal to ``x.exp(ctx)`` and ``x.ln(ctx)``,
3-6x faster: :class:`DecimalFunctions` (one per context), or :func:`exp` and :func:`ln`.

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
  prod (1 + j_L 2^(-6L))`` (the product of small integers, exact, over a power of two).
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
_WIDTH = 6  # bits per table level
_LEVELS = 5  # table levels: arguments reduced below 2^-(_WIDTH * _LEVELS)
_REDUCED = _WIDTH * _LEVELS
_TOP = 1 << _WIDTH  # table entries j = 0.._TOP
_LOG10_2 = math.log10(2.0)
_LOG2_10 = math.log2(10.0)

_ln2: int = 0  # ln 2 * 2^_BITS
_tab: list[list[int]] = []  # _tab[L - 1][j] = ln(1 + j 2^(-6L)) * 2^_BITS, j = 0..64
_p10: list[int] = [1]
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
        s = _WIDTH * level
        # ln(1 + j/2^s) = 2 atanh(j / (2^(s+1) + j))
        _tab.append([2 * _atanh_ratio(j, (1 << (s + 1)) + j, _BITS) for j in range(_TOP + 1)])


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
    """Series coefficients at scale ``2^q`` for arguments below ``2^-_REDUCED``: ``2^q / n!`` for the
    exponential and ``2^q / n`` for ``ln(1 + z)``, ``n = 0..N``, each series with the terms that
    leave a remainder below ``2^-(q + 8)``."""
    c = _series.get(q)
    if c is None:
        n_exp = n_ln = 1
        while _REDUCED * (n_exp + 1) + math.lgamma(n_exp + 2) / math.log(2) < q + 8:
            n_exp += 1
        while _REDUCED * (n_ln + 1) + math.log2(n_ln + 1) < q + 8:
            n_ln += 1
        one = 1 << q
        inv_fact, f = [one], 1
        for i in range(1, n_exp + 1):
            f *= i
            inv_fact.append(one // f)
        inv = [one] + [one // i for i in range(1, n_ln + 1)]
        c = _series[q] = (inv_fact, inv)
    return c


class DecimalFunctions:
    """``exp`` and ``ln`` for one decimal context: ``f.exp(x) == x.exp(ctx)`` and
    ``f.ln(x) == x.ln(ctx)`` for every Decimal ``x``. What depends only on the context (working
    scale, tables at that scale, powers of ten) is prepared here; the context must not change
    afterwards. A context the fixed-point path does not serve (rounding other than half-even,
    precision above 300, a reduced exponent range) gets :mod:`decimal`'s own methods. Unlike
    those, the fixed-point path raises no flags in the context."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        prec = ctx.prec
        self.fast = (
            ctx.rounding == ROUND_HALF_EVEN
            and prec <= 300
            and ctx.Emax >= 999_999
            and ctx.Emin <= -999_999
        )  # fmt: skip  (no result here over/underflows)
        self.prec = prec
        self.exact = Context(prec=prec, traps=[Inexact, Rounded])  # coefficients, exactly
        self.q = int(prec * _LOG2_10) + 40  # working bits (more for logarithms near 0)
        self.g = int(prec * _LOG2_10) + 64  # guard bits of the reciprocals of powers of ten
        self.lo, self.hi = _pow10(prec - 1), _pow10(prec)
        self.p10 = [_pow10(i) for i in range(2 * prec + 400)]
        self.recip: dict[tuple[int, int], int] = {}  # (s, shift) -> ceil(2^(shift + g) / 10^s)
        self.tab: list[list[int]] | None = None  # tables at scale 2^q, built on first use

    def _prepare(self) -> None:
        self.ln2, self.tab = _at_scale(self.q)
        self.inv_fact, self.inv = _coefficients(self.q)

    # -- helpers -----------------------------------------------------------------------------
    def _coefficient(self, x: Decimal) -> tuple[int, int] | None:
        """``(c, s)`` with ``x = c * 10^-s`` exactly, ``c`` an integer of ``prec`` digits at
        most (None when ``x`` has more digits than ``prec``)."""
        s = self.prec - 1 - x.adjusted()
        try:
            return int(x.scaleb(s, self.exact)), s
        except (Inexact, Rounded):
            return None

    def _scaled(self, c: int, s: int, shift: int) -> int:
        """``c * 10^-s * 2^shift`` (``0 <= c < 10^prec``; ``shift >= 0`` when ``s > 0``),
        floored or one unit above the floor: within one unit of the exact value."""
        if s <= 0:
            v = c * _pow10(-s)
            return v << shift if shift >= 0 else v >> -shift
        r = self.recip.get((s, shift))
        if r is None:  # c < 2^(g - 64): c r / 2^g exceeds the exact value by < 2^-64
            r = self.recip[(s, shift)] = -(-(1 << (shift + self.g)) // _pow10(s))
        return (c * r) >> self.g

    def _to_decimal(self, v: int, f: int, err: int) -> Decimal | None:
        """The ``prec``-digit decimal nearest ``v / 2^f``, given that the true value is within
        ``err / 2^f`` of it; None when that does not settle the rounding."""
        r = self._nearest(v, f, err)
        return None if r is None else Decimal(r[0]).scaleb(r[1], self.ctx)  # exact: prec digits

    def _nearest(self, v: int, f: int, err: int) -> tuple[int, int] | None:
        """:meth:`_to_decimal` as ``(n, e)``: the value ``n * 10^e``, ``|n|`` of ``prec`` digits."""
        neg = v < 0
        if neg:
            v = -v
        if v <= err:
            return None
        bl = v.bit_length()
        top = v >> (bl - 60) if bl > 60 else v
        lg = math.log10(top) + (bl - 60 if bl > 60 else 0) * _LOG10_2 - f * _LOG10_2
        e10 = math.floor(lg) - (self.prec - 1)
        lo, hi = self.lo, self.hi
        for _ in range(3):  # (once, unless the estimate of the exponent is one off)
            q10 = -e10
            if q10 >= 0:
                p = self.p10[q10] if q10 < len(self.p10) else _pow10(q10)
                num, e = v * p, err * p
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
        return (-n if neg else n), e10

    # -- arithmetic on (coefficient, exponent) pairs, rounded as the context rounds ----------
    # A value ``c * 10^e`` is the pair ``(c, e)`` (any integer ``c``; not normalised). Each
    # operation rounds its exact result to ``prec`` significant digits, ties to even, as the
    # context's operation does; the value is the same as :mod:`decimal`'s (the exponent of an
    # exact result may differ, which no value depends on). For chains of operations that would
    # otherwise convert to and from :class:`~decimal.Decimal` at every step.
    def digits(self, a: int) -> int:
        """Decimal digits of ``a > 0``."""
        d = int(a.bit_length() * _LOG10_2)  # digits - 1 or digits
        return d + 1 if a >= (self.p10[d] if d < len(self.p10) else _pow10(d)) else d

    def round_parts(self, c: int, e: int) -> tuple[int, int]:
        """``c * 10^e`` rounded to ``prec`` digits (half even)."""
        a = -c if c < 0 else c
        if a < self.hi:
            return c, e
        k = self.digits(a) - self.prec
        p = _pow10(k)
        q, r = divmod(a, p)
        if 2 * r > p or (2 * r == p and q & 1):
            q += 1
            if q == self.hi:
                q, k = self.lo, k + 1
        return (-q if c < 0 else q), e + k

    def add_parts(self, x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
        (a, ea), (b, eb) = x, y
        if ea < eb:
            return self.round_parts(a + b * _pow10(eb - ea), ea)
        return self.round_parts(a * _pow10(ea - eb) + b, eb)

    def mul_parts(self, x: tuple[int, int], y: tuple[int, int]) -> tuple[int, int]:
        return self.round_parts(x[0] * y[0], x[1] + y[1])

    def div_parts(self, x: tuple[int, int], den: int) -> tuple[int, int]:
        """``x / den`` for an integer ``den > 0``."""
        c, e = x
        if not c:
            return 0, 0
        a = -c if c < 0 else c
        if e > 0:
            a, e = a * _pow10(e), 0
        # q = floor(a 10^t / den) has more than prec digits; rounded to prec digits with the
        # remainder: the exact quotient is (q + r / den) 10^(e - t)
        t = max(0, self.prec + 1 - (self.digits(a) - self.digits(den)))
        q, r = divmod(a * _pow10(t), den)
        k = self.digits(q) - self.prec
        if k > 0:
            p = _pow10(k)
            q, r2 = divmod(q, p)
            r, den = r2 * den + r, den * p  # the fraction left, over den * 10^k
        if 2 * r > den or (2 * r == den and q & 1):
            q += 1
            if q == self.hi:
                q, k = self.lo, k + 1
        return (-q if c < 0 else q), e - t + max(0, k)

    @staticmethod
    def floor_parts(x: tuple[int, int]) -> int:
        """The largest integer at most ``x`` (as ``to_integral_value(ROUND_FLOOR)``)."""
        c, e = x
        return c * _pow10(e) if e >= 0 else c // _pow10(-e)

    def parts(self, x: Decimal) -> tuple[int, int] | None:
        """``x`` as a pair (None when it has more than ``prec`` digits or is not finite)."""
        if not x.is_finite():
            return None
        if not x:
            return 0, 0
        cs = self._coefficient(x)
        return None if cs is None else (cs[0], -cs[1])

    def decimal(self, x: tuple[int, int]) -> Decimal:
        """A pair of at most ``prec`` digits as a :class:`~decimal.Decimal` (exact)."""
        return Decimal(x[0]).scaleb(x[1], self.ctx)

    # -- the functions -----------------------------------------------------------------------
    def exp(self, x: Decimal) -> Decimal:
        """``x.exp(ctx)``."""
        r = self._exp(x)
        return x.exp(self.ctx) if r is None else r

    def ln(self, x: Decimal) -> Decimal:
        """``x.ln(ctx)``."""
        r = self._ln(x)
        return x.ln(self.ctx) if r is None else r

    def _exp(self, x: Decimal) -> Decimal | None:
        if not self.fast or not x.is_finite() or not x or not -100 <= x.adjusted() <= 3:
            return None  # exact (x = 0), special, or outside the range served here
        cs = self._coefficient(x)
        r = None if cs is None else self.exp_parts(*cs)
        return None if r is None else Decimal(r[0]).scaleb(r[1], self.ctx)

    def exp_parts(self, c: int, s: int) -> tuple[int, int] | None:
        """``exp(c * 10^-s)`` rounded to the context: ``(n, e)`` for ``n * 10^e``; ``c`` an
        integer of ``prec`` digits at most. None where the fixed-point path does not decide (the
        caller then asks :mod:`decimal`): ``c = 0``, ``|x|`` beyond ``10^3`` or below
        ``10^-99``, or a value too close to a rounding midpoint."""
        if not c or not self.fast or abs(c) >= self.hi:
            return None
        adj = int((abs(c).bit_length() - 1) * _LOG10_2) - s  # the exponent of x, or one less
        if not -99 <= adj <= 2:
            return None
        if self.tab is None:
            self._prepare()
        q, ln2, tab = self.q, self.ln2, self.tab
        xq = self._scaled(-c, s, q) if c < 0 else self._scaled(c, s, q)  # |x| 2^q, < 1 unit off
        if c < 0:
            xq = -xq
        k = xq // ln2
        r = xq - k * ln2  # 0 <= r < ln 2, error < 2 + |k| units (x and ln 2's truncation)
        # levels: r -= ln(1 + j/2^(6L)), the largest table entry not above r. First guess:
        # j = 2^6 expm1(r) (float) on the first level; below, r < 2^-6 and floor(r 2^b) is at
        # most one short (ln(1 + f) <= f)
        prod, shift, b = 1, 0, 0  # the product of the factors (1 + j 2^-b): prod / 2^shift
        for t in tab:
            if b:
                j = r >> (q - b - _WIDTH)
            else:
                j = min(_TOP - 1, int(math.expm1(r / (1 << q)) * _TOP))
            b += _WIDTH
            while t[j] > r:
                j -= 1
            while j < _TOP and t[j + 1] <= r:
                j += 1
            if j:
                r -= t[j]
                prod *= (1 << b) + j
                shift += b
        inv_fact = self.inv_fact
        y = inv_fact[-1]
        for cn in inv_fact[-2::-1]:  # exp(r), Horner
            y = cn + ((y * r) >> q)
        y = (y * prod) >> shift
        # error, in units of y (about 2^q): input 2, reduction 2|k|, tables 2 per level, series
        # one per step, product 1; y <= 2 exp(r) scales them by 2 at most
        err = 2 * (8 + 2 * abs(k) + 3 * _LEVELS + len(inv_fact)) + 64
        return self._nearest(y, q - k, err)

    def _ln(self, x: Decimal) -> Decimal | None:
        if not self.fast or not x.is_finite() or x <= 0 or not -300 <= x.adjusted() <= 300:
            return None  # special, zero, negative, or outside the range served here
        cs = self._coefficient(x)
        r = None if cs is None else self.ln_parts(*cs)
        return None if r is None else Decimal(r[0]).scaleb(r[1], self.ctx)

    def ln_parts(self, c: int, s: int) -> tuple[int, int] | None:
        """``ln(c * 10^-s)`` rounded to the context, as :meth:`exp_parts` (None also for
        ``c <= 0``, ``x = 1`` and ``x`` beyond ``10^+-299``)."""
        if c <= 0 or not self.fast or c >= self.hi:
            return None
        adj = int((c.bit_length() - 1) * _LOG10_2) - s
        if not -299 <= adj <= 299:
            return None
        dist = c - _pow10(s) if s >= 0 else c  # (y - 1) 10^s
        if not dist:
            return None  # ln 1 = 0 exactly
        # leading zero bits of |y - 1|: that many more working bits keep ln y's significant bits
        lead = max(0, int(s * _LOG2_10) - abs(dist).bit_length() - 2) if s >= 0 else 0
        q = self.q + lead
        if q > _BITS - 64:
            return None
        if self.tab is None:
            self._prepare()
        if lead:  # tables at this scale are not kept: shifted as used
            _tables()
            sh = _BITS - q
            ln2, tab, inv = _ln2 >> sh, _tab, _coefficients(q)[1]
        else:
            sh, ln2, tab, inv = 0, self.ln2, self.tab, self.inv
        # y = 2^k m, 1 <= m < 2; m 2^q = y 2^(q - k)
        k = math.floor(math.log2(c) - s * _LOG2_10)
        m = self._scaled(c, s, q - k)
        one, two = 1 << q, 2 << q
        while m >= two:
            k += 1
            m = self._scaled(c, s, q - k)
        while m < one:
            k -= 1
            m = self._scaled(c, s, q - k)
        res = k * ln2
        b = 0
        for t in tab:
            b += _WIDTH
            j = (m - one) >> (q - b)  # m >= 1 + j/2^b (j <= 2^_WIDTH)
            if j:
                m = (m << b) // ((1 << b) + j)
                res += t[j] >> sh
        z = m - one  # w = 1 + z, 0 <= z < 2^-_REDUCED (up to rounding)
        y = 0
        for i in range(len(inv) - 1, 0, -1):  # ln(1 + z) = z (1 - z (1/2 - z (1/3 - ...)))
            y = inv[i] - ((y * z) >> q)
        res += (y * z) >> q
        # error, in units of 2^-q: m 2 + |k| (ln 2), per level 1 (division) + 1 (table),
        # series 1 per step
        err = 2 * (4 + abs(k) + 2 * _LEVELS + len(inv)) + 64
        return self._nearest(res, q, err)


_by_context: dict[tuple, DecimalFunctions] = {}


def functions(ctx: Context) -> DecimalFunctions:
    """The (cached) :class:`DecimalFunctions` of contexts with ``ctx``'s settings."""
    key = (ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.clamp, ctx.capitals)
    f = _by_context.get(key)
    if f is None:
        f = _by_context[key] = DecimalFunctions(Context(*key[:4], capitals=ctx.capitals,
                                                        clamp=ctx.clamp))  # fmt: skip
    return f


def exp(x: Decimal, ctx: Context) -> Decimal:
    """``x.exp(ctx)``."""
    r = functions(ctx)._exp(x)
    return x.exp(ctx) if r is None else r


def ln(x: Decimal, ctx: Context) -> Decimal:
    """``x.ln(ctx)``."""
    r = functions(ctx)._ln(x)
    return x.ln(ctx) if r is None else r
