// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Deal, Agreement, Result, DealCore, AgreementState} from "../LilypadTypes.sol";

/// @title ILilypadStorage
/// @notice Deals, agreements and results (views of spec section 5) plus the controller-only
/// mutators that record each transition.
interface ILilypadStorage {
    /// @notice A deal changed state (state 0 when it is first stored).
    event DealStateChange(string dealId, AgreementState state);

    // ---- views of spec section 5
    function getDeal(string calldata dealId) external view returns (Deal memory);
    function getAgreement(string calldata dealId) external view returns (Agreement memory);
    function getResult(string calldata dealId) external view returns (Result memory);
    function getJobCost(string calldata dealId) external view returns (uint256);
    function getResultsCollateral(string calldata dealId) external view returns (uint256);
    function hasDeal(string calldata dealId) external view returns (bool);
    function isState(string calldata dealId, uint8 state) external view returns (bool);
    function getDealsForParty(address party) external view returns (string[] memory);

    // ---- compact views for the other contracts
    function getControllerAddress() external view returns (address);
    function loadCore(string calldata dealId) external view returns (DealCore memory);
    function agreementStatus(string calldata dealId)
        external
        view
        returns (
            bool exists,
            AgreementState state,
            bool resourceProviderAgreed,
            bool jobCreatorAgreed,
            bytes32 termsHash
        );
    function getMediationContext(string calldata dealId)
        external
        view
        returns (bool checked, uint256 resultsCheckedAt, address[] memory mediators);

    // ---- controller-only mutators
    function createDeal(
        string calldata dealId,
        bytes calldata terms,
        address jobCreator,
        address resourceProvider,
        bool byResourceProvider
    ) external;
    function completeAgreement(string calldata dealId, bool byResourceProvider) external;
    function recordResult(string calldata dealId, bytes calldata result, uint256 instructionCount)
        external;
    function recordCheck(string calldata dealId) external;
    function closeDeal(string calldata dealId, AgreementState terminal) external;
    function announceState(string calldata dealId) external;
}
