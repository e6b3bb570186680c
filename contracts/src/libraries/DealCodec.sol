// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {
    DealMembers, DealTimeouts, DealPricing, Deal, DealCore, Result, ServiceType
} from "../LilypadTypes.sol";
import {BlobStore} from "./BlobStore.sol";

/// @title DealCodec
/// @notice The packed, write-once encodings of deal terms and results kept by LilypadStorage, and
/// the stored-deal checks of spec section 3.
///
/// Terms (`encodeTerms`, compared byte for byte by the second `agree`):
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 20 | jobCreator |
/// | 20 | 20 | resourceProvider |
/// | 40 | 20 | solver |
/// | 60 | 4 x 5 | timeouts agree, submitResults, judgeResults, mediateResults (uint40 seconds) |
/// | 80 | 6 x 16 | Ts, Tj, instructionPrice, paymentCollateral, resultsCollateralMultiple, mediationFee (uint128) |
/// | 176 | 1 | number of mediators k |
/// | 177 | 20 k | mediators |
/// | 177 + 20 k | rest | dealId (UTF-8) |
///
/// The deal blob is `prevDealOfJobCreator (20) ++ prevDealOfResourceProvider (20) ++ terms`: the two
/// links chain each party's deals for `getDealsForParty`.
///
/// Result blob: `len(resultsId) (2) ++ resultsId ++ dataId` (the instruction count, a uint64, is
/// kept in the deal's record).
///
/// Values wider than their packed field are rejected (`ValueTooLarge`) instead of truncated, so a
/// stored deal always reads back exactly as agreed.
library DealCodec {
    /// @dev A member is the zero address (solver, job creator, resource provider) or, for
    /// `ServiceType.Mediator`, the mediator list is empty.
    error MissingMember(string dealId, ServiceType role);
    /// @dev The job creator and the resource provider are the same address.
    error SameJobCreatorAndResourceProvider(string dealId, address party);
    /// @dev More mediators than the packed count can hold.
    error TooManyMediators(string dealId, uint256 count, uint256 maxCount);
    /// @dev The agree timeout carries collateral (it must be 0).
    error NonZeroAgreeCollateral(string dealId, uint256 collateral);
    /// @dev The mediateResults timeout carries collateral (it must be 0).
    error NonZeroMediateCollateral(string dealId, uint256 collateral);
    /// @dev A value does not fit its packed field.
    error ValueTooLarge(string dealId, uint256 value, uint256 maxValue);

    uint256 internal constant LINKS_LENGTH = 40;
    uint256 internal constant MAX_MEDIATORS = 255;
    uint256 private constant FIXED_TERMS_LENGTH = 177;
    uint256 private constant MAX_UINT40 = type(uint40).max;
    uint256 private constant MAX_UINT64 = type(uint64).max;
    uint256 private constant MAX_UINT128 = type(uint128).max;

    // ------------------------------------------------------------------ terms

    /// @notice Validates the terms (stored-deal checks of spec section 3) and packs them.
    function encodeTerms(
        string calldata dealId,
        DealMembers calldata members,
        DealTimeouts calldata timeouts,
        DealPricing calldata pricing
    ) internal pure returns (bytes memory) {
        if (members.solver == address(0)) revert MissingMember(dealId, ServiceType.Solver);
        if (members.jobCreator == address(0)) revert MissingMember(dealId, ServiceType.JobCreator);
        if (members.resourceProvider == address(0)) {
            revert MissingMember(dealId, ServiceType.ResourceProvider);
        }
        if (members.jobCreator == members.resourceProvider) {
            revert SameJobCreatorAndResourceProvider(dealId, members.jobCreator);
        }
        uint256 count = members.mediators.length;
        if (count == 0) revert MissingMember(dealId, ServiceType.Mediator);
        if (count > MAX_MEDIATORS) revert TooManyMediators(dealId, count, MAX_MEDIATORS);
        if (timeouts.agree.collateral != 0) {
            revert NonZeroAgreeCollateral(dealId, timeouts.agree.collateral);
        }
        if (timeouts.mediateResults.collateral != 0) {
            revert NonZeroMediateCollateral(dealId, timeouts.mediateResults.collateral);
        }
        return bytes.concat(
            abi.encodePacked(members.jobCreator, members.resourceProvider, members.solver),
            _packTimeouts(dealId, timeouts),
            _packAmounts(dealId, timeouts, pricing),
            _packAddresses(members.mediators),
            bytes(dealId)
        );
    }

    /// @notice keccak256 of the terms part of a stored deal blob (comparable to
    /// `keccak256(encodeTerms(...))`).
    function termsHash(bytes memory blob) internal pure returns (bytes32 h) {
        assembly ("memory-safe") {
            h := keccak256(add(add(blob, 0x20), LINKS_LENGTH), sub(mload(blob), LINKS_LENGTH))
        }
    }

    /// @notice Fills the term fields of `core` from a deal blob.
    function decodeCore(bytes memory blob, DealCore memory core) internal pure {
        uint256 o = LINKS_LENGTH;
        core.jobCreator = _addressAt(blob, o);
        core.resourceProvider = _addressAt(blob, o + 20);
        core.agreeTimeout = BlobStore.wordAt(blob, o + 60) >> 216;
        core.submitResultsTimeout = BlobStore.wordAt(blob, o + 65) >> 216;
        core.judgeResultsTimeout = BlobStore.wordAt(blob, o + 70) >> 216;
        core.mediateResultsTimeout = BlobStore.wordAt(blob, o + 75) >> 216;
        core.submitResultsCollateral = BlobStore.wordAt(blob, o + 80) >> 128;
        core.judgeResultsCollateral = BlobStore.wordAt(blob, o + 96) >> 128;
        core.instructionPrice = BlobStore.wordAt(blob, o + 112) >> 128;
        core.paymentCollateral = BlobStore.wordAt(blob, o + 128) >> 128;
        core.resultsCollateralMultiple = BlobStore.wordAt(blob, o + 144) >> 128;
        core.mediationFee = BlobStore.wordAt(blob, o + 160) >> 128;
        core.mediators = decodeMediators(blob);
    }

    /// @notice The mediator list of a deal blob.
    function decodeMediators(bytes memory blob) internal pure returns (address[] memory mediators) {
        uint256 o = LINKS_LENGTH;
        uint256 count = BlobStore.wordAt(blob, o + 176) >> 248;
        mediators = new address[](count);
        for (uint256 i; i < count; ++i) {
            mediators[i] = _addressAt(blob, o + FIXED_TERMS_LENGTH + 20 * i);
        }
    }

    /// @notice The full `Deal` struct of a deal blob.
    function decodeDeal(bytes memory blob) internal pure returns (Deal memory deal) {
        uint256 o = LINKS_LENGTH;
        deal.members.jobCreator = _addressAt(blob, o);
        deal.members.resourceProvider = _addressAt(blob, o + 20);
        deal.members.solver = _addressAt(blob, o + 40);
        deal.members.mediators = decodeMediators(blob);
        deal.timeouts.agree.timeout = BlobStore.wordAt(blob, o + 60) >> 216;
        deal.timeouts.submitResults.timeout = BlobStore.wordAt(blob, o + 65) >> 216;
        deal.timeouts.judgeResults.timeout = BlobStore.wordAt(blob, o + 70) >> 216;
        deal.timeouts.mediateResults.timeout = BlobStore.wordAt(blob, o + 75) >> 216;
        deal.timeouts.submitResults.collateral = BlobStore.wordAt(blob, o + 80) >> 128;
        deal.timeouts.judgeResults.collateral = BlobStore.wordAt(blob, o + 96) >> 128;
        deal.pricing.instructionPrice = BlobStore.wordAt(blob, o + 112) >> 128;
        deal.pricing.paymentCollateral = BlobStore.wordAt(blob, o + 128) >> 128;
        deal.pricing.resultsCollateralMultiple = BlobStore.wordAt(blob, o + 144) >> 128;
        deal.pricing.mediationFee = BlobStore.wordAt(blob, o + 160) >> 128;
        uint256 idStart = o + FIXED_TERMS_LENGTH + 20 * deal.members.mediators.length;
        deal.dealId = string(BlobStore.slice(blob, idStart, blob.length - idStart));
    }

    /// @notice Length of the blob prefix holding the links and the three party addresses.
    uint256 internal constant PARTIES_PREFIX_LENGTH = LINKS_LENGTH + 40;

    /// @notice From a blob prefix of `PARTIES_PREFIX_LENGTH` bytes: the previous deal of `party`
    /// (0 when none) and whether `party` is a party of this deal at all.
    function previousDealOf(bytes memory prefix, address party)
        internal
        pure
        returns (address previous, bool isParty)
    {
        if (_addressAt(prefix, LINKS_LENGTH) == party) return (_addressAt(prefix, 0), true);
        if (_addressAt(prefix, LINKS_LENGTH + 20) == party) return (_addressAt(prefix, 20), true);
        return (address(0), false);
    }

    /// @notice The dealId stored in a deal blob.
    function decodeDealId(bytes memory blob) internal pure returns (string memory) {
        uint256 count = BlobStore.wordAt(blob, LINKS_LENGTH + 176) >> 248;
        uint256 idStart = LINKS_LENGTH + FIXED_TERMS_LENGTH + 20 * count;
        return string(BlobStore.slice(blob, idStart, blob.length - idStart));
    }

    // ----------------------------------------------------------------- result

    /// @notice Packs the strings of a result; rejects an instruction count wider than 64 bits
    /// (the count itself is kept in the deal's record).
    function encodeResult(
        string calldata dealId,
        string calldata resultsId,
        string calldata dataId,
        uint256 instructionCount
    ) internal pure returns (bytes memory) {
        if (instructionCount > MAX_UINT64) revert ValueTooLarge(dealId, instructionCount, MAX_UINT64);
        uint256 idLength = bytes(resultsId).length;
        if (idLength > type(uint16).max) revert ValueTooLarge(dealId, idLength, type(uint16).max);
        return abi.encodePacked(uint16(idLength), resultsId, dataId);
    }

    /// @notice The full `Result` struct of a result blob.
    function decodeResult(bytes memory blob, string calldata dealId, uint256 instructionCount)
        internal
        pure
        returns (Result memory result)
    {
        uint256 idLength = BlobStore.wordAt(blob, 0) >> 240;
        result.dealId = dealId;
        result.instructionCount = instructionCount;
        result.resultsId = string(BlobStore.slice(blob, 2, idLength));
        result.dataId = string(BlobStore.slice(blob, 2 + idLength, blob.length - 2 - idLength));
    }

    // ---------------------------------------------------------------- private

    function _packTimeouts(string calldata dealId, DealTimeouts calldata t)
        private
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(
            _u40(dealId, t.agree.timeout),
            _u40(dealId, t.submitResults.timeout),
            _u40(dealId, t.judgeResults.timeout),
            _u40(dealId, t.mediateResults.timeout)
        );
    }

    function _packAmounts(string calldata dealId, DealTimeouts calldata t, DealPricing calldata p)
        private
        pure
        returns (bytes memory)
    {
        return abi.encodePacked(
            _u128(dealId, t.submitResults.collateral),
            _u128(dealId, t.judgeResults.collateral),
            _u128(dealId, p.instructionPrice),
            _u128(dealId, p.paymentCollateral),
            _u128(dealId, p.resultsCollateralMultiple),
            _u128(dealId, p.mediationFee)
        );
    }

    /// @dev `uint8(count) ++ addresses` packed at 20 bytes each (abi.encodePacked would pad them).
    function _packAddresses(address[] calldata addrs) private pure returns (bytes memory out) {
        uint256 count = addrs.length;
        // 12 spare bytes: each 32-byte mstore below writes 12 bytes past its address.
        out = new bytes(1 + 20 * count + 12);
        assembly ("memory-safe") {
            let p := add(out, 0x20)
            mstore8(p, count)
            p := add(p, 1)
            for { let i := 0 } lt(i, count) { i := add(i, 1) } {
                mstore(add(p, mul(i, 20)), shl(96, calldataload(add(addrs.offset, mul(i, 0x20)))))
            }
            mstore(out, add(1, mul(20, count)))
        }
    }

    function _addressAt(bytes memory b, uint256 offset) private pure returns (address) {
        return address(uint160(BlobStore.wordAt(b, offset) >> 96));
    }

    function _u40(string calldata dealId, uint256 v) private pure returns (uint40) {
        if (v > MAX_UINT40) revert ValueTooLarge(dealId, v, MAX_UINT40);
        return uint40(v);
    }

    function _u128(string calldata dealId, uint256 v) private pure returns (uint128) {
        if (v > MAX_UINT128) revert ValueTooLarge(dealId, v, MAX_UINT128);
        return uint128(v);
    }
}
