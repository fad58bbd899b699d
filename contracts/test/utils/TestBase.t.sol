// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "./Test.sol";

/// @dev Exposes the base's assertions as external calls so a failing one can be caught
/// with vm.expectRevert (forge 1.7 has no testFail*).
contract AssertHarness is Test {
    function eqUint(uint256 a, uint256 b) external pure {
        assertEq(a, b);
    }

    function eqUintMsg(uint256 a, uint256 b, string memory err) external pure {
        assertEq(a, b, err);
    }

    function eqAddress(address a, address b) external pure {
        assertEq(a, b);
    }

    function eqBytes(bytes memory a, bytes memory b) external pure {
        assertEq(a, b);
    }

    function eqString(string memory a, string memory b) external pure {
        assertEq(a, b);
    }

    function isTrue(bool c) external pure {
        assertTrue(c);
    }

    function gt(uint256 a, uint256 b) external pure {
        assertGt(a, b);
    }

    function le(uint256 a, uint256 b) external pure {
        assertLe(a, b);
    }

    function approx(uint256 a, uint256 b, uint256 d) external pure {
        assertApproxEqAbs(a, b, d);
    }

    function boundOf(uint256 x, uint256 min, uint256 max) external pure returns (uint256) {
        return bound(x, min, max);
    }
}

contract TestBaseTest is Test {
    AssertHarness internal h;

    function setUp() public {
        h = new AssertHarness();
    }

    function test_PassingAssertionsDoNotRevert() public view {
        h.eqUint(7, 7);
        h.eqAddress(address(h), address(h));
        h.eqBytes(hex"beef", hex"beef");
        h.eqString("a", "a");
        h.isTrue(true);
        h.gt(2, 1);
        h.le(1, 1);
        h.approx(100, 103, 3);
    }

    function test_FailingAssertionsRevertWithDescription() public {
        vm.expectRevert(bytes("assertEq(uint256): 1 != 2"));
        h.eqUint(1, 2);

        vm.expectRevert(bytes("escrow: assertEq(uint256): 1 != 2"));
        h.eqUintMsg(1, 2, "escrow");

        vm.expectRevert(bytes('assertEq(string): "a" != "b"'));
        h.eqString("a", "b");

        vm.expectRevert(bytes("assertEq(bytes): 0xbeef != 0xbeed"));
        h.eqBytes(hex"beef", hex"beed");

        vm.expectRevert(bytes("assertTrue: false"));
        h.isTrue(false);

        vm.expectRevert(bytes("assertGt: 1 <= 1"));
        h.gt(1, 1);

        vm.expectRevert(bytes("assertLe: 2 > 1"));
        h.le(2, 1);

        vm.expectRevert(bytes("assertApproxEqAbs: 100 != 104 (delta 4 > max 3)"));
        h.approx(100, 104, 3);
    }

    function testFuzz_BoundStaysInRange(uint256 x, uint256 min, uint256 max) public view {
        vm.assume(min <= max);
        uint256 y = h.boundOf(x, min, max);
        assertGe(y, min);
        assertLe(y, max);
        if (x >= min && x <= max) assertEq(y, x, "in-range values are kept");
    }

    function test_BoundMapsSmallValuesToTheLowEdge() public view {
        assertEq(h.boundOf(0, 10, 20), 10);
        assertEq(h.boundOf(3, 10, 20), 13);
        assertEq(h.boundOf(type(uint256).max, 10, 20), 20);
    }

    function test_BoundRejectsEmptyRange() public {
        vm.expectRevert(bytes("bound(uint256,uint256,uint256): max is less than min"));
        h.boundOf(1, 2, 1);
    }

    function test_MakeAddrIsDeterministicAndSigns() public {
        (address alice, uint256 key) = makeAddrAndKey("alice");
        assertEq(makeAddr("alice"), alice);
        assertTrue(makeAddr("bob") != alice);
        bytes32 digest = keccak256("message");
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        assertEq(ecrecover(digest, v, r, s), alice);
    }

    function test_PrankWarpRollDeal() public {
        address alice = makeAddr("alice");
        vm.warp(1000);
        vm.roll(50);
        vm.deal(alice, 1 ether);
        assertEq(vm.getBlockTimestamp(), 1000);
        assertEq(vm.getBlockNumber(), 50);
        assertEq(alice.balance, 1 ether);
        Caller c = new Caller();
        vm.prank(alice);
        assertEq(c.who(), alice);
        assertEq(c.who(), address(this), "prank lasts one call");
    }

    function test_ExpectEmitAndCustomError() public {
        Caller c = new Caller();
        vm.expectEmit(address(c));
        emit Caller.Pinged(address(this), 5);
        c.ping(5);

        vm.expectRevert(abi.encodeWithSelector(Caller.CallerZero.selector, 0));
        c.ping(0);
    }
}

contract Caller {
    event Pinged(address indexed from, uint256 value);

    error CallerZero(uint256 value);

    function who() external view returns (address) {
        return msg.sender;
    }

    function ping(uint256 value) external {
        if (value == 0) revert CallerZero(value);
        emit Pinged(msg.sender, value);
    }
}

/// @dev A ledger whose handler-driven invariant exercises targetContract / targetSelector /
/// targetSender: if forge ignored those views, the sender and selector checks would fail.
contract Ledger {
    mapping(address => uint256) public balanceOf;
    uint256 public total;

    function deposit(uint256 amount) external {
        balanceOf[msg.sender] += amount;
        total += amount;
    }

    function withdraw(uint256 amount) external {
        balanceOf[msg.sender] -= amount;
        total -= amount;
    }
}

contract LedgerHandler is Test {
    Ledger public immutable ledger;
    address public immutable allowedSender;
    uint256 public ghostSum;
    uint256 public calls;
    bool public foreignSender;
    bool public untargetedCalled;

    constructor(Ledger ledger_, address allowedSender_) {
        ledger = ledger_;
        allowedSender = allowedSender_;
    }

    function deposit(uint256 amount) external {
        _seen();
        amount = bound(amount, 0, 1e30);
        ledger.deposit(amount);
        ghostSum += amount;
    }

    function withdraw(uint256 amount) external {
        _seen();
        amount = bound(amount, 0, ledger.balanceOf(address(this)));
        ledger.withdraw(amount);
        ghostSum -= amount;
    }

    function notTargeted() external {
        untargetedCalled = true;
    }

    function _seen() private {
        calls++;
        if (msg.sender != allowedSender) foreignSender = true;
    }
}

contract LedgerInvariantTest is Test {
    Ledger internal ledger;
    LedgerHandler internal handler;

    function setUp() public {
        ledger = new Ledger();
        handler = new LedgerHandler(ledger, makeAddr("actor"));
        targetContract(address(handler));
        bytes4[] memory selectors = new bytes4[](2);
        selectors[0] = LedgerHandler.deposit.selector;
        selectors[1] = LedgerHandler.withdraw.selector;
        targetSelector(FuzzSelector({addr: address(handler), selectors: selectors}));
        targetSender(makeAddr("actor"));
    }

    function invariant_TotalEqualsGhostSum() public view {
        assertEq(ledger.total(), handler.ghostSum());
        assertEq(ledger.balanceOf(address(handler)), handler.ghostSum());
    }

    function invariant_OnlyTargetedSendersAndSelectors() public view {
        assertFalse(handler.foreignSender(), "call from an untargeted sender");
        assertFalse(handler.untargetedCalled(), "untargeted selector called");
    }

    function afterInvariant() external view {
        assertGt(handler.calls(), 0, "handler never called");
    }
}
