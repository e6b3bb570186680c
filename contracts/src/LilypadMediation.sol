// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ILilypadMediation} from "./interfaces/ILilypadMediation.sol";
import {ILilypadController} from "./interfaces/ILilypadController.sol";
import {ILilypadStorage} from "./interfaces/ILilypadStorage.sol";

/// @title LilypadMediation
/// @notice v1 mediation: at `checkResult` one of the deal's mediators is chosen as
/// `mediators[uint256(keccak256(abi.encodePacked(block.timestamp, dealId))) % mediators.length]`
/// and only that mediator may accept or reject the result; it is paid the whole mediation fee
/// either way. The choice is not stored: it is recomputed from `resultsCheckedAt` (the timestamp
/// of the `checkResult` block) and the deal's mediators, both kept by storage.
contract LilypadMediation is ILilypadMediation, ReentrancyGuardTransient {
    /// @dev The caller is not the controller.
    error NotController(address caller);
    /// @dev The caller is not the mediator chosen for the deal (zero before `checkResult`).
    error NotMediator(string dealId, address caller, address mediator);

    ILilypadController private immutable _controller;
    ILilypadStorage private immutable _storage;

    constructor(address controller, address storage_) {
        _controller = ILilypadController(controller);
        _storage = ILilypadStorage(storage_);
    }

    /// @inheritdoc ILilypadMediation
    function requestMediation(string calldata dealId, address[] calldata mediators) external {
        if (msg.sender != address(_controller)) revert NotController(msg.sender);
        emit MediationRequested(dealId, chooseMediator(block.timestamp, dealId, mediators));
    }

    /// @inheritdoc ILilypadMediation
    function getMediator(string calldata dealId) public view returns (address) {
        (bool checked, uint256 checkedAt, address[] memory mediators) =
            _storage.getMediationContext(dealId);
        if (!checked) return address(0);
        return chooseMediator(checkedAt, dealId, mediators);
    }

    /// @inheritdoc ILilypadMediation
    function mediationAcceptResult(string calldata dealId) external nonReentrant {
        _controller.mediationAcceptResult(dealId, _chosenCaller(dealId));
    }

    /// @inheritdoc ILilypadMediation
    function mediationRejectResult(string calldata dealId) external nonReentrant {
        _controller.mediationRejectResult(dealId, _chosenCaller(dealId));
    }

    /// @notice The v1 choice rule (anyone who sets the block timestamp can predict or steer it).
    function chooseMediator(uint256 timestamp, string calldata dealId, address[] memory mediators)
        public
        pure
        returns (address)
    {
        uint256 index = uint256(keccak256(abi.encodePacked(timestamp, dealId))) % mediators.length;
        return mediators[index];
    }

    /// @dev `[msg.sender]` when the caller is the chosen mediator, else reverts.
    function _chosenCaller(string calldata dealId) private view returns (address[] memory voters) {
        address mediator = getMediator(dealId);
        if (mediator == address(0) || msg.sender != mediator) {
            revert NotMediator(dealId, msg.sender, mediator);
        }
        voters = new address[](1);
        voters[0] = mediator;
    }
}
