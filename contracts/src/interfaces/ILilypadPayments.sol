// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {PaymentReason, PaymentDirection} from "../LilypadTypes.sol";

/// @notice The money terms of one deal at one transition (amounts in token base units).
struct DealMoney {
    address jobCreator;
    address resourceProvider;
    uint256 paymentCollateral; // P
    uint256 submitResultsCollateral; // Ts
    uint256 judgeResultsCollateral; // Tj
    uint256 mediationFee; // F
    uint256 jobCost; // C = instructionPrice * instructionCount
    uint256 resultsCollateral; // R = resultsCollateralMultiple * C
}

/// @title ILilypadPayments
/// @notice Every money movement of a deal, one function per transition (docs/protocol-flows.md).
/// Only the controller calls them.
interface ILilypadPayments {
    /// @notice `amount` tokens moved for `dealId`; `payee` is the address whose wallet or escrow
    /// changed (for `Slashed`, the party that lost its collateral).
    event Payment(
        string dealId,
        address payee,
        uint256 amount,
        PaymentReason reason,
        PaymentDirection direction
    );
    /// @notice The slashing destination changed.
    event SlashingDestinationChanged(address previousDestination, address newDestination);

    function getTokenAddress() external view returns (address);
    function getControllerAddress() external view returns (address);
    function slashingDestination() external view returns (address);
    /// @notice The tax / jackpot pool (zero address: none).
    function getJackpotAddress() external view returns (address);
    /// @notice The tokens `dealId` holds in escrow for its job creator and resource provider.
    function dealEscrow(string calldata dealId)
        external
        view
        returns (uint256 jobCreator, uint256 resourceProvider);

    function agreeResourceProvider(string calldata dealId, DealMoney calldata money) external;
    function agreeJobCreator(string calldata dealId, DealMoney calldata money) external;
    function addResult(string calldata dealId, DealMoney calldata money) external;
    function acceptResult(string calldata dealId, DealMoney calldata money) external;
    function checkResult(string calldata dealId, DealMoney calldata money) external;
    function mediationAcceptResult(
        string calldata dealId,
        DealMoney calldata money,
        address[] calldata mediators
    ) external;
    function mediationRejectResult(
        string calldata dealId,
        DealMoney calldata money,
        address[] calldata mediators
    ) external;
    function timeoutAgree(
        string calldata dealId,
        DealMoney calldata money,
        bool resourceProviderAgreed,
        bool jobCreatorAgreed
    ) external;
    function timeoutSubmitResult(string calldata dealId, DealMoney calldata money) external;
    function timeoutJudgeResult(string calldata dealId, DealMoney calldata money) external;
    function timeoutMediateResult(string calldata dealId, DealMoney calldata money) external;
}
