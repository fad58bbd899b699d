// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {Test, Vm} from "../../utils/Test.sol";
import {ComputeToken} from "../../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";

/// @notice Shared state of the invariant handlers: the deployment, the actors, and the ghost ledger.
/// @dev Every call into the contracts goes through `_marketCall` / `_registryCall`, which prank the
/// actor, record the logs and update the ghosts only from what was observed (events, balance and
/// pool deltas). Properties that can only be judged at the moment of a call (an honest commit was
/// rejected, a reveal with a wrong digest was accepted, a slash hit a non-participant...) are
/// recorded as violations, bucketed by the DESIGN.md invariant number; the invariant functions
/// assert that every bucket is empty and print the first violation of the bucket.
abstract contract HandlerBase is Test {
    // ---------------------------------------------------------------- state ids (IJobMarket.JobState)
    uint8 internal constant NONE = 0;
    uint8 internal constant OPEN = 1;
    uint8 internal constant ASSIGNED = 2;
    uint8 internal constant COMMITTED = 3;
    uint8 internal constant AUDITING = 4;
    uint8 internal constant REVEALING = 5;
    uint8 internal constant SETTLED = 6;
    uint8 internal constant REFUNDED = 7;
    uint8 internal constant EXPIRED = 8;

    uint256 internal constant N_PROVIDERS = 8;
    uint256 internal constant N_REQUESTERS = 3;
    /// @dev Caps the loops of `advanceAll` and of the invariant functions.
    uint256 internal constant MAX_JOBS = 40;
    uint96 internal constant INITIAL_STAKE = 60e18;

    // ---------------------------------------------------------------- wiring
    ComputeToken public immutable token;
    ProviderRegistry public immutable registry;
    JobMarket public immutable market;
    address public immutable owner;
    address public immutable matcher;
    address public immutable keeper;
    address public immutable treasury;
    /// @notice Never a participant: tries foreign cancels, challenges and copycat reveals.
    address public immutable outsider;

    address[] internal _providers;
    address[] internal _requesters;
    /// @notice Every address that may hold tokens or credits (for the global sums).
    address[] internal _holders;

    // ---------------------------------------------------------------- ghost ledger
    uint256 public ghostMinted;
    uint256 public ghostBurned;
    uint256 public ghostEscrowed;
    uint256 public ghostBondsPosted;
    uint256 public ghostSlashed;
    uint256 public ghostCredited;
    uint256 public ghostWithdrawn;
    uint256 public ghostFeesWithdrawn;
    uint256 public ghostUnbonded;
    /// @notice Sum over calls of the change of auditPool + protocolFees, attributed to jobs.
    int256 public ghostPoolAttributed;

    mapping(address account => uint256) public ghostCredits;
    mapping(address provider => uint256) public ghostStake;
    mapping(address provider => uint256) public ghostLocked;

    /// @notice What the handler saw of one job.
    struct GJob {
        address requester;
        uint8 replicas;
        uint8 lastState;
        uint8 closedCount;
        uint8 reopenCount;
        uint8 closedState;
        uint96 collateral;
        uint256 escrow;
        uint256 bondPosted;
        uint256 slashed; //     all ProviderSlashed amounts of the job
        uint256 credited; //    all Credited amounts of the job
        uint256 burned; //      tokens the market burned while handling the job
        int256 poolNet; //      change of auditPool + protocolFees in calls on the job
        // JobClosed figures
        uint256 cPaid;
        uint256 cRefunded;
        uint256 cFees;
        uint256 cBurned;
        // what the closing call actually moved
        uint256 txCredited;
        uint256 txBurned;
        uint256 txSlashed;
        uint256 txBond; //      challenge bond held when the closing call started
        uint256 txPoolPay; //   audit-pool tokens paid to verifiers by the closing call (modelled)
        // a committed (resultHash, seal) pair a copycat can copy
        bytes32 lastResultHash;
        bytes32 lastSeal;
    }

    /// @notice What the handler saw of one provider in one job.
    struct Part {
        bool assigned;
        bool active; //        collateral locked and neither released nor slashed
        bool slashed;
        bool committed;
        bool digestKnown; //   committed keccak(jobId, digest) and seal(provider, jobId, digest)
        bool revealed;
        bytes32 digest;
    }

    mapping(uint256 jobId => GJob) internal _jobs;
    mapping(uint256 jobId => address[]) internal _assigned;
    mapping(uint256 jobId => mapping(address provider => Part)) internal _parts;
    uint256 public jobsSeen;

    /// @notice Successful actions and reached paths, by name (see the summary in afterInvariant).
    mapping(bytes32 name => uint256) public hits;
    /// @notice Violations per DESIGN.md invariant number, and the first one of each.
    mapping(uint256 invariantNo => uint256) public violations;
    mapping(uint256 invariantNo => string) public firstViolation;

    /// @dev Effects of one call, decoded from its logs.
    struct Fx {
        uint256 job;
        uint256 credited;
        uint256 burned;
        uint256 slashed;
        uint256 feesWithdrawn;
        bool closed;
        bool otherJob; // a job-indexed event of another job appeared
        uint8 closedState;
        uint256 lastRegSlashJob;
        address lastRegSlashProvider;
        uint256 lastRegSlashAmount;
    }

    /// @dev What `_marketCall` reads before a call on a job.
    struct Pre {
        uint256 pool;
        uint256 bond;
        uint256 poolPay;
        uint8 reopens;
    }

    constructor(
        ComputeToken token_,
        ProviderRegistry registry_,
        JobMarket market_,
        address owner_,
        address matcher_,
        address keeper_,
        address treasury_
    ) {
        token = token_;
        registry = registry_;
        market = market_;
        owner = owner_;
        matcher = matcher_;
        keeper = keeper_;
        treasury = treasury_;
        outsider = makeAddr("outsider");
        ghostMinted = token_.totalSupply();
    }

    // ---------------------------------------------------------------- views for the invariants

    function providerCount() external pure returns (uint256) {
        return N_PROVIDERS;
    }

    function provider(uint256 i) external view returns (address) {
        return _providers[i];
    }

    function requesterCount() external pure returns (uint256) {
        return N_REQUESTERS;
    }

    function requester(uint256 i) external view returns (address) {
        return _requesters[i];
    }

    function holderCount() external view returns (uint256) {
        return _holders.length;
    }

    function holder(uint256 i) external view returns (address) {
        return _holders[i];
    }

    function ghostJob(uint256 jobId) external view returns (GJob memory) {
        return _jobs[jobId];
    }

    function part(uint256 jobId, address p) external view returns (Part memory) {
        return _parts[jobId][p];
    }

    function assignedCount(uint256 jobId) external view returns (uint256) {
        return _assigned[jobId].length;
    }

    function assignedAt(uint256 jobId, uint256 i) external view returns (address) {
        return _assigned[jobId][i];
    }

    // ---------------------------------------------------------------- recording helpers

    function _violate(uint256 invariantNo, string memory why) internal {
        if (violations[invariantNo] == 0) firstViolation[invariantNo] = why;
        violations[invariantNo] += 1;
    }

    function _hit(bytes32 name) internal {
        hits[name] += 1;
    }

    function _mint(address to, uint256 amount) internal {
        vm.prank(owner);
        token.mint(to, amount);
        ghostMinted += amount;
    }

    /// @notice Moves time and blocks forward together, as a chain does (12 s blocks).
    function _advance(uint256 secondsForward) internal {
        vm.warp(block.timestamp + secondsForward);
        vm.roll(block.number + secondsForward / 12 + 1);
    }

    /// @notice Advances to just past `deadline` (plus up to `extra` seconds) when it is still ahead.
    function _advancePast(uint256 deadline, uint256 extra) internal {
        if (block.timestamp <= deadline) _advance(deadline - block.timestamp + 1 + extra);
    }

    // ---------------------------------------------------------------- calls

    /// @notice Calls the market as `from` and books what the call did. `jobId` is the one job the
    /// call acts on (0 for createJobs, withdraw and withdrawFees).
    function _marketCall(address from, uint256 jobId, bytes memory data) internal returns (bool ok) {
        Pre memory pre;
        pre.pool = market.auditPool() + market.protocolFees();
        if (jobId != 0) {
            pre.bond = market.challengeBond(jobId);
            pre.poolPay = _modelVerifierPoolPay(jobId);
            pre.reopens = _jobs[jobId].reopenCount;
        }
        vm.recordLogs();
        vm.prank(from);
        (ok,) = address(market).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) return false;
        Fx memory fx;
        fx.job = jobId;
        _process(logs, fx);
        int256 dPool = int256(market.auditPool() + market.protocolFees()) - int256(pre.pool);
        ghostPoolAttributed += dPool;
        if (jobId == 0) {
            // Only withdrawFees may move the pool/fee ledger outside a job.
            if (dPool != -int256(fx.feesWithdrawn)) _violate(2, "pool or fees changed by a call on no job");
            ghostPoolAttributed += int256(fx.feesWithdrawn); // booked as ghostFeesWithdrawn instead
        } else {
            if (fx.otherJob) _violate(5, "a call on one job emitted events of another");
            _jobs[jobId].poolNet += dPool;
            _observe(jobId, fx, pre);
        }
    }

    /// @notice Calls a batch function that moves no tokens (assignBatch, commitBatch, drawAudits)
    /// on the jobs `ids` and checks each job's transition.
    function _marketCallMany(address from, uint256[] memory ids, bytes memory data) internal returns (bool ok) {
        uint256 pool = market.auditPool() + market.protocolFees();
        Pre[] memory pre = new Pre[](ids.length);
        for (uint256 i; i < ids.length; ++i) {
            pre[i].reopens = _jobs[ids[i]].reopenCount;
        }
        vm.recordLogs();
        vm.prank(from);
        (ok,) = address(market).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) return false;
        Fx memory fx;
        _process(logs, fx);
        if (fx.credited != 0 || fx.slashed != 0 || fx.burned != 0 || market.auditPool() + market.protocolFees() != pool)
        {
            _violate(10, "a batch of assignments, commits or draws moved tokens");
        }
        for (uint256 i; i < ids.length; ++i) {
            Fx memory none;
            _observe(ids[i], none, pre[i]);
        }
    }

    /// @notice Calls the registry as `from` and books the stake events.
    function _registryCall(address from, bytes memory data) internal returns (bool ok) {
        vm.recordLogs();
        vm.prank(from);
        (ok,) = address(registry).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) return false;
        Fx memory fx;
        _process(logs, fx);
        if (fx.slashed != 0 || fx.credited != 0) _violate(6, "a provider action moved slashes or credits");
    }

    // ---------------------------------------------------------------- log decoding

    function _process(Vm.Log[] memory logs, Fx memory fx) internal {
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.topics.length == 0) continue;
            if (l.emitter == address(market)) _onMarketLog(l, fx);
            else if (l.emitter == address(registry)) _onRegistryLog(l, fx);
            else if (l.emitter == address(token)) _onTokenLog(l, fx);
        }
    }

    function _onMarketLog(Vm.Log memory l, Fx memory fx) internal {
        bytes32 t = l.topics[0];
        if (t == IJobMarket.Withdrawn.selector) {
            address account = address(uint160(uint256(l.topics[1])));
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount != ghostCredits[account]) _violate(2, "withdraw paid other than the whole credit");
            ghostCredits[account] -= amount > ghostCredits[account] ? ghostCredits[account] : amount;
            ghostWithdrawn += amount;
            _hit("withdrawn");
            return;
        }
        if (t == IJobMarket.FeesWithdrawn.selector) {
            uint256 amount = abi.decode(l.data, (uint256));
            ghostFeesWithdrawn += amount;
            fx.feesWithdrawn += amount;
            _hit("feesWithdrawn");
            return;
        }
        if (l.topics.length < 2) return; // ParamsSet, MatcherSet, TreasurySet
        uint256 id = uint256(l.topics[1]);
        if (t == IJobMarket.JobCreated.selector) return _onCreated(id, l);
        if (fx.job != 0 && id != fx.job) fx.otherJob = true;
        if (t == IJobMarket.ProviderAssigned.selector) return _onAssigned(id, address(uint160(uint256(l.topics[2]))));
        if (t == IJobMarket.Credited.selector) {
            address account = address(uint160(uint256(l.topics[2])));
            uint256 amount = abi.decode(l.data, (uint256));
            ghostCredits[account] += amount;
            ghostCredited += amount;
            _jobs[id].credited += amount;
            fx.credited += amount;
            return;
        }
        if (t == IJobMarket.ProviderSlashed.selector) {
            return _onSlashed(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (uint256)), fx);
        }
        if (t == IJobMarket.ResultRevealed.selector) {
            return _onRevealed(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (bytes32)));
        }
        if (t == IJobMarket.JobClosed.selector) return _onClosed(id, l.data, fx);
        if (t == IJobMarket.JobChallenged.selector) {
            uint256 bond = abi.decode(l.data, (uint256));
            _jobs[id].bondPosted += bond;
            ghostBondsPosted += bond;
            _hit("challenged");
            return;
        }
        if (t == IJobMarket.JobReopened.selector) return _onReopened(id);
        if (t == IJobMarket.AuditDrawn.selector) {
            _hit(abi.decode(l.data, (bool)) ? bytes32("auditSelected") : bytes32("auditCleared"));
            return;
        }
        if (t == IJobMarket.ResultCommitted.selector) return _hit("committed");
        if (t == IJobMarket.RevealStarted.selector) return _hit("revealStarted");
    }

    function _onCreated(uint256 id, Vm.Log memory l) internal {
        (, IJobMarket.JobRequest memory r,, uint256 escrow) =
            abi.decode(l.data, (bytes32, IJobMarket.JobRequest, uint32, uint256));
        GJob storage j = _jobs[id];
        if (j.lastState != NONE) _violate(5, "job id created twice");
        IJobMarket.Job memory onchain = market.job(id);
        j.requester = address(uint160(uint256(l.topics[2])));
        j.replicas = r.replicas;
        j.lastState = OPEN;
        j.collateral = uint96(uint256(onchain.collateralMultiple) * r.units * r.maxPricePerUnit);
        j.escrow = escrow;
        ghostEscrowed += escrow;
        if (id != jobsSeen + 1) _violate(5, "job ids not consecutive");
        jobsSeen = id;
        if (uint8(onchain.state) != OPEN) _violate(5, "a created job is not Open");
        _hit("created");
    }

    function _onAssigned(uint256 id, address p) internal {
        Part storage pt = _parts[id][p];
        if (pt.assigned) _violate(4, "a provider was assigned twice to one job");
        pt.assigned = true;
        pt.active = true;
        _assigned[id].push(p);
        ghostLocked[p] += _jobs[id].collateral;
        if (registry.provider(p).unbondAt != 0) _violate(7, "an unbonding provider took new collateral locks");
        _hit("assigned");
    }

    /// @dev DESIGN 6: a slash takes exactly the collateral this provider locked for this job, from
    /// this provider, once; the registry's Slashed event must be the same slash.
    function _onSlashed(uint256 id, address p, uint256 amount, Fx memory fx) internal {
        GJob storage j = _jobs[id];
        Part storage pt = _parts[id][p];
        if (!pt.assigned || !pt.active) _violate(6, "slashed a provider without collateral locked in the job");
        if (amount > j.collateral) _violate(6, "slash above the job's collateral");
        if (fx.lastRegSlashJob != id || fx.lastRegSlashProvider != p || fx.lastRegSlashAmount != amount) {
            _violate(6, "market and registry disagree on a slash");
        }
        fx.lastRegSlashAmount = 0;
        if (pt.active) ghostLocked[p] -= j.collateral;
        pt.active = false;
        pt.slashed = true;
        ghostSlashed += amount;
        j.slashed += amount;
        fx.slashed += amount;
        _hit("slashed");
        if (registry.provider(p).unbondAt != 0) _hit("slashedWhileUnbonding");
    }

    /// @dev DESIGN 9: an accepted reveal must be the digest the handler committed for that provider.
    function _onRevealed(uint256 id, address p, bytes32 digest) internal {
        Part storage pt = _parts[id][p];
        if (!pt.committed || pt.revealed) _violate(9, "reveal without a pending commitment");
        if (!pt.digestKnown) _violate(9, "a copied or unrevealable commitment was revealed");
        else if (pt.digest != digest) _violate(9, "revealed a digest other than the committed one");
        pt.revealed = true;
        _hit("revealed");
    }

    function _onReopened(uint256 id) internal {
        GJob storage j = _jobs[id];
        j.reopenCount += 1;
        address[] storage list = _assigned[id];
        for (uint256 i; i < list.length; ++i) {
            if (_parts[id][list[i]].active) _violate(4, "collateral still locked when the job reopened");
        }
        _hit("reopened");
    }

    /// @dev Releases every participation still active: a closed job holds no collateral.
    function _onClosed(uint256 id, bytes memory data, Fx memory fx) internal {
        (uint8 st,, uint256 paid, uint256 refunded, uint256 fees, uint256 burned) =
            abi.decode(data, (uint8, bytes32, uint256, uint256, uint256, uint256));
        GJob storage j = _jobs[id];
        j.closedCount += 1;
        if (j.closedCount > 1) _violate(5, "a job was closed twice");
        j.closedState = st;
        j.cPaid = paid;
        j.cRefunded = refunded;
        j.cFees = fees;
        j.cBurned = burned;
        fx.closed = true;
        fx.closedState = st;
        address[] storage list = _assigned[id];
        for (uint256 i; i < list.length; ++i) {
            Part storage pt = _parts[id][list[i]];
            if (pt.active) {
                pt.active = false;
                ghostLocked[list[i]] -= j.collateral;
            }
        }
        if (st == SETTLED) _hit("settled");
        else if (st == REFUNDED) _hit("refunded");
        else if (st == EXPIRED) _hit("expired");
    }

    function _onRegistryLog(Vm.Log memory l, Fx memory fx) internal {
        bytes32 t = l.topics[0];
        if (t == IProviderRegistry.Staked.selector) {
            (uint256 amount,) = abi.decode(l.data, (uint256, uint256));
            ghostStake[address(uint160(uint256(l.topics[1])))] += amount;
        } else if (t == IProviderRegistry.Slashed.selector) {
            address p = address(uint160(uint256(l.topics[2])));
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount > ghostStake[p]) _violate(6, "slash above the provider's stake");
            else ghostStake[p] -= amount;
            fx.lastRegSlashJob = uint256(l.topics[1]);
            fx.lastRegSlashProvider = p;
            fx.lastRegSlashAmount = amount;
        } else if (t == IProviderRegistry.Unbonded.selector) {
            address p = address(uint160(uint256(l.topics[1])));
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount > ghostStake[p]) _violate(7, "unbonded more than the stake");
            else ghostStake[p] -= amount;
            ghostUnbonded += amount;
        }
    }

    function _onTokenLog(Vm.Log memory l, Fx memory fx) internal {
        if (l.topics[0] != IERC20.Transfer.selector || l.topics.length < 3) return;
        address from = address(uint160(uint256(l.topics[1])));
        address to = address(uint160(uint256(l.topics[2])));
        if (to != address(0)) return;
        uint256 amount = abi.decode(l.data, (uint256));
        ghostBurned += amount;
        if (from != address(market) || fx.job == 0) {
            _violate(10, "tokens burned outside a job's slash");
            return;
        }
        fx.burned += amount;
        _jobs[fx.job].burned += amount;
    }

    // ---------------------------------------------------------------- per-call checks

    /// @dev DESIGN 5: the job moved along an edge of the lifecycle graph, JobClosed was emitted
    /// exactly when it became terminal, and with that state. Stores the closing call's figures.
    function _observe(uint256 id, Fx memory fx, Pre memory pre) internal {
        GJob storage j = _jobs[id];
        uint8 before = j.lastState;
        uint8 post = uint8(market.state(id));
        if (post != before) {
            if (!_allowedEdge(before, post, j.replicas, pre.reopens, j.reopenCount)) {
                _violate(
                    5,
                    string.concat(
                        "illegal transition ", vm.toString(uint256(before)), " -> ", vm.toString(uint256(post))
                    )
                );
            }
            _hit(bytes32(uint256(keccak256(abi.encode("edge", before, post)))));
        }
        bool becameTerminal = post >= SETTLED && before < SETTLED;
        if (fx.closed != becameTerminal) _violate(5, "JobClosed not emitted exactly when the job became terminal");
        if (fx.closed && fx.closedState != post) _violate(5, "JobClosed state differs from the stored state");
        if (fx.closed) {
            j.txCredited = fx.credited;
            j.txBurned = fx.burned;
            j.txSlashed = fx.slashed;
            j.txBond = pre.bond;
            j.txPoolPay = pre.poolPay;
            if (fx.slashed != 0 && post == EXPIRED) _hit("closeWithNoShowSlash");
            if (pre.poolPay != 0) _hit("poolPaidVerifiers");
            if (pre.bond != 0) {
                _hit(post == SETTLED ? bytes32("closedWithBondSettled") : bytes32("closedWithBondRefunded"));
            }
        }
        j.lastState = post;
    }

    /// @notice The lifecycle graph of DESIGN.md section 3.
    function _allowedEdge(uint8 a, uint8 b, uint8 replicas, uint8 reopensBefore, uint8 reopensAfter)
        internal
        pure
        returns (bool)
    {
        if (a == OPEN) return b == ASSIGNED || b == EXPIRED;
        if (a == ASSIGNED) {
            return (b == COMMITTED && replicas == 1) || b == REVEALING
                || (b == OPEN && reopensBefore == 0 && reopensAfter == 1) || (b == EXPIRED && reopensBefore == 1);
        }
        if (a == COMMITTED) return b == AUDITING || b == SETTLED;
        if (a == AUDITING) return b == REVEALING || b == SETTLED;
        if (a == REVEALING) return b == SETTLED || b == REFUNDED;
        return false; // None is left only by creation; terminal states are final
    }

    /// @notice Audit-pool tokens a closing call on `jobId` would pay honest verifiers: the audited
    /// executor is in the majority, verifiers agree with it, and no challenge bond funds them.
    /// @dev An independent model of JobMarket._payVerifiers, read before the call.
    function _modelVerifierPoolPay(uint256 jobId) internal view returns (uint256) {
        IJobMarket.Job memory j = market.job(jobId);
        if (uint8(j.state) != REVEALING || j.participants <= j.replicas) return 0;
        if (market.challengeBond(jobId) != 0) return 0;
        (bytes32 majority, bool found) = _majorityOf(jobId, j.participants, j.revealMask);
        if (!found || j.revealMask & 1 == 0 || market.revealedDigest(jobId, 0) != majority) return 0;
        uint256 honest;
        for (uint256 i = j.replicas; i < j.participants; ++i) {
            if (j.revealMask & (1 << i) != 0 && market.revealedDigest(jobId, i) == majority) ++honest;
        }
        if (honest == 0) return 0;
        uint256 wanted = honest * uint256(j.units) * j.maxPricePerUnit;
        uint256 pool = market.auditPool();
        uint256 budget = wanted < pool ? wanted : pool;
        return budget / honest * honest;
    }

    function _majorityOf(uint256 jobId, uint256 n, uint256 revealMask)
        internal
        view
        returns (bytes32 digest, bool found)
    {
        uint256 revealed;
        for (uint256 i; i < n; ++i) {
            if (revealMask & (1 << i) != 0) ++revealed;
        }
        for (uint256 i; i < n; ++i) {
            if (revealMask & (1 << i) == 0) continue;
            bytes32 d = market.revealedDigest(jobId, i);
            uint256 votes;
            for (uint256 k; k < n; ++k) {
                if (revealMask & (1 << k) != 0 && market.revealedDigest(jobId, k) == d) ++votes;
            }
            if (votes * 2 > revealed) return (d, true);
        }
    }
}
