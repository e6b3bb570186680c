// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title BlobStore
/// @notice Write-once byte blobs kept as the runtime code of a tiny data contract ("SSTORE2"),
/// at an address derived from a salt alone, so that nothing has to be stored to find a blob.
///
/// Writing costs a CREATE2 (32k gas) plus 200 gas per byte, reading one EXTCODECOPY: much cheaper
/// than 22.1k gas per 32-byte storage slot for the immutable deal terms and result strings.
/// The runtime code is `0x00 ++ data`: the leading STOP makes the data contract uncallable.
///
/// To make the address independent of the data, every blob is created with the same 16-byte
/// loader init code, which calls back its creator (with empty calldata) and deploys whatever the
/// creator returns. The creator stages the runtime code in transient storage just before the
/// CREATE2 and serves it from its fallback (`serveStaged`), which answers only while a write is
/// staged. The address is then `CREATE2(creator, salt, keccak256(LOADER))`.
library BlobStore {
    /// @dev The blob does not fit in a contract (EIP-170 limit is 24576 bytes, minus the STOP byte).
    error BlobTooLarge(uint256 length, uint256 maxLength);
    /// @dev CREATE2 of the data contract failed or deployed other code than staged.
    error BlobWriteFailed(bytes32 salt);

    uint256 internal constant MAX_LENGTH = 24575;

    /// @dev Loader init code: CALL(gas, caller, 0, 0, 0, 0, 0); POP; RETURNDATACOPY(0, 0, rds);
    /// RETURN(0, rds). As bytes: 5f5f5f5f5f335af1 50 3d5f5f3e 3d5ff3 (16 bytes).
    bytes16 private constant LOADER = 0x5f5f5f5f5f335af1503d5f5f3e3d5ff3;
    bytes32 private constant LOADER_HASH = keccak256(abi.encodePacked(LOADER));

    /// @dev Transient slots of the staged runtime code: its length, then its 32-byte words.
    /// keccak256("twin.BlobStore.staged") - 1, so they cannot collide with other transient use
    /// (the reentrancy guard's slot ends in 0x00).
    uint256 private constant STAGED_LENGTH_SLOT =
        0x17ee31977ab5c1a458dc6525411de33346e9a4184deeccb6f81958b4be7bdba0;

    /// @notice Stores `data` under `salt` (once per salt per creator); returns the pointer.
    function write(bytes32 salt, bytes memory data) internal returns (address pointer) {
        uint256 length = data.length;
        if (length > MAX_LENGTH) revert BlobTooLarge(length, MAX_LENGTH);
        bytes memory runtime = abi.encodePacked(hex"00", data);
        bytes16 loader = LOADER;
        assembly ("memory-safe") {
            // Stage: length (never 0: the STOP byte), then the words of the runtime code.
            let size := mload(runtime)
            tstore(STAGED_LENGTH_SLOT, size)
            let src := add(runtime, 0x20)
            for { let i := 0 } lt(mul(i, 0x20), size) { i := add(i, 1) } {
                tstore(add(add(STAGED_LENGTH_SLOT, 1), i), mload(add(src, mul(i, 0x20))))
            }
            // CREATE2 of the loader (16 bytes, in the scratch space).
            mstore(0x00, loader)
            pointer := create2(0, 0x00, 16, salt)
            tstore(STAGED_LENGTH_SLOT, 0)
        }
        if (pointer == address(0) || pointer.code.length != length + 1) revert BlobWriteFailed(salt);
    }

    /// @notice To be called from the creator's fallback: while a write is staged, returns the
    /// staged runtime code to the loader (and never returns to the caller); otherwise does nothing.
    function serveStaged() internal view {
        assembly ("memory-safe") {
            let size := tload(STAGED_LENGTH_SLOT)
            if size {
                let out := mload(0x40)
                for { let i := 0 } lt(mul(i, 0x20), size) { i := add(i, 1) } {
                    mstore(add(out, mul(i, 0x20)), tload(add(add(STAGED_LENGTH_SLOT, 1), i)))
                }
                return(out, size)
            }
        }
    }

    /// @notice The address of the blob written under `salt` by `creator`.
    function pointerOf(address creator, bytes32 salt) internal pure returns (address) {
        return address(
            uint160(uint256(keccak256(abi.encodePacked(bytes1(0xff), creator, salt, LOADER_HASH))))
        );
    }

    /// @notice Reads the whole blob behind `pointer` (empty when nothing was written there).
    function read(address pointer) internal view returns (bytes memory data) {
        assembly ("memory-safe") {
            let code := extcodesize(pointer)
            // The first code byte is the STOP prefix; no code means no blob.
            let size := mul(sub(code, 1), gt(code, 0))
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
