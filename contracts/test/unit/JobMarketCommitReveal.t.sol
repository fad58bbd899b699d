// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice commit, commitBatch and reveal, including the copy-the-commitment attacks.
contract JobMarketCommitRevealTest is UnitBase {
    address internal a;
    address internal b;
    address internal c;

    function setUp() public override {
        super.setUp();
        a = newProvider("a", PRICE);
        b = newProvider("b", PRICE);
        c = newProvider("c", PRICE);
    }

    function trioJob() internal returns (uint256 id) {
        id = createJob(3);
        assignJob(id, three(a, b, c));
    }

    function revealingTrio() internal returns (uint256 id) {
        id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        commitAs(c, id, GOOD);
    }

    // ---------------------------------------------------------------- commit

    function test_commit_singleReplicaMovesToCommitted() public {
        uint256 id = assignedJob(a);
        bytes32 rh = JobLib.resultHash(id, GOOD);
        bytes32 seal = JobLib.seal(a, id, GOOD);
        vm.expectEmit(address(market));
        emit IJobMarket.ResultCommitted(id, a, rh, seal);
        vm.prank(a);
        market.commit(id, rh, seal);
        assertState(id, IJobMarket.JobState.Committed);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.deadline), block.timestamp + 10 minutes, "challenge window");
        assertEq(uint256(j.commitMask), 1);
        IJobMarket.Participant memory p = market.participants(id)[0];
        assertEq(uint256(p.commitment), uint256(JobLib.commitment(rh, seal)));
        assertEq(uint256(p.commitment), uint256(uint64(bytes8(keccak256(abi.encode(rh, seal))))));
        assertEq(uint256(p.commitBlock), block.number);
    }

    function test_commit_replicasStayAssignedUntilAllIn() public {
        uint256 id = trioJob();
        uint256 assignedDeadline = deadlineOf(id);
        commitAs(b, id, GOOD);
        assertState(id, IJobMarket.JobState.Assigned);
        assertEq(uint256(market.job(id).commitMask), 2);
        assertEq(deadlineOf(id), assignedDeadline, "deadline unchanged");
        commitAs(a, id, GOOD);
        assertEq(uint256(market.job(id).commitMask), 3);
        uint32 revealBy = uint32(block.timestamp + 10 minutes);
        vm.expectEmit(address(market));
        emit IJobMarket.RevealStarted(id, revealBy);
        commitAs(c, id, BAD);
        assertState(id, IJobMarket.JobState.Revealing);
        assertEq(uint256(market.job(id).commitMask), 7);
        assertEq(deadlineOf(id), revealBy);
    }

    function test_commit_atDeadline() public {
        uint256 id = assignedJob(a);
        vm.warp(deadlineOf(id));
        commitAs(a, id, GOOD);
        assertState(id, IJobMarket.JobState.Committed);
    }

    function test_commit_revertsAfterDeadline() public {
        uint256 id = assignedJob(a);
        uint256 deadline = deadlineOf(id);
        vm.warp(deadline + 1);
        bytes32 rh = JobLib.resultHash(id, GOOD);
        bytes32 seal = JobLib.seal(a, id, GOOD);
        vm.prank(a);
        vm.expectRevert(passed(id, deadline));
        market.commit(id, rh, seal);
    }

    function test_commit_revertsOpenJob() public {
        uint256 id = createJob(1);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Open, S_COMMITTABLE));
        market.commit(id, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    function test_commit_revertsUnknownJob() public {
        vm.prank(a);
        vm.expectRevert(unexpected(9, IJobMarket.JobState.None, S_COMMITTABLE));
        market.commit(9, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    function test_commit_revertsTwiceSingleReplica() public {
        uint256 id = committedJob(a);
        bytes32 rh = JobLib.resultHash(id, BAD);
        bytes32 seal = JobLib.seal(a, id, BAD);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_COMMITTABLE));
        market.commit(id, rh, seal);
    }

    function test_commit_revertsTwiceWithReplicas() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        uint64 first = market.participants(id)[0].commitment;
        bytes32 rh = JobLib.resultHash(id, BAD);
        bytes32 seal = JobLib.seal(a, id, BAD);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAlreadyCommitted.selector, id, a));
        market.commit(id, rh, seal);
        assertEq(uint256(market.participants(id)[0].commitment), uint256(first), "first commitment kept");
    }

    function test_commit_revertsWhenRevealing() public {
        uint256 id = revealingTrio();
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Revealing, S_COMMITTABLE));
        market.commit(id, bytes32(0), bytes32(0));
    }

    function test_commit_revertsNonParticipant() public {
        uint256 id = trioJob();
        address stranger = newProvider("stranger", PRICE);
        bytes32 rh = JobLib.resultHash(id, GOOD);
        bytes32 seal = JobLib.seal(stranger, id, GOOD);
        vm.prank(stranger);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, id, stranger));
        market.commit(id, rh, seal);
    }

    function test_commit_revertsExecutorDuringAudit() public {
        stakeVerifiers(3);
        uint256 id = auditingJob(a, GOOD);
        staffRound(id);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, id, a));
        market.commit(id, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    function test_commit_revertsDuringAuditBeforeVerifiers() public {
        uint256 id = auditingJob(a, GOOD);
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, id, b));
        market.commit(id, bytes32(uint256(1)), bytes32(uint256(2)));
    }

    // ---------------------------------------------------------------- commitBatch

    function test_commitBatch() public {
        uint256 id1 = assignedJob(a);
        uint256 id2 = trioJob();
        bytes32[] memory hs = new bytes32[](2);
        bytes32[] memory ss = new bytes32[](2);
        hs[0] = JobLib.resultHash(id1, GOOD);
        ss[0] = JobLib.seal(a, id1, GOOD);
        hs[1] = JobLib.resultHash(id2, OTHER);
        ss[1] = JobLib.seal(a, id2, OTHER);
        vm.expectEmit(address(market));
        emit IJobMarket.ResultCommitted(id1, a, hs[0], ss[0]);
        vm.expectEmit(address(market));
        emit IJobMarket.ResultCommitted(id2, a, hs[1], ss[1]);
        vm.prank(a);
        market.commitBatch(ids2(id1, id2), hs, ss);
        assertState(id1, IJobMarket.JobState.Committed);
        assertState(id2, IJobMarket.JobState.Assigned);
        assertEq(uint256(market.job(id2).commitMask), 1);
        assertEq(uint256(market.participants(id2)[0].commitment), uint256(commitmentOf(id2, a, OTHER)));
    }

    function test_commitBatch_revertsEmpty() public {
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.commitBatch(new uint256[](0), new bytes32[](0), new bytes32[](0));
    }

    function test_commitBatch_revertsEmptyIdsWithHashes() public {
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 1));
        market.commitBatch(new uint256[](0), new bytes32[](1), new bytes32[](0));
    }

    function test_commitBatch_revertsHashesLengthMismatch() public {
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 2, 1));
        market.commitBatch(new uint256[](2), new bytes32[](1), new bytes32[](2));
    }

    function test_commitBatch_revertsSealsLengthMismatch() public {
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 2, 3));
        market.commitBatch(new uint256[](2), new bytes32[](2), new bytes32[](3));
    }

    function test_commitBatch_oneFailureRevertsAll() public {
        uint256 id1 = assignedJob(a);
        uint256 id2 = assignedJob(b); // a is not a participant
        bytes32[] memory hs = new bytes32[](2);
        bytes32[] memory ss = new bytes32[](2);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotParticipant.selector, id2, a));
        market.commitBatch(ids2(id1, id2), hs, ss);
        assertState(id1, IJobMarket.JobState.Assigned);
    }

    // ---------------------------------------------------------------- reveal

    function test_reveal() public {
        uint256 id = revealingTrio();
        vm.expectEmit(address(market));
        emit IJobMarket.ResultRevealed(id, b, GOOD);
        revealAs(b, id, GOOD);
        assertEq(market.revealedDigest(id, 1), GOOD);
        assertEq(market.revealedDigest(id, 0), bytes32(0));
        assertEq(uint256(market.job(id).revealMask), 2);
        assertState(id, IJobMarket.JobState.Revealing);
    }

    function test_reveal_atDeadline() public {
        uint256 id = revealingTrio();
        vm.warp(deadlineOf(id));
        revealAs(a, id, GOOD);
        assertEq(uint256(market.job(id).revealMask), 1);
    }

    function test_reveal_revertsAfterDeadline() public {
        uint256 id = revealingTrio();
        uint256 deadline = deadlineOf(id);
        vm.warp(deadline + 1);
        vm.prank(a);
        vm.expectRevert(passed(id, deadline));
        market.reveal(id, GOOD);
    }

    function test_reveal_revertsBeforeRevealPhase() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_REVEALING));
        market.reveal(id, GOOD);
    }

    function test_reveal_revertsCommittedSingleReplica() public {
        uint256 id = committedJob(a);
        vm.prank(a);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Committed, S_REVEALING));
        market.reveal(id, GOOD);
    }

    function test_reveal_revertsWrongDigest() public {
        uint256 id = revealingTrio();
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, a));
        market.reveal(id, BAD);
        assertEq(uint256(market.job(id).revealMask), 0);
    }

    function test_reveal_revertsTwice() public {
        uint256 id = revealingTrio();
        revealAs(a, id, GOOD);
        vm.prank(a);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToReveal.selector, id, a));
        market.reveal(id, GOOD);
    }

    function test_reveal_revertsStranger() public {
        uint256 id = revealingTrio();
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToReveal.selector, id, keeper));
        market.reveal(id, GOOD);
    }

    function test_reveal_revertsNoShowAfterExpiry() public {
        uint256 id = trioJob();
        commitAs(a, id, GOOD);
        commitAs(b, id, GOOD);
        skipTime(1 hours + 1);
        market.expire(id); // c slashed, the rest reveal
        assertState(id, IJobMarket.JobState.Revealing);
        vm.prank(c);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNothingToReveal.selector, id, c));
        market.reveal(id, GOOD);
    }

    /// The copycat copies the victim's resultHash and seal from its ResultCommitted event. The seal
    /// binds the victim's address, so the copy can never be revealed by the copycat.
    function test_copycat_cannotReveal() public {
        uint256 id = trioJob();
        bytes32 rh = JobLib.resultHash(id, GOOD);
        bytes32 seal = JobLib.seal(a, id, GOOD);
        vm.prank(a);
        market.commit(id, rh, seal);
        vm.prank(b);
        market.commit(id, rh, seal); // the copy is accepted as a commitment ...
        assertEq(uint256(market.participants(id)[1].commitment), uint256(market.participants(id)[0].commitment));
        commitAs(c, id, GOOD);
        revealAs(a, id, GOOD); // ... and even once the digest is public ...
        vm.prank(b);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, b));
        market.reveal(id, GOOD); // ... the copycat cannot open it
        revealAs(c, id, GOOD);
        skipTime(10 minutes + 1);
        uint256 supply = token.totalSupply();
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(registry.provider(b).stake, PROVIDER_STAKE - COLLATERAL, "copycat slashed");
        assertEq(market.credits(b), 0);
        uint256 reward = COLLATERAL * 3000 / BPS;
        assertEq(market.credits(a), PAY + reward / 2);
        assertEq(market.credits(c), PAY + reward / 2);
        assertEq(supply - token.totalSupply(), COLLATERAL - reward, "burned: a non-revealer compensates nobody");
    }

    function testFuzz_copycat_cannotReveal(address copycat, bytes32 digest, bytes32 guess) public {
        vm.assume(copycat != address(0) && copycat.code.length == 0 && !registry.provider(copycat).registered);
        // The copycat commits a's exact resultHash and seal; no digest opens it for the copycat.
        vm.assume(copycat != requester);
        address[] memory ps = three(a, copycat, c);
        vm.prank(owner);
        token.mint(copycat, PROVIDER_STAKE);
        vm.startPrank(copycat);
        registry.register(terms(PRICE, 80));
        token.approve(address(registry), PROVIDER_STAKE);
        registry.stake(PROVIDER_STAKE);
        vm.stopPrank();
        uint256 id = createJob(3);
        assignJob(id, ps);
        bytes32 rh = JobLib.resultHash(id, digest);
        bytes32 seal = JobLib.seal(a, id, digest);
        vm.prank(a);
        market.commit(id, rh, seal);
        vm.prank(copycat);
        market.commit(id, rh, seal);
        commitAs(c, id, digest);
        revealAs(a, id, digest);
        vm.prank(copycat);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, copycat));
        market.reveal(id, digest);
        vm.prank(copycat);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, copycat));
        market.reveal(id, guess);
    }

    function testFuzz_reveal_matchesOnlyCommittedDigest(bytes32 committed, bytes32 revealed) public {
        uint256 id = trioJob();
        commitAs(a, id, committed);
        commitAs(b, id, committed);
        commitAs(c, id, committed);
        vm.prank(a);
        if (committed != revealed) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketRevealMismatch.selector, id, a));
            market.reveal(id, revealed);
            return;
        }
        market.reveal(id, revealed);
        assertEq(market.revealedDigest(id, 0), committed);
    }

    function testFuzz_commit_timing(uint256 dt) public {
        dt = bound(dt, 0, 2 hours);
        uint256 id = assignedJob(a);
        uint256 deadline = deadlineOf(id);
        vm.warp(block.timestamp + dt);
        bytes32 rh = JobLib.resultHash(id, GOOD);
        bytes32 seal = JobLib.seal(a, id, GOOD);
        vm.prank(a);
        if (block.timestamp > deadline) {
            vm.expectRevert(passed(id, deadline));
            market.commit(id, rh, seal);
            return;
        }
        market.commit(id, rh, seal);
        assertState(id, IJobMarket.JobState.Committed);
    }
}
