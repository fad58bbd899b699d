// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";

/// @notice One regression test per attack of the adversarial review that led to protocol v2, each
/// showing the attack is now impossible or unprofitable (balances and slashes, not only reverts).
contract AttacksTest is UnitBase {
    uint256 internal constant REWARD = COLLATERAL * 3000 / BPS;

    address internal exec;
    address[] internal honest;

    function setUp() public override {
        super.setUp();
        exec = newProvider("exec", PRICE);
        address[] memory l = stakeVerifiers(12);
        for (uint256 i; i < l.length; ++i) honest.push(l[i]);
    }

    function challenged(address executor, bytes32 digest) internal returns (uint256 id) {
        setAuditBps(0);
        id = assignedJob(executor);
        commitAs(executor, id, digest);
        vm.prank(requester);
        market.challenge(id);
    }

    function newSybil(string memory name, uint96 amount) internal returns (address s) {
        s = makeAddr(name);
        vm.prank(owner);
        token.mint(s, amount);
        vm.startPrank(s);
        registry.register(terms(PRICE, 80));
        token.approve(address(registry), amount);
        registry.stake(amount);
        vm.stopPrank();
    }

    function contains(address[] memory l, address a) internal pure returns (bool) {
        for (uint256 i; i < l.length; ++i) {
            if (l[i] == a) return true;
        }
        return false;
    }

    // ================================================================ 1. tied audit vote

    /// @notice v1: executor + verifiers voted together, so two verifiers could tie a 4-party vote.
    /// v2: only the odd number of drawn verifiers votes; two liars with different lies are no
    /// majority (escalation, not a slash); an executor with one colluding verifier is out-voted
    /// and both are slashed; even replica and verifier counts are rejected.
    function test_Attack1_TiedAuditVote() public {
        // (a) Two lying verifiers (BAD, OTHER) vs one honest: no majority, so round 2 decides.
        uint256 id = challenged(exec, GOOD);
        address[] memory r1 = staffRound(id);
        commitAs(r1[0], id, GOOD);
        commitAs(r1[1], id, BAD);
        commitAs(r1[2], id, OTHER);
        revealAs(exec, id, GOOD);
        revealAs(r1[0], id, GOOD);
        revealAs(r1[1], id, BAD);
        revealAs(r1[2], id, OTHER);
        market.finalize(id);
        assertEq(uint256(market.job(id).round), 2, "no tie-break against the executor: escalation");
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "executor untouched");
        address[] memory r2 = staffAndCommit(id, GOOD);
        revealAll(r2, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "honest executor never slashed");
        assertEq(registry.provider(r1[1]).stake, PROVIDER_STAKE - COLLATERAL, "liar slashed");
        assertEq(registry.provider(r1[2]).stake, PROVIDER_STAKE - COLLATERAL, "liar slashed");

        // (b) A lazy executor and one colluding verifier cannot escape two honest ones.
        address lazy = newProvider("lazy", PRICE);
        uint256 id2 = challenged(lazy, BAD);
        address[] memory vs = staffRound(id2);
        commitAs(vs[0], id2, BAD); // the accomplice
        commitAs(vs[1], id2, GOOD);
        commitAs(vs[2], id2, GOOD);
        revealAs(lazy, id2, BAD);
        revealAs(vs[0], id2, BAD);
        revealAs(vs[1], id2, GOOD);
        revealAs(vs[2], id2, GOOD);
        market.finalize(id2);
        // A split round-1 majority against the executor escalates; 7 fresh verifiers confirm it.
        assertEq(uint256(market.job(id2).round), 2);
        address[] memory r2b = staffAndCommit(id2, GOOD);
        revealAll(r2b, id2, GOOD);
        market.finalize(id2);
        assertState(id2, IJobMarket.JobState.Refunded);
        assertEq(registry.provider(lazy).stake, PROVIDER_STAKE - COLLATERAL, "cheater slashed");
        assertEq(registry.provider(vs[0]).stake + COLLATERAL, PROVIDER_STAKE, "accomplice slashed");
        assertEq(market.credits(lazy), 0, "cheater unpaid");

        // (c) Odd counts only: no 2- or 4-party vote can exist.
        vm.startPrank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, uint8(2)));
        market.createJob(req(UNITS, PRICE, 2));
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, uint8(4)));
        market.createJob(req(UNITS, PRICE, 4));
        vm.stopPrank();
        IJobMarket.Params memory p = defaultParams();
        p.verifiers = 2;
        vm.prank(owner);
        vm.expectRevert(invalidParams("verifiers not 1, 3 or 5"));
        market.setParams(p);
    }

    // ================================================================ 2. exec window no-show

    /// @notice v1: a requester set a 1-second exec window, turning an honest assignment into a
    /// slashable no-show (and pocketed the compensation). v2: a protocol floor at create, the
    /// provider's own minimum at assign, verifier windows from the parameters, and no-show slashes
    /// never credit the requester.
    function test_Attack2_RequesterExecWindowNoShow() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.execWindow = 1;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobMarketInvalidWindow.selector, uint32(1), uint32(60), uint32(1 days))
        );
        market.createJob(r);

        // At the floor, but below the provider's registered minimum: not assignable to it.
        IProviderRegistry.Terms memory t = terms(PRICE, 80);
        t.minExecWindow = 10 minutes;
        vm.prank(exec);
        registry.updateTerms(t);
        r.execWindow = 60;
        uint256 id = createReq(r);
        vm.prank(matcher);
        vm.expectRevert(
            abi.encodeWithSelector(
                IProviderRegistry.ProviderRegistryExecWindowTooShort.selector, exec, uint32(60), uint32(10 minutes)
            )
        );
        market.assign(id, one(exec));

        // Verifiers run on the protocol's window, not the job's 60 s.
        address quick = newProvider("quick", PRICE);
        assignJob(id, one(quick));
        commitAs(quick, id, GOOD);
        vm.prank(requester);
        market.challenge(id);
        staffRound(id);
        assertEq(deadlineOf(id), block.timestamp + market.params().verifierExecWindow, "verifierExecWindow");

        // A no-show is slashed, but the requester gets nothing from it.
        address ghost = newProvider("ghost", PRICE);
        uint256 id2 = createJob(1);
        assignJob(id2, one(ghost));
        uint256 before = market.credits(requester);
        skipTime(1 hours + 1);
        market.expire(id2);
        assertEq(registry.provider(ghost).stake, PROVIDER_STAKE - COLLATERAL, "no-show slashed");
        assertEq(market.credits(requester), before, "the requester earns nothing from a no-show");
        skipTime(30 minutes + 1);
        market.expire(id2);
        assertEq(market.credits(requester) - before, ESCROW1, "only its own escrow back");
    }

    // ================================================================ 3. audit pool drain

    /// @notice v1: verifiers were paid units x the requester's max price from the pool, so a
    /// requester with a huge max price and its own verifiers drained it. v2: verifier pay and
    /// collateral are at the clearing price (the executor's ask), whatever the max price.
    function test_Attack3_AuditPoolDrain() public {
        fundPoolBySlash();
        fundPoolBySlash();
        fundPoolBySlash(); // 9 PAY in the pool
        setAuditBps(10_000);
        uint80 huge = PRICE * 1000;
        uint256 id = createReq(req(UNITS, huge, 1));
        uint256 escrow = market.escrowFor(req(UNITS, huge, 1));
        assignJob(id, one(exec));
        assertEq(registry.provider(exec).locked, COLLATERAL, "collateral at the clearing price");
        commitAs(exec, id, GOOD);
        nextBlock();
        assertTrue(market.drawAudit(id));
        address[] memory vs = staffAndCommit(id, GOOD);
        for (uint256 i; i < 3; ++i) assertEq(registry.provider(vs[i]).locked, COLLATERAL);
        revealAs(exec, id, GOOD);
        revealAll(vs, id, GOOD);
        uint256 pool = market.auditPool();
        uint256 credited = market.credits(requester);
        market.finalize(id);
        uint256 premium = PAY * 10_000 * 3 / BPS; // auditBps 10000 x 3 verifiers, on the clearing pay
        for (uint256 i; i < 3; ++i) assertEq(market.credits(vs[i]), PAY, "units x clearing price, not x max price");
        assertEq(pool + FEE / 2 + premium - market.auditPool(), 3 * PAY, "the pool paid 3 x PAY, no more");
        assertTrue(market.auditPool() >= pool, "the job's own premium refilled what its audit cost");
        assertEq(market.credits(requester) - credited, escrow - PAY - FEE - premium, "unspent escrow back");
    }

    // ================================================================ 4. sybil verifiers

    /// @notice v1: the matcher (or a requester feeding it) named the verifiers. v2: there is no
    /// function to name them; draws are stake-weighted, so sybils with a minority of the stake
    /// get a proportional share of seats, and when they lie from a minority of a round they are
    /// slashed while the honest executor is upheld.
    function test_Attack4_SybilVerifiers() public {
        address[] memory sybils = new address[](5);
        for (uint256 i; i < 5; ++i) sybils[i] = newSybil(string.concat("sybil-", vm.toString(i)), 800e18);
        nextEpoch(); // draws weigh stake from the start of an epoch
        uint256 id0 = challenged(exec, GOOD);
        (bool ok,) = address(market).call(
            abi.encodeWithSignature("assignVerifiers(uint256,address[])", id0, three(honest[0], honest[1], honest[2]))
        );
        assertFalse(ok, "nobody can name verifiers");
        // Drawable stake: 12 x 1000 honest (the executor is excluded) + 5 x 800 sybil = 25% sybil.
        uint256 sybilSeats;
        uint256 seats;
        uint256 lyingSeats;
        for (uint256 j; j < 30; ++j) {
            uint256 id = j == 0 ? id0 : challenged(exec, GOOD);
            address[] memory vs = staffRound(id);
            uint256 mine;
            for (uint256 i; i < 3; ++i) {
                if (contains(sybils, vs[i])) ++mine;
            }
            sybilSeats += mine;
            seats += 3;
            if (mine * 2 > 3) {
                // A sybil majority of this round: not the minority case; the honest run it.
                for (uint256 i; i < 3; ++i) commitAs(vs[i], id, GOOD);
                revealAs(exec, id, GOOD);
                revealAll(vs, id, GOOD);
                market.finalize(id);
                continue;
            }
            uint256 before = _sum(sybils);
            for (uint256 i; i < 3; ++i) commitAs(vs[i], id, contains(sybils, vs[i]) ? BAD : GOOD);
            revealAs(exec, id, GOOD);
            for (uint256 i; i < 3; ++i) revealAs(vs[i], id, contains(sybils, vs[i]) ? BAD : GOOD);
            market.finalize(id);
            assertState(id, IJobMarket.JobState.Settled);
            assertEq(_sum(sybils), before, "a minority lie is neither paid nor slashed");
            lyingSeats += mine;
        }
        // Seats follow stake (25% expected; 90 seats).
        assertGt(sybilSeats * 100, seats * 10, "sybils drawn in proportion to stake (not never)");
        assertLt(sybilSeats * 100, seats * 40, "sybils drawn in proportion to stake (not more)");
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "the honest executor was never slashed");
        // An outvoted round-1 verifier is released unpaid (never slashed for what it revealed, so two
        // colluding seats cannot slash an honest third): a minority lie earns nothing.
        uint256 sybilStake;
        for (uint256 i; i < 5; ++i) sybilStake += registry.provider(sybils[i]).stake;
        assertGt(lyingSeats, 0, "some rounds had a lying sybil minority");
        assertEq(sybilStake, 5 * 800e18, "outvoted round-1 verifiers keep their stake");
    }

    /// @dev Stake plus withdrawable credits of `accounts`.
    function _sum(address[] memory accounts) private view returns (uint256 total) {
        for (uint256 i; i < accounts.length; ++i) {
            total += registry.provider(accounts[i]).stake + market.credits(accounts[i]);
        }
    }

    /// @notice Two colluding seats of a three-seat round cannot slash the honest third: a lazy
    /// executor and two verifiers reveal the same wrong digest, the third reveals the truth. The
    /// wrong majority stands (it upholds the executor), but the outvoted honest verifier keeps its
    /// stake; only the 2k + 1 round slashes verifiers for what they reveal.
    function test_Attack4_ColludingPairCannotSlashHonestVerifier() public {
        uint256 id = challenged(exec, BAD);
        address[] memory vs = staffRound(id);
        address honestOne = vs[2];
        uint256 honestStake = registry.provider(honestOne).stake;
        commitAs(vs[0], id, BAD);
        commitAs(vs[1], id, BAD);
        commitAs(honestOne, id, GOOD);
        revealAs(exec, id, BAD);
        revealAs(vs[0], id, BAD);
        revealAs(vs[1], id, BAD);
        revealAs(honestOne, id, GOOD);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(registry.provider(honestOne).stake, honestStake, "the outvoted honest verifier keeps its stake");
        assertEq(registry.provider(honestOne).locked, 0, "and its collateral is released");
    }

    // ================================================================ 5. lazy executor

    /// @notice v1: at the defaults a lazy executor (commits garbage, never computes) profited.
    /// v2 bounds auditBps x (1 + collateralMultiple) >= 10000. Expected lazy profit per job is
    /// computed from the contract's own numbers: the audit frequency of its draw over many seeds,
    /// and the pay and slash it actually applies.
    function test_Attack5_LazyUnprofitableAtDefaults() public {
        IJobMarket.Params memory p = market.params();
        assertGe(uint256(p.auditBps) * (1 + p.collateralMultiple), BPS, "the bound holds at the defaults");
        IJobMarket.Params memory weak = defaultParams();
        weak.auditBps = 909; // 909 x 11 = 9999: a lazy executor would profit
        vm.prank(owner);
        vm.expectRevert(invalidParams("auditBps x (1 + collateralMultiple) below 10000"));
        market.setParams(weak);

        // What the contract pays a lazy executor when unaudited and takes when audited.
        address lazy = newProvider("lazy", PRICE);
        uint256 paid;
        uint256 slashed;
        uint256 lazyJobs;
        uint256 audits;
        for (uint256 j; j < 40; ++j) {
            uint256 id = assignedJob(lazy);
            vm.roll(block.number + 1 + j % 7); // commit blocks (and so hashes) vary
            commitAs(lazy, id, BAD);
            nextBlock();
            uint256 stakeBefore = registry.provider(lazy).stake;
            uint256 creditBefore = market.credits(lazy);
            if (market.drawAudit(id)) {
                ++audits;
                address[] memory vs = staffAndCommit(id, GOOD);
                revealAs(lazy, id, BAD);
                revealAll(vs, id, GOOD);
                market.finalize(id);
            } else {
                skipTime(10 minutes + 1);
                market.finalize(id);
            }
            slashed += stakeBefore - registry.provider(lazy).stake;
            paid += market.credits(lazy) - creditBefore;
            ++lazyJobs;
        }
        assertEq(paid, (lazyJobs - audits) * PAY, "unaudited: paid units x clearing price");
        assertEq(slashed, audits * COLLATERAL, "audited: the whole collateral slashed");

        // The draw's frequency over many seeds (block-hash variety at the commit block).
        uint256 id2 = assignedJob(lazy);
        commitAs(lazy, id2, BAD);
        uint256 commitBlock = block.number;
        nextBlock();
        uint256 n = 20_000;
        uint256 selected;
        for (uint256 i; i < n; ++i) {
            vm.setBlockhash(commitBlock, keccak256(abi.encode("seed", i)));
            if (market.auditSelected(id2)) ++selected;
        }
        // Expected profit per job = (1 - q) x pay - q x collateral, at the observed q.
        int256 expected =
            int256((n - selected) * PAY) - int256(selected * COLLATERAL);
        assertTrue(expected <= 0, "expected lazy profit <= 0");
        uint256 target = n * p.auditBps / BPS;
        assertTrue(selected + n / 50 >= target && selected <= target + n / 50, "the draw's rate is auditBps");
    }

    // ================================================================ 6. unstaffed audit

    /// @notice v1: an audit nobody staffed settled unverified and paid a cheater. v2: no verdict,
    /// no pay: the requester is refunded, the executor released unslashed and unpaid.
    function test_Attack6_UnstaffedAuditRefunds() public {
        for (uint256 i; i < honest.length; ++i) {
            vm.prank(honest[i]);
            registry.requestUnbond(uint96(PROVIDER_STAKE)); // nobody drawable
        }
        vm.prank(exec);
        registry.requestUnbond(uint96(PROVIDER_STAKE));
        address cheater = newProvider("cheater", PRICE);
        uint256 id = challenged(cheater, BAD);
        nextBlock();
        assertEq(market.staffAudit(id), 0, "no verifier drawable");
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Refunded);
        assertEq(market.credits(cheater), 0, "executor unpaid");
        assertEq(registry.provider(cheater).stake, PROVIDER_STAKE, "and unslashed (no verdict)");
        assertEq(registry.provider(cheater).locked, 0);
        assertEq(market.credits(requester), ESCROW1 + BOND, "escrow and bond back");
    }

    // ================================================================ 7. keeper griefing

    /// @notice v1: waiting 256 blocks forced an audit (or a griefer changed one job's state and a
    /// keeper's whole batch reverted). v2: an aged draw re-seeds from a later block instead of
    /// being decided, and every batch skips an item that reverts.
    function test_Attack7_KeeperGriefing() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.roll(block.number + 300);
        assertFalse(market.drawAudit(id), "aged: re-seeded, not forced");
        assertState(id, IJobMarket.JobState.Committed);
        assertEq(uint256(market.job(id).flags) & 8, 8);
        steerDraw(id, false);
        nextBlock();
        assertFalse(market.drawAudit(id));
        // The same for a verifier draw.
        uint256 a1 = challenged(newProvider("e1", PRICE), GOOD);
        vm.roll(block.number + 300);
        assertEq(market.staffAudit(a1), 0, "re-seeded");
        nextBlock();
        assertEq(market.staffAudit(a1), 3);

        // One changed item never reverts a batch.
        address e2 = newProvider("e2", PRICE);
        uint256 open1 = createJob(1);
        uint256 open2 = createJob(1);
        vm.prank(requester);
        market.cancel(open2); // the griefed item
        address[][] memory lists = new address[][](2);
        lists[0] = one(e2);
        lists[1] = one(e2);
        vm.prank(matcher);
        market.assignBatch(ids2(open2, open1), lists);
        assertState(open1, IJobMarket.JobState.Assigned);

        uint256 c1 = committedJob(newProvider("e3", PRICE));
        uint256 c2 = committedJob(newProvider("e4", PRICE));
        nextBlock();
        vm.prank(requester);
        market.challenge(c2); // c2 is no longer Committed
        market.drawAudits(ids2(c2, c1));
        assertEq(uint256(market.job(c1).flags) & 4, 4, "c1 drawn");
        nextBlock();
        market.staffAudits(ids2(c1, c2)); // c1 is not Auditing
        assertEq(uint256(market.job(c2).participants), 4, "c2 staffed");
        skipTime(10 minutes + 1);
        market.finalizeBatch(ids2(open2, c1)); // open2 was cancelled
        assertState(c1, IJobMarket.JobState.Settled);
        uint256 o3 = createJob(1);
        skipTime(1 hours + 1);
        market.expireBatch(ids2(c1, o3)); // c1 is settled
        assertState(o3, IJobMarket.JobState.Expired);
    }

    // ================================================================ 8. zero-fee farming

    /// @notice v1: near-zero-price jobs (possibly to oneself) farmed reputation (jobsDone) for
    /// free. v2: every settled job pays at least minFee.
    function testFuzz_Attack8_ZeroFeeReputationFarming(uint80 price, uint32 units) public {
        price = uint80(bound(price, 1, PRICE));
        units = uint32(bound(units, 1, 1000));
        setAuditBps(0);
        address farmer = newProvider("farmer", price);
        uint256 before = market.auditPool() + market.protocolFees();
        uint256 id = createReq(req(units, price, 1));
        assignJob(id, one(farmer));
        commitAs(farmer, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Settled);
        uint256 pay = uint256(units) * price;
        uint256 charged = market.auditPool() + market.protocolFees() - before;
        assertGe(charged, 1e14, "at least minFee per settled job");
        assertEq(charged, feeOf(pay) + premiumOf(pay));
    }

    function test_Attack8_ZeroFeeReputationFarming() public {
        setAuditBps(0);
        address farmer = newProvider("farmer", 1);
        uint256 id = createReq(req(1, 1, 1)); // a 1-wei job
        assertEq(market.escrowFor(req(1, 1, 1)), 1 + 1e14, "the floor is escrowed up front");
        assignJob(id, one(farmer));
        commitAs(farmer, id, GOOD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertEq(market.auditPool() + market.protocolFees(), 1e14, "a job of 1 wei still pays 1e14");
        assertEq(uint256(registry.provider(farmer).jobsDone), 1);
    }

    // ================================================================ invariant 11

    /// @notice An honest executor who commits and reveals the right digest is never slashed,
    /// whatever a challenging requester and a minority of lying (or absent) verifiers do, in
    /// either round.
    function testFuzz_HonestExecutorNeverSlashed(uint8 liar, bytes32 lie, bool liarNoShow, uint8 round2Liars)
        public
    {
        vm.assume(lie != GOOD);
        liar = uint8(bound(liar, 0, 2));
        round2Liars = uint8(bound(round2Liars, 0, 3)); // a minority of 7
        uint256 id = challenged(exec, GOOD);
        address[] memory r1 = staffRound(id);
        for (uint256 i; i < 3; ++i) {
            if (i == liar && liarNoShow) continue;
            commitAs(r1[i], id, i == liar ? lie : GOOD);
        }
        if (liarNoShow) {
            skipTime(30 minutes + 1);
            market.finalize(id);
        }
        revealAs(exec, id, GOOD);
        for (uint256 i; i < 3; ++i) {
            if (i == liar && liarNoShow) continue;
            revealAs(r1[i], id, i == liar ? lie : GOOD);
        }
        market.finalize(id);
        if (market.state(id) == IJobMarket.JobState.Auditing) {
            // Only one honest reveal of three seats (a no-show): round 2.
            address[] memory r2 = staffRound(id);
            for (uint256 i; i < 7; ++i) commitAs(r2[i], id, i < round2Liars ? lie : GOOD);
            for (uint256 i; i < 7; ++i) revealAs(r2[i], id, i < round2Liars ? lie : GOOD);
            market.finalize(id);
        }
        assertState(id, IJobMarket.JobState.Settled);
        assertEq(registry.provider(exec).stake, PROVIDER_STAKE, "never slashed");
        assertEq(market.credits(exec) >= PAY, true, "paid");
    }
}
