// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PaymentReason} from "../LilypadTypes.sol";
import {LilypadPayments} from "../LilypadPayments.sol";
import {DealMoney} from "../interfaces/ILilypadPayments.sol";

/// @title LilypadPaymentsDeployedV1Defects
/// @notice REPRODUCTION, NOT FOR USE: our payments contract with defect 2 of the deployed Lilypad
/// v1 contract set (spec section 4): `timeoutAgree` when only the job creator had agreed refunds
/// it `P + Ts` (`Pay(JC, P, 0, 2)`, `Pay(JC, Ts, 2, 2)`) instead of `P + Tj`, from its *pooled*
/// escrow: the deal's own record is dropped, not checked, so the refund reverts when the job
/// creator's escrow holds less than `P + Ts`, strands `Tj - Ts` when `Ts < Tj`, and takes
/// `Ts - Tj` of collateral that the job creator's other deals hold when `Ts > Tj` (one of them
/// then reverts when it releases). Pair with `LilypadControllerDeployedV1Defects`.
contract LilypadPaymentsDeployedV1Defects is LilypadPayments {
    constructor(
        address token,
        address controller,
        address owner_,
        address slashingDestination_,
        address jackpot
    ) LilypadPayments(token, controller, owner_, slashingDestination_, jackpot) {}

    function _timeoutAgree(
        string calldata dealId,
        DealMoney calldata m,
        bool resourceProviderAgreed,
        bool jobCreatorAgreed
    ) internal override {
        if (resourceProviderAgreed || !jobCreatorAgreed) {
            super._timeoutAgree(dealId, m, resourceProviderAgreed, jobCreatorAgreed);
            return;
        }
        _dropDealEscrow(dealId);
        _refund(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
        _refund(dealId, m.jobCreator, m.submitResultsCollateral, PaymentReason.TimeoutCollateral);
    }
}
