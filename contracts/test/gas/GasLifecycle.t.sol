// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {MarketFixture} from "../utils/MarketFixture.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice One test per lifecycle path, unbatched and in batches of 20: `forge snapshot` records
/// each path's gas in .gas-snapshot, and every test also records gas per job in snapshots/.
/// Setup (providers registered and staked, earlier jobs settled so balances are warm, as on a
/// running market) happens in setUp and is not measured.
contract GasLifecycleTest is MarketFixture {
    uint256 internal constant BATCH = 20;
    bytes32 internal constant GOOD = keccak256("correct output");
    bytes32 internal constant BAD = keccak256("fabricated output");
    bytes32 internal constant OTHER = keccak256("another output");

    address internal p0;
    address[] internal trio;

    function setUp() public override {
        super.setUp();
        p0 = newProvider("p0", PRICE);
        trio.push(p0);
        trio.push(newProvider("p1", PRICE));
        trio.push(newProvider("p2", PRICE));
        // Stake enough providers for the drawn verifiers of two rounds (3, then 7 fresh ones).
        address[] memory verifiers = stakeVerifiers(12);
        // Unaudited paths steer the commit block's hash to one the draw does not select
        // (auditBps cannot be 0 in v2); the audited ones set auditBps to 10000.
        setAuditBps(0);
        // A steady-state market: every account already holds a credit, the pools are non-zero.
        uint256 id = createJob(1);
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        // Every other provider has served a job too, so it holds a credit and the market's account
        // id (assigned once per account, on its first seat; that one-time cost is not per job).
        uint256[] memory warm = new uint256[](2 + verifiers.length);
        for (uint256 i; i < warm.length; ++i) {
            address p = i < 2 ? trio[i + 1] : verifiers[i - 2];
            warm[i] = createJob(1);
            assignJob(warm[i], one(p));
            commitAs(p, warm[i], GOOD);
        }
        skipTime(10 minutes + 1);
        market.finalizeBatch(warm);
    }

    // ---------------------------------------------------------------- replicas = 1, optimistic

    function test_gas_replicas1_settled() public {
        vm.startSnapshotGas("replicas1_settled_per_job");
        uint256 id = _create1();
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    function test_gas_replicas1_settled_batch20() public {
        IJobMarket.JobRequest[] memory reqs = _requests(1);
        vm.startSnapshotGas("replicas1_settled_batch20");
        vm.prank(requester);
        uint256 first = market.createJobs(reqs);
        (uint256[] memory ids, address[][] memory ps) = _batch(first, one(p0));
        vm.prank(matcher);
        market.assignBatch(ids, ps);
        _commitBatch(p0, ids, GOOD);
        skipTime(10 minutes + 1);
        market.finalizeBatch(ids);
        uint256 gasUsed = vm.stopSnapshotGas();
        vm.snapshotValue("replicas1_settled_batch20_per_job", gasUsed / BATCH);
        assertEq(uint8(market.state(ids[BATCH - 1])), uint8(IJobMarket.JobState.Settled));
    }

    // ---------------------------------------------------------------- replicas = 3, majority

    function test_gas_replicas3_honest() public {
        vm.startSnapshotGas("replicas3_honest_per_job");
        uint256 id = createJob(3);
        assignJob(id, trio);
        for (uint256 i; i < 3; ++i) commitAs(trio[i], id, GOOD);
        for (uint256 i; i < 3; ++i) revealAs(trio[i], id, GOOD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    function test_gas_replicas3_honest_batch20() public {
        IJobMarket.JobRequest[] memory reqs = _requests(3);
        vm.startSnapshotGas("replicas3_honest_batch20");
        vm.prank(requester);
        uint256 first = market.createJobs(reqs);
        (uint256[] memory ids, address[][] memory ps) = _batch(first, trio);
        vm.prank(matcher);
        market.assignBatch(ids, ps);
        for (uint256 i; i < 3; ++i) _commitBatch(trio[i], ids, GOOD);
        for (uint256 k; k < BATCH; ++k) {
            for (uint256 i; i < 3; ++i) revealAs(trio[i], ids[k], GOOD);
        }
        market.finalizeBatch(ids);
        uint256 gasUsed = vm.stopSnapshotGas();
        vm.snapshotValue("replicas3_honest_batch20_per_job", gasUsed / BATCH);
    }

    /// @notice v2: a disagreement among replicas is decided by 3 drawn verifiers.
    function test_gas_replicas3_oneWrong() public {
        vm.startSnapshotGas("replicas3_one_wrong_per_job");
        uint256 id = createJob(3);
        assignJob(id, trio);
        commitAs(trio[0], id, GOOD);
        commitAs(trio[1], id, GOOD);
        commitAs(trio[2], id, BAD);
        revealAs(trio[0], id, GOOD);
        revealAs(trio[1], id, GOOD);
        revealAs(trio[2], id, BAD);
        market.finalize(id);
        _auditWith(id, GOOD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(registry.provider(trio[2]).jobsSlashed, 1);
    }

    // ---------------------------------------------------------------- audits and challenges

    function test_gas_replicas1_audited_cheater() public {
        setAuditBps(10_000);
        vm.startSnapshotGas("replicas1_audited_cheater_per_job");
        uint256 id = _create1();
        assignJob(id, one(p0));
        commitAs(p0, id, BAD);
        nextBlock();
        market.drawAudit(id);
        _auditWith(id, GOOD);
        revealAs(p0, id, BAD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Refunded));
    }

    function test_gas_replicas1_challenge_lost() public {
        vm.startSnapshotGas("replicas1_challenge_lost_per_job");
        uint256 id = _create1();
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        vm.prank(requester);
        market.challenge(id);
        _auditWith(id, GOOD);
        revealAs(p0, id, GOOD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    /// @notice Round 1's verifiers split 1-1-1 (no majority): 7 fresh verifiers decide.
    function test_gas_replicas1_escalated() public {
        setAuditBps(10_000);
        vm.startSnapshotGas("replicas1_escalated_per_job");
        uint256 id = _create1();
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        nextBlock();
        market.drawAudit(id);
        address[] memory vs = staffRound(id);
        commitAs(vs[0], id, GOOD);
        commitAs(vs[1], id, BAD);
        commitAs(vs[2], id, OTHER);
        revealAs(p0, id, GOOD);
        revealAs(vs[0], id, GOOD);
        revealAs(vs[1], id, BAD);
        revealAs(vs[2], id, OTHER);
        market.finalize(id);
        _auditWith(id, GOOD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    /// @notice A challenge nobody can staff (p0 is the only provider of a new profile): the keeper's
    /// draw finds nobody, the round times out, no verdict: refund, p0 released unpaid.
    function test_gas_replicas1_unstaffed_refund() public {
        vm.prank(owner);
        uint8 lonely = registry.addProfile(keccak256("lonely"));
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.profileMask |= uint256(1) << lonely;
        vm.prank(p0);
        registry.updateTerms(t);
        IJobMarket.JobRequest memory r = request(1);
        r.profile = lonely;
        vm.startSnapshotGas("replicas1_unstaffed_refund_per_job");
        vm.prank(requester);
        uint256 id = market.createJob(r);
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        vm.prank(requester);
        market.challenge(id);
        nextBlock();
        market.staffAudit(id);
        skipTime(10 minutes + 1);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Refunded));
    }

    // ---------------------------------------------------------------- no-show

    function test_gas_noShow_reopened_settled() public {
        vm.startSnapshotGas("no_show_reopened_settled_per_job");
        uint256 id = _create1();
        assignJob(id, one(trio[2]));
        skipTime(1 hours + 1);
        market.expire(id);
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    // ---------------------------------------------------------------- release

    /// @notice The executor hands the job back before its deadline; the reopened job settles.
    function test_gas_released_reopened_settled() public {
        vm.startSnapshotGas("released_reopened_settled_per_job");
        uint256 id = _create1();
        assignJob(id, one(trio[2]));
        vm.prank(trio[2]);
        market.release(id);
        assignJob(id, one(p0));
        commitAs(p0, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    /// @notice One of three replicas releases after the other two committed: the reveal starts.
    function test_gas_replicas3_oneReleased() public {
        vm.startSnapshotGas("replicas3_one_released_per_job");
        uint256 id = createJob(3);
        assignJob(id, trio);
        commitAs(trio[0], id, GOOD);
        commitAs(trio[1], id, GOOD);
        vm.prank(trio[2]);
        market.release(id);
        revealAs(trio[0], id, GOOD);
        revealAs(trio[1], id, GOOD);
        market.finalize(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Settled));
    }

    /// @notice The release transaction alone: fee to the pool, the rest unlocked, the job reopened.
    function test_gas_release_tx() public {
        uint256 id = _create1();
        assignJob(id, one(trio[2]));
        vm.startSnapshotGas("release_reopen_tx");
        vm.prank(trio[2]);
        market.release(id);
        vm.stopSnapshotGas();
        assertEq(uint8(market.state(id)), uint8(IJobMarket.JobState.Open));
    }

    function test_gas_expired_unassigned_batch20() public {
        IJobMarket.JobRequest[] memory reqs = _requests(1);
        vm.startSnapshotGas("expired_unassigned_batch20");
        vm.prank(requester);
        uint256 first = market.createJobs(reqs);
        (uint256[] memory ids,) = _batch(first, one(p0));
        skipTime(1 hours + 1);
        market.expireBatch(ids);
        uint256 gasUsed = vm.stopSnapshotGas();
        vm.snapshotValue("expired_unassigned_batch20_per_job", gasUsed / BATCH);
    }

    // ---------------------------------------------------------------- helpers

    function _create1() private returns (uint256) {
        return createJob(1);
    }

    function _requests(uint8 replicas) private pure returns (IJobMarket.JobRequest[] memory reqs) {
        reqs = new IJobMarket.JobRequest[](BATCH);
        for (uint256 i; i < BATCH; ++i) reqs[i] = request(replicas);
    }

    function _batch(uint256 first, address[] memory providers)
        private
        pure
        returns (uint256[] memory ids, address[][] memory ps)
    {
        ids = new uint256[](BATCH);
        ps = new address[][](BATCH);
        for (uint256 i; i < BATCH; ++i) {
            ids[i] = first + i;
            ps[i] = providers;
        }
    }

    function _commitBatch(address p, uint256[] memory ids, bytes32 digest) private {
        bytes32[] memory hashes = new bytes32[](ids.length);
        bytes32[] memory seals = new bytes32[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            hashes[i] = JobLib.resultHash(ids[i], digest);
            seals[i] = JobLib.seal(p, ids[i], digest);
        }
        vm.prank(p);
        market.commitBatch(ids, hashes, seals);
    }

    /// @dev Staffs the current round (the block after its seed block, then `staffAudit`) and has
    /// every drawn verifier commit and reveal `digest`.
    function _auditWith(uint256 id, bytes32 digest) private {
        address[] memory vs = staffRound(id);
        for (uint256 i; i < vs.length; ++i) commitAs(vs[i], id, digest);
        for (uint256 i; i < vs.length; ++i) revealAs(vs[i], id, digest);
    }
}
