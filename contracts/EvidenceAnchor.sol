// SPDX-License-Identifier: GPL-3.0-or-later
pragma solidity 0.8.28;

/// @title Evidence-log anchors.
/// @notice Anchors checkpoints (tree size, root hash) of append-only transparency logs: the
/// delivery-evidence logs of the registries, whose checkpoints follow C2SP tlog-checkpoint
/// and whose roots are RFC 9162 (Certificate Transparency v2) Merkle tree hashes.
///
/// A log is bound to its Ed25519 signing key: its id is keccak256(abi.encode(origin, key)),
/// where origin is its checkpoint origin line (the key's name) and key the 32-byte public
/// key, so a verifier holding the log key looks anchors up by that id and nothing else.
/// Only the registrar (the deployer) registers logs: nobody can claim a log id first and
/// block the real log (Ed25519 cannot be checked on chain at a sane cost; a registration
/// open to anyone could be squatted, as the key is public). Per log, only the operators
/// named by its current owner may anchor, sizes strictly grow, and each anchor records the
/// block timestamp, giving verifiers a public upper bound on when the log reached that size.
/// Ownership moves in two steps (transfer, then accept by the new owner); accepting it
/// drops every operator the previous owner named.
contract EvidenceAnchor {
    struct Log {
        // slot 0: everything `anchor` updates
        address owner;
        uint64 latestSize;
        uint32 anchorCount;
        // slot 1
        address pendingOwner;
        // Operators are kept per epoch; a new owner starts an empty epoch.
        uint32 operatorEpoch;
    }

    struct Anchor {
        bytes32 rootHash;
        // One slot for the three: an anchor costs two fresh slots in all.
        uint64 timestamp;
        uint64 blockNumber;
        // Links the anchors of a log from the newest back (0 ends the chain).
        uint64 previousSize;
    }

    /// @notice The only account that may register logs: the deployer.
    address public immutable registrar;

    mapping(bytes32 => Log) internal logs;
    mapping(bytes32 => mapping(uint256 => mapping(address => bool))) internal operators;
    mapping(bytes32 => mapping(uint256 => Anchor)) internal anchors;

    error EmptyOrigin();
    error LogKeyIsZero();
    error OwnerIsZeroAddress();
    error CallerIsNotRegistrar(address caller);
    error LogAlreadyRegistered(bytes32 logId);
    error LogNotRegistered(bytes32 logId);
    error CallerIsNotLogOwner(bytes32 logId, address caller);
    error CallerIsNotPendingLogOwner(bytes32 logId, address caller);
    error CallerIsNotOperator(bytes32 logId, address caller);
    error RootHashIsZero();
    error TreeSizeNotGrowing(bytes32 logId, uint64 latestSize, uint64 treeSize);
    error AnchorNotFound(bytes32 logId, uint64 treeSize);

    event LogRegistered(bytes32 indexed logId, string origin, bytes32 logKey, address indexed owner);
    event LogOwnerTransferStarted(bytes32 indexed logId, address indexed owner, address indexed pendingOwner);
    event LogOwnerTransferred(bytes32 indexed logId, address indexed oldOwner, address indexed newOwner);
    event OperatorSet(bytes32 indexed logId, address indexed operator, bool enabled);
    event Anchored(bytes32 indexed logId, uint64 indexed treeSize, bytes32 rootHash, uint64 timestamp);

    constructor() {
        registrar = msg.sender;
    }

    /// @notice The id of a log: keccak256(abi.encode(origin, logKey)), origin being its
    /// checkpoint origin line and logKey its Ed25519 public key.
    function logIdOf(string calldata origin, bytes32 logKey) public pure returns (bytes32) {
        return keccak256(abi.encode(origin, logKey));
    }

    /// @notice Registers a log owned by `owner` with `initialOperators` (registrar only).
    function registerLog(string calldata origin, bytes32 logKey, address owner, address[] calldata initialOperators)
        external
        returns (bytes32 logId)
    {
        if (msg.sender != registrar) revert CallerIsNotRegistrar(msg.sender);
        if (bytes(origin).length == 0) revert EmptyOrigin();
        if (logKey == bytes32(0)) revert LogKeyIsZero();
        if (owner == address(0)) revert OwnerIsZeroAddress();
        logId = logIdOf(origin, logKey);
        if (logs[logId].owner != address(0)) revert LogAlreadyRegistered(logId);
        logs[logId].owner = owner;
        emit LogRegistered(logId, origin, logKey, owner);
        for (uint256 i = 0; i < initialOperators.length; ++i) {
            operators[logId][0][initialOperators[i]] = true;
            emit OperatorSet(logId, initialOperators[i], true);
        }
    }

    function setOperator(bytes32 logId, address operator, bool enabled) external {
        Log storage log = _ownedLog(logId);
        operators[logId][log.operatorEpoch][operator] = enabled;
        emit OperatorSet(logId, operator, enabled);
    }

    /// @notice First step of a two-step owner transfer (a typo cannot orphan a log); a later
    /// call replaces the pending owner, address(0) cancels.
    function transferLogOwner(bytes32 logId, address newOwner) external {
        Log storage log = _ownedLog(logId);
        log.pendingOwner = newOwner;
        emit LogOwnerTransferStarted(logId, msg.sender, newOwner);
    }

    /// @notice Second step: the pending owner takes the log; the old owner's operators lose
    /// their rights (the new owner names its own).
    function acceptLogOwner(bytes32 logId) external {
        Log storage log = logs[logId];
        if (msg.sender != log.pendingOwner || msg.sender == address(0)) {
            revert CallerIsNotPendingLogOwner(logId, msg.sender);
        }
        address oldOwner = log.owner;
        log.owner = msg.sender;
        log.pendingOwner = address(0);
        ++log.operatorEpoch;
        emit LogOwnerTransferred(logId, oldOwner, msg.sender);
    }

    /// @notice Anchors checkpoint (treeSize, rootHash); treeSize must exceed the last anchored size.
    function anchor(bytes32 logId, uint64 treeSize, bytes32 rootHash) external {
        Log storage log = logs[logId];
        if (log.owner == address(0)) revert LogNotRegistered(logId);
        if (!operators[logId][log.operatorEpoch][msg.sender]) revert CallerIsNotOperator(logId, msg.sender);
        if (rootHash == bytes32(0)) revert RootHashIsZero();
        uint64 latest = log.latestSize;
        if (treeSize <= latest) revert TreeSizeNotGrowing(logId, latest, treeSize);
        anchors[logId][treeSize] = Anchor(rootHash, uint64(block.timestamp), uint64(block.number), latest);
        log.latestSize = treeSize;
        ++log.anchorCount;
        emit Anchored(logId, treeSize, rootHash, uint64(block.timestamp));
    }

    /// @notice Whether `operator` may anchor `logId` now (false for an unregistered log).
    function isOperator(bytes32 logId, address operator) external view returns (bool) {
        return operators[logId][logs[logId].operatorEpoch][operator];
    }

    function getLog(bytes32 logId) external view returns (address owner, uint64 latestSize, uint32 anchorCount) {
        Log storage log = logs[logId];
        if (log.owner == address(0)) revert LogNotRegistered(logId);
        return (log.owner, log.latestSize, log.anchorCount);
    }

    function pendingLogOwner(bytes32 logId) external view returns (address) {
        return logs[logId].pendingOwner;
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
