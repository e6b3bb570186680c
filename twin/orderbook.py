"""The orderbook: job offers from clients and resource offers from nodes, as struct-of-arrays.

Job offers (v1 ``JobOffer``): the JC, the module, the hardware it needs (milli-CPU, GPUs, VRAM per
GPU, RAM MB, disk MB), the pricing mode (fixed or market) and the JC's instruction price, the
solver it names, its trusted mediators (the poster's trust row), posting and expiry times.
A job offer is posted, then matched (consumed), cancelled or expired.

Resource offers: each RP has at most one live offer, for the capacity it has free right now, at
its current instruction price. When a match takes part of the capacity, the RP's offer is
re-posted for the rest under a new offer id (so one machine runs several jobs at once up to its
capacity); when a job finishes the freed capacity is offered again the same way.

Offer ids are integers on the hot path; :meth:`Orderbook.job_offer_record` and
:meth:`Orderbook.resource_offer_record` give the canonical records whose CIDs
(:func:`twin.ids.content_id`) are the v1 offer ids.
"""

from __future__ import annotations

import numpy as np

FIXED, MARKET = 0, 1
_JOB_FIELDS = ("jc", "module", "units", "cpu", "gpu", "vram", "ram", "disk", "mode", "price", "solver",
               "posted_at", "expires_at", "status")  # fmt: skip


class JobOffers:
    """Growable table of job offers: one int64 row per offer (``table``), and each field of
    :data:`FIELDS` as a column view of it (``jobs.price[j]``, ``jobs.cpu[idx]``, struct-of-arrays
    style). A row holds a whole offer, so a solver reads every field of its live offers with one
    indexing operation."""

    FIELDS = tuple((name, np.int64) for name in _JOB_FIELDS)
    COLUMN = {name: k for k, name in enumerate(_JOB_FIELDS)}
    NEED = [_JOB_FIELDS.index(f) for f in ("cpu", "gpu", "ram", "disk")]  # columns of need()
    NEED_INDEX = np.array(NEED)  # the same as an index array (5x faster to index with)
    OPEN, MATCHED, CANCELLED, EXPIRED = 0, 1, 2, 3

    def __init__(self, capacity: int = 256) -> None:
        self.n = 0
        self._bind(np.zeros((capacity, len(self.FIELDS)), np.int64))
        self.live: list[int] = []  # open offers, oldest first

    def _bind(self, table: np.ndarray) -> None:
        self.table = table
        for k, (name, _) in enumerate(self.FIELDS):
            setattr(self, name, table[:, k])

    def _grow(self) -> None:
        table = np.zeros((2 * len(self.table), len(self.FIELDS)), np.int64)
        table[: self.n] = self.table[: self.n]
        self._bind(table)

    def need(self, j: int) -> np.ndarray:
        """Resources job offer ``j`` needs: (milli-CPU, GPUs, RAM MB, disk MB)."""
        return self.table[j][self.NEED_INDEX]

    def post(self, **values) -> int:
        if self.n == len(self.jc):
            self._grow()
        i = self.n
        for k, v in values.items():
            getattr(self, k)[i] = v
        self.status[i] = self.OPEN
        self.n += 1
        self.live.append(i)
        return i

    def post_many(self, cols: dict[str, np.ndarray]) -> np.ndarray:
        k = len(cols["jc"])
        while self.n + k > len(self.jc):
            self._grow()
        sl = slice(self.n, self.n + k)
        for name, v in cols.items():
            getattr(self, name)[sl] = v
        self.status[sl] = self.OPEN
        idx = np.arange(self.n, self.n + k)
        self.n += k
        self.live.extend(idx.tolist())
        return idx

    def post_rows(self, rows: list[tuple[int, ...]]) -> None:
        """Post offers given as whole rows (values in :data:`FIELDS` order, status included)."""
        k = len(rows)
        while self.n + k > len(self.table):
            self._grow()
        self.table[self.n : self.n + k] = rows
        self.live.extend(range(self.n, self.n + k))
        self.n += k

    def close(self, i: int, status: int) -> None:
        self.status[i] = status

    def compact(self) -> None:
        """Drop closed offers from the live list (keeps posting order)."""
        st = self.status
        self.live = [i for i in self.live if st[i] == self.OPEN]

    def cancel(self, offers: list[int] | None = None) -> list[int]:
        """Cancel open offers (all live ones when ``offers`` is None): their posters withdraw
        them. Returns the offers cancelled (offers not open are left as they are)."""
        st = self.status
        live = self.live if offers is None else offers
        out = [i for i in live if st[i] == self.OPEN]
        for i in out:
            st[i] = self.CANCELLED
        if out:
            self.compact()
        return out

    def expire(self, now: int) -> list[int]:
        """Expire open offers whose expiry time has passed; return their indices."""
        out = [i for i in self.live if self.expires_at[i] <= now]
        for i in out:
            self.status[i] = self.EXPIRED
        if out:
            self.compact()
        return out


