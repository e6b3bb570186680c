// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {AgreementState, Deal, Agreement, Result, DealCore} from "./LilypadTypes.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";
import {BlobStore} from "./libraries/BlobStore.sol";
import {DealCodec} from "./libraries/DealCodec.sol";

/// @title LilypadStorage
/// @notice Owns the deals, agreements and results of the protocol. Per deal (keyed by
/// `keccak256(bytes(dealId))`):
/// - the immutable terms: a write-once blob (`DealCodec` layout) at an address derived from the
///   key (`BlobStore`), written by the first `agree`;
/// - the result strings: a second blob, at an address derived from the key, written by
///   `addResult`;
/// - everything mutable (state, who agreed, timestamps, instruction count): one storage slot.
/// Only the controller writes.
contract LilypadStorage is ILilypadStorage {
    using SafeCast for uint256;

    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev `createDeal` for a deal that is already stored.
    error DealAlreadyExists(string dealId);
    /// @dev A controller mutator for a deal that is not stored.
    error DealNotFound(string dealId);
    /// @dev A call that matches no function (the fallback only serves blob writes in progress).
    error UnknownFunction(bytes4 selector);

    /// @dev `agreedBy` bits (a stored deal always has at least one party bit set).
    uint8 private constant RESOURCE_PROVIDER_AGREED = 1;
    uint8 private constant JOB_CREATOR_AGREED = 2;
    uint8 private constant RESOURCE_PROVIDER_FIRST = 4;

    /// @dev One slot (248 bits). Times are offsets in seconds from `createdAt`.
    struct DealRecord {
        AgreementState state;
        uint8 agreedBy;
        uint40 createdAt; // dealCreatedAt (first agree)
        uint32 agreedAfter; // dealAgreedAt - dealCreatedAt
        uint32 submittedAfter; // resultsSubmittedAt - dealCreatedAt
        uint32 checkedAfter; // resultsCheckedAt - dealCreatedAt
        uint32 closedAfter; // time of the terminal transition - dealCreatedAt
        uint64 instructionCount; // n of the result
    }

    address private immutable _controller;
    mapping(bytes32 key => DealRecord) private _deals;
    /// @dev Head of each party's list of deals (a terms blob pointer; each blob links back).
    mapping(address party => address) private _lastDealOf;

    modifier onlyController() {
        if (msg.sender != _controller) revert NotController(msg.sender);
        _;
    }

    constructor(address controller) {
        _controller = controller;
    }

    /// @dev Serves the blob being written to its loader (see `BlobStore`); reverts otherwise.
    fallback() external {
        BlobStore.serveStaged();
        revert UnknownFunction(msg.sig);
    }

    // ================================================================ controller

    /// @inheritdoc ILilypadStorage
    function createDeal(
        string calldata dealId,
        bytes calldata terms,
        address jobCreator,
        address resourceProvider,
        bool byResourceProvider
    ) external onlyController {
        bytes32 key = _key(dealId);
        if (_deals[key].agreedBy != 0) revert DealAlreadyExists(dealId);
        address pointer = BlobStore.write(
            key, abi.encodePacked(_lastDealOf[jobCreator], _lastDealOf[resourceProvider], terms)
        );
        _lastDealOf[jobCreator] = pointer;
        _lastDealOf[resourceProvider] = pointer;
        _deals[key] = DealRecord({
            state: AgreementState.DealNegotiating,
            agreedBy: byResourceProvider
                ? RESOURCE_PROVIDER_AGREED | RESOURCE_PROVIDER_FIRST
                : JOB_CREATOR_AGREED,
            createdAt: block.timestamp.toUint40(),
            agreedAfter: 0,
            submittedAfter: 0,
            checkedAfter: 0,
            closedAfter: 0,
            instructionCount: 0
        });
        emit DealStateChange(dealId, AgreementState.DealNegotiating);
    }

    /// @inheritdoc ILilypadStorage
    function completeAgreement(string calldata dealId, bool byResourceProvider)
        external
        onlyController
    {
        DealRecord storage record = _existing(dealId);
        record.agreedBy |= byResourceProvider ? RESOURCE_PROVIDER_AGREED : JOB_CREATOR_AGREED;
        record.state = AgreementState.DealAgreed;
        record.agreedAfter = _sinceCreation(record);
    }

    /// @inheritdoc ILilypadStorage
    function recordResult(string calldata dealId, bytes calldata result, uint256 instructionCount)
        external
        onlyController
    {
        bytes32 key = _key(dealId);
        DealRecord storage record = _deals[key];
        if (record.agreedBy == 0) revert DealNotFound(dealId);
        BlobStore.write(_resultSalt(key), result);
        record.state = AgreementState.ResultsSubmitted;
        record.submittedAfter = _sinceCreation(record);
        record.instructionCount = instructionCount.toUint64();
    }

    /// @inheritdoc ILilypadStorage
    function recordCheck(string calldata dealId) external onlyController {
        DealRecord storage record = _existing(dealId);
        record.state = AgreementState.ResultsChecked;
        record.checkedAfter = _sinceCreation(record);
    }

    /// @inheritdoc ILilypadStorage
    function closeDeal(string calldata dealId, AgreementState terminal) external onlyController {
        DealRecord storage record = _existing(dealId);
        record.state = terminal;
        record.closedAfter = _sinceCreation(record);
    }

    /// @inheritdoc ILilypadStorage
    function announceState(string calldata dealId) external onlyController {
        emit DealStateChange(dealId, _deals[_key(dealId)].state);
    }

    // ============================================================ compact views

    /// @inheritdoc ILilypadStorage
    function getControllerAddress() external view returns (address) {
        return _controller;
    }

    /// @inheritdoc ILilypadStorage
    /// @dev Returns a zeroed core (jobCreator == 0) for an unknown deal.
    function loadCore(string calldata dealId) external view returns (DealCore memory core) {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (record.agreedBy == 0) return core;
        uint256 created = record.createdAt;
        core.state = record.state;
        core.resourceProviderAgreed = record.agreedBy & RESOURCE_PROVIDER_AGREED != 0;
        core.jobCreatorAgreed = record.agreedBy & JOB_CREATOR_AGREED != 0;
        core.dealCreatedAt = created;
        core.dealAgreedAt = created + record.agreedAfter;
        core.resultsSubmittedAt = created + record.submittedAfter;
        core.resultsCheckedAt = created + record.checkedAfter;
        core.instructionCount = record.instructionCount;
        DealCodec.decodeCore(BlobStore.read(_termsPointer(key)), core);
    }

    /// @inheritdoc ILilypadStorage
    function agreementStatus(string calldata dealId)
        external
        view
        returns (
            bool exists,
            AgreementState state,
            bool resourceProviderAgreed,
            bool jobCreatorAgreed,
            bytes32 termsHash
        )
    {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (record.agreedBy == 0) return (false, state, false, false, 0);
        return (
            true,
            record.state,
            record.agreedBy & RESOURCE_PROVIDER_AGREED != 0,
            record.agreedBy & JOB_CREATOR_AGREED != 0,
            DealCodec.termsHash(BlobStore.read(_termsPointer(key)))
        );
    }

    /// @inheritdoc ILilypadStorage
    function getMediationContext(string calldata dealId)
        external
        view
        returns (bool checked, uint256 resultsCheckedAt, address[] memory mediators)
    {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (record.agreedBy == 0) return (false, 0, mediators);
        checked = _isChecked(record.state);
        if (checked) resultsCheckedAt = uint256(record.createdAt) + record.checkedAfter;
        mediators = DealCodec.decodeMediators(BlobStore.read(_termsPointer(key)));
    }

    // ========================================================= views of spec §5

    /// @inheritdoc ILilypadStorage
    function getDeal(string calldata dealId) external view returns (Deal memory deal) {
        bytes32 key = _key(dealId);
        if (_deals[key].agreedBy != 0) {
            deal = DealCodec.decodeDeal(BlobStore.read(_termsPointer(key)));
        }
    }

    /// @inheritdoc ILilypadStorage
    function getAgreement(string calldata dealId) external view returns (Agreement memory a) {
        DealRecord memory record = _deals[_key(dealId)];
        if (record.agreedBy == 0) return a;
        uint256 created = record.createdAt;
        uint256 agreedAt = created + record.agreedAfter;
        AgreementState s = record.state;
        bool rpFirst = record.agreedBy & RESOURCE_PROVIDER_FIRST != 0;
        bool rpAgreed = record.agreedBy & RESOURCE_PROVIDER_AGREED != 0;
        bool jcAgreed = record.agreedBy & JOB_CREATOR_AGREED != 0;
        a.state = s;
        a.dealCreatedAt = created;
        if (rpAgreed) a.resourceProviderAgreedAt = rpFirst ? created : agreedAt;
        if (jcAgreed) a.jobCreatorAgreedAt = rpFirst ? agreedAt : created;
        if (rpAgreed && jcAgreed) a.dealAgreedAt = agreedAt;
        if (_isSubmitted(s)) a.resultsSubmittedAt = created + record.submittedAfter;
        if (_isChecked(s)) a.resultsCheckedAt = created + record.checkedAfter;
        uint256 closedAt = created + record.closedAfter;
        if (s == AgreementState.ResultsAccepted) a.resultsAcceptedAt = closedAt;
        else if (s == AgreementState.MediationAccepted) a.mediationAcceptedAt = closedAt;
        else if (s == AgreementState.MediationRejected) a.mediationRejectedAt = closedAt;
        else if (s == AgreementState.TimeoutAgree) a.timeoutAgreeAt = closedAt;
        else if (s == AgreementState.TimeoutSubmitResults) a.timeoutSubmitResultsAt = closedAt;
        else if (s == AgreementState.TimeoutJudgeResults) a.timeoutJudgeResultsAt = closedAt;
        else if (s == AgreementState.TimeoutMediateResults) a.timeoutMediateResultsAt = closedAt;
    }

    /// @inheritdoc ILilypadStorage
    function getResult(string calldata dealId) external view returns (Result memory result) {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (_isSubmitted(record.state)) {
            result = DealCodec.decodeResult(
                BlobStore.read(BlobStore.pointerOf(address(this), _resultSalt(key))),
                dealId,
                record.instructionCount
            );
        }
    }

    /// @inheritdoc ILilypadStorage
    function getJobCost(string calldata dealId) public view returns (uint256) {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (!_isSubmitted(record.state)) return 0;
        DealCore memory core;
        DealCodec.decodeCore(BlobStore.read(_termsPointer(key)), core);
        return core.instructionPrice * record.instructionCount;
    }

    /// @inheritdoc ILilypadStorage
    function getResultsCollateral(string calldata dealId) external view returns (uint256) {
        uint256 cost = getJobCost(dealId);
        if (cost == 0) return 0;
        DealCore memory core;
        DealCodec.decodeCore(BlobStore.read(_termsPointer(_key(dealId))), core);
        return core.resultsCollateralMultiple * cost;
    }

    /// @inheritdoc ILilypadStorage
    function hasDeal(string calldata dealId) external view returns (bool) {
        return _deals[_key(dealId)].agreedBy != 0;
    }

    /// @inheritdoc ILilypadStorage
    function isState(string calldata dealId, uint8 state) external view returns (bool) {
        return uint8(_deals[_key(dealId)].state) == state;
    }

    /// @inheritdoc ILilypadStorage
    /// @dev In the order the deals were first agreed; walks the party's linked list of blobs.
    function getDealsForParty(address party) external view returns (string[] memory dealIds) {
        uint256 count;
        for (address p = _lastDealOf[party]; p != address(0); ++count) {
            (p,) = DealCodec.previousDealOf(
                BlobStore.read(p, 0, DealCodec.PARTIES_PREFIX_LENGTH), party
            );
        }
        dealIds = new string[](count);
        address pointer = _lastDealOf[party];
        for (uint256 i = count; i > 0; --i) {
            dealIds[i - 1] = DealCodec.decodeDealId(BlobStore.read(pointer));
            (pointer,) = DealCodec.previousDealOf(
                BlobStore.read(pointer, 0, DealCodec.PARTIES_PREFIX_LENGTH), party
            );
        }
    }

    // ================================================================== private

    function _key(string calldata dealId) private pure returns (bytes32) {
        return keccak256(bytes(dealId));
    }

    function _termsPointer(bytes32 key) private view returns (address) {
        return BlobStore.pointerOf(address(this), key);
    }

    function _resultSalt(bytes32 key) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(key, "result"));
    }

    function _existing(string calldata dealId) private view returns (DealRecord storage record) {
        record = _deals[_key(dealId)];
        if (record.agreedBy == 0) revert DealNotFound(dealId);
    }

    function _sinceCreation(DealRecord storage record) private view returns (uint32) {
        return (block.timestamp - record.createdAt).toUint32();
    }

    /// @dev States reached through `addResult`.
    function _isSubmitted(AgreementState s) private pure returns (bool) {
        return s == AgreementState.ResultsSubmitted || s == AgreementState.ResultsAccepted
            || s == AgreementState.TimeoutJudgeResults || _isChecked(s);
    }

    /// @dev States reached through `checkResult`.
    function _isChecked(AgreementState s) private pure returns (bool) {
        return s == AgreementState.ResultsChecked || s == AgreementState.MediationAccepted
            || s == AgreementState.MediationRejected || s == AgreementState.TimeoutMediateResults;
    }
}
