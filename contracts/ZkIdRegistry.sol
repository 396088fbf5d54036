// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity 0.8.28;

import {
    InternalLeanIMT,
    LeanIMTData,
    LeafCannotBeZero
} from "@zk-kit/lean-imt.sol/InternalLeanIMT.sol";
import {ISemaphore} from "@semaphore-protocol/contracts/interfaces/ISemaphore.sol";
import {ISemaphoreVerifier} from "@semaphore-protocol/contracts/interfaces/ISemaphoreVerifier.sol";

/// @title ZK-ID registry: groups of Semaphore v4 identity commitments.
/// @notice Each group is a Lean incremental Merkle tree (zk-kit LeanIMT, Poseidon over BN254,
/// npm package lean-imt.sol), so its roots equal those of the zk-kit JS LeanIMT, of Semaphore v4
/// and of the Python `zk` package. Proofs are checked by the official `SemaphoreVerifier`
/// (ceremony keys for depths 1..32) against the public signals of `semaphore.circom`:
/// [root, nullifier, hash(message), hash(scope)], hash(x) = keccak256(x) >> 8.
///
/// Root validity (differs from Semaphore v4 on purpose): the current root is always valid and
/// a root stays valid for `rootWindow` seconds AFTER IT WAS SUPERSEDED. Semaphore counts the
/// window from the root's creation, so an idle group's current root expires
/// (semaphore-protocol/semaphore#1093); World ID stamps roots when superseded, as here.
///
/// Leaf rejections use the errors of lean-imt.sol itself (LeafGreaterThanSnarkScalarField,
/// LeafCannotBeZero, LeafAlreadyExists, LeafDoesNotExist, WrongSiblingNodes).
/// Every state change emits an event carrying the new root, so the state can be rebuilt
/// from the logs alone (a root's supersession time is the timestamp of the block that
/// emitted the next root).
contract ZkIdRegistry {
    using InternalLeanIMT for LeanIMTData;

    struct Group {
        // One slot: read once by every admin call and by proof validation.
        address admin;
        uint64 rootWindow;
        LeanIMTData tree;
        // root => block timestamp at which it stopped being current. Zero means "current or
        // never a root of this group": one fresh slot per superseded root, nothing for the
        // first root ever (the empty tree's root 0 is never recorded).
        mapping(uint256 => uint256) supersededAt;
        mapping(uint256 => bool) nullifiers;
    }

    uint8 internal constant MIN_PROOF_DEPTH = 1;
    uint8 internal constant MAX_PROOF_DEPTH = 32;

    ISemaphoreVerifier public immutable verifier;
    uint256 public groupCount;
    mapping(uint256 => Group) internal groups;
    mapping(uint256 => address) public pendingAdmin;

    error AdminIsZeroAddress();
    error GroupDoesNotExist(uint256 groupId);
    error CallerIsNotAdmin(uint256 groupId, address caller);
    error CallerIsNotPendingAdmin(uint256 groupId, address caller);
    error EmptyBatch();
    error WrongSiblingCount(uint256 expected, uint256 given);
    error MerkleRootUnknown(uint256 groupId, uint256 root);
    error MerkleRootExpired(uint256 groupId, uint256 root, uint256 expiredAt);
    error MerkleTreeDepthNotSupported(uint256 depth);
    error NullifierAlreadyUsed(uint256 groupId, uint256 nullifier);
    error InvalidProof();

    event GroupCreated(uint256 indexed groupId, address indexed admin, uint64 rootWindow);
    event GroupAdminTransferStarted(uint256 indexed groupId, address indexed admin, address indexed pendingAdmin);
    event GroupAdminTransferred(uint256 indexed groupId, address indexed oldAdmin, address indexed newAdmin);
    event RootWindowChanged(uint256 indexed groupId, uint64 oldWindow, uint64 newWindow);
    // Added leaves take the next indices: an add event's first leaf index is the group's size
    // before it. No index field: it would cost every add 256+ gas for a value the event
    // stream already fixes (and a missing event shows as a newRoot mismatch).
    event MemberAdded(uint256 indexed groupId, uint256 commitment, uint256 newRoot);
    event MembersAdded(uint256 indexed groupId, uint256[] commitments, uint256 newRoot);
    event MemberUpdated(
        uint256 indexed groupId,
        uint256 index,
        uint256 oldCommitment,
        uint256 newCommitment,
        uint256 newRoot
    );
    event MemberRemoved(uint256 indexed groupId, uint256 index, uint256 commitment, uint256 newRoot);
    event ProofValidated(
        uint256 indexed groupId,
        uint256 indexed scope,
        uint256 nullifier,
        uint256 message,
        uint256 root
    );

    constructor(ISemaphoreVerifier verifier_) {
        verifier = verifier_;
    }

    // ------------------------------------------------------------------ groups and admins

    /// @notice Creates a group managed by `admin`; ids are sequential from 0.
    function createGroup(address admin, uint64 rootWindow) external returns (uint256 groupId) {
        if (admin == address(0)) revert AdminIsZeroAddress();
        groupId = groupCount++;
        Group storage g = groups[groupId];
        g.admin = admin;
        g.rootWindow = rootWindow;
        emit GroupCreated(groupId, admin, rootWindow);
    }

    /// @notice First step of a two-step admin transfer (a typo cannot orphan a group).
    function transferGroupAdmin(uint256 groupId, address newAdmin) external {
        _adminGroup(groupId);
        pendingAdmin[groupId] = newAdmin;
        emit GroupAdminTransferStarted(groupId, msg.sender, newAdmin);
    }

    function acceptGroupAdmin(uint256 groupId) external {
        if (pendingAdmin[groupId] != msg.sender) {
            revert CallerIsNotPendingAdmin(groupId, msg.sender);
        }
        Group storage g = groups[groupId];
        address oldAdmin = g.admin;
        g.admin = msg.sender;
        delete pendingAdmin[groupId];
        emit GroupAdminTransferred(groupId, oldAdmin, msg.sender);
    }

    function setRootWindow(uint256 groupId, uint64 newWindow) external {
        Group storage g = _adminGroup(groupId);
        uint64 oldWindow = g.rootWindow;
        g.rootWindow = newWindow;
        emit RootWindowChanged(groupId, oldWindow, newWindow);
    }

    // ------------------------------------------------------------------ members

    function addMember(uint256 groupId, uint256 commitment) external {
        Group storage g = _adminGroup(groupId);
        uint256 oldRoot = g.tree._root();
        uint256 root = g.tree._insert(commitment);
        _supersede(g, oldRoot);
        emit MemberAdded(groupId, commitment, root);
    }

    /// @notice Adds a batch with lean-imt's insertMany: each inner node is hashed once.
    function addMembers(uint256 groupId, uint256[] calldata commitments) external {
        if (commitments.length == 0) revert EmptyBatch();
        Group storage g = _adminGroup(groupId);
        uint256 oldRoot = g.tree._root();
        uint256 root = g.tree._insertMany(commitments);
        _supersede(g, oldRoot);
        emit MembersAdded(groupId, commitments, root);
    }

    /// @notice Replaces a commitment (key rotation). `siblings` is the LeanIMT proof of the old
    /// leaf in the zk-kit format (levels without a sibling are left out).
    function updateMember(
        uint256 groupId,
        uint256 oldCommitment,
        uint256 newCommitment,
        uint256[] calldata siblings
    ) external {
        // lean-imt's update accepts 0 (that is its removal); a rotation must not remove.
        if (newCommitment == 0) revert LeafCannotBeZero();
        Group storage g = _adminGroup(groupId);
        uint256 oldRoot = g.tree._root();
        uint256 index = g.tree._indexOf(oldCommitment);
        _checkSiblingCount(g.tree, index, siblings.length);
        uint256 root = g.tree._update(oldCommitment, newCommitment, siblings);
        _supersede(g, oldRoot);
        emit MemberUpdated(groupId, index, oldCommitment, newCommitment, root);
    }

    /// @notice Revokes a commitment: its leaf becomes 0 (the tree keeps its size).
    function removeMember(uint256 groupId, uint256 commitment, uint256[] calldata siblings) external {
        Group storage g = _adminGroup(groupId);
        uint256 oldRoot = g.tree._root();
        uint256 index = g.tree._indexOf(commitment);
        _checkSiblingCount(g.tree, index, siblings.length);
        uint256 root = g.tree._remove(commitment, siblings);
        _supersede(g, oldRoot);
        emit MemberRemoved(groupId, index, commitment, root);
    }

    // ------------------------------------------------------------------ proofs

    /// @notice Verifies a Semaphore v4 proof against a valid root of the group and spends its
    /// nullifier (once per group).
    function validateProof(uint256 groupId, ISemaphore.SemaphoreProof calldata proof) external {
        Group storage g = groups[groupId];
        if (g.nullifiers[proof.nullifier]) revert NullifierAlreadyUsed(groupId, proof.nullifier);
        if (!_verify(groupId, g, proof)) revert InvalidProof();
        g.nullifiers[proof.nullifier] = true;
        emit ProofValidated(groupId, proof.scope, proof.nullifier, proof.message, proof.merkleTreeRoot);
    }

    /// @notice Same checks as validateProof without spending the nullifier. Reverts on an
    /// unknown group or root, an expired root or an unsupported depth; false if the proof fails.
    function verifyProof(uint256 groupId, ISemaphore.SemaphoreProof calldata proof) external view returns (bool) {
        return _verify(groupId, groups[groupId], proof);
    }

    // ------------------------------------------------------------------ views

    function getGroup(uint256 groupId)
        external
        view
        returns (address admin, uint64 rootWindow, uint256 size, uint256 depth, uint256 root)
    {
        Group storage g = _existingGroup(groupId);
        return (g.admin, g.rootWindow, g.tree.size, g.tree.depth, g.tree._root());
    }

    function getMerkleTreeRoot(uint256 groupId) external view returns (uint256) {
        return _existingGroup(groupId).tree._root();
    }

    function getMerkleTreeSize(uint256 groupId) external view returns (uint256) {
        return _existingGroup(groupId).tree.size;
    }

    function getMerkleTreeDepth(uint256 groupId) external view returns (uint256) {
        return _existingGroup(groupId).tree.depth;
    }

    function hasMember(uint256 groupId, uint256 commitment) external view returns (bool) {
        return _existingGroup(groupId).tree._has(commitment);
    }

    /// @notice Leaf index of a commitment; reverts with LeafDoesNotExist if absent.
    function indexOf(uint256 groupId, uint256 commitment) external view returns (uint256) {
        return _existingGroup(groupId).tree._indexOf(commitment);
    }

    /// @notice When `root` stopped being current (0: it is current or never was a root).
    function rootSupersededAt(uint256 groupId, uint256 root) external view returns (uint256) {
        return _existingGroup(groupId).supersededAt[root];
    }

    /// @notice Whether a proof against `root` would pass the root check now.
    function isRootValid(uint256 groupId, uint256 root) external view returns (bool) {
        Group storage g = _existingGroup(groupId);
        if (root == 0) return false;
        if (root == g.tree._root()) return true;
        uint256 supersededAt = g.supersededAt[root];
        return supersededAt != 0 && block.timestamp <= supersededAt + g.rootWindow;
    }

    function isNullifierUsed(uint256 groupId, uint256 nullifier) external view returns (bool) {
        return _existingGroup(groupId).nullifiers[nullifier];
    }

    // ------------------------------------------------------------------ internals

    function _existingGroup(uint256 groupId) private view returns (Group storage g) {
        g = groups[groupId];
        if (g.admin == address(0)) revert GroupDoesNotExist(groupId);
    }

    function _adminGroup(uint256 groupId) private view returns (Group storage g) {
        g = groups[groupId];
        address admin = g.admin;
        if (admin != msg.sender) {
            if (admin == address(0)) revert GroupDoesNotExist(groupId);
            revert CallerIsNotAdmin(groupId, msg.sender);
        }
    }

    /// @dev Stamps the replaced root. Root 0 (empty tree, or a one-leaf tree after removal)
    /// is never a valid proof root, so it needs no record.
    function _supersede(Group storage g, uint256 oldRoot) private {
        if (oldRoot != 0) g.supersededAt[oldRoot] = block.timestamp;
    }

    /// @dev lean-imt's update reads one sibling per level that has one and panics on a short
    /// array; count them first so a wrong proof gets a clear error.
    function _checkSiblingCount(LeanIMTData storage tree, uint256 index, uint256 given) private view {
        uint256 depth = tree.depth;
        uint256 lastIndex = tree.size - 1;
        uint256 expected;
        for (uint256 level = 0; level < depth; ++level) {
            if ((index >> level) & 1 == 1 || (index >> level) != (lastIndex >> level)) ++expected;
        }
        if (given != expected) revert WrongSiblingCount(expected, given);
    }

    function _verify(
        uint256 groupId,
        Group storage g,
        ISemaphore.SemaphoreProof calldata proof
    ) private view returns (bool) {
        uint64 window = g.rootWindow;
        if (g.admin == address(0)) revert GroupDoesNotExist(groupId);
        uint256 root = proof.merkleTreeRoot;
        if (root == 0) revert MerkleRootUnknown(groupId, root);
        if (root != g.tree._root()) {
            uint256 supersededAt = g.supersededAt[root];
            if (supersededAt == 0) revert MerkleRootUnknown(groupId, root);
            if (block.timestamp > supersededAt + window) {
                revert MerkleRootExpired(groupId, root, supersededAt + window);
            }
        }
        uint256 depth = proof.merkleTreeDepth;
        if (depth < MIN_PROOF_DEPTH || depth > MAX_PROOF_DEPTH) revert MerkleTreeDepthNotSupported(depth);
        return
            verifier.verifyProof(
                [proof.points[0], proof.points[1]],
                [[proof.points[2], proof.points[3]], [proof.points[4], proof.points[5]]],
                [proof.points[6], proof.points[7]],
                [root, proof.nullifier, _hash(proof.message), _hash(proof.scope)],
                depth
            );
    }

    /// @dev Semaphore v4's message/scope hash: keccak256 of the 32-byte word, shifted into the field.
    function _hash(uint256 value) private pure returns (uint256) {
        return uint256(keccak256(abi.encodePacked(value))) >> 8;
    }
}
