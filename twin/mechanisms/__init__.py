"""The mechanism library: one module per mechanism behind :class:`Mechanism`, chosen by config.

:func:`build_mechanisms` returns the mechanisms a config switches on, in a fixed order (the order
their ``on_deal_end`` hooks run: collateral and verification bookkeeping, then fees and taxes,
then shares of slashed collateral, then reputation, staking and markets that read the outcome).
"""

from __future__ import annotations

from twin.mechanisms.base import HOOKS, Mechanism

#: (module path, class name), in hook order; each class has ``enabled(cfg) -> bool``
_ORDER: tuple[tuple[str, str], ...] = (
    ("twin.mechanisms.collateral", "CollateralVariants"),
    ("twin.mechanisms.verification", "Verification"),
    ("twin.mechanisms.fees", "ProtocolFee"),
    ("twin.mechanisms.storage", "StorageWindow"),
    ("twin.mechanisms.taxes", "TaxesAndJackpot"),
    ("twin.mechanisms.announce", "AnnounceReward"),
    ("twin.mediation.consortium", "ConsortiumMediation"),
    ("twin.mechanisms.slashing", "SlashingShares"),
    ("twin.mechanisms.reputation", "Reputation"),
    ("twin.mechanisms.staking", "Staking"),
    ("twin.mechanisms.prediction", "PredictionMarkets"),
    ("twin.mechanisms.counter_collusion", "CounterCollusion"),
)


def mechanism_classes() -> list[type[Mechanism]]:
    import importlib

    out = []
    for mod, cls in _ORDER:
        out.append(getattr(importlib.import_module(mod), cls))
    return out


def build_mechanisms(cfg) -> list[Mechanism]:
    """Instances of every mechanism ``cfg`` switches on."""
    return [c.from_config(cfg) for c in mechanism_classes() if c.enabled(cfg)]


__all__ = ["HOOKS", "Mechanism", "build_mechanisms", "mechanism_classes"]
