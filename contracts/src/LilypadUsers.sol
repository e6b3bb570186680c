// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ServiceType} from "./LilypadTypes.sol";

/// @title LilypadUsers
/// @notice Discovery registry (the controller does not read it): each address publishes a
/// metadata CID, a URL and its roles, and may list itself under each role it holds.
contract LilypadUsers {
    struct User {
        address userAddress;
        string metadataCID;
        string url;
        ServiceType[] roles;
    }

    /// @dev The caller does not hold the role it tries to list itself under.
    error RoleNotHeld(address user, ServiceType role);

    event UserUpdated(address indexed user);
    event UserListed(address indexed user, ServiceType role);
    event UserUnlisted(address indexed user, ServiceType role);

    mapping(address user => User) private _users;
    mapping(ServiceType role => address[]) private _listed;
    /// @dev 1-based position of a user in `_listed[role]` (0 = not listed).
    mapping(ServiceType role => mapping(address user => uint256)) private _position;

    /// @notice Sets the caller's record; roles it no longer holds are unlisted.
    function updateUser(string calldata metadataCID, string calldata url, ServiceType[] calldata roles)
        external
    {
        User storage user = _users[msg.sender];
        ServiceType[] memory previous = user.roles;
        user.userAddress = msg.sender;
        user.metadataCID = metadataCID;
        user.url = url;
        user.roles = roles;
        for (uint256 i; i < previous.length; ++i) {
            if (!_holds(roles, previous[i])) _unlist(msg.sender, previous[i]);
        }
        emit UserUpdated(msg.sender);
    }

    /// @notice Lists the caller under `role` (which it must hold).
    function addUserToList(ServiceType role) external {
        if (!_holds(_users[msg.sender].roles, role)) revert RoleNotHeld(msg.sender, role);
        if (_position[role][msg.sender] != 0) return;
        _listed[role].push(msg.sender);
        _position[role][msg.sender] = _listed[role].length;
        emit UserListed(msg.sender, role);
    }

    /// @notice Removes the caller from the list of `role`.
    function removeUserFromList(ServiceType role) external {
        _unlist(msg.sender, role);
    }

    function getUser(address user) external view returns (User memory) {
        return _users[user];
    }

    function showUsersInList(ServiceType role) external view returns (address[] memory) {
        return _listed[role];
    }

    function _unlist(address who, ServiceType role) private {
        uint256 position = _position[role][who];
        if (position == 0) return;
        address[] storage list = _listed[role];
        address last = list[list.length - 1];
        list[position - 1] = last;
        _position[role][last] = position;
        list.pop();
        delete _position[role][who];
        emit UserUnlisted(who, role);
    }

    function _holds(ServiceType[] memory roles, ServiceType role) private pure returns (bool) {
        for (uint256 i; i < roles.length; ++i) {
            if (roles[i] == role) return true;
        }
        return false;
    }
}
