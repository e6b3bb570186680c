// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ILilypadToken} from "./interfaces/ILilypadToken.sol";

/// @title LilypadToken
/// @notice ERC-20 with a pooled escrow balance per address (spec section 5). Escrowed tokens are
/// held by this contract itself, so `balanceOf(address(this)) == totalEscrow()` and the ERC-20
/// identity `sum(balanceOf) == totalSupply()` holds. The whole supply is minted once, to a funder.
///
/// Escrow of an address = tokens locked by its deals (moved only by the payments contract, which
/// keeps the per-deal accounting) + free escrow it deposited itself with `payEscrow` (which only it
/// can withdraw). The two are kept apart: deals never touch free escrow (their deposits come from
/// the wallet) and `withdrawEscrow` never touches locked escrow.
contract LilypadToken is ERC20, ReentrancyGuardTransient, ILilypadToken {
    /// @dev The caller is not the payments contract.
    error NotPayments(address caller);
    /// @dev Releasing more locked escrow than `account` holds.
    error InsufficientEscrow(address account, uint256 held, uint256 needed);
    /// @dev Withdrawing more free escrow than `account` holds.
    error InsufficientFreeEscrow(address account, uint256 held, uint256 needed);
    /// @dev Plain transfers to the token contract would be indistinguishable from escrow.
    error TransferToTokenContract();

    address private immutable _payments;
    mapping(address account => uint256) private _lockedEscrow;
    mapping(address account => uint256) private _freeEscrow;

    modifier onlyPayments() {
        if (msg.sender != _payments) revert NotPayments(msg.sender);
        _;
    }

    /// @param initialSupply whole supply in base units, minted to `funder`.
    /// @param payments the only contract allowed to move deal escrow.
    constructor(
        string memory name_,
        string memory symbol_,
        uint256 initialSupply,
        address funder,
        address payments
    ) ERC20(name_, symbol_) {
        _payments = payments;
        _mint(funder, initialSupply);
    }

    // ================================================================== views

    /// @inheritdoc ILilypadToken
    function escrowBalanceOf(address account) external view returns (uint256) {
        return _lockedEscrow[account] + _freeEscrow[account];
    }

    /// @inheritdoc ILilypadToken
    function freeEscrowBalanceOf(address account) external view returns (uint256) {
        return _freeEscrow[account];
    }

    /// @inheritdoc ILilypadToken
    function totalEscrow() external view returns (uint256) {
        return balanceOf(address(this));
    }

    /// @inheritdoc ILilypadToken
    function getPaymentsAddress() external view returns (address) {
        return _payments;
    }

    // ============================================================ self escrow

    /// @inheritdoc ILilypadToken
    function payEscrow(uint256 amount) external nonReentrant returns (bool) {
        _update(msg.sender, address(this), amount);
        // Cannot overflow: escrow balances sum to balanceOf(this) <= totalSupply.
        unchecked {
            _freeEscrow[msg.sender] += amount;
        }
        emit EscrowDeposited(msg.sender, amount);
        return true;
    }

    /// @inheritdoc ILilypadToken
    function withdrawEscrow(uint256 amount) external nonReentrant returns (bool) {
        uint256 free = _freeEscrow[msg.sender];
        if (free < amount) revert InsufficientFreeEscrow(msg.sender, free, amount);
        unchecked {
            // amount <= free, checked just above.
            _freeEscrow[msg.sender] = free - amount;
        }
        _update(address(this), msg.sender, amount);
        emit EscrowWithdrawn(msg.sender, amount);
        return true;
    }

    // =========================================================== deal escrow

    /// @inheritdoc ILilypadToken
    function escrowDeposit(address from, uint256 amount) external onlyPayments nonReentrant {
        _update(from, address(this), amount);
        // Cannot overflow: escrow balances sum to balanceOf(this) <= totalSupply.
        unchecked {
            _lockedEscrow[from] += amount;
        }
    }

    /// @inheritdoc ILilypadToken
    function escrowRelease(address from, address to, uint256 amount)
        external
        onlyPayments
        nonReentrant
    {
        uint256 held = _lockedEscrow[from];
        if (held < amount) revert InsufficientEscrow(from, held, amount);
        unchecked {
            // amount <= held, checked just above.
            _lockedEscrow[from] = held - amount;
        }
        _update(address(this), to, amount);
    }

    /// @inheritdoc ILilypadToken
    function collect(address from, address to, uint256 amount) external onlyPayments nonReentrant {
        if (to == address(this)) revert TransferToTokenContract();
        _update(from, to, amount);
    }

    // ================================================================ ERC-20

    /// @dev Rejects plain transfers to the token contract (escrow only enters through the escrow
    /// functions, so that balanceOf(this) == totalEscrow()).
    function transfer(address to, uint256 value) public override(ERC20, IERC20) returns (bool) {
        if (to == address(this)) revert TransferToTokenContract();
        return super.transfer(to, value);
    }

    /// @dev See `transfer`.
    function transferFrom(address from, address to, uint256 value)
        public
        override(ERC20, IERC20)
        returns (bool)
    {
        if (to == address(this)) revert TransferToTokenContract();
        return super.transferFrom(from, to, value);
    }
}
