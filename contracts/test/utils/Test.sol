// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @notice The forge cheatcodes this project's tests use (a subset of forge-std's Vm).
/// @dev Signatures must match forge 1.7 exactly: forge dispatches on the selector.
interface Vm {
    struct Log {
        bytes32[] topics;
        bytes data;
        address emitter;
    }

    // Environment
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function setBlockhash(uint256 blockNumber, bytes32 blockHash) external;
    function getBlockNumber() external view returns (uint256 height);
    function getBlockTimestamp() external view returns (uint256 timestamp);
    function chainId(uint256 newChainId) external;
    function deal(address account, uint256 newBalance) external;
    function getNonce(address account) external view returns (uint64 nonce);
    function load(address target, bytes32 slot) external view returns (bytes32 data);
    function store(address target, bytes32 slot, bytes32 value) external;
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256 value);

    // Callers
    function prank(address msgSender) external;
    function prank(address msgSender, address txOrigin) external;
    function startPrank(address msgSender) external;
    function startPrank(address msgSender, address txOrigin) external;
    function stopPrank() external;

    // Expectations
    function expectRevert() external;
    function expectRevert(bytes4 revertData) external;
    function expectRevert(bytes calldata revertData) external;
    function expectPartialRevert(bytes4 revertData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData) external;
    function expectEmit(bool checkTopic1, bool checkTopic2, bool checkTopic3, bool checkData, address emitter) external;
    function expectEmit() external;
    function expectEmit(address emitter) external;
    function recordLogs() external;
    function getRecordedLogs() external returns (Log[] memory logs);

    // Fuzzing
    function assume(bool condition) external pure;

    // Keys and labels
    function addr(uint256 privateKey) external pure returns (address keyAddr);
    function sign(uint256 privateKey, bytes32 digest) external pure returns (uint8 v, bytes32 r, bytes32 s);
    function label(address account, string calldata newLabel) external;

    // Gas snapshots (written under snapshots/)
    function startSnapshotGas(string calldata name) external;
    function stopSnapshotGas() external returns (uint256 gasUsed);
    function snapshotGasLastCall(string calldata name) external returns (uint256 gasUsed);
    function snapshotValue(string calldata name, uint256 value) external;

    // Formatting
    function toString(uint256 value) external pure returns (string memory stringifiedValue);
    function toString(int256 value) external pure returns (string memory stringifiedValue);
    function toString(address value) external pure returns (string memory stringifiedValue);
    function toString(bytes32 value) external pure returns (string memory stringifiedValue);
    function toString(bool value) external pure returns (string memory stringifiedValue);
    function toString(bytes calldata value) external pure returns (string memory stringifiedValue);
}

