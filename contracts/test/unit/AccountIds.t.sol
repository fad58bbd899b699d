// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "../utils/Test.sol";
import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice Exposes JobLib's account ids and seats on storage of its own.
contract AccountsHarness {
    JobLib.Accounts internal accounts;
    JobLib.StoredJob internal stored;
    mapping(uint256 index => IJobMarket.Participant) internal rest;

    function idOf(address account) external returns (uint32) {
        return JobLib.idOf(accounts, account);
    }

    function accountOf(uint32 id) external view returns (address) {
        return accounts.accountOf[id];
    }

    function setCount(uint32 count) external {
        accounts.count = count;
    }

    function setHead(uint32 provider0, uint32 requester, uint32 deadline, IJobMarket.JobState s, uint16 feeBps)
        external
    {
        stored.provider0 = provider0;
        stored.requester = requester;
        stored.deadline = deadline;
        stored.state = s;
        stored.feeBps = feeBps;
    }

    function setProvider(uint256 i, address provider) external {
        rest[i].provider = provider;
    }

    function writeCommit(uint256 i, uint64 commitment, uint32 commitBlock) external {
        IJobMarket.Participant storage s = JobLib.seat(stored, rest, i);
        s.commitment = commitment;
        s.commitBlock = commitBlock;
    }

    function head() external view returns (uint32, uint32, uint32, IJobMarket.JobState, uint16) {
        return (stored.provider0, stored.requester, stored.deadline, stored.state, stored.feeBps);
    }

    function seat0() external view returns (uint64, uint32) {
        return (stored.commitment0, stored.commitBlock0);
    }

    function commitAt(uint256 i) external view returns (uint64, uint32) {
        IJobMarket.Participant storage s = JobLib.seat(stored, rest, i);
        return (s.commitment, s.commitBlock);
    }

    function providerOf(uint256 i) external view returns (address) {
        return JobLib.providerOf(stored, rest, accounts, i);
    }

    function holds(uint256 i, address account) external view returns (bool) {
        return JobLib.holds(stored, rest, accounts, i, account);
    }
}

/// @notice JobLib.idOf and JobLib.seat: ids assigned once, from 1, up to 2^32 - 1; seat 0 shares the
/// job's slot 0 without touching the job's own fields.
contract AccountIdsLibTest is Test {
    AccountsHarness internal h;

    function setUp() public {
        h = new AccountsHarness();
    }

    function test_idsAssignedOnceFromOne() public {
        address a = makeAddr("a");
        address b = makeAddr("b");
        assertEq(h.idOf(a), 1);
        assertEq(h.idOf(b), 2);
        assertEq(h.idOf(a), 1, "an account keeps its id");
        assertEq(h.accountOf(1), a);
        assertEq(h.accountOf(2), b);
        assertEq(h.accountOf(0), address(0), "id 0 names nobody");
    }

    function test_lastIdThenExhausted() public {
        h.setCount(type(uint32).max - 1);
        address last = makeAddr("last");
        assertEq(h.idOf(last), type(uint32).max);
        assertEq(h.accountOf(type(uint32).max), last);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAccountIdsExhausted.selector));
        h.idOf(makeAddr("one too many"));
        assertEq(h.idOf(last), type(uint32).max, "a known account still resolves");
    }

    function test_seatZeroSharesTheHeadSlot() public {
        h.setHead(9, 7, 1_000, IJobMarket.JobState.Assigned, 250);
        h.writeCommit(0, type(uint64).max, type(uint32).max);
        (uint32 provider0, uint32 requester, uint32 deadline, IJobMarket.JobState s, uint16 feeBps) = h.head();
        assertEq(provider0, 9, "a commit leaves the head alone");
        assertEq(requester, 7);
        assertEq(deadline, 1_000);
        assertEq(uint256(s), uint256(IJobMarket.JobState.Assigned));
        assertEq(feeBps, 250);
        (uint64 c, uint32 b) = h.seat0();
        assertEq(c, type(uint64).max, "seat 0's record is commitment0");
        assertEq(b, type(uint32).max, "seat 0's record is commitBlock0");
        h.setHead(type(uint32).max, type(uint32).max, type(uint32).max, IJobMarket.JobState.Committed, type(uint16).max);
        (c, b) = h.commitAt(0);
        assertEq(c, type(uint64).max, "head writes leave seat 0's commit alone");
        assertEq(b, type(uint32).max);
    }

    function test_whoSitsWhere() public {
        address a = makeAddr("a");
        address b = makeAddr("b");
        uint32 idA = h.idOf(a);
        h.setHead(idA, 0, 0, IJobMarket.JobState.Assigned, 0);
        h.setProvider(1, b);
        h.writeCommit(1, 22, 222);
        assertEq(h.providerOf(0), a);
        assertEq(h.providerOf(1), b);
        assertTrue(h.holds(0, a));
        assertFalse(h.holds(0, b), "b has no id");
        assertTrue(h.holds(1, b));
        assertFalse(h.holds(1, a));
        (uint64 c, uint32 blk) = h.commitAt(1);
        assertEq(c, 22);
        assertEq(blk, 222);
        (c, blk) = h.seat0();
        assertEq(c, 0, "seat 1 is not seat 0");
        assertEq(blk, 0);
    }
}

/// @notice The market names accounts by id internally; views and events keep reporting addresses.
contract AccountIdsMarketTest is UnitBase {
    function test_viewsReportAddresses() public {
        address p = newProvider("executor", PRICE);
        uint256 first = committedJob(p);
        uint256 second = committedJob(p);
        for (uint256 id = first; id <= second; ++id) {
            assertEq(market.job(id).requester, requester);
            IJobMarket.Participant[] memory ps = market.participants(id);
            assertEq(ps.length, 1);
            assertEq(ps[0].provider, p);
            assertEq(uint256(ps[0].commitment), uint256(commitmentOf(id, p, GOOD)));
            assertTrue(ps[0].commitBlock != 0, "commit block recorded");
        }
    }

    function test_requesterCannotExecuteItsOwnJob() public {
        // The requester is also a registered provider: the id comparison must still catch it.
        vm.startPrank(owner);
        token.mint(requester, PROVIDER_STAKE);
        vm.stopPrank();
        vm.startPrank(requester);
        registry.register(terms(PRICE, 80));
        token.approve(address(registry), PROVIDER_STAKE);
        registry.stake(PROVIDER_STAKE);
        vm.stopPrank();
        uint256 id = createJob(1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRequesterAsProvider.selector, id, requester));
        assignJob(id, one(requester));
    }

    function test_unknownCallerIsNoParticipant() public {
        address p = newProvider("executor", PRICE);
        uint256 id = assignedJob(p);
        address stranger = makeAddr("stranger");
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, id, stranger));
        vm.prank(stranger);
        market.commit(id, bytes32(0), bytes32(0));
        uint256 open = createJob(1);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotRequester.selector, open, stranger));
        vm.prank(stranger);
        market.cancel(open);
    }
}
