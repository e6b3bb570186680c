// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {AgreementState} from "./LilypadTypes.sol";
import {ILilypadMediation} from "./interfaces/ILilypadMediation.sol";
import {ILilypadController} from "./interfaces/ILilypadController.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";

/// @title LilypadMediationConsortium
/// @notice k-of-n mediation (an alternative to `LilypadMediation`): at `checkResult` every
/// mediator of the deal is asked (one `MediationRequested` per mediator, in the deal's order);
/// each may vote once, accept or reject, while the deal is `ResultsChecked`. The first side to
/// reach t = min(k, number of mediators) votes decides, and the mediation fee is split equally
/// among all mediators that voted so far (either way), in voting order, the remainder of the
/// division to the first voter. If neither side reaches t, the deal ends by
/// `timeoutMediateResult` and nobody is paid. Exact semantics in docs/contracts.md.
contract LilypadMediationConsortium is ILilypadMediation, ReentrancyGuardTransient {
    /// @notice `mediator` voted on the result of `dealId`.
    event MediatorVoted(string dealId, address mediator, bool accepted);

    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev The caller is not one of the deal's mediators (`mediator` is always zero here).
    error NotMediator(string dealId, address caller, address mediator);
    /// @dev The deal is not waiting for mediation (not `ResultsChecked`).
    error NotAwaitingMediation(string dealId);
    /// @dev The mediator has already voted on this deal.
    error AlreadyVoted(string dealId, address mediator);
    /// @dev k must be in [1, MAX_THRESHOLD].
    error InvalidThreshold(uint256 threshold, uint256 maxThreshold);

    /// @notice Largest k: a decision takes at most 2k - 1 votes, which one packed slot records.
    uint256 public constant MAX_THRESHOLD = 15;

    /// @dev Ballot of a deal, one slot: bits 0-7 accepts, 8-15 rejects, 16-23 number of voters,
    /// then one byte per voter (its index in the deal's mediator list), in voting order.
    uint256 private constant VOTERS_SHIFT = 24;

    ILilypadController private immutable _controller;
    ILilypadStorage private immutable _storage;
    uint256 private immutable _threshold;
    mapping(bytes32 key => uint256) private _ballots;

    constructor(address controller, address storage_, uint256 threshold_) {
        if (threshold_ == 0 || threshold_ > MAX_THRESHOLD) {
            revert InvalidThreshold(threshold_, MAX_THRESHOLD);
        }
        _controller = ILilypadController(controller);
        _storage = ILilypadStorage(storage_);
        _threshold = threshold_;
    }

    /// @notice k, the number of agreeing votes that decides (capped by the deal's mediators).
    function threshold() external view returns (uint256) {
        return _threshold;
    }

    /// @inheritdoc ILilypadMediation
    function requestMediation(string calldata dealId, address[] calldata mediators) external {
        if (msg.sender != address(_controller)) revert NotController(msg.sender);
        for (uint256 i; i < mediators.length; ++i) {
            emit MediationRequested(dealId, mediators[i]);
        }
    }

    /// @inheritdoc ILilypadMediation
    /// @dev The deal's first mediator once the result is checked (every mediator is asked).
    function getMediator(string calldata dealId) external view returns (address) {
        (bool checked,, address[] memory mediators) = _storage.getMediationContext(dealId);
        return checked ? mediators[0] : address(0);
    }

    /// @notice The votes so far on `dealId`: voters in voting order, and the two counts.
    function getVotes(string calldata dealId)
        external
        view
        returns (address[] memory voters, uint256 accepts, uint256 rejects)
    {
        uint256 ballot = _ballots[keccak256(bytes(dealId))];
        (,, address[] memory mediators) = _storage.getMediationContext(dealId);
        return (_voters(ballot, mediators), ballot & 0xff, (ballot >> 8) & 0xff);
    }

    /// @inheritdoc ILilypadMediation
    function mediationAcceptResult(string calldata dealId) external nonReentrant {
        _vote(dealId, true);
    }

    /// @inheritdoc ILilypadMediation
    function mediationRejectResult(string calldata dealId) external nonReentrant {
        _vote(dealId, false);
    }

    function _vote(string calldata dealId, bool accept) private {
        (bool checked,, address[] memory mediators) = _storage.getMediationContext(dealId);
        if (!checked || !_storage.isState(dealId, uint8(AgreementState.ResultsChecked))) {
            revert NotAwaitingMediation(dealId);
        }
        uint256 index = mediators.length;
        for (uint256 i; i < mediators.length; ++i) {
            if (mediators[i] == msg.sender) {
                index = i;
                break;
            }
        }
        if (index == mediators.length) revert NotMediator(dealId, msg.sender, address(0));
        bytes32 key = keccak256(bytes(dealId));
        uint256 ballot = _ballots[key];
        uint256 count = (ballot >> 16) & 0xff;
        for (uint256 v; v < count; ++v) {
            if ((ballot >> (VOTERS_SHIFT + 8 * v)) & 0xff == index) {
                revert AlreadyVoted(dealId, msg.sender);
            }
        }
        uint256 needed = _threshold < mediators.length ? _threshold : mediators.length;
        // No overflow: a decision is reached after at most 2 * MAX_THRESHOLD - 1 = 29 votes, so
        // each count stays below 16 and the voter bytes end at bit 24 + 8 * 29 = 256.
        uint256 side = accept ? ballot & 0xff : (ballot >> 8) & 0xff;
        side += 1;
        ballot += (accept ? 1 : 1 << 8) + (1 << 16) + (index << (VOTERS_SHIFT + 8 * count));
        _ballots[key] = ballot;
        emit MediatorVoted(dealId, msg.sender, accept);
        if (side == needed) {
            address[] memory voters = _voters(ballot, mediators);
            if (accept) _controller.mediationAcceptResult(dealId, voters);
            else _controller.mediationRejectResult(dealId, voters);
        }
    }

    /// @dev The voters of a packed ballot, in voting order.
    function _voters(uint256 ballot, address[] memory mediators)
        private
        pure
        returns (address[] memory voters)
    {
        uint256 count = (ballot >> 16) & 0xff;
        voters = new address[](count);
        for (uint256 v; v < count; ++v) {
            voters[v] = mediators[(ballot >> (VOTERS_SHIFT + 8 * v)) & 0xff];
        }
    }
}
