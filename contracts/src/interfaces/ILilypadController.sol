// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {DealMembers, DealTimeouts, DealPricing, Agreement} from "../LilypadTypes.sol";

/// @title ILilypadController
/// @notice The external interface of spec section 5, plus the callbacks of the mediation contract.
interface ILilypadController {
    function agree(
        string calldata dealId,
        DealMembers calldata members,
        DealTimeouts calldata timeouts,
        DealPricing calldata pricing
    ) external returns (Agreement memory);
    function addResult(
        string calldata dealId,
        string calldata resultsId,
        string calldata dataId,
        uint256 instructionCount
    ) external;
    function acceptResult(string calldata dealId) external;
    function checkResult(string calldata dealId) external;
    function timeoutAgree(string calldata dealId) external;
    function timeoutSubmitResult(string calldata dealId) external;
    function timeoutJudgeResult(string calldata dealId) external;
    function timeoutMediateResult(string calldata dealId) external;

    /// @notice Mediation contract only: the result of `dealId` is accepted; `mediators` (the
    /// mediators that decided, in voting order) share the mediation fee.
    function mediationAcceptResult(string calldata dealId, address[] calldata mediators) external;
    /// @notice Mediation contract only: the result of `dealId` is rejected.
    function mediationRejectResult(string calldata dealId, address[] calldata mediators) external;

    function getStorageAddress() external view returns (address);
    function getPaymentsAddress() external view returns (address);
    function getMediationAddress() external view returns (address);
    function getUsersAddress() external view returns (address);
}
