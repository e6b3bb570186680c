// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @file Shared types of the Lilypad v1 protocol (spec section 2/3/5): the ABI-visible structs
/// (field order matters for the ABI) and the enums whose indices are part of the protocol.

/// @dev Agreement states, in the exact order of spec section 3.
enum AgreementState {
    DealNegotiating, // 0
    DealAgreed, // 1
    ResultsSubmitted, // 2
    ResultsAccepted, // 3
    ResultsChecked, // 4
    MediationAccepted, // 5
    MediationRejected, // 6
    TimeoutAgree, // 7
    TimeoutSubmitResults, // 8
    TimeoutJudgeResults, // 9
    TimeoutMediateResults // 10
}

/// @dev Why tokens moved (the `reason` of the `Payment` event).
enum PaymentReason {
    PaymentCollateral, // 0
    ResultsCollateral, // 1
    TimeoutCollateral, // 2
    JobPayment, // 3
    MediationFee // 4
}

/// @dev How tokens moved (the `direction` of the `Payment` event).
enum PaymentDirection {
    PaidIn, // 0: payee wallet -> payee escrow
    PaidOut, // 1: job creator escrow -> payee wallet
    Refunded, // 2: payee escrow -> payee wallet
    Slashed // 3: payee escrow -> slashing destination
}

/// @dev Roles of the discovery registry (LilypadUsers).
enum ServiceType {
    Solver, // 0
    Mediator, // 1
    ResourceProvider, // 2
    JobCreator // 3
}

struct DealMembers {
    address solver;
    address jobCreator;
    address resourceProvider;
    address[] mediators;
}

struct DealTimeout {
    uint256 timeout;
    uint256 collateral;
}

struct DealTimeouts {
    DealTimeout agree;
    DealTimeout submitResults;
    DealTimeout judgeResults;
    DealTimeout mediateResults;
}

struct DealPricing {
    uint256 instructionPrice;
    uint256 paymentCollateral;
    uint256 resultsCollateralMultiple;
    uint256 mediationFee;
}

struct Deal {
    string dealId;
    DealMembers members;
    DealTimeouts timeouts;
    DealPricing pricing;
}

struct Result {
    string dealId;
    string resultsId;
    string dataId;
    uint256 instructionCount;
}

struct Agreement {
    AgreementState state;
    uint256 resourceProviderAgreedAt;
    uint256 jobCreatorAgreedAt;
    uint256 dealCreatedAt;
    uint256 dealAgreedAt;
    uint256 resultsSubmittedAt;
    uint256 resultsAcceptedAt;
    uint256 resultsCheckedAt;
    uint256 mediationAcceptedAt;
    uint256 mediationRejectedAt;
    uint256 timeoutAgreeAt;
    uint256 timeoutSubmitResultsAt;
    uint256 timeoutJudgeResultsAt;
    uint256 timeoutMediateResultsAt;
}

/// @dev Everything the controller needs to run one call on a stored deal, decoded in one read
/// (not part of the public interface of spec section 5).
struct DealCore {
    AgreementState state;
    bool resourceProviderAgreed;
    bool jobCreatorAgreed;
    uint256 dealCreatedAt;
    uint256 dealAgreedAt;
    uint256 resultsSubmittedAt;
    uint256 resultsCheckedAt;
    address jobCreator;
    address resourceProvider;
    uint256 agreeTimeout;
    uint256 submitResultsTimeout;
    uint256 judgeResultsTimeout;
    uint256 mediateResultsTimeout;
    uint256 submitResultsCollateral; // Ts
    uint256 judgeResultsCollateral; // Tj
    uint256 instructionPrice;
    uint256 paymentCollateral; // P
    uint256 resultsCollateralMultiple; // m
    uint256 mediationFee; // F
    uint256 instructionCount; // n (0 until a result is stored)
    address[] mediators;
}