class ResourceOffers:
    """One row per RP: its free capacity, price and current offer id."""

    def __init__(self, cpu, gpu, vram, ram, disk, solver: np.ndarray, price: np.ndarray) -> None:
        n = len(cpu)
        #: capacity and free capacity per RP, columns (milli-CPU, GPUs, RAM MB, disk MB); column-major
        #: so that comparing every RP with one job's needs runs along contiguous columns
        self.cap = np.asfortranarray(
            np.stack([np.asarray(x, np.int64) for x in (cpu, gpu, ram, disk)], axis=1)
        )
        self.free = self.cap.copy(order="F")
        self.vram = np.asarray(vram, np.int64).copy()
        self.solver = np.asarray(solver, np.int64)
        self.price = np.asarray(price, np.int64).copy()
        self.mode = np.full(n, MARKET, np.int8)
        self.modules_mask = np.zeros(n, np.int64)  # 0: every module allowed
        self.any_module_limits = False
        self.offering = np.ones(n, bool)
        self.eligible = np.ones(n, bool)  # mechanisms may bar nodes (e.g. low reputation)
        self.score: np.ndarray | None = None  # solvers prefer higher scores when set
        self.offer_id = np.arange(n, dtype=np.int64)  # bumped on every re-post
        self.posted_at = np.zeros(n, np.int64)
        self.next_offer_id = n

    free_cpu = property(lambda self: self.free[:, 0])
    free_gpu = property(lambda self: self.free[:, 1])
    free_ram = property(lambda self: self.free[:, 2])
    free_disk = property(lambda self: self.free[:, 3])
    cap_cpu = property(lambda self: self.cap[:, 0])

    def __len__(self) -> int:
        return len(self.free_cpu)

    def repost(self, i: int, now: int) -> None:
        self.offer_id[i] = self.next_offer_id
        self.next_offer_id += 1
        self.posted_at[i] = now

    def reserve(self, i: int, need: np.ndarray, now: int) -> None:
        """Take ``need`` (cpu, gpu, ram, disk) from RP ``i``'s free capacity; re-post the rest."""
        self.free[i] -= need
        self.repost(i, now)

    def release(self, i: int, need: np.ndarray, now: int) -> None:
        self.free[i] += need
        self.repost(i, now)

    def set_prices(self, price: np.ndarray, now: int) -> None:
        changed = np.flatnonzero(price != self.price)
        if len(changed):
            self.price[changed] = price[changed]
            self.offer_id[changed] = np.arange(
                self.next_offer_id, self.next_offer_id + len(changed)
            )
            self.next_offer_id += len(changed)
            self.posted_at[changed] = now

    def fits(self, need: np.ndarray, vram: int, module: int) -> np.ndarray:
        """Mask of RPs whose live offer covers ``need`` (cpu, gpu, ram, disk), the VRAM per GPU
        when GPUs are needed, and allows the module."""
        ok = (self.free >= need).all(axis=1)
        ok &= self.offering
        if need[1]:
            ok &= self.vram >= vram
        if self.any_module_limits:
            ok &= (self.modules_mask == 0) | ((self.modules_mask >> module) & 1).astype(bool)
        return ok


class Trust:
    """Which mediators each party trusts, as bitsets (uint64 words); ``None`` rows: all."""

    def __init__(self, n_accounts: int, mediators: np.ndarray, per_party: int, parties: np.ndarray,
                 rng: np.random.Generator) -> None:  # fmt: skip
        self.mediators = np.asarray(mediators, np.int64)
        m = len(self.mediators)
        self.all = per_party == 0 or per_party >= m
        self.all_tuple = tuple(int(x) for x in self.mediators)
        self.words = (m + 63) // 64
        self.bits = np.zeros((n_accounts, self.words), np.uint64)
        if self.all:
            return
        for a in parties:
            chosen = np.sort(rng.choice(m, size=per_party, replace=False))
            for c in chosen:
                self.bits[a, c // 64] |= np.uint64(1) << np.uint64(c % 64)

    def intersects(self, a: int, others: np.ndarray) -> np.ndarray:
        if self.all:
            return np.ones(len(others), bool)
        return (self.bits[others] & self.bits[a]).any(axis=1)

    def common(self, a: int, b: int) -> tuple[int, ...]:
        """The mediators both trust (accounts, ascending), as the solver computes off-chain."""
        if self.all:
            return self.all_tuple
        inter = self.bits[a] & self.bits[b]
        out = []
        for c in range(len(self.mediators)):
            if (int(inter[c // 64]) >> (c % 64)) & 1:
                out.append(int(self.mediators[c]))
        return tuple(out)

    def trusted(self, a: int) -> tuple[int, ...]:
        return self.common(a, a)
