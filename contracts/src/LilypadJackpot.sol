// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ILilypadJackpot} from "./interfaces/ILilypadJackpot.sol";

/// @title LilypadJackpot
/// @notice Optional tax / jackpot pool (after Truebit). The pool is this contract's own token
/// balance. It grows by:
/// - a tax on every paid job (results accepted, by the job creator, by mediation or by the judge
///   timeout): floor(job payment * taxNumerator / taxDenominator), paid by the job creator from
///   its wallet right after the deal's payments (skipped when the wallet cannot cover it);
/// - slashed collateral, when the payments' slashing destination is this pool;
/// - plain transfers (seeding).
/// It pays, when a mediation rejects a result, floor(pool * payoutNumerator / payoutDenominator)
/// to the job creator whose check caught it (computed after that deal's slash).
/// Exact semantics (mirrored by the simulator) in docs/contracts.md.
contract LilypadJackpot is ILilypadJackpot, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    /// @dev The caller is not the payments contract.
    error NotPayments(address caller);
    /// @dev A rate with a zero denominator or above 1.
    error InvalidRate(uint64 numerator, uint64 denominator);

    IERC20 private immutable _token;
    address private immutable _payments;
    uint64 private _taxNumerator;
    uint64 private _taxDenominator;
    uint64 private _payoutNumerator;
    uint64 private _payoutDenominator;

    modifier onlyPayments() {
        if (msg.sender != _payments) revert NotPayments(msg.sender);
        _;
    }

    constructor(
        address token,
        address payments,
        address owner_,
        uint64 taxNumerator,
        uint64 taxDenominator,
        uint64 payoutNumerator,
        uint64 payoutDenominator
    ) Ownable(owner_) {
        _token = IERC20(token);
        _payments = payments;
        _setRates(taxNumerator, taxDenominator, payoutNumerator, payoutDenominator);
    }

    /// @notice Owner only: sets both rates (each a fraction in [0, 1]).
    function setRates(
        uint64 taxNumerator,
        uint64 taxDenominator,
        uint64 payoutNumerator,
        uint64 payoutDenominator
    ) external onlyOwner {
        _setRates(taxNumerator, taxDenominator, payoutNumerator, payoutDenominator);
    }

    /// @inheritdoc ILilypadJackpot
    function rates() external view returns (uint64, uint64, uint64, uint64) {
        return (_taxNumerator, _taxDenominator, _payoutNumerator, _payoutDenominator);
    }

    /// @inheritdoc ILilypadJackpot
    function taxOn(uint256 payment) external view returns (uint256) {
        return payment * _taxNumerator / _taxDenominator;
    }

    /// @inheritdoc ILilypadJackpot
    function nextPayout() public view returns (uint256) {
        return _token.balanceOf(address(this)) * _payoutNumerator / _payoutDenominator;
    }

    /// @inheritdoc ILilypadJackpot
    function recordTax(string calldata dealId, address payer, uint256 amount)
        external
        onlyPayments
    {
        emit TaxCollected(dealId, payer, amount);
    }

    /// @inheritdoc ILilypadJackpot
    function payJackpot(string calldata dealId, address payee)
        external
        onlyPayments
        nonReentrant
        returns (uint256 amount)
    {
        amount = nextPayout();
        if (amount == 0) return 0;
        _token.safeTransfer(payee, amount);
        emit JackpotPaid(dealId, payee, amount);
    }

    function _setRates(uint64 taxN, uint64 taxD, uint64 payN, uint64 payD) private {
        if (taxD == 0 || taxN > taxD) revert InvalidRate(taxN, taxD);
        if (payD == 0 || payN > payD) revert InvalidRate(payN, payD);
        (_taxNumerator, _taxDenominator, _payoutNumerator, _payoutDenominator) =
            (taxN, taxD, payN, payD);
        emit RatesChanged(taxN, taxD, payN, payD);
    }
}
