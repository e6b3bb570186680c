// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {
    AgreementState, Deal, Agreement, Result, DealCore
} from "./LilypadTypes.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";
import {BlobStore} from "./libraries/BlobStore.sol";
import {DealCodec} from "./libraries/DealCodec.sol";

/// @title LilypadStorage
/// @notice Owns the deals, agreements and results of the protocol. The immutable deal terms and
/// result strings live in write-once blobs (see `BlobStore`, `DealCodec`); the mutable agreement
/// is two packed slots per deal, keyed by `keccak256(bytes(dealId))`. Only the controller writes.
contract LilypadStorage is ILilypadStorage {
    using SafeCast for uint256;

    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev `createDeal` for a deal that is already stored.
    error DealAlreadyExists(string dealId);
    /// @dev A controller mutator for a deal that is not stored.
    error DealNotFound(string dealId);

    /// @dev `agreedBy` bits.
    uint8 private constant RESOURCE_PROVIDER_AGREED = 1;
    uint8 private constant JOB_CREATOR_AGREED = 2;
    uint8 private constant RESOURCE_PROVIDER_FIRST = 4;

    /// @dev One slot: blob pointer (160) + state (8) + agreedBy (8) + createdAt (40) + agreedAfter (32).
    struct DealRecord {
        address terms;
        AgreementState state;
        uint8 agreedBy;
        uint40 createdAt;
        uint32 agreedAfter; // dealAgreedAt - dealCreatedAt
    }

    /// @dev One slot: result blob pointer (160) + three offsets from dealCreatedAt (3 x 32).
    /// Written when the result is submitted, or when the deal ends before that.
    struct ResultRecord {
        address result;
        uint32 submittedAfter;
        uint32 checkedAfter;
        uint32 closedAfter; // time of the terminal transition
    }

    address private immutable _controller;
    mapping(bytes32 key => DealRecord) private _deals;
    mapping(bytes32 key => ResultRecord) private _results;
    /// @dev Head of each party's list of deals (a deal blob pointer; each blob links back).
    mapping(address party => address) private _lastDealOf;

    modifier onlyController() {
        if (msg.sender != _controller) revert NotController(msg.sender);
        _;
    }

    constructor(address controller) {
        _controller = controller;
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
        if (_deals[key].terms != address(0)) revert DealAlreadyExists(dealId);
        address pointer = BlobStore.write(
            abi.encodePacked(_lastDealOf[jobCreator], _lastDealOf[resourceProvider], terms)
        );
        _lastDealOf[jobCreator] = pointer;
        _lastDealOf[resourceProvider] = pointer;
        _deals[key] = DealRecord({
            terms: pointer,
            state: AgreementState.DealNegotiating,
            agreedBy: byResourceProvider
                ? RESOURCE_PROVIDER_AGREED | RESOURCE_PROVIDER_FIRST
                : JOB_CREATOR_AGREED,
            createdAt: block.timestamp.toUint40(),
            agreedAfter: 0
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
    function recordResult(string calldata dealId, bytes calldata result) external onlyController {
        bytes32 key = _key(dealId);
        DealRecord storage record = _deals[key];
        if (record.terms == address(0)) revert DealNotFound(dealId);
        record.state = AgreementState.ResultsSubmitted;
        _results[key] = ResultRecord({
            result: BlobStore.write(result),
            submittedAfter: _sinceCreation(record),
            checkedAfter: 0,
            closedAfter: 0
        });
    }

    /// @inheritdoc ILilypadStorage
    function recordCheck(string calldata dealId) external onlyController {
        bytes32 key = _key(dealId);
        DealRecord storage record = _deals[key];
        if (record.terms == address(0)) revert DealNotFound(dealId);
        record.state = AgreementState.ResultsChecked;
        _results[key].checkedAfter = _sinceCreation(record);
    }

    /// @inheritdoc ILilypadStorage
    function closeDeal(string calldata dealId, AgreementState terminal) external onlyController {
        bytes32 key = _key(dealId);
        DealRecord storage record = _deals[key];
        if (record.terms == address(0)) revert DealNotFound(dealId);
        record.state = terminal;
        _results[key].closedAfter = _sinceCreation(record);
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
        if (record.terms == address(0)) return core;
        ResultRecord memory result = _results[key];
        core.state = record.state;
        core.resourceProviderAgreed = record.agreedBy & RESOURCE_PROVIDER_AGREED != 0;
        core.jobCreatorAgreed = record.agreedBy & JOB_CREATOR_AGREED != 0;
        core.dealCreatedAt = record.createdAt;
        core.dealAgreedAt = uint256(record.createdAt) + record.agreedAfter;
        core.resultsSubmittedAt = uint256(record.createdAt) + result.submittedAfter;
        core.resultsCheckedAt = uint256(record.createdAt) + result.checkedAfter;
        DealCodec.decodeCore(BlobStore.read(record.terms), core);
        if (result.result != address(0)) {
            core.instructionCount =
                DealCodec.decodeInstructionCount(BlobStore.read(result.result, 0, 8));
        }
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
        DealRecord memory record = _deals[_key(dealId)];
        if (record.terms == address(0)) return (false, state, false, false, 0);
        return (
            true,
            record.state,
            record.agreedBy & RESOURCE_PROVIDER_AGREED != 0,
            record.agreedBy & JOB_CREATOR_AGREED != 0,
            DealCodec.termsHash(BlobStore.read(record.terms))
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
        if (record.terms == address(0)) return (false, 0, mediators);
        checked = _isChecked(record.state);
        if (checked) resultsCheckedAt = uint256(record.createdAt) + _results[key].checkedAfter;
        mediators = DealCodec.decodeMediators(BlobStore.read(record.terms));
    }

    // ========================================================= views of spec §5

    /// @inheritdoc ILilypadStorage
    function getDeal(string calldata dealId) external view returns (Deal memory deal) {
        address pointer = _deals[_key(dealId)].terms;
        if (pointer != address(0)) deal = DealCodec.decodeDeal(BlobStore.read(pointer));
    }

    /// @inheritdoc ILilypadStorage
    function getAgreement(string calldata dealId) external view returns (Agreement memory a) {
        bytes32 key = _key(dealId);
        DealRecord memory record = _deals[key];
        if (record.terms == address(0)) return a;
        ResultRecord memory result = _results[key];
        uint256 created = record.createdAt;
        uint256 agreedAt = created + record.agreedAfter;
        bool bothAgreed = record.agreedBy & (RESOURCE_PROVIDER_AGREED | JOB_CREATOR_AGREED)
            == (RESOURCE_PROVIDER_AGREED | JOB_CREATOR_AGREED);
        bool rpFirst = record.agreedBy & RESOURCE_PROVIDER_FIRST != 0;
        a.state = record.state;
        a.dealCreatedAt = created;
        if (record.agreedBy & RESOURCE_PROVIDER_AGREED != 0) {
            a.resourceProviderAgreedAt = rpFirst ? created : agreedAt;
        }
        if (record.agreedBy & JOB_CREATOR_AGREED != 0) {
            a.jobCreatorAgreedAt = rpFirst ? agreedAt : created;
        }
        if (bothAgreed) a.dealAgreedAt = agreedAt;
        if (result.result != address(0)) a.resultsSubmittedAt = created + result.submittedAfter;
        if (_isChecked(record.state)) a.resultsCheckedAt = created + result.checkedAfter;
        uint256 closedAt = created + result.closedAfter;
        AgreementState s = record.state;
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
        address pointer = _results[_key(dealId)].result;
        if (pointer != address(0)) result = DealCodec.decodeResult(BlobStore.read(pointer), dealId);
    }

    /// @inheritdoc ILilypadStorage
    function getJobCost(string calldata dealId) public view returns (uint256) {
        bytes32 key = _key(dealId);
        address resultPointer = _results[key].result;
        if (resultPointer == address(0)) return 0;
        bytes memory terms = BlobStore.read(_deals[key].terms);
        DealCore memory core;
        DealCodec.decodeCore(terms, core);
        uint256 count = DealCodec.decodeInstructionCount(BlobStore.read(resultPointer, 0, 8));
        return core.instructionPrice * count;
    }

    /// @inheritdoc ILilypadStorage
    function getResultsCollateral(string calldata dealId) external view returns (uint256) {
        uint256 cost = getJobCost(dealId);
        if (cost == 0) return 0;
        DealCore memory core;
        DealCodec.decodeCore(BlobStore.read(_deals[_key(dealId)].terms), core);
        return core.resultsCollateralMultiple * cost;
    }

    /// @inheritdoc ILilypadStorage
    function hasDeal(string calldata dealId) external view returns (bool) {
        return _deals[_key(dealId)].terms != address(0);
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

    function _existing(string calldata dealId) private view returns (DealRecord storage record) {
        record = _deals[_key(dealId)];
        if (record.terms == address(0)) revert DealNotFound(dealId);
    }

    function _sinceCreation(DealRecord storage record) private view returns (uint32) {
        return (block.timestamp - record.createdAt).toUint32();
    }

    function _isChecked(AgreementState s) private pure returns (bool) {
        return s == AgreementState.ResultsChecked || s == AgreementState.MediationAccepted
            || s == AgreementState.MediationRejected || s == AgreementState.TimeoutMediateResults;
    }
}
