// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

/// @title ILilypadToken
/// @notice An ERC-20 with a pooled escrow balance per address (spec section 5).
interface ILilypadToken is IERC20 {
    /// @notice Tokens of `account` moved from its wallet into its free escrow by itself.
    event EscrowDeposited(address indexed account, uint256 amount);
    /// @notice Free escrow of `account` moved back to its wallet by itself.
    event EscrowWithdrawn(address indexed account, uint256 amount);

    function escrowBalanceOf(address account) external view returns (uint256);
    function freeEscrowBalanceOf(address account) external view returns (uint256);
    function totalEscrow() external view returns (uint256);
    function getPaymentsAddress() external view returns (address);

    /// @notice Moves `amount` of the caller's tokens into the caller's (free) escrow, no approval.
    function payEscrow(uint256 amount) external returns (bool);
    /// @notice Moves `amount` of the caller's free escrow back to its wallet.
    function withdrawEscrow(uint256 amount) external returns (bool);

    /// @notice Payments only: `from`'s wallet -> `from`'s escrow.
    function escrowDeposit(address from, uint256 amount) external;
    /// @notice Payments only: `from`'s escrow -> `to`'s wallet.
    function escrowRelease(address from, address to, uint256 amount) external;
    /// @notice Payments only: `from`'s wallet -> `to`'s wallet (a protocol charge, e.g. a tax).
    function collect(address from, address to, uint256 amount) external;
}
