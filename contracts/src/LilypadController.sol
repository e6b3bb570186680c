// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {
    AgreementState, Agreement, DealCore, DealMembers, DealTimeouts, DealPricing
} from "./LilypadTypes.sol";
import {ILilypadController} from "./interfaces/ILilypadController.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";
import {ILilypadPayments, DealMoney} from "./interfaces/ILilypadPayments.sol";
import {ILilypadMediation} from "./interfaces/ILilypadMediation.sol";
import {DealCodec} from "./libraries/DealCodec.sol";

/// @title LilypadController
/// @notice The state machine of a Lilypad v1 deal (spec sections 3 and 5), as intended: a judge
/// timeout is an acceptance, the job payment is capped at min(C, P), every terminal transition
/// releases all of the deal's escrow, and parties are authenticated by `msg.sender`.
///
/// Each call checks, in this order: the deal exists, the caller, the state, the timeout; then it
/// records the transition in storage, moves the money through payments, and finally has storage
/// announce the new state, giving the event order of docs/protocol-flows.md.
contract LilypadController is ILilypadController, ReentrancyGuardTransient {
    /// @dev The caller is neither the job creator nor the resource provider of the deal.
    error NotParty(string dealId, address caller);
    /// @dev Only the job creator may make this call.
    error NotJobCreator(string dealId, address caller);
    /// @dev Only the resource provider may make this call.
    error NotResourceProvider(string dealId, address caller);
    /// @dev Only the mediation contract may make this call.
    error NotMediationContract(address caller);
    /// @dev A mediation outcome names a mediator that is not one of the deal's mediators.
    error NotDealMediator(string dealId, address mediator);
    /// @dev No deal is stored under `dealId`.
    error DealNotFound(string dealId);
    /// @dev The deal is not in the state the call requires.
    error WrongState(string dealId, AgreementState expected, AgreementState actual);
    /// @dev A timeout call before its deadline; it succeeds only when `now > deadline`.
    error TimeoutNotReached(string dealId, uint256 now, uint256 deadline);
    /// @dev The second `agree` carries terms different from the stored ones.
    error TermsMismatch(string dealId);
    /// @dev The caller has already agreed to this deal.
    error AlreadyAgreed(string dealId, address caller);
    /// @dev A wiring address is zero.
    error ZeroAddress();

    ILilypadStorage internal immutable _storage;
    ILilypadPayments internal immutable _payments;
    ILilypadMediation private immutable _mediation;
    address private immutable _users;

    constructor(address storage_, address payments, address mediation, address users) {
        if (
            storage_ == address(0) || payments == address(0) || mediation == address(0)
                || users == address(0)
        ) revert ZeroAddress();
        _storage = ILilypadStorage(storage_);
        _payments = ILilypadPayments(payments);
        _mediation = ILilypadMediation(mediation);
        _users = users;
    }

    // ================================================================= agree

    /// @inheritdoc ILilypadController
    /// @dev The first call stores the deal (`DSC(0)`) then takes the caller's deposit; the second,
    /// by the other party with identical terms, takes its deposit then announces `DSC(1)`.
    function agree(
        string calldata dealId,
        DealMembers calldata members,
        DealTimeouts calldata timeouts,
        DealPricing calldata pricing
    ) external nonReentrant returns (Agreement memory) {
        address caller = _party();
        bool byResourceProvider = caller == members.resourceProvider;
        if (!byResourceProvider && caller != members.jobCreator) {
            revert NotParty(dealId, caller);
        }
        bytes memory terms = DealCodec.encodeTerms(dealId, members, timeouts, pricing);
        (
            bool exists,
            AgreementState state,
            bool resourceProviderAgreed,
            bool jobCreatorAgreed,
            bytes32 storedTerms
        ) = _storage.agreementStatus(dealId);
        DealMoney memory money;
        money.jobCreator = members.jobCreator;
        money.resourceProvider = members.resourceProvider;
        money.paymentCollateral = pricing.paymentCollateral;
        money.submitResultsCollateral = timeouts.submitResults.collateral;
        money.judgeResultsCollateral = timeouts.judgeResults.collateral;
        if (!exists) {
            _storage.createDeal(
                dealId, terms, members.jobCreator, members.resourceProvider, byResourceProvider
            );
            _deposit(dealId, money, byResourceProvider);
        } else {
            if (state != AgreementState.DealNegotiating) {
                revert WrongState(dealId, AgreementState.DealNegotiating, state);
            }
            if (storedTerms != keccak256(terms)) revert TermsMismatch(dealId);
            if (byResourceProvider ? resourceProviderAgreed : jobCreatorAgreed) {
                revert AlreadyAgreed(dealId, caller);
            }
            _storage.completeAgreement(dealId, byResourceProvider);
            _deposit(dealId, money, byResourceProvider);
            _storage.announceState(dealId);
        }
        return _storage.getAgreement(dealId);
    }

    // ============================================================== results

    /// @inheritdoc ILilypadController
    function addResult(
        string calldata dealId,
        string calldata resultsId,
        string calldata dataId,
        uint256 instructionCount
    ) external nonReentrant {
        DealCore memory d = _load(dealId);
        _requireResourceProvider(dealId, d);
        _requireState(dealId, d.state, AgreementState.DealAgreed);
        bytes memory result = DealCodec.encodeResult(dealId, resultsId, dataId, instructionCount);
        d.instructionCount = instructionCount;
        DealMoney memory money = _money(d);
        _storage.recordResult(dealId, result, instructionCount);
        _payments.addResult(dealId, money);
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    function acceptResult(string calldata dealId) external nonReentrant {
        DealCore memory d = _load(dealId);
        _requireJobCreator(dealId, d);
        _requireState(dealId, d.state, AgreementState.ResultsSubmitted);
        _storage.closeDeal(dealId, AgreementState.ResultsAccepted);
        _payments.acceptResult(dealId, _money(d));
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    function checkResult(string calldata dealId) external nonReentrant {
        DealCore memory d = _load(dealId);
        _requireJobCreator(dealId, d);
        _requireState(dealId, d.state, AgreementState.ResultsSubmitted);
        _storage.recordCheck(dealId);
        _payments.checkResult(dealId, _money(d));
        _storage.announceState(dealId);
        _mediation.requestMediation(dealId, d.mediators);
    }

    // ============================================================ mediation

    /// @inheritdoc ILilypadController
    function mediationAcceptResult(string calldata dealId, address[] calldata mediators)
        external
        nonReentrant
    {
        DealCore memory d = _loadForMediation(dealId, mediators);
        _storage.closeDeal(dealId, AgreementState.MediationAccepted);
        _payments.mediationAcceptResult(dealId, _money(d), mediators);
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    function mediationRejectResult(string calldata dealId, address[] calldata mediators)
        external
        nonReentrant
    {
        DealCore memory d = _loadForMediation(dealId, mediators);
        _storage.closeDeal(dealId, AgreementState.MediationRejected);
        _payments.mediationRejectResult(dealId, _money(d), mediators);
        _storage.announceState(dealId);
    }

    // ============================================================= timeouts

    /// @inheritdoc ILilypadController
    /// @dev Refunds whichever party had agreed (its own deposit only).
    function timeoutAgree(string calldata dealId) external nonReentrant {
        DealCore memory d = _load(dealId);
        _requireParty(dealId, d);
        _requireState(dealId, d.state, AgreementState.DealNegotiating);
        _requireTimeout(dealId, d.dealCreatedAt, d.agreeTimeout);
        _storage.closeDeal(dealId, AgreementState.TimeoutAgree);
        _payments.timeoutAgree(
            dealId, _money(d), d.resourceProviderAgreed, d.jobCreatorAgreed
        );
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    function timeoutSubmitResult(string calldata dealId) external virtual nonReentrant {
        DealCore memory d = _load(dealId);
        _requireJobCreator(dealId, d);
        _requireState(dealId, d.state, AgreementState.DealAgreed);
        _requireTimeout(dealId, d.dealAgreedAt, d.submitResultsTimeout);
        _storage.closeDeal(dealId, AgreementState.TimeoutSubmitResults);
        _payments.timeoutSubmitResult(dealId, _money(d));
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    /// @dev As intended: an acceptance (RP paid min(C, P)) in which the job creator's Tj is slashed.
    function timeoutJudgeResult(string calldata dealId) external virtual nonReentrant {
        DealCore memory d = _load(dealId);
        _requireResourceProvider(dealId, d);
        _requireState(dealId, d.state, AgreementState.ResultsSubmitted);
        _requireTimeout(dealId, d.resultsSubmittedAt, d.judgeResultsTimeout);
        _storage.closeDeal(dealId, AgreementState.TimeoutJudgeResults);
        _payments.timeoutJudgeResult(dealId, _money(d));
        _storage.announceState(dealId);
    }

    /// @inheritdoc ILilypadController
    /// @dev Measured from `resultsCheckedAt` with the mediateResults timeout.
    function timeoutMediateResult(string calldata dealId) external nonReentrant {
        DealCore memory d = _load(dealId);
        _requireParty(dealId, d);
        _requireState(dealId, d.state, AgreementState.ResultsChecked);
        (uint256 start, uint256 window) = _mediateTimeoutWindow(d);
        _requireTimeout(dealId, start, window);
        _storage.closeDeal(dealId, AgreementState.TimeoutMediateResults);
        _payments.timeoutMediateResult(dealId, _money(d));
        _storage.announceState(dealId);
    }

    // ================================================================ wiring

    /// @inheritdoc ILilypadController
    function getStorageAddress() external view returns (address) {
        return address(_storage);
    }

    /// @inheritdoc ILilypadController
    function getPaymentsAddress() external view returns (address) {
        return address(_payments);
    }

    /// @inheritdoc ILilypadController
    function getMediationAddress() external view returns (address) {
        return address(_mediation);
    }

    /// @inheritdoc ILilypadController
    function getUsersAddress() external view returns (address) {
        return _users;
    }

    // =============================================================== private

    function _deposit(string calldata dealId, DealMoney memory money, bool byResourceProvider)
        private
    {
        if (byResourceProvider) _payments.agreeResourceProvider(dealId, money);
        else _payments.agreeJobCreator(dealId, money);
    }

    function _load(string calldata dealId) internal view returns (DealCore memory d) {
        d = _storage.loadCore(dealId);
        if (d.jobCreator == address(0)) revert DealNotFound(dealId);
    }

    function _loadForMediation(string calldata dealId, address[] calldata mediators)
        private
        view
        returns (DealCore memory d)
    {
        if (msg.sender != address(_mediation)) revert NotMediationContract(msg.sender);
        d = _load(dealId);
        _requireState(dealId, d.state, AgreementState.ResultsChecked);
        for (uint256 i; i < mediators.length; ++i) {
            bool found;
            for (uint256 j; j < d.mediators.length && !found; ++j) {
                found = d.mediators[j] == mediators[i];
            }
            if (!found) revert NotDealMediator(dealId, mediators[i]);
        }
    }

    /// @dev The money terms of a loaded deal: C = instructionPrice * n, R = m * C.
    function _money(DealCore memory d) internal pure returns (DealMoney memory money) {
        money.jobCreator = d.jobCreator;
        money.resourceProvider = d.resourceProvider;
        money.paymentCollateral = d.paymentCollateral;
        money.submitResultsCollateral = d.submitResultsCollateral;
        money.judgeResultsCollateral = d.judgeResultsCollateral;
        money.mediationFee = d.mediationFee;
        money.jobCost = d.instructionPrice * d.instructionCount;
        money.resultsCollateral = d.resultsCollateralMultiple * money.jobCost;
    }

    /// @dev The address acting as a party of a deal: the direct caller (`msg.sender`), so that a
    /// contract wallet can be a party. (The reproduction of the deployed v1 contracts overrides
    /// this with `tx.origin`, its defect 4.)
    function _party() internal view virtual returns (address) {
        return msg.sender;
    }

    /// @dev Start and length of the mediate timeout window: from `resultsCheckedAt`, the
    /// mediateResults timeout. (The reproduction of the deployed contracts measures it from
    /// `resultsSubmittedAt` with the judgeResults timeout, its defect 3.)
    function _mediateTimeoutWindow(DealCore memory d)
        internal
        pure
        virtual
        returns (uint256 start, uint256 window)
    {
        return (d.resultsCheckedAt, d.mediateResultsTimeout);
    }

    function _requireParty(string calldata dealId, DealCore memory d) internal view {
        address caller = _party();
        if (caller != d.jobCreator && caller != d.resourceProvider) {
            revert NotParty(dealId, caller);
        }
    }

    function _requireJobCreator(string calldata dealId, DealCore memory d) internal view {
        address caller = _party();
        if (caller != d.jobCreator) revert NotJobCreator(dealId, caller);
    }

    function _requireResourceProvider(string calldata dealId, DealCore memory d) internal view {
        address caller = _party();
        if (caller != d.resourceProvider) revert NotResourceProvider(dealId, caller);
    }

    function _requireState(string calldata dealId, AgreementState actual, AgreementState expected)
        internal
        pure
    {
        if (actual != expected) revert WrongState(dealId, expected, actual);
    }

    /// @dev Strict: callable only when `block.timestamp > start + timeout`.
    function _requireTimeout(string calldata dealId, uint256 start, uint256 timeout) internal view {
        uint256 deadline = start + timeout;
        if (block.timestamp <= deadline) revert TimeoutNotReached(dealId, block.timestamp, deadline);
    }
}
