// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity 0.8.28;

/// @title Evidence-log anchors.
/// @notice Anchors checkpoints (tree size, root hash) of append-only transparency logs: the
/// delivery-evidence logs of the relays, whose checkpoints follow C2SP tlog-checkpoint and
/// whose roots are RFC 9162 (Certificate Transparency v2) Merkle tree hashes. A log is named
/// by its checkpoint origin string; its id is keccak256(origin). Per log, only its operators
/// may anchor, sizes strictly grow, and each anchor records the block timestamp, giving
/// verifiers a public upper bound on when the log reached that size.
contract EvidenceAnchor {
    struct Log {
        address owner;
        uint64 latestSize;
        uint32 anchorCount;
    }

    struct Anchor {
        bytes32 rootHash;
        // One slot for the three: an anchor costs two fresh slots in all.
        uint64 timestamp;
        uint64 blockNumber;
        // Links the anchors of a log from the newest back (0 ends the chain).
        uint64 previousSize;
    }

    mapping(bytes32 => Log) internal logs;
    mapping(bytes32 => mapping(address => bool)) public isOperator;
    mapping(bytes32 => mapping(uint256 => Anchor)) internal anchors;

    error EmptyOrigin();
    error OwnerIsZeroAddress();
    error LogAlreadyRegistered(bytes32 logId);
    error LogNotRegistered(bytes32 logId);
    error CallerIsNotLogOwner(bytes32 logId, address caller);
    error CallerIsNotOperator(bytes32 logId, address caller);
    error RootHashIsZero();
    error TreeSizeNotGrowing(bytes32 logId, uint64 latestSize, uint64 treeSize);
    error AnchorNotFound(bytes32 logId, uint64 treeSize);

    event LogRegistered(bytes32 indexed logId, string origin, address indexed owner);
    event LogOwnerTransferred(bytes32 indexed logId, address indexed oldOwner, address indexed newOwner);
    event OperatorSet(bytes32 indexed logId, address indexed operator, bool enabled);
    event Anchored(bytes32 indexed logId, uint64 indexed treeSize, bytes32 rootHash, uint64 timestamp);

    /// @notice The id of a log: keccak256 of its checkpoint origin line.
    function logIdOf(string calldata origin) public pure returns (bytes32) {
        return keccak256(bytes(origin));
    }

    /// @notice Registers a log; the caller owns it and manages its operators.
    function registerLog(string calldata origin, address[] calldata operators) external returns (bytes32 logId) {
        if (bytes(origin).length == 0) revert EmptyOrigin();
        logId = logIdOf(origin);
        if (logs[logId].owner != address(0)) revert LogAlreadyRegistered(logId);
        logs[logId].owner = msg.sender;
        emit LogRegistered(logId, origin, msg.sender);
        for (uint256 i = 0; i < operators.length; ++i) {
            isOperator[logId][operators[i]] = true;
            emit OperatorSet(logId, operators[i], true);
        }
    }

    function setOperator(bytes32 logId, address operator, bool enabled) external {
        _ownedLog(logId);
        isOperator[logId][operator] = enabled;
        emit OperatorSet(logId, operator, enabled);
    }

    function transferLogOwner(bytes32 logId, address newOwner) external {
        Log storage log = _ownedLog(logId);
        if (newOwner == address(0)) revert OwnerIsZeroAddress();
        log.owner = newOwner;
        emit LogOwnerTransferred(logId, msg.sender, newOwner);
    }

    /// @notice Anchors checkpoint (treeSize, rootHash); treeSize must exceed the last anchored size.
    function anchor(bytes32 logId, uint64 treeSize, bytes32 rootHash) external {
        Log storage log = logs[logId];
        if (log.owner == address(0)) revert LogNotRegistered(logId);
        if (!isOperator[logId][msg.sender]) revert CallerIsNotOperator(logId, msg.sender);
        if (rootHash == bytes32(0)) revert RootHashIsZero();
        uint64 latest = log.latestSize;
        if (treeSize <= latest) revert TreeSizeNotGrowing(logId, latest, treeSize);
        anchors[logId][treeSize] = Anchor(rootHash, uint64(block.timestamp), uint64(block.number), latest);
        log.latestSize = treeSize;
        ++log.anchorCount;
        emit Anchored(logId, treeSize, rootHash, uint64(block.timestamp));
    }

    function getLog(bytes32 logId) external view returns (address owner, uint64 latestSize, uint32 anchorCount) {
        Log storage log = logs[logId];
        if (log.owner == address(0)) revert LogNotRegistered(logId);
        return (log.owner, log.latestSize, log.anchorCount);
    }

    /// @notice The anchor of `logId` at exactly `treeSize`.
    function getAnchor(bytes32 logId, uint64 treeSize) external view returns (Anchor memory a) {
        a = anchors[logId][treeSize];
        if (a.rootHash == bytes32(0)) revert AnchorNotFound(logId, treeSize);
    }

    /// @notice The newest anchor of `logId` (reverts AnchorNotFound(logId, 0) if none yet).
    function latestAnchor(bytes32 logId) external view returns (uint64 treeSize, Anchor memory a) {
        Log storage log = logs[logId];
        if (log.owner == address(0)) revert LogNotRegistered(logId);
        treeSize = log.latestSize;
        a = anchors[logId][treeSize];
        if (a.rootHash == bytes32(0)) revert AnchorNotFound(logId, treeSize);
    }

    function _ownedLog(bytes32 logId) private view returns (Log storage log) {
        log = logs[logId];
        address owner = log.owner;
        if (owner != msg.sender) {
            if (owner == address(0)) revert LogNotRegistered(logId);
            revert CallerIsNotLogOwner(logId, msg.sender);
        }
    }
}
