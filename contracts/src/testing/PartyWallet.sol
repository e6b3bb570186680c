// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title PartyWallet
/// @notice A minimal contract wallet (tests only): its owner makes it call any contract, so the
/// wallet's address can be a deal party. Shows defect 4 of the deployed v1 contracts (parties
/// authenticated by `tx.origin` cannot be contract wallets) against our `msg.sender` contracts.
contract PartyWallet {
    /// @dev The caller is not the wallet's owner.
    error NotOwner(address caller);

    address private immutable _owner;

    constructor() {
        _owner = msg.sender;
    }

    /// @notice Calls `target` with `data`; bubbles up a revert with its data.
    function execute(address target, bytes calldata data) external returns (bytes memory) {
        if (msg.sender != _owner) revert NotOwner(msg.sender);
        (bool ok, bytes memory out) = target.call(data);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(out, 32), mload(out))
            }
        }
        return out;
    }
}
