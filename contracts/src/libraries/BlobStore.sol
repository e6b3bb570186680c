// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title BlobStore
/// @notice Write-once byte blobs kept as the runtime code of a tiny data contract ("SSTORE2").
/// Writing costs a CREATE (32k gas) plus 200 gas per byte, reading one EXTCODECOPY: much cheaper
/// than 22.1k gas per 32-byte storage slot for the immutable deal terms and result strings.
/// The runtime code is `0x00 ++ data`: the leading STOP makes the data contract uncallable.
library BlobStore {
    /// @dev The blob does not fit in a contract (EIP-170 limit is 24576 bytes, minus the STOP byte).
    error BlobTooLarge(uint256 length, uint256 maxLength);
    /// @dev CREATE of the data contract failed.
    error BlobWriteFailed();

    uint256 internal constant MAX_LENGTH = 24575;

    /// @notice Stores `data` and returns the address of the data contract (the pointer).
    function write(bytes memory data) internal returns (address pointer) {
        uint256 length = data.length;
        if (length > MAX_LENGTH) revert BlobTooLarge(length, MAX_LENGTH);
        // Init code: PUSH2 size, DUP1, PUSH1 0x0a, RETURNDATASIZE, CODECOPY, RETURNDATASIZE, RETURN
        // (copies everything after its own 10 bytes, i.e. `0x00 ++ data`, and returns it as code).
        bytes memory initCode = abi.encodePacked(
            hex"61", uint16(length + 1), hex"80600a3d393df3", hex"00", data
        );
        assembly ("memory-safe") {
            pointer := create(0, add(initCode, 0x20), mload(initCode))
        }
        if (pointer == address(0)) revert BlobWriteFailed();
    }

    /// @notice Reads the whole blob behind `pointer` (which must have been returned by `write`).
    function read(address pointer) internal view returns (bytes memory data) {
        assembly ("memory-safe") {
            // extcodesize >= 1 for every pointer returned by write (the STOP byte).
            let size := sub(extcodesize(pointer), 1)
            data := mload(0x40)
            mstore(data, size)
            extcodecopy(pointer, add(data, 0x20), 1, size)
            // Reserve the data rounded up to whole words plus one spare word, so that a 32-byte
            // mload at any offset inside the blob never reads memory that is later reallocated.
            mstore(0x40, add(add(data, 0x40), and(add(size, 31), not(31))))
        }
    }

    /// @notice Reads `length` bytes of the blob from `offset`.
    function read(address pointer, uint256 offset, uint256 length)
        internal
        view
        returns (bytes memory data)
    {
        assembly ("memory-safe") {
            data := mload(0x40)
            mstore(data, length)
            extcodecopy(pointer, add(data, 0x20), add(offset, 1), length)
            mstore(0x40, add(add(data, 0x40), and(add(length, 31), not(31))))
        }
    }

    /// @dev The 32-byte word of `b` starting at byte `offset` (bytes past the end read as whatever
    /// memory follows; callers mask them off by shifting).
    function wordAt(bytes memory b, uint256 offset) internal pure returns (uint256 w) {
        assembly ("memory-safe") {
            w := mload(add(add(b, 0x20), offset))
        }
    }

    /// @dev A copy of `length` bytes of `b` from `offset`.
    function slice(bytes memory b, uint256 offset, uint256 length)
        internal
        pure
        returns (bytes memory out)
    {
        out = new bytes(length);
        assembly ("memory-safe") {
            mcopy(add(out, 0x20), add(add(b, 0x20), offset), length)
        }
    }
}
