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
    /// @dev k must be at least 1.
    error InvalidThreshold(uint256 threshold);

    struct Ballot {
        address[] voters; // in voting order
        uint128 accepts;
        uint128 rejects;
    }

    ILilypadController private immutable _controller;
    ILilypadStorage private immutable _storage;
    uint256 private immutable _threshold;
    mapping(bytes32 key => Ballot) private _ballots;
    mapping(bytes32 key => mapping(address mediator => bool)) private _voted;

    constructor(address controller, address storage_, uint256 threshold_) {
        if (threshold_ == 0) revert InvalidThreshold(threshold_);
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

    /// @notice The votes so far on `dealId`.
    function getVotes(string calldata dealId)
        external
        view
        returns (address[] memory voters, uint256 accepts, uint256 rejects)
    {
        Ballot storage b = _ballots[keccak256(bytes(dealId))];
        return (b.voters, b.accepts, b.rejects);
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
        if (!_storage.isState(dealId, uint8(AgreementState.ResultsChecked))) {
            revert NotAwaitingMediation(dealId);
        }
        (, , address[] memory mediators) = _storage.getMediationContext(dealId);
        bool isMediator;
        for (uint256 i; i < mediators.length && !isMediator; ++i) {
            isMediator = mediators[i] == msg.sender;
        }
        if (!isMediator) revert NotMediator(dealId, msg.sender, address(0));
        bytes32 key = keccak256(bytes(dealId));
        if (_voted[key][msg.sender]) revert AlreadyVoted(dealId, msg.sender);
        _voted[key][msg.sender] = true;
        Ballot storage b = _ballots[key];
        b.voters.push(msg.sender);
        uint256 count = accept ? ++b.accepts : ++b.rejects;
        emit MediatorVoted(dealId, msg.sender, accept);
        uint256 needed = _threshold < mediators.length ? _threshold : mediators.length;
        if (count == needed) {
            if (accept) _controller.mediationAcceptResult(dealId, b.voters);
            else _controller.mediationRejectResult(dealId, b.voters);
        }
    }
}
