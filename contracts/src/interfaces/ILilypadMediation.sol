// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ILilypadMediation
/// @notice A mediation protocol: chosen at `checkResult`, it decides a checked result and calls
/// back into the controller (spec section 5).
interface ILilypadMediation {
    /// @notice `mediator` was asked to re-run the job of `dealId`.
    event MediationRequested(string dealId, address mediator);

    /// @notice Controller only: a result was checked; choose the mediator(s) among `mediators`.
    function requestMediation(string calldata dealId, address[] calldata mediators) external;
    /// @notice The mediator chosen for `dealId` (zero address before `checkResult`).
    function getMediator(string calldata dealId) external view returns (address);
    function mediationAcceptResult(string calldata dealId) external;
    function mediationRejectResult(string calldata dealId) external;
}
