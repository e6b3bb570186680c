// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {PaymentReason, PaymentDirection} from "./LilypadTypes.sol";
import {ILilypadPayments, DealMoney} from "./interfaces/ILilypadPayments.sol";
import {ILilypadToken} from "./interfaces/ILilypadToken.sol";
import {ILilypadJackpot} from "./interfaces/ILilypadJackpot.sol";

/// @title LilypadPayments
/// @notice Every money movement of the protocol, one function per transition, emitting the
/// `Payment` events of docs/protocol-flows.md in order (a movement of 0 tokens moves nothing and
/// emits nothing).
///
/// Per-deal escrow accounting: besides the pooled escrow balance per address kept by the token,
/// this contract records how much each deal holds for its job creator and its resource provider.
/// Every release is checked against the deal's own record (so a deal can never move another deal's
/// collateral), and every terminal transition must release exactly what the deal still holds
/// (so no terminal deal leaves tokens in escrow).
///
/// Optional tax / jackpot pool (`LilypadJackpot`, zero address: none): after the payments of a
/// paid deal the job creator is taxed from its wallet into the pool, and after those of a
/// rejected mediation the pool pays the job creator its jackpot share (docs/contracts.md).
contract LilypadPayments is ILilypadPayments, Ownable, ReentrancyGuardTransient {
    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev A deal would release more than it holds for `party`.
    error InsufficientDealEscrow(string dealId, address party, uint256 held, uint256 needed);
    /// @dev A terminal transition would not release exactly what the deal holds.
    error DealEscrowNotReleased(
        string dealId, uint256 heldJobCreator, uint256 heldResourceProvider,
        uint256 releasedJobCreator, uint256 releasedResourceProvider
    );
    /// @dev The slashing destination cannot be the zero address or the token contract.
    error InvalidSlashingDestination(address destination);
    /// @dev A mediation outcome without any mediator to pay.
    error NoMediators(string dealId);
    /// @dev A deal would hold more than 2**128 - 1 tokens for one party.
    error DealEscrowOverflow(string dealId, address party, uint256 amount);

    /// @dev One slot per deal.
    struct DealEscrow {
        uint128 jobCreator;
        uint128 resourceProvider;
    }

    ILilypadToken private immutable _token;
    address private immutable _controller;
    ILilypadJackpot private immutable _jackpot;
    address private _slashingDestination;
    mapping(bytes32 key => DealEscrow) private _dealEscrow;

    modifier onlyController() {
        if (msg.sender != _controller) revert NotController(msg.sender);
        _;
    }

    /// @param slashingDestination_ receives slashed collateral; the zero address means the owner.
    /// @param jackpot the tax / jackpot pool; the zero address means none.
    constructor(
        address token,
        address controller,
        address owner_,
        address slashingDestination_,
        address jackpot
    ) Ownable(owner_) {
        _token = ILilypadToken(token);
        _controller = controller;
        _jackpot = ILilypadJackpot(jackpot);
        address destination = slashingDestination_ == address(0) ? owner_ : slashingDestination_;
        if (destination == token) revert InvalidSlashingDestination(destination);
        _slashingDestination = destination;
        emit SlashingDestinationChanged(address(0), destination);
    }

    // ================================================================== admin

    /// @notice Owner only: sets where slashed collateral goes.
    function setSlashingDestination(address destination) external onlyOwner {
        if (destination == address(0) || destination == address(_token)) {
            revert InvalidSlashingDestination(destination);
        }
        address previous = _slashingDestination;
        _slashingDestination = destination;
        emit SlashingDestinationChanged(previous, destination);
    }

    // ================================================================== views

    /// @inheritdoc ILilypadPayments
    function getTokenAddress() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc ILilypadPayments
    function getControllerAddress() external view returns (address) {
        return _controller;
    }

    /// @inheritdoc ILilypadPayments
    function slashingDestination() external view returns (address) {
        return _slashingDestination;
    }

    /// @inheritdoc ILilypadPayments
    function getJackpotAddress() external view returns (address) {
        return address(_jackpot);
    }

    /// @inheritdoc ILilypadPayments
    function dealEscrow(string calldata dealId)
        external
        view
        returns (uint256 jobCreator, uint256 resourceProvider)
    {
        DealEscrow memory e = _dealEscrow[keccak256(bytes(dealId))];
        return (e.jobCreator, e.resourceProvider);
    }

    // ============================================================ transitions

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(RP, Ts, TimeoutCollateral, PaidIn)`.
    function agreeResourceProvider(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _settle(dealId, m, 0, 0, m.submitResultsCollateral, 0);
        _payIn(dealId, m.resourceProvider, m.submitResultsCollateral, PaymentReason.TimeoutCollateral);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(JC, P, PaymentCollateral, PaidIn)`, `Pay(JC, Tj, TimeoutCollateral, PaidIn)`.
    function agreeJobCreator(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _settle(dealId, m, m.paymentCollateral + m.judgeResultsCollateral, 0, 0, 0);
        _payIn(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
        _payIn(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(RP, R, ResultsCollateral, PaidIn)`, `Pay(RP, Ts, TimeoutCollateral, Refunded)`.
    function addResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _settle(dealId, m, 0, 0, m.resultsCollateral, m.submitResultsCollateral);
        _payIn(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        _refund(dealId, m.resourceProvider, m.submitResultsCollateral, PaymentReason.TimeoutCollateral);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(RP, pay, JobPayment, PaidOut)`, `Pay(JC, P - pay, PaymentCollateral, Refunded)`,
    /// `Pay(JC, Tj, TimeoutCollateral, Refunded)`, `Pay(RP, R, ResultsCollateral, Refunded)`.
    function acceptResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        uint256 pay = _jobPayment(m);
        _close(dealId, m.paymentCollateral + m.judgeResultsCollateral, m.resultsCollateral);
        _payOut(dealId, m.jobCreator, m.resourceProvider, pay, PaymentReason.JobPayment);
        _refund(dealId, m.jobCreator, m.paymentCollateral - pay, PaymentReason.PaymentCollateral);
        _refund(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
        _refund(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        _tax(dealId, m, pay);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(JC, Tj, TimeoutCollateral, Refunded)`, `Pay(JC, F, MediationFee, PaidIn)`.
    function checkResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _settle(dealId, m, m.mediationFee, m.judgeResultsCollateral, 0, 0);
        _refund(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
        _payIn(dealId, m.jobCreator, m.mediationFee, PaymentReason.MediationFee);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(RP, pay, JobPayment, PaidOut)`, `Pay(M, F, MediationFee, PaidOut)` (per mediator),
    /// `Pay(JC, P - pay, PaymentCollateral, Refunded)`, `Pay(RP, R, ResultsCollateral, Refunded)`.
    function mediationAcceptResult(
        string calldata dealId,
        DealMoney calldata m,
        address[] calldata mediators
    ) external onlyController nonReentrant {
        uint256 pay = _jobPayment(m);
        _close(dealId, m.paymentCollateral + m.mediationFee, m.resultsCollateral);
        _payOut(dealId, m.jobCreator, m.resourceProvider, pay, PaymentReason.JobPayment);
        _payMediators(dealId, m, mediators);
        _refund(dealId, m.jobCreator, m.paymentCollateral - pay, PaymentReason.PaymentCollateral);
        _refund(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        _tax(dealId, m, pay);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(JC, P, PaymentCollateral, Refunded)`, `Pay(M, F, MediationFee, PaidOut)` (per
    /// mediator), `Pay(RP, R, ResultsCollateral, Slashed)`.
    function mediationRejectResult(
        string calldata dealId,
        DealMoney calldata m,
        address[] calldata mediators
    ) external onlyController nonReentrant {
        _close(dealId, m.paymentCollateral + m.mediationFee, m.resultsCollateral);
        _refund(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
        _payMediators(dealId, m, mediators);
        _slash(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        if (address(_jackpot) != address(0)) _jackpot.payJackpot(dealId, m.jobCreator);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev Refunds whoever agreed: `Pay(RP, Ts, TimeoutCollateral, Refunded)`;
    /// `Pay(JC, P, PaymentCollateral, Refunded)`, `Pay(JC, Tj, TimeoutCollateral, Refunded)`.
    function timeoutAgree(
        string calldata dealId,
        DealMoney calldata m,
        bool resourceProviderAgreed,
        bool jobCreatorAgreed
    ) external onlyController nonReentrant {
        _timeoutAgree(dealId, m, resourceProviderAgreed, jobCreatorAgreed);
    }

    /// @dev The refunds of `timeoutAgree` (the reproduction of the deployed contracts overrides
    /// the lone job creator's refund, its defect 2).
    function _timeoutAgree(
        string calldata dealId,
        DealMoney calldata m,
        bool resourceProviderAgreed,
        bool jobCreatorAgreed
    ) internal virtual {
        uint256 rpHeld = resourceProviderAgreed ? m.submitResultsCollateral : 0;
        uint256 jcHeld = jobCreatorAgreed ? m.paymentCollateral + m.judgeResultsCollateral : 0;
        _close(dealId, jcHeld, rpHeld);
        if (resourceProviderAgreed) {
            _refund(dealId, m.resourceProvider, m.submitResultsCollateral, PaymentReason.TimeoutCollateral);
        }
        if (jobCreatorAgreed) {
            _refund(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
            _refund(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
        }
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(JC, P, PaymentCollateral, Refunded)`, `Pay(JC, Tj, TimeoutCollateral, Refunded)`,
    /// `Pay(RP, Ts, TimeoutCollateral, Slashed)`.
    function timeoutSubmitResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _close(dealId, m.paymentCollateral + m.judgeResultsCollateral, m.submitResultsCollateral);
        _refund(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
        _refund(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
        _slash(dealId, m.resourceProvider, m.submitResultsCollateral, PaymentReason.TimeoutCollateral);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev A judge timeout is an acceptance whose Tj is slashed: `Pay(RP, pay, JobPayment, PaidOut)`,
    /// `Pay(JC, P - pay, PaymentCollateral, Refunded)`, `Pay(RP, R, ResultsCollateral, Refunded)`,
    /// `Pay(JC, Tj, TimeoutCollateral, Slashed)`.
    function timeoutJudgeResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        uint256 pay = _jobPayment(m);
        _close(dealId, m.paymentCollateral + m.judgeResultsCollateral, m.resultsCollateral);
        _payOut(dealId, m.jobCreator, m.resourceProvider, pay, PaymentReason.JobPayment);
        _refund(dealId, m.jobCreator, m.paymentCollateral - pay, PaymentReason.PaymentCollateral);
        _refund(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        _slash(dealId, m.jobCreator, m.judgeResultsCollateral, PaymentReason.TimeoutCollateral);
        _tax(dealId, m, pay);
    }

    /// @inheritdoc ILilypadPayments
    /// @dev `Pay(RP, R, ResultsCollateral, Refunded)`, `Pay(JC, P, PaymentCollateral, Refunded)`,
    /// `Pay(JC, F, MediationFee, Refunded)`.
    function timeoutMediateResult(string calldata dealId, DealMoney calldata m)
        external
        onlyController
        nonReentrant
    {
        _close(dealId, m.paymentCollateral + m.mediationFee, m.resultsCollateral);
        _refund(dealId, m.resourceProvider, m.resultsCollateral, PaymentReason.ResultsCollateral);
        _refund(dealId, m.jobCreator, m.paymentCollateral, PaymentReason.PaymentCollateral);
        _refund(dealId, m.jobCreator, m.mediationFee, PaymentReason.MediationFee);
    }

    // ================================================================ private

    /// @dev The job payment, capped by the payment collateral: min(C, P).
    function _jobPayment(DealMoney calldata m) private pure returns (uint256) {
        return m.jobCost < m.paymentCollateral ? m.jobCost : m.paymentCollateral;
    }

    /// @dev Updates the deal's escrow record: the job creator's part gains `jcIn` and loses
    /// `jcOut`, the resource provider's gains `rpIn` and loses `rpOut`.
    function _settle(
        string calldata dealId,
        DealMoney calldata m,
        uint256 jcIn,
        uint256 jcOut,
        uint256 rpIn,
        uint256 rpOut
    ) private {
        bytes32 key = keccak256(bytes(dealId));
        DealEscrow memory e = _dealEscrow[key];
        uint256 jc = uint256(e.jobCreator) + jcIn;
        uint256 rp = uint256(e.resourceProvider) + rpIn;
        if (jc < jcOut) revert InsufficientDealEscrow(dealId, m.jobCreator, jc, jcOut);
        if (rp < rpOut) revert InsufficientDealEscrow(dealId, m.resourceProvider, rp, rpOut);
        _dealEscrow[key] = DealEscrow(
            _toUint128(dealId, m.jobCreator, jc - jcOut),
            _toUint128(dealId, m.resourceProvider, rp - rpOut)
        );
    }

    /// @dev Terminal transition: the deal must release exactly what it holds; its record is cleared.
    function _close(string calldata dealId, uint256 jcOut, uint256 rpOut) internal {
        bytes32 key = keccak256(bytes(dealId));
        DealEscrow memory e = _dealEscrow[key];
        if (e.jobCreator != jcOut || e.resourceProvider != rpOut) {
            revert DealEscrowNotReleased(dealId, e.jobCreator, e.resourceProvider, jcOut, rpOut);
        }
        delete _dealEscrow[key];
    }

    /// @dev Forgets the deal's escrow record without releasing anything (only the reproduction of
    /// the deployed contracts, which has no per-deal accounting on that path, uses it).
    function _dropDealEscrow(string calldata dealId) internal {
        delete _dealEscrow[keccak256(bytes(dealId))];
    }

    function _payIn(string calldata dealId, address party, uint256 amount, PaymentReason reason)
        private
    {
        if (amount == 0) return;
        _token.escrowDeposit(party, amount);
        emit Payment(dealId, party, amount, reason, PaymentDirection.PaidIn);
    }

    function _refund(string calldata dealId, address party, uint256 amount, PaymentReason reason)
        internal
    {
        if (amount == 0) return;
        _token.escrowRelease(party, party, amount);
        emit Payment(dealId, party, amount, reason, PaymentDirection.Refunded);
    }

    function _payOut(
        string calldata dealId,
        address from,
        address payee,
        uint256 amount,
        PaymentReason reason
    ) private {
        if (amount == 0) return;
        _token.escrowRelease(from, payee, amount);
        emit Payment(dealId, payee, amount, reason, PaymentDirection.PaidOut);
    }

    function _slash(string calldata dealId, address party, uint256 amount, PaymentReason reason)
        private
    {
        if (amount == 0) return;
        _token.escrowRelease(party, _slashingDestination, amount);
        emit Payment(dealId, party, amount, reason, PaymentDirection.Slashed);
    }

    /// @dev The pool's tax on a paid job, from the job creator's wallet; skipped when there is no
    /// pool, the tax is 0, or the wallet cannot cover it.
    function _tax(string calldata dealId, DealMoney calldata m, uint256 pay) private {
        if (address(_jackpot) == address(0)) return;
        uint256 tax = _jackpot.taxOn(pay);
        if (tax == 0 || _token.balanceOf(m.jobCreator) < tax) return;
        _token.collect(m.jobCreator, address(_jackpot), tax);
        _jackpot.recordTax(dealId, m.jobCreator, tax);
    }

    /// @dev The mediation fee F from the job creator's escrow, split equally among `mediators`;
    /// the remainder of the division goes to the first one.
    function _payMediators(string calldata dealId, DealMoney calldata m, address[] calldata mediators)
        private
    {
        uint256 count = mediators.length;
        if (count == 0) revert NoMediators(dealId);
        uint256 share = m.mediationFee / count;
        _payOut(
            dealId, m.jobCreator, mediators[0], share + m.mediationFee % count, PaymentReason.MediationFee
        );
        for (uint256 i = 1; i < count; ++i) {
            _payOut(dealId, m.jobCreator, mediators[i], share, PaymentReason.MediationFee);
        }
    }

    function _toUint128(string calldata dealId, address party, uint256 v)
        private
        pure
        returns (uint128)
    {
        if (v > type(uint128).max) revert DealEscrowOverflow(dealId, party, v);
        return uint128(v);
    }
}
