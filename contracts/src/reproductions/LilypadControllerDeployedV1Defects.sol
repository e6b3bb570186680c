// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {AgreementState, DealCore} from "../LilypadTypes.sol";
import {LilypadController} from "../LilypadController.sol";
import {DealMoney} from "../interfaces/ILilypadPayments.sol";

/// @dev Payments functions that the deployed v1 controller calls but that the payments contract
/// does not have: a call to either reverts (with empty revert data: no such function, no
/// fallback).
interface IMisnamedPaymentsCalls {
    function timeoutSubmitResults(string calldata dealId, DealMoney calldata money) external;
    function timeoutJudgeResults(string calldata dealId, DealMoney calldata money) external;
}

/// @title LilypadControllerDeployedV1Defects
/// @notice REPRODUCTION, NOT FOR USE: our controller with the four documented defects of the
/// deployed Lilypad v1 contract set (spec section 4, "Known defects"), so that the replay bridge
/// can check that the twin's `lilypad_v1_deployed` preset predicts such a deployment to the wei.
/// Deployed only on request (`bridge.deploy.deploy(..., variant="deployed_v1_defects")`), with
/// `LilypadPaymentsDeployedV1Defects`. Everything not listed below is `LilypadController`.
///
/// 1. `timeoutSubmitResult` and `timeoutJudgeResult` pass their checks (caller, state, window),
///    then call payments functions that do not exist, so they always revert: the deal keeps its
///    state and its collateral stays in escrow for good.
/// 2. `timeoutAgree` by a lone job creator refunds `P + Ts` from its pooled escrow (in the
///    payments reproduction).
/// 3. `timeoutMediateResult` is callable once `now > resultsSubmittedAt + judgeResults timeout`
///    (instead of `resultsCheckedAt + mediateResults timeout`).
/// 4. Parties are authenticated by `tx.origin`: a contract wallet cannot act as a party.
contract LilypadControllerDeployedV1Defects is LilypadController {
    constructor(address storage_, address payments, address mediation, address users)
        LilypadController(storage_, payments, mediation, users)
    {}

    /// @notice Defect 1: always reverts once its checks pass.
    function timeoutSubmitResult(string calldata dealId) external override nonReentrant {
        DealCore memory d = _load(dealId);
        _requireJobCreator(dealId, d);
        _requireState(dealId, d.state, AgreementState.DealAgreed);
        _requireTimeout(dealId, d.dealAgreedAt, d.submitResultsTimeout);
        IMisnamedPaymentsCalls(address(_payments)).timeoutSubmitResults(dealId, _money(d));
    }

    /// @notice Defect 1: always reverts once its checks pass.
    function timeoutJudgeResult(string calldata dealId) external override nonReentrant {
        DealCore memory d = _load(dealId);
        _requireResourceProvider(dealId, d);
        _requireState(dealId, d.state, AgreementState.ResultsSubmitted);
        _requireTimeout(dealId, d.resultsSubmittedAt, d.judgeResultsTimeout);
        IMisnamedPaymentsCalls(address(_payments)).timeoutJudgeResults(dealId, _money(d));
    }

    /// @dev Defect 3: the mediate window runs from the submission, with the judge timeout.
    function _mediateTimeoutWindow(DealCore memory d)
        internal
        pure
        override
        returns (uint256 start, uint256 window)
    {
        return (d.resultsSubmittedAt, d.judgeResultsTimeout);
    }

    /// @dev Defect 4: the party is the transaction's origin, not the direct caller.
    function _party() internal view override returns (address) {
        return tx.origin;
    }
}
