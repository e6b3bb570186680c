// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title ILilypadJackpot
/// @notice A tax / jackpot pool (optional): a tax on every paid job flows in from the job
/// creator's wallet, and a share of the pool is paid to a job creator whose check caught a bad
/// result (mediation rejected it). See docs/contracts.md.
interface ILilypadJackpot {
    /// @notice `payer` paid `amount` of tax on the job of `dealId` into the pool.
    event TaxCollected(string dealId, address payer, uint256 amount);
    /// @notice The pool paid `amount` to `payee` for the rejected result of `dealId`.
    event JackpotPaid(string dealId, address payee, uint256 amount);
    /// @notice The owner changed the rates.
    event RatesChanged(
        uint64 taxNumerator, uint64 taxDenominator, uint64 payoutNumerator, uint64 payoutDenominator
    );

    /// @notice floor(payment * taxNumerator / taxDenominator).
    function taxOn(uint256 payment) external view returns (uint256);
    /// @notice floor(pool balance * payoutNumerator / payoutDenominator).
    function nextPayout() external view returns (uint256);
    function rates()
        external
        view
        returns (
            uint64 taxNumerator,
            uint64 taxDenominator,
            uint64 payoutNumerator,
            uint64 payoutDenominator
        );

    /// @notice Payments only: records a tax the payments contract moved into the pool.
    function recordTax(string calldata dealId, address payer, uint256 amount) external;
    /// @notice Payments only: pays `nextPayout()` to `payee`; returns the amount.
    function payJackpot(string calldata dealId, address payee) external returns (uint256);
}
