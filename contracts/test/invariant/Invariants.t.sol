// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "../utils/Test.sol";
import {ComputeToken} from "../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {GhostLedger} from "./handlers/GhostLedger.sol";
import {JobMarketHandler} from "./handlers/JobMarketHandler.sol";
import {RegistryHandler} from "./handlers/RegistryHandler.sol";
import {AdversaryHandler} from "./handlers/AdversaryHandler.sol";
import {HonestyOracle} from "./handlers/HonestyOracle.sol";

/// @dev forge's state snapshots and file writes (not in the project's Vm subset).
interface VmStateSnapshots {
    function snapshotState() external returns (uint256 snapshotId);
    function revertToState(uint256 snapshotId) external returns (bool success);
    function writeLine(string calldata path, string calldata data) external;
}

/// @notice The invariants of DESIGN.md section 3 (1-12), checked after every call of a
/// handler-driven campaign: JobMarketHandler (3 honest requesters, matcher, keeper, 14 providers),
/// RegistryHandler (stake, unbonding, terms, the owner's parameter attempts, mostly out of bounds)
/// and AdversaryHandler (a malicious requester, a misbehaving relayer, a colluding minority of
/// providers). Every call goes through the GhostLedger, which books it from its events and checks
/// it against an independent model of the v2 money flows; per property it also records every call
/// whose outcome broke it, which the same invariant asserts is none. Each check of a provider,
/// account or job a call touched runs right after that call (its storage is warm); the invariant
/// functions keep to totals and live jobs, and every entity is checked again at the end of each run.
/// @dev Self-contained deployment (no shared fixture): the campaign's parameters are its own.
/// INVARIANT_STATS=1 writes one line per run to snapshots/invariant-stats.csv (see _writeStats).
contract InvariantsTest is Test {
    uint8 internal constant SETTLED = 6;
    uint256 internal constant BPS = 10_000;

    ComputeToken internal token;
    ProviderRegistry internal registry;
    JobMarket internal market;
    GhostLedger internal ledger;
    JobMarketHandler internal handler;
    RegistryHandler internal registryHandler;
    AdversaryHandler internal adversary;
    HonestyOracle internal oracle;

    address internal owner = makeAddr("owner");
    address internal treasury = makeAddr("treasury");
    address internal matcher = makeAddr("matcher");
    address internal keeper = makeAddr("keeper");

    error ProbeSucceeded();

    function setUp() public {
        vm.warp(1_700_000_000);
        vm.roll(100);
        vm.startPrank(owner);
        token = new ComputeToken(owner);
        registry = new ProviderRegistry(token, owner, 14 days);
        market = new JobMarket(token, registry, owner, treasury, campaignParams());
        registry.setMarket(address(market));
        registry.addProfile(keccak256("torch-2.13.0/cpu/float32/deterministic"));
        registry.addProfile(keccak256("torch-2.13.0/cuda-sm90/float32/deterministic"));
        market.setMatcher(matcher, true);
        vm.stopPrank();
        ledger = new GhostLedger(token, registry, market, owner, matcher, keeper, treasury);
        oracle = new HonestyOracle(market, ledger);
        ledger.setOracle(oracle);
        handler = new JobMarketHandler(ledger);
        registryHandler = new RegistryHandler(ledger);
        adversary = new AdversaryHandler(ledger);
        ledger.allow(address(handler));
        ledger.allow(address(registryHandler));
        ledger.allow(address(adversary));
        oracle.allow(address(ledger));
        oracle.allow(address(handler));
        oracle.allow(address(adversary));
        targetContract(address(handler));
        targetContract(address(registryHandler));
        targetContract(address(adversary));
        targetSelector(FuzzSelector({addr: address(handler), selectors: handler.selectors()}));
        targetSelector(FuzzSelector({addr: address(registryHandler), selectors: _registrySelectors()}));
        targetSelector(FuzzSelector({addr: address(adversary), selectors: adversary.selectors()}));
        excludeSender(address(market));
        excludeSender(address(registry));
        excludeSender(address(token));
        excludeSender(address(ledger));
        excludeSender(address(oracle));
        excludeSender(address(handler));
        excludeSender(address(registryHandler));
        excludeSender(address(adversary));
    }

    /// @notice The campaign's starting parameters: audits often (25%, collateral 3x: exactly the
    /// bound auditBps x (1 + multiple) = 10,000), 3 verifiers, short windows.
    function campaignParams() public pure returns (IJobMarket.Params memory) {
        return IJobMarket.Params({
            feeBps: 250,
            auditShareBps: 5000,
            auditBps: 2500,
            requesterShareBps: 5000,
            rewardShareBps: 3000,
            verifiers: 3,
            collateralMultiple: 3,
            challengeWindow: 10 minutes,
            verifierAssignWindow: 10 minutes,
            verifierExecWindow: 20 minutes,
            revealWindow: 10 minutes,
            minExecWindow: 5 minutes,
            maxAcceptWindow: 1 days,
            maxExecWindow: 1 days,
            reassignWindow: 30 minutes,
            minFee: 1e12
        });
    }

    function _registrySelectors() internal view returns (bytes4[] memory s) {
        s = new bytes4[](9);
        s[0] = registryHandler.registerProvider.selector;
        s[1] = registryHandler.stakeMore.selector;
        s[2] = registryHandler.requestUnbond.selector;
        s[3] = registryHandler.cancelUnbond.selector;
        s[4] = registryHandler.withdrawUnbonded.selector;
        s[5] = registryHandler.updateTerms.selector;
        s[6] = registryHandler.setParams.selector;
        s[7] = registryHandler.setParams.selector;
        s[8] = registryHandler.setUnbondingPeriod.selector;
    }

    // ================================================================ 1. solvency

    /// @notice The market holds exactly the open escrows (payment, fee floor and premium), the
    /// challenge bonds, the withdrawable credits, the audit pool and the protocol fees; the
    /// registry holds exactly the stake.
    function invariant_1_contractsHoldExactlyWhatTheyOwe() public view {
        uint256 open = _openEscrow();
        assertEq(open, ledger.ghostOpenEscrow(), "escrow from the live jobs' records == escrow they pulled");
        uint256 owed = open + market.totalBonds() + ledger.ghostCredited() - ledger.ghostWithdrawn()
            + market.auditPool() + market.protocolFees();
        assertEq(token.balanceOf(address(market)), owed, "market balance == open escrow + bonds + credits + pool + fees");
        assertEq(token.balanceOf(address(registry)), registry.totalStaked(), "registry balance == total staked");
        _noViolations(1);
    }

    // ================================================================ 2. sum tracking

    /// @notice Every total the contracts keep equals the sum of its parts as the ledger booked them
    /// from the events: total stake, each profile's draw weight, bonds, escrows, and the audit pool
    /// + fees against the v2 flows attributed to jobs. Per provider (stake, weights) and per account
    /// (credits) the ledger checks each one a call touches, right after the call; all of them at
    /// the end of each run.
    function invariant_2_totalsEqualTheSumOfTheirParts() public view {
        assertEq(registry.totalStaked(), ledger.ghostTotalStake(), "totalStaked == staked - slashed - unbonded");
        assertEq(registry.profileStake(0), ledger.ghostWeight(0), "profileStake(0) == sum of draw weights");
        assertEq(registry.profileStake(1), ledger.ghostWeight(1), "profileStake(1) == sum of draw weights");
        assertEq(market.jobCount(), ledger.jobsSeen(), "jobCount == jobs created");
        uint256[] memory live = ledger.live();
        uint256 bonds;
        for (uint256 k; k < live.length; ++k) {
            bonds += market.challengeBond(live[k]);
        }
        assertEq(market.totalBonds(), bonds, "totalBonds == sum of the live jobs' bonds");
        assertEq(market.totalBonds(), ledger.ghostBondsHeld(), "totalBonds == bonds posted - paid - returned");
        assertEq(
            int256(market.auditPool() + market.protocolFees() + ledger.ghostFeesWithdrawn()),
            ledger.ghostPoolAttributed(),
            "audit pool + fees (+ withdrawn) == the v2 flows of the jobs"
        );
        _noViolations(2);
    }

    /// @notice Invariant 2 provider by provider and account by account (every provider and holder).
    function _checkEveryProviderAndHolder() internal view {
        uint256 stakes;
        uint256[2] memory weights;
        for (uint256 i; i < 14; ++i) {
            address p = ledger.provider(i);
            IProviderRegistry.Provider memory r = registry.provider(p);
            assertEq(r.stake, ledger.ghostStake(p), "stake == staked - slashed - unbonded");
            assertLe(r.locked, r.stake, "locked <= stake");
            assertEq(r.locked, ledger.ghostLocked(p), "locked == booked locks - releases - slashes");
            if (r.unbondAt == 0) assertEq(r.unbonding, 0, "no unbonding amount without a request");
            else assertLe(uint256(r.unbonding), uint256(r.stake) - r.locked, "unbonding <= stake - locked");
            stakes += r.stake;
            for (uint8 prof; prof < 2; ++prof) {
                uint256 w = registry.drawWeight(prof, p);
                bool drawable = r.registered && r.unbondAt == 0 && (r.profileMask >> prof) & 1 != 0;
                assertEq(w, drawable ? r.stake : 0, "draw weight == stake while registered, not unbonding, in profile");
                weights[prof] += w;
            }
        }
        assertEq(registry.totalStaked(), stakes, "totalStaked == sum of stakes");
        assertEq(registry.profileStake(0), weights[0], "profileStake(0) == sum of draw weights");
        assertEq(registry.profileStake(1), weights[1], "profileStake(1) == sum of draw weights");
        uint256 credits;
        for (uint256 i; i < ledger.holderCount(); ++i) {
            address a = ledger.holder(i);
            assertEq(market.credits(a), ledger.ghostCredits(a), "credits == credited - withdrawn, per account");
            credits += market.credits(a);
        }
        assertEq(credits, ledger.ghostCredited() - ledger.ghostWithdrawn(), "sum of credits");
    }

    // ================================================================ 3. per-job conservation

    /// @notice Per live job: escrow + bond + slashed stake == credits + burned + modelled pool
    /// flow + what is still held (escrow and bond). Terminal jobs are checked at their close (the
    /// same equation with nothing held, and the JobClosed figures against the v2 model), and all
    /// again at the end of each run.
    function invariant_3_perJobTokensAreConserved() public view {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            uint256 id = live[k];
            (uint256 escrow, uint256 bond, uint256 slashed, uint256 credited, uint256 burned, int256 poolNet) =
                ledger.flows(id);
            int256 inflow = int256(escrow + bond + slashed);
            int256 outflow = int256(credited + burned + escrow + market.challengeBond(id)) + poolNet;
            assertEq(inflow, outflow, string.concat("live job ", vm.toString(id), ": escrow + bond + slashed == out"));
        }
        _noViolations(3);
    }

    // ================================================================ 4. locked collateral

    /// @notice locked <= stake, and the collateral locked in the registry is the collateral of the
    /// live jobs' active seats (active mask x collateral multiple x units x clearing price, from the
    /// records). Per provider, the ledger checks locked == its booked seats after every call that
    /// touches it, and each touched job's active mask against the seats it saw locked.
    function invariant_4_lockedIsTheCollateralOfActiveJobs() public view {
        uint256[] memory live = ledger.live();
        uint256 fromRecords;
        for (uint256 k; k < live.length; ++k) {
            IJobMarket.Job memory j = market.job(live[k]);
            uint256 seats;
            for (uint256 m = j.activeMask; m != 0; m &= m - 1) {
                ++seats;
            }
            fromRecords += seats * j.collateralMultiple * j.units * j.clearingPrice;
        }
        assertEq(ledger.ghostLockedTotal(), fromRecords, "locked collateral == active seats of the live jobs");
        _noViolations(4);
    }

    /// @notice Invariant 4 provider by provider, from the live jobs' records.
    function _checkLockedPerProvider() internal view {
        address[] memory ps = new address[](14);
        uint256[] memory active = new uint256[](14);
        for (uint256 i; i < 14; ++i) {
            ps[i] = ledger.provider(i);
        }
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            IJobMarket.Job memory j = market.job(live[k]);
            uint256 collateral = uint256(j.collateralMultiple) * j.units * j.clearingPrice;
            IJobMarket.Participant[] memory seats = market.participants(live[k]);
            for (uint256 s; s < seats.length; ++s) {
                if (j.activeMask & (1 << s) == 0) continue;
                for (uint256 i; i < 14; ++i) {
                    if (ps[i] == seats[s].provider) active[i] += collateral;
                }
            }
        }
        for (uint256 i; i < 14; ++i) {
            IProviderRegistry.Provider memory r = registry.provider(ps[i]);
            assertLe(r.locked, r.stake, "locked <= stake");
            assertEq(r.locked, active[i], "locked == collateral of p's active seats in live jobs");
        }
    }

    // ================================================================ 5. transitions

    /// @notice Jobs move only along the v2 lifecycle graph (every state change the events report
    /// is checked as it happens); the stored state is the one the events led to; terminal states
    /// are final and every terminal job was closed exactly once.
    function invariant_5_onlyAllowedTransitions() public view {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            (uint8 state, uint8 closedCount, uint8 reopenCount,,) = ledger.status(live[k]);
            IJobMarket.Job memory j = market.job(live[k]);
            assertEq(uint8(j.state), state, "state changed only by calls on the job");
            assertLt(state, SETTLED, "a live job is not terminal");
            assertEq(closedCount, 0, "a live job was never closed");
            assertEq(j.flags & 1, reopenCount, "reopened flag == reopen seen");
        }
        _noViolations(5);
    }

    // ================================================================ 6. slashing bounds

    /// @notice Every slash took exactly the collateral the provider had locked in that job's seat,
    /// from that provider, once (checked at each slash); per job, slashes never exceed the
    /// collateral its seats locked.
    function invariant_6_slashesStayWithinTheJobsCollateral() public view {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            (,,, uint256 slashed, uint256 slashCap) = ledger.status(live[k]);
            assertLe(slashed, slashCap, "job slashes <= collateral its seats locked");
        }
        _noViolations(6);
    }

    // ================================================================ 7. unbonding

    /// @notice A pending unbond is always covered by free stake (locked collateral stays put and
    /// slashable) and weighs nothing in the draws; nothing was withdrawn before unbondAt and
    /// unbonding providers took no new seats.
    function invariant_7_unbondingStaysSlashable() public view {
        uint256 mask = ledger.unbondingMask();
        for (uint256 i; mask != 0; (++i, mask >>= 1)) {
            if (mask & 1 == 0) continue;
            address p = ledger.provider(i);
            IProviderRegistry.Provider memory r = registry.provider(p);
            assertTrue(r.unbondAt != 0, "an unbond request the events announced is pending");
            assertLe(uint256(r.unbonding), uint256(r.stake) - r.locked, "unbonding <= stake - locked");
            assertEq(registry.drawWeight(0, p) + registry.drawWeight(1, p), 0, "an unbonding provider is not drawn");
        }
        _noViolations(7);
    }

    // ================================================================ 8. liveness

    /// @notice Every live job past its deadline can be advanced right now: expire for Open,
    /// Assigned and Auditing, finalize for Committed, Auditing and Revealing (probed in a call that
    /// reverts afterwards; a draw re-seeded in this very block goes from the next one). The
    /// handlers' own overdue calls and in-time honest actions never failed.
    function invariant_8_overdueJobsCanAlwaysAdvance() public {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            uint256 id = live[k];
            IJobMarket.Job memory j = market.job(id);
            uint8 s = uint8(j.state);
            if (block.timestamp <= j.deadline) continue;
            string memory job = string.concat("overdue job ", vm.toString(id), " in state ", vm.toString(uint256(s)));
            bool viaExpire = s == uint8(IJobMarket.JobState.Open) || s == uint8(IJobMarket.JobState.Assigned)
                || s == uint8(IJobMarket.JobState.Auditing);
            bool viaFinalize = s == uint8(IJobMarket.JobState.Committed) || s == uint8(IJobMarket.JobState.Auditing)
                || s == uint8(IJobMarket.JobState.Revealing);
            bool reseededNow = s == uint8(IJobMarket.JobState.Committed) && j.flags & 8 != 0
                && j.seedBlock == uint32(block.number);
            if (viaExpire) assertTrue(_canAdvance(id, false), string.concat(job, ": expire reverts"));
            if (viaFinalize && !reseededNow) assertTrue(_canAdvance(id, true), string.concat(job, ": finalize reverts"));
        }
        _noViolations(8);
    }

    // ================================================================ 9. reveal binding

    /// @notice Every accepted reveal opened the commitment its revealer made (checked at each
    /// reveal; forged, copied and foreign reveals were refused, matching ones accepted), and the
    /// stored digests of the live jobs are the committed ones.
    function invariant_9_revealsMatchHashAndSeal() public view {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            uint256 id = live[k];
            IJobMarket.Participant[] memory ps = market.participants(id);
            uint256 mask = market.job(id).revealMask;
            for (uint256 s; s < ps.length; ++s) {
                if (mask & (1 << s) == 0) continue;
                GhostLedger.Part memory pt = ledger.part(id, ps[s].provider);
                assertTrue(pt.digestKnown, "revealed a commitment made without knowing the digest");
                assertEq(market.revealedDigest(id, s), pt.digest, "stored digest == committed digest");
            }
        }
        _noViolations(9);
    }

    // ================================================================ 10. no value created

    /// @notice Tokens exist only by minting and leave only by burning; every token credited,
    /// burned, pooled or held came from an escrow, a bond or slashed stake.
    function invariant_10_noValueCreated() public view {
        assertEq(token.totalSupply(), ledger.ghostMinted() - ledger.ghostBurned(), "supply == minted - burned");
        uint256 balances = token.balanceOf(address(market)) + token.balanceOf(address(registry))
            + token.balanceOf(treasury) + token.balanceOf(owner) + token.balanceOf(matcher) + token.balanceOf(keeper);
        for (uint256 i; i < ledger.holderCount(); ++i) {
            balances += token.balanceOf(ledger.holder(i));
        }
        assertEq(balances, token.totalSupply(), "all tokens are with known holders");
        uint256 sources = ledger.ghostEscrowed() + ledger.ghostBondsPosted() + ledger.ghostSlashed();
        uint256 uses = ledger.ghostCredited() + ledger.ghostBurned() + market.auditPool() + market.protocolFees()
            + ledger.ghostFeesWithdrawn() + _openEscrow() + market.totalBonds();
        assertEq(uses, sources, "credited + burned + pool + fees + held == escrow + bonds + slashed");
        _noViolations(10);
    }

    // ================================================================ 11. honest providers

    /// @notice A provider that committed and revealed the correct digest on time is never slashed,
    /// whatever the requester, the relayer or a minority of verifiers do. Jobs where a draw gave the
    /// colluders a majority of a round's seats are excluded (and counted: excusedHonestSlashes).
    /// The oracle judges the same from what the handlers made each actor do: an actor whose reveal
    /// of the true digest went through in time is never slashed, unless a lie held every seat of
    /// round 1 or a strict majority of round 2.
    function invariant_11_honestRevealersAreNeverSlashed() public view {
        assertEq(ledger.honestSlashes(), 0, "slashes of providers that revealed the true digest");
        _noViolations(11);
        _noOracleViolations(oracle.HONEST_SLASHED());
    }

    // ================================================================ 12. parameter bounds

    /// @notice Whatever the owner (or anyone) attempted, the live parameters satisfy
    /// auditBps x (1 + collateralMultiple) >= 10,000, an odd verifier count (1, 3 or 5) and the
    /// other bounds of setParams.
    function invariant_12_paramsStayWithinBounds() public view {
        IJobMarket.Params memory p = market.params();
        assertGe(uint256(p.auditBps) * (1 + uint256(p.collateralMultiple)), BPS, "auditBps x (1 + multiple) >= 10000");
        assertTrue(p.verifiers == 1 || p.verifiers == 3 || p.verifiers == 5, "verifiers is 1, 3 or 5");
        assertTrue(p.collateralMultiple >= 1 && p.collateralMultiple <= 20, "collateralMultiple in 1..20");
        assertLe(p.feeBps, 1000, "feeBps <= 1000");
        assertLe(uint256(p.requesterShareBps) + p.rewardShareBps, BPS, "slash shares <= 100%");
        assertGt(p.minFee, 0, "minFee > 0");
        assertLe(p.minExecWindow, p.maxExecWindow, "minExecWindow <= maxExecWindow");
        assertGe(p.verifierExecWindow, p.minExecWindow, "verifierExecWindow >= minExecWindow");
        assertLe(2 * market.maxJobLifetime(), registry.unbondingPeriod(), "2 x lifetime <= unbonding period");
        _noViolations(12);
    }

    // ================================================================ 13. who wins (the oracle)

    /// @notice Who wins each job, judged by the oracle from what the handlers made every actor do
    /// (the digest each was told to commit, which reveals of it went through), not from the
    /// market's code or events. In the round that decided the job (the replicas before any audit,
    /// else the last round's k or 2k + 1 verifiers), the digest a strict majority of the seats
    /// revealed is the verdict: the job settles when an executor revealed it, else it is
    /// refunded; round 1 without a majority never closes a job, round 2 without one closes it with
    /// no verdict. Whoever revealed the verdict is paid its seat (an executor units x clearing
    /// price, a verifier the same as far as the bond and the audit pool cover it; a lone executor
    /// that committed the truth and was never audited exactly its seat). Every seat that committed
    /// and revealed another digest (or nothing) is slashed and paid nothing, except a verifier
    /// outvoted in a round-1 verdict, which keeps its stake unpaid.
    function invariant_13_theHonestMajorityWins() public view {
        _noOracleViolations(oracle.WRONG_VERDICT());
        _noOracleViolations(oracle.HONEST_UNPAID());
        _noOracleViolations(oracle.LIAR_SPARED());
    }

    function _noOracleViolations(uint256 bucket) internal view {
        assertEq(oracle.violations(bucket), 0, oracle.firstViolation(bucket));
    }

    // ================================================================ end of each run

    /// @notice After each run every job is wound down (time moved past every deadline, overdue jobs
    /// advanced) and every credit withdrawn: nothing may stay stuck, the contracts then hold exactly
    /// the audit pool and the stake, and every job's books close.
    function afterInvariant() public {
        assertEq(handler.drain(), 0, "every job reaches a terminal state");
        for (uint256 i; i < 14; ++i) {
            assertEq(registry.provider(ledger.provider(i)).locked, 0, "no collateral locked once all jobs are closed");
        }
        assertEq(token.balanceOf(address(market)), market.auditPool(), "market holds only the audit pool at the end");
        assertEq(market.totalBonds(), 0, "no bond held at the end");
        for (uint256 n = 1; n <= 12; ++n) {
            _noViolations(n); // every call of the wind-down was booked and checked like any other
        }
        for (uint256 n = 13; n <= 16; ++n) {
            _noOracleViolations(n);
        }
        invariant_1_contractsHoldExactlyWhatTheyOwe();
        invariant_10_noValueCreated();
        _checkEveryProviderAndHolder();
        assertEq(ledger.honestSlashes(), 0, "slashes of providers that revealed the true digest");
        _checkClosedJobs();
        if (vm.envOr("INVARIANT_STATS", uint256(0)) == 1) _writeStats();
    }

    /// @notice With INVARIANT_STATS=1, one line per run to snapshots/invariant-stats.csv: jobs,
    /// verdicts, rounds staffed, rounds with a colluder seated, rounds where the draw gave the
    /// colluders a majority, jobs excluded from invariant 11, slashes excused by that exclusion,
    /// true-digest revealers upheld, wrong-digest revealers slashed.
    function _writeStats() internal {
        uint256[9] memory v = [
            ledger.jobsSeen(),
            ledger.verdicts(),
            ledger.roundsStaffed(),
            ledger.roundsWithColluder(),
            ledger.roundsColluderMajority(),
            ledger.taintedJobs(),
            ledger.excusedHonestSlashes(),
            ledger.truthUpheld(),
            ledger.liarsSlashed()
        ];
        string memory line = vm.toString(v[0]);
        for (uint256 i = 1; i < 9; ++i) {
            line = string.concat(line, ",", vm.toString(v[i]));
        }
        VmStateSnapshots(address(vm)).writeLine("snapshots/invariant-stats.csv", line);
    }

    /// @notice Every terminal job: closed once, nothing held (no bond, no collateral), and its books
    /// balance: escrow + bond + slashed == credited + burned + pool flow. (Each close's JobClosed
    /// figures were checked against the v2 model and against what the close moved when it happened:
    /// invariant 3's violations.)
    function _checkClosedJobs() internal view {
        uint256 n = ledger.jobsSeen();
        for (uint256 id = 1; id <= n; ++id) {
            (int256 gap, uint8 closedCount, uint8 state) = ledger.books(id);
            string memory job = string.concat("job ", vm.toString(id));
            assertGe(state, SETTLED, string.concat(job, " is terminal"));
            assertEq(closedCount, 1, string.concat(job, " closed once"));
            assertEq(market.challengeBond(id), 0, string.concat(job, " holds no bond"));
            assertEq(gap, 0, string.concat(job, ": escrow + bond + slashed == credited + burned + pool"));
        }
    }

    // ================================================================ coverage

    /// @notice The handlers really reach the deep paths: a long deterministic sequence of their
    /// actions (every selector, pseudo-random arguments) with every invariant checked along the
    /// way must settle, refund and expire jobs, run audits, escalate, challenge, slash, reopen,
    /// refuse forged reveals, skip stale batch items, re-seed... Also reports how often the
    /// colluders were seated, and how often a draw gave them a round majority.
    function test_handlerReachesEveryPath() public {
        string[41] memory names = _pathNames();
        uint256[41] memory total;
        uint256[14] memory stats;
        ledger.setRecordHits(true);
        handler.setRecordHits(true);
        registryHandler.setRecordHits(true);
        adversary.setRecordHits(true);
        for (uint256 run; run < 24; ++run) {
            uint256 snapshot = VmStateSnapshots(address(vm)).snapshotState();
            (uint256[41] memory reached, uint256[14] memory s) = this.coverageRun(run);
            for (uint256 k; k < names.length; ++k) {
                total[k] += reached[k];
            }
            for (uint256 k; k < 14; ++k) {
                stats[k] += s[k];
            }
            VmStateSnapshots(address(vm)).revertToState(snapshot);
        }
        string[14] memory statNames = [
            "jobs",
            "verdicts",
            "rounds staffed",
            "rounds with a colluder seated",
            "rounds with a colluder majority",
            "jobs excluded from invariant 11",
            "true-digest revealers upheld",
            "wrong-digest revealers slashed",
            "oracle: honest actors judged",
            "oracle: honest actors paid their seat",
            "oracle: truth majorities",
            "oracle: lie majorities",
            "oracle: outvoted or silent seats slashed",
            "oracle: rounds with no majority"
        ];
        for (uint256 k; k < 14; ++k) {
            _log(statNames[k], stats[k]);
        }
        // The oracle's rules must each have been met, or they prove nothing.
        for (uint256 k = 8; k < 11; ++k) {
            assertGt(stats[k], 0, string.concat("oracle rule never met: ", statNames[k]));
        }
        assertGt(stats[12], 0, "oracle rule never met: outvoted seats slashed");
        for (uint256 k; k < names.length; ++k) {
            _log(names[k], total[k]);
        }
        for (uint256 k; k < names.length; ++k) {
            assertGt(total[k], 0, string.concat("never reached: ", names[k]));
        }
    }

    /// @notice One run of 96 pseudo-random handler actions with the invariants checked along the
    /// way and afterInvariant at the end.
    function coverageRun(uint256 run) external returns (uint256[41] memory reached, uint256[14] memory stats) {
        require(msg.sender == address(this), "coverage only");
        bytes4[] memory h = handler.selectors();
        bytes4[] memory r = _registrySelectors();
        bytes4[] memory a = adversary.selectors();
        string[41] memory names = _pathNames();
        uint256[41] memory before;
        for (uint256 k; k < names.length; ++k) {
            before[k] = _pathHits(names[k]);
        }
        for (uint256 i; i < 96; ++i) {
            uint256 x = uint256(keccak256(abi.encode("step", run, i)));
            uint256 pick = x % (h.length + r.length + a.length);
            (address target, bytes4 sel) = pick < h.length
                ? (address(handler), h[pick])
                : pick < h.length + r.length
                    ? (address(registryHandler), r[pick - h.length])
                    : (address(adversary), a[pick - h.length - r.length]);
            (bool ok,) = target.call(
                abi.encodeWithSelector(
                    sel,
                    x >> 8,
                    uint256(keccak256(abi.encode(x, 1))),
                    uint256(keccak256(abi.encode(x, 2))),
                    uint256(keccak256(abi.encode(x, 3)))
                )
            );
            assertTrue(ok, "handler actions never revert");
            if (i % 16 == 15) _checkAll();
        }
        for (uint256 k; k < names.length; ++k) {
            reached[k] = _pathHits(names[k]) - before[k];
        }
        afterInvariant();
        stats = [
            ledger.jobsSeen(),
            ledger.verdicts(),
            ledger.roundsStaffed(),
            ledger.roundsWithColluder(),
            ledger.roundsColluderMajority(),
            ledger.taintedJobs(),
            ledger.truthUpheld(),
            ledger.liarsSlashed(),
            oracle.honestRevealers(),
            oracle.honestPaid(),
            oracle.truthMajorities(),
            oracle.lieMajorities(),
            oracle.liarsOutvoted(),
            oracle.noVerdicts()
        ];
    }

    function _pathNames() internal pure returns (string[41] memory) {
        return [
            "created",
            "assigned",
            "commitHonest",
            "commitBad",
            "commitCopy",
            "revealed",
            "withheld",
            "forgedRevealRefused",
            "settledUnverified",
            "settledByVerdict",
            "refundedNoVerdict",
            "refundedExecutorLost",
            "expired",
            "cancelled",
            "reopened",
            "slashedNoShow",
            "slashedLoserCompensated",
            "auditSelected",
            "auditCleared",
            "challenged",
            "staffed",
            "round2",
            "colluderSeated",
            "drawReseeded",
            "staffReseeded",
            "poolPaidVerifiers",
            "bondPaidVerifiers",
            "rewardShared",
            "batchItemSkipped",
            "griefBatch",
            "assignBatch",
            "commitBatch",
            "paramsSet",
            "paramsRejected",
            "unbonded",
            "slashedWhileUnbonding",
            "outvotedVerifierSpared",
            "edge 5 -> 4",
            "edge 4 -> 7",
            "edge 2 -> 8",
            "released"
        ];
    }

    /// @dev "edge a -> b" is the ledger's transition counter, anything else a named counter.
    function _pathHits(string memory name) internal view returns (uint256) {
        bytes memory b = bytes(name);
        if (b.length == 11 && b[0] == "e" && b[4] == " ") {
            uint8 from = uint8(b[5]) - 48;
            uint8 to = uint8(b[10]) - 48;
            return ledger.hits(keccak256(abi.encode("edge", from, to)));
        }
        return ledger.hits(bytes32(b));
    }

    function _checkAll() internal {
        invariant_1_contractsHoldExactlyWhatTheyOwe();
        invariant_2_totalsEqualTheSumOfTheirParts();
        invariant_3_perJobTokensAreConserved();
        invariant_4_lockedIsTheCollateralOfActiveJobs();
        invariant_5_onlyAllowedTransitions();
        invariant_6_slashesStayWithinTheJobsCollateral();
        invariant_7_unbondingStaysSlashable();
        invariant_8_overdueJobsCanAlwaysAdvance();
        invariant_9_revealsMatchHashAndSeal();
        invariant_10_noValueCreated();
        invariant_11_honestRevealersAreNeverSlashed();
        invariant_12_paramsStayWithinBounds();
        invariant_13_theHonestMajorityWins();
        _checkEveryProviderAndHolder();
        _checkLockedPerProvider();
    }

    function _log(string memory name, uint256 value) internal view {
        (bool ok,) = address(0x000000000000000000636F6e736F6c652e6c6f67).staticcall(
            abi.encodeWithSignature("log(string,uint256)", name, value)
        );
        ok;
    }

    // ================================================================ helpers

    function probeAdvance(uint256 id, bool viaFinalize) external {
        require(msg.sender == address(this), "probe only");
        if (viaFinalize) market.finalize(id);
        else market.expire(id);
        revert ProbeSucceeded();
    }

    /// @dev Whether finalize / expire succeeds now, leaving no trace (the probe always reverts).
    function _canAdvance(uint256 id, bool viaFinalize) internal returns (bool) {
        try this.probeAdvance(id, viaFinalize) {
            return false;
        } catch (bytes memory err) {
            return err.length == 4 && bytes4(err) == ProbeSucceeded.selector;
        }
    }

    function _noViolations(uint256 invariantNo) internal view {
        assertEq(ledger.violations(invariantNo), 0, ledger.firstViolation(invariantNo));
    }

    /// @dev v2 escrow from the job record: payment + max(payment x feeBps, minFee) + payment x premiumBps.
    function _escrowOf(uint256 id) internal view returns (uint256) {
        IJobMarket.Job memory j = market.job(id);
        uint256 payment = uint256(j.replicas) * j.units * j.maxPricePerUnit;
        uint256 fee = payment * j.feeBps / BPS;
        if (fee < j.minFee) fee = j.minFee;
        return payment + fee + payment * j.premiumBps / BPS;
    }

    function _openEscrow() internal view returns (uint256 sum) {
        uint256[] memory live = ledger.live();
        for (uint256 k; k < live.length; ++k) {
            sum += _escrowOf(live[k]);
        }
    }
}
