"""Content ids (CIDs) of canonical records, and account addresses.

Offer ids and deal ids are CIDv1 strings (base32, codec ``raw``, multihash ``sha2-256``) of the
canonical JSON of the record (sorted keys, no spaces, integers as JSON numbers), computed with the
maintained ``py-cid``/``py-multihash`` libraries. Computing a CID costs ~150 us, so the simulator
keeps integer ids on its hot path and turns them into CIDs only when a record leaves the twin
(events, tables, the chain bridge); the result is cached and identical for identical records.

Addresses are 20-byte hex strings derived from an account index and a per-run salt, so that they
are stable for a seed and look like EOAs; the chain bridge maps each to a real key pair.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import cid as _cid
import multihash as _multihash


def canonical_json(record: dict[str, Any]) -> bytes:
    """Canonical byte encoding of a record: sorted keys, compact separators, UTF-8."""
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_id(record: dict[str, Any]) -> str:
    """CIDv1 (raw codec, sha2-256, base32 multibase) of the canonical JSON of ``record``."""
    digest = _multihash.digest(canonical_json(record), "sha2-256").encode()
    return _cid.make_cid(1, "raw", digest).encode("base32").decode()


def account_address(index: int, salt: str = "twin") -> str:
    """A deterministic checksum-free 0x address for account ``index``."""
    h = hashlib.sha256(f"{salt}:{index}".encode()).hexdigest()
    return "0x" + h[:40]
