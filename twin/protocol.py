"""Protocol presets: which v1 rules (and which deployed defects) the deal state machine follows.

``lilypad_v1`` is the intended v1 protocol (our contracts implement it): every terminal path
releases all escrow and a judge timeout counts as an acceptance. ``lilypad_v1_deployed``
reproduces the documented defects of the deployed v1 contracts
(``shared/spec/lilypad-v1-protocol.md`` section 4), so that the twin predicts what happens on
such a deployment. ``docs/protocol-flows.md`` lists the exact events of every call.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProtocolRules:
    name: str
    #: defect 1: ``timeoutSubmitResult`` / ``timeoutJudgeResult`` revert; the collateral stays locked
    submit_and_judge_timeouts_revert: bool = False
    #: defect 2: ``timeoutAgree`` refunds a lone JC ``P + Ts`` instead of ``P + Tj``
    timeout_agree_refunds_ts: bool = False
    #: defect 3: the mediate timeout runs from ``resultsSubmittedAt`` with the judge window
    mediate_timeout_from_submission: bool = False
    #: defect 4: parties authenticated by ``tx.origin`` (contract wallets cannot act)
    auth_tx_origin: bool = False

    @property
    def defects(self) -> tuple[str, ...]:
        names = (
            "submit_and_judge_timeouts_revert",
            "timeout_agree_refunds_ts",
            "mediate_timeout_from_submission",
            "auth_tx_origin",
        )
        return tuple(n for n in names if getattr(self, n))


PRESETS: dict[str, ProtocolRules] = {
    "lilypad_v1": ProtocolRules("lilypad_v1"),
    "lilypad_v1_deployed": ProtocolRules(
        "lilypad_v1_deployed",
        submit_and_judge_timeouts_revert=True,
        timeout_agree_refunds_ts=True,
        mediate_timeout_from_submission=True,
        auth_tx_origin=True,
    ),
}


def preset(name: str) -> ProtocolRules:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(
            f"protocol.preset: unknown preset {name!r}; allowed: {sorted(PRESETS)}"
        ) from None