/// @notice Minimal test base: assertions that revert (so forge reports a failure), fuzz
/// helpers, and the invariant-target views forge reads by ABI (same shapes as forge-std).
abstract contract Test {
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    struct FuzzArtifactSelector {
        string artifact;
        bytes4[] selectors;
    }

    struct FuzzInterface {
        address addr;
        string[] artifacts;
    }

    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    bool public IS_TEST = true;

    address[] private _targetedContracts;
    address[] private _excludedContracts;
    address[] private _targetedSenders;
    address[] private _excludedSenders;
    FuzzSelector[] private _targetedSelectors;
    FuzzSelector[] private _excludedSelectors;

    // ------------------------------------------------------------------ assertions

    function fail(string memory err) internal pure virtual {
        revert(err);
    }

    function assertTrue(bool condition) internal pure virtual {
        if (!condition) fail("assertTrue: false");
    }

    function assertTrue(bool condition, string memory err) internal pure virtual {
        if (!condition) fail(_msg("assertTrue: false", err));
    }

    function assertFalse(bool condition) internal pure virtual {
        if (condition) fail("assertFalse: true");
    }

    function assertFalse(bool condition, string memory err) internal pure virtual {
        if (condition) fail(_msg("assertFalse: true", err));
    }

    function assertEq(uint256 a, uint256 b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a != b) fail(_msg(_neq("assertEq(uint256)", vm.toString(a), vm.toString(b)), err));
    }

    function assertEq(int256 a, int256 b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(int256 a, int256 b, string memory err) internal pure virtual {
        if (a != b) fail(_msg(_neq("assertEq(int256)", vm.toString(a), vm.toString(b)), err));
    }

    function assertEq(address a, address b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(address a, address b, string memory err) internal pure virtual {
        if (a != b) fail(_msg(_neq("assertEq(address)", vm.toString(a), vm.toString(b)), err));
    }

    function assertEq(bytes32 a, bytes32 b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(bytes32 a, bytes32 b, string memory err) internal pure virtual {
        if (a != b) fail(_msg(_neq("assertEq(bytes32)", vm.toString(a), vm.toString(b)), err));
    }

    function assertEq(bool a, bool b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(bool a, bool b, string memory err) internal pure virtual {
        if (a != b) fail(_msg(_neq("assertEq(bool)", vm.toString(a), vm.toString(b)), err));
    }

    function assertEq(bytes memory a, bytes memory b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(bytes memory a, bytes memory b, string memory err) internal pure virtual {
        if (keccak256(a) != keccak256(b)) {
            fail(_msg(_neq("assertEq(bytes)", vm.toString(a), vm.toString(b)), err));
        }
    }

    function assertEq(string memory a, string memory b) internal pure virtual {
        assertEq(a, b, "");
    }

    function assertEq(string memory a, string memory b, string memory err) internal pure virtual {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) {
            fail(_msg(_neq("assertEq(string)", string.concat('"', a, '"'), string.concat('"', b, '"')), err));
        }
    }

    function assertNotEq(uint256 a, uint256 b) internal pure virtual {
        assertNotEq(a, b, "");
    }

    function assertNotEq(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a == b) fail(_msg(string.concat("assertNotEq(uint256): both ", vm.toString(a)), err));
    }

    function assertNotEq(bytes32 a, bytes32 b) internal pure virtual {
        assertNotEq(a, b, "");
    }

    function assertNotEq(bytes32 a, bytes32 b, string memory err) internal pure virtual {
        if (a == b) fail(_msg(string.concat("assertNotEq(bytes32): both ", vm.toString(a)), err));
    }

    function assertGt(uint256 a, uint256 b) internal pure virtual {
        assertGt(a, b, "");
    }

    function assertGt(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a <= b) fail(_msg(_cmp("assertGt", a, " <= ", b), err));
    }

    function assertGe(uint256 a, uint256 b) internal pure virtual {
        assertGe(a, b, "");
    }

    function assertGe(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a < b) fail(_msg(_cmp("assertGe", a, " < ", b), err));
    }

    function assertLt(uint256 a, uint256 b) internal pure virtual {
        assertLt(a, b, "");
    }

    function assertLt(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a >= b) fail(_msg(_cmp("assertLt", a, " >= ", b), err));
    }

    function assertLe(uint256 a, uint256 b) internal pure virtual {
        assertLe(a, b, "");
    }

    function assertLe(uint256 a, uint256 b, string memory err) internal pure virtual {
        if (a > b) fail(_msg(_cmp("assertLe", a, " > ", b), err));
    }

    function assertApproxEqAbs(uint256 a, uint256 b, uint256 maxDelta) internal pure virtual {
        assertApproxEqAbs(a, b, maxDelta, "");
    }

    function assertApproxEqAbs(uint256 a, uint256 b, uint256 maxDelta, string memory err) internal pure virtual {
        uint256 delta = a > b ? a - b : b - a;
        if (delta > maxDelta) {
            fail(
                _msg(
                    string.concat(
                        _neq("assertApproxEqAbs", vm.toString(a), vm.toString(b)),
                        " (delta ",
                        vm.toString(delta),
                        " > max ",
                        vm.toString(maxDelta),
                        ")"
                    ),
                    err
                )
            );
        }
    }

    // ------------------------------------------------------------------ helpers

    /// @dev Wraps `x` into [min, max] without reverting, like forge-std: values already in
    /// range are kept (so dictionary values survive), and 0..3 / max-3..max map to the edges.
    function bound(uint256 x, uint256 min, uint256 max) internal pure virtual returns (uint256 result) {
        require(min <= max, "bound(uint256,uint256,uint256): max is less than min");
        if (x >= min && x <= max) return x;
        uint256 size = max - min + 1;
        if (x <= 3 && size > x) return min + x;
        if (x >= type(uint256).max - 3 && size > type(uint256).max - x) return max - (type(uint256).max - x);
        if (x > max) {
            uint256 rem = (x - max) % size;
            if (rem == 0) return max;
            result = min + rem - 1;
        } else {
            uint256 rem = (min - x) % size;
            if (rem == 0) return min;
            result = max - rem + 1;
        }
    }

    function makeAddr(string memory name) internal virtual returns (address account) {
        (account,) = makeAddrAndKey(name);
    }

    function makeAddrAndKey(string memory name) internal virtual returns (address account, uint256 key) {
        key = uint256(keccak256(abi.encodePacked(name)));
        account = vm.addr(key);
        vm.label(account, name);
    }

    // ------------------------------------------------------------------ invariant targets

    function targetContract(address target) internal virtual {
        _targetedContracts.push(target);
    }

    function excludeContract(address target) internal virtual {
        _excludedContracts.push(target);
    }

    function targetSelector(FuzzSelector memory selector) internal virtual {
        _targetedSelectors.push(selector);
    }

    function excludeSelector(FuzzSelector memory selector) internal virtual {
        _excludedSelectors.push(selector);
    }

    function targetSender(address sender) internal virtual {
        _targetedSenders.push(sender);
    }

    function excludeSender(address sender) internal virtual {
        _excludedSenders.push(sender);
    }

    function targetContracts() public view returns (address[] memory) {
        return _targetedContracts;
    }

    function excludeContracts() public view returns (address[] memory) {
        return _excludedContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetedSelectors;
    }

    function excludeSelectors() public view returns (FuzzSelector[] memory) {
        return _excludedSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetedSenders;
    }

    function excludeSenders() public view returns (address[] memory) {
        return _excludedSenders;
    }

    function targetArtifacts() public pure returns (string[] memory) {
        return new string[](0);
    }

    function excludeArtifacts() public pure returns (string[] memory) {
        return new string[](0);
    }

    function targetArtifactSelectors() public pure returns (FuzzArtifactSelector[] memory) {
        return new FuzzArtifactSelector[](0);
    }

    function targetInterfaces() public pure returns (FuzzInterface[] memory) {
        return new FuzzInterface[](0);
    }

    // ------------------------------------------------------------------ private

    function _msg(string memory what, string memory err) private pure returns (string memory) {
        return bytes(err).length == 0 ? what : string.concat(err, ": ", what);
    }

    function _neq(string memory name, string memory a, string memory b) private pure returns (string memory) {
        return string.concat(name, ": ", a, " != ", b);
    }

    function _cmp(string memory name, uint256 a, string memory op, uint256 b) private pure returns (string memory) {
        return string.concat(name, ": ", vm.toString(a), op, vm.toString(b));
    }
}
