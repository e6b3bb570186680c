// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {AgreementState} from "./LilypadTypes.sol";
import {ILilypadMediation} from "./interfaces/ILilypadMediation.sol";
import {ILilypadController} from "./interfaces/ILilypadController.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";

/// @title LilypadMediationConsortium
/// @notice k-of-n mediation in rounds (an alternative to `LilypadMediation`), the twin's
/// `mediation.protocol=consortium` with `selection=v1_hash` and public votes
/// (twin/mediation/consortium.py):
/// - a round draws n distinct mediators from the deal's mediators not drawn before, by v1's hash
///   rule generalised to several draws: h_0 = keccak256(abi.encodePacked(block.timestamp,
///   dealId)), h_{j+1} = keccak256(abi.encodePacked(h_j)); draw j takes candidates[h_j mod len]
///   and removes it (order kept). One `MediationRequested` per drawn mediator, in draw order.
/// - each drawn mediator votes once; the round is tallied when all its mediators have voted:
///   a accepts, r rejects; accept if a >= k and a > r, reject if r >= k and r > a, else no
///   consensus, and a new round is drawn (at the block time of the closing vote) while fewer
///   than `maxRounds` rounds were held, with size min(n, candidates left, maxNodes - drawn so
///   far) (no cap when maxNodes is 0), if that size is at least k. Otherwise the deal ends by
///   `timeoutMediateResult`.
/// - at a verdict the fee goes to the voters of all rounds in draw order (equal split) or to
///   those who voted as the verdict (majority split); the controller pays F / count each and
///   the remainder of the division to the first payee.
/// Exact semantics in docs/contracts.md.
contract LilypadMediationConsortium is ILilypadMediation, ReentrancyGuardTransient {
    /// @notice `mediator` voted on the result of `dealId`: 1 accept, 0 reject (the twin's
    /// `MediationVoted` event).
    event MediationVoted(string dealId, address mediator, uint8 vote);

    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev The caller was not drawn in the deal's current round (`mediator` is always zero).
    error NotMediator(string dealId, address caller, address mediator);
    /// @dev The deal is not waiting for mediation (not `ResultsChecked`).
    error NotAwaitingMediation(string dealId);
    /// @dev The mediator has already voted on this deal.
    error AlreadyVoted(string dealId, address mediator);
    /// @dev A constructor parameter is out of range (see the constructor).
    error InvalidParameter(string name, uint256 value);
    /// @dev A deal with more than 255 mediators (indices are bytes, sets are bit masks).
    error TooManyMediators(string dealId, uint256 count);

    /// @dev The mediation of one checked deal. Mediators are indices into the deal's mediators.
    struct Case {
        uint256 voted; // bit i: mediator i has voted
        uint256 accepted; // bit i: mediator i voted accept
        uint8 rounds; // rounds drawn so far
        uint8 roundStart; // position in `drawn` where the current round starts
        bytes drawn; // mediator indices in draw order, over all rounds
    }

    ILilypadController private immutable _controller;
    ILilypadStorage private immutable _storage;
    uint256 private immutable _perRound;
    uint256 private immutable _threshold;
    uint256 private immutable _maxRounds;
    uint256 private immutable _maxNodes;
    bool private immutable _majorityFeeSplit;
    mapping(bytes32 key => Case) private _cases;

    /// @param perRound n, mediators drawn per round (1 to 255).
    /// @param threshold_ k, agreeing votes that decide a round (1 to n).
    /// @param maxRounds rounds at most (1 to 255).
    /// @param maxNodes mediators drawn over all rounds at most: 0 (no cap) or n to 255.
    /// @param majorityFeeSplit false: the fee is split among every voter; true: among the voters
    /// whose vote equals the verdict.
    constructor(
        address controller,
        address storage_,
        uint256 perRound,
        uint256 threshold_,
        uint256 maxRounds,
        uint256 maxNodes,
        bool majorityFeeSplit
    ) {
        if (perRound == 0 || perRound > 255) revert InvalidParameter("perRound", perRound);
        if (threshold_ == 0 || threshold_ > perRound) revert InvalidParameter("threshold", threshold_);
        if (maxRounds == 0 || maxRounds > 255) revert InvalidParameter("maxRounds", maxRounds);
        if (maxNodes != 0 && (maxNodes < perRound || maxNodes > 255)) {
            revert InvalidParameter("maxNodes", maxNodes);
        }
        _controller = ILilypadController(controller);
        _storage = ILilypadStorage(storage_);
        _perRound = perRound;
        _threshold = threshold_;
        _maxRounds = maxRounds;
        _maxNodes = maxNodes;
        _majorityFeeSplit = majorityFeeSplit;
    }

    /// @notice (n, k, max rounds, max nodes, majority fee split).
    function parameters() external view returns (uint256, uint256, uint256, uint256, bool) {
        return (_perRound, _threshold, _maxRounds, _maxNodes, _majorityFeeSplit);
    }

    /// @inheritdoc ILilypadMediation
    /// @dev Draws the first round.
    function requestMediation(string calldata dealId, address[] calldata mediators) external {
        if (msg.sender != address(_controller)) revert NotController(msg.sender);
        if (mediators.length > 255) revert TooManyMediators(dealId, mediators.length);
        Case storage c = _cases[keccak256(bytes(dealId))];
        _draw(c, dealId, mediators, c.drawn, _roundSize(0, mediators.length));
    }

    /// @inheritdoc ILilypadMediation
    /// @dev The first mediator drawn (the twin's `deal.mediator`); zero before the check.
    function getMediator(string calldata dealId) external view returns (address) {
        Case storage c = _cases[keccak256(bytes(dealId))];
        if (c.drawn.length == 0) return address(0);
        (,, address[] memory mediators) = _storage.getMediationContext(dealId);
        return mediators[uint8(c.drawn[0])];
    }

    /// @notice The mediation of `dealId` so far: the mediators drawn (draw order, all rounds),
    /// each one's vote (0 reject, 1 accept, 2 not yet), and the number of rounds.
    function getCase(string calldata dealId)
        external
        view
        returns (address[] memory drawn, uint8[] memory votes, uint256 rounds)
    {
        Case storage c = _cases[keccak256(bytes(dealId))];
        (,, address[] memory mediators) = _storage.getMediationContext(dealId);
        uint256 count = c.drawn.length;
        drawn = new address[](count);
        votes = new uint8[](count);
        for (uint256 i; i < count; ++i) {
            uint256 m = uint8(c.drawn[i]);
            drawn[i] = mediators[m];
            votes[i] = (c.voted >> m) & 1 == 0 ? 2 : uint8((c.accepted >> m) & 1);
        }
        rounds = c.rounds;
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
        Case storage c = _cases[keccak256(bytes(dealId))];
        bytes memory drawn = c.drawn;
        uint256 start = c.roundStart;
        uint256 index = type(uint256).max;
        for (uint256 i; i < drawn.length; ++i) {
            if (mediators[uint8(drawn[i])] == msg.sender) {
                index = uint8(drawn[i]);
                if (i >= start && (c.voted >> index) & 1 == 0) break;
            }
        }
        if (index == type(uint256).max) revert NotMediator(dealId, msg.sender, address(0));
        if ((c.voted >> index) & 1 == 1) revert AlreadyVoted(dealId, msg.sender);
        uint256 voted = c.voted | (1 << index);
        uint256 accepted = accept ? c.accepted | (1 << index) : c.accepted;
        c.voted = voted;
        c.accepted = accepted;
        emit MediationVoted(dealId, msg.sender, accept ? 1 : 0);

        uint256 accepts;
        uint256 rejects;
        for (uint256 i = start; i < drawn.length; ++i) {
            uint256 m = uint8(drawn[i]);
            if ((voted >> m) & 1 == 0) return; // the round is still open
            if ((accepted >> m) & 1 == 1) ++accepts;
            else ++rejects;
        }
        if (accepts >= _threshold && accepts > rejects) {
            _controller.mediationAcceptResult(dealId, _payees(drawn, mediators, accepted, true));
        } else if (rejects >= _threshold && rejects > accepts) {
            _controller.mediationRejectResult(dealId, _payees(drawn, mediators, accepted, false));
        } else if (c.rounds < _maxRounds) {
            uint256 left = mediators.length - drawn.length;
            uint256 size = _roundSize(drawn.length, left);
            if (size >= _threshold) _draw(c, dealId, mediators, drawn, size);
        }
    }

    /// @dev min(n, candidates left, maxNodes - drawn so far) (no cap when maxNodes is 0).
    function _roundSize(uint256 used, uint256 left) private view returns (uint256 size) {
        size = _perRound < left ? _perRound : left;
        if (_maxNodes != 0) {
            uint256 cap = _maxNodes > used ? _maxNodes - used : 0;
            if (cap < size) size = cap;
        }
    }

    /// @dev Draws a round of `size` from the mediators not drawn yet (in deal order; `drawn` is
    /// `c.drawn`, already read by the caller) by the hash chain seeded with the block time, and
    /// asks each (`MediationRequested`, draw order).
    function _draw(
        Case storage c,
        string calldata dealId,
        address[] memory mediators,
        bytes memory drawn,
        uint256 size
    ) private {
        uint256 taken;
        for (uint256 i; i < drawn.length; ++i) {
            taken |= 1 << uint8(drawn[i]);
        }
        uint256[] memory pool = new uint256[](mediators.length - drawn.length);
        uint256 len;
        for (uint256 i; i < mediators.length; ++i) {
            if ((taken >> i) & 1 == 0) pool[len++] = i;
        }
        bytes memory round = new bytes(size);
        bytes32 h = keccak256(abi.encodePacked(block.timestamp, dealId));
        for (uint256 j; j < size; ++j) {
            uint256 pick = uint256(h) % len;
            uint256 m = pool[pick];
            for (uint256 i = pick + 1; i < len; ++i) {
                pool[i - 1] = pool[i];
            }
            --len;
            round[j] = bytes1(uint8(m));
            emit MediationRequested(dealId, mediators[m]);
            h = keccak256(abi.encodePacked(h));
        }
        c.roundStart = uint8(drawn.length);
        c.rounds += 1;
        c.drawn = bytes.concat(drawn, round);
    }

    /// @dev The fee's payees in draw order: every voter, or (majority split) those whose vote
    /// equals the verdict.
    function _payees(bytes memory drawn, address[] memory mediators, uint256 accepted, bool verdict)
        private
        view
        returns (address[] memory payees)
    {
        payees = new address[](drawn.length);
        uint256 count;
        for (uint256 i; i < drawn.length; ++i) {
            uint256 m = uint8(drawn[i]);
            if (!_majorityFeeSplit || (((accepted >> m) & 1) == 1) == verdict) {
                payees[count++] = mediators[m];
            }
        }
        assembly ("memory-safe") {
            mstore(payees, count)
        }
    }
}
