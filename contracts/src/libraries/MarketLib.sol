// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IJobMarket} from "../interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../interfaces/IProviderRegistry.sol";
import {JobLib} from "./JobLib.sol";
import {SortitionTree} from "./SortitionTree.sol";

/// @title MarketLib
/// @notice JobMarket logic deployed once and linked (delegatecalled), so the market stays within
/// the 24 KiB code-size limit of every EVM chain: the parameter bounds, the longest job lifetime
/// they allow, the audit draw, the on-chain draw of an audit round's verifiers, an executor's
/// release of its seat, and the `participants` view.
library MarketLib {
    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_VERIFIERS = 5;
    uint256 internal constant MIN_WINDOW = 10;
    uint256 internal constant MAX_WINDOW = 30 days;
    /// @dev Draws per call of `staffAudit` per open seat, and in all per round.
    uint256 internal constant DRAWS_PER_SEAT = 8;
    uint256 internal constant MAX_DRAWS = 255;
    /// @dev Job flag: the audit draw was re-seeded (IJobMarket.Job.flags bit 3).
    uint8 internal constant FLAG_RESEEDED = 8;
    /// @dev Job flag: the audit draw ran and did not select the job (bit 2).
    uint8 internal constant FLAG_DRAWN = 4;
    /// @dev Outcomes of `drawAudit`.
    uint8 internal constant DRAW_RESEEDED = 0;
    uint8 internal constant DRAW_AUDITED = 1;
    uint8 internal constant DRAW_CLEAR = 2;

    /// @notice Reverts with `JobMarketInvalidParams` naming the first parameter out of bounds.
    /// @param unbondingPeriod The registry's unbonding period; 0 skips the lifetime check.
    function check(IJobMarket.Params memory p, uint256 unbondingPeriod) external pure {
        _check(p, unbondingPeriod);
    }

    /// @notice `check` of parameters the owner sets on a running market, against `registry`'s
    /// unbonding period (the market's `setParams`; the copy and the registry call live here, off
    /// the market's code-size budget).
    function checkUpdate(IJobMarket.Params calldata p, IProviderRegistry registry) external view {
        _check(p, registry.unbondingPeriod());
    }

    function _check(IJobMarket.Params memory p, uint256 unbondingPeriod) private pure {
        if (p.feeBps > 1000) revert IJobMarket.JobMarketInvalidParams("feeBps above 1000");
        if (p.auditShareBps > BPS) revert IJobMarket.JobMarketInvalidParams("auditShareBps above 10000");
        if (p.auditBps > BPS) revert IJobMarket.JobMarketInvalidParams("auditBps above 10000");
        if (uint256(p.requesterShareBps) + p.rewardShareBps > BPS) {
            revert IJobMarket.JobMarketInvalidParams("requesterShareBps + rewardShareBps above 10000");
        }
        if (p.verifiers == 0 || p.verifiers > MAX_VERIFIERS || p.verifiers % 2 == 0) {
            revert IJobMarket.JobMarketInvalidParams("verifiers not 1, 3 or 5");
        }
        if (p.collateralMultiple == 0 || p.collateralMultiple > 20) {
            revert IJobMarket.JobMarketInvalidParams("collateralMultiple not in 1..20");
        }
        // A lazy executor caught with probability auditBps loses collateralMultiple x pay and
        // otherwise gains pay: its expected profit is <= 0 only under this bound.
        if (uint256(p.auditBps) * (1 + uint256(p.collateralMultiple)) < BPS) {
            revert IJobMarket.JobMarketInvalidParams("auditBps x (1 + collateralMultiple) below 10000");
        }
        if (
            !_windowOk(p.challengeWindow) || !_windowOk(p.verifierAssignWindow) || !_windowOk(p.verifierExecWindow)
                || !_windowOk(p.revealWindow) || !_windowOk(p.reassignWindow) || !_windowOk(p.maxAcceptWindow)
                || !_windowOk(p.maxExecWindow) || !_windowOk(p.minExecWindow)
        ) revert IJobMarket.JobMarketInvalidParams("a window is below 10 s or above 30 days");
        if (p.minExecWindow > p.maxExecWindow) {
            revert IJobMarket.JobMarketInvalidParams("minExecWindow above maxExecWindow");
        }
        if (p.verifierExecWindow < p.minExecWindow) {
            revert IJobMarket.JobMarketInvalidParams("verifierExecWindow below minExecWindow");
        }
        if (p.minFee == 0) revert IJobMarket.JobMarketInvalidParams("minFee is 0");
        if (unbondingPeriod != 0 && 2 * lifetime(p) > unbondingPeriod) {
            revert IJobMarket.JobMarketInvalidParams("2 x maxJobLifetime above the registry's unbonding period");
        }
    }

    /// @notice Longest a job can stay non-terminal: accept and execute, a reopen after a no-show
    /// (accept and execute again), the challenge window (or the replicas' reveal), then two audit
    /// rounds of drawing, executing and revealing.
    function lifetime(IJobMarket.Params memory p) public pure returns (uint256) {
        return _lifetime(
            p.maxAcceptWindow + uint256(p.maxExecWindow) * 2 + p.reassignWindow,
            p.challengeWindow,
            p.revealWindow,
            p.verifierAssignWindow + uint256(p.verifierExecWindow)
        );
    }

    /// @notice `lifetime` of the market's current parameters (its `maxJobLifetime`), read in place.
    function lifetimeOf(IJobMarket.Params storage p) external view returns (uint256) {
        return _lifetime(
            p.maxAcceptWindow + uint256(p.maxExecWindow) * 2 + p.reassignWindow,
            p.challengeWindow,
            p.revealWindow,
            p.verifierAssignWindow + uint256(p.verifierExecWindow)
        );
    }

    /// @dev The single source of randomness: swap for a VRF on chains where block hashes are weak.
    /// Zero for the current block, a future one, or one older than 256 blocks.
    function randomness(uint32 seedBlock) internal view returns (bytes32) {
        uint256 age;
        unchecked {
            age = uint32(uint32(block.number) - seedBlock); // seedBlock holds the low 32 bits
        }
        // slither-disable-next-line incorrect-equality -- block ages are exact integers: age 0 (current block) has no hash yet
        if (age == 0 || age > 256) return bytes32(0);
        return blockhash(block.number - age);
    }

    /// @notice Whether the audit draw of Committed job `jobId` selects it (see
    /// IJobMarket.auditSelected); reverts with the market's state error in any other state.
    function auditSelected(JobLib.StoredJob storage j, IJobMarket.Params storage p, uint256 jobId)
        external
        view
        returns (bool)
    {
        IJobMarket.JobState s = j.state;
        if (s != IJobMarket.JobState.Committed) {
            revert IJobMarket.JobMarketUnexpectedState(jobId, s, 1 << uint8(IJobMarket.JobState.Committed));
        }
        uint8 flags = j.flags;
        if (flags & FLAG_DRAWN != 0) return false;
        uint32 seedBlock = flags & FLAG_RESEEDED != 0 ? j.seedBlock : j.commitBlock0;
        bytes32 seed = randomness(seedBlock);
        // slither-disable-next-line incorrect-equality -- a zero hash is how blockhash reports an unknown block; intended
        if (seed == bytes32(0)) revert IJobMarket.JobMarketAuditNotDrawable(jobId, seedBlock);
        return selects(seed, jobId, p.auditBps);
    }

    /// @notice Runs the audit draw of Committed replicas = 1 job `jobId` from the hash of its commit
    /// block (or of the block a re-seed named). An aged-out hash is never read as a result either
    /// way: the draw is re-seeded from the current block, which the caller cannot know when it
    /// sends the transaction. When the draw selects the job, audit round 1 starts.
    /// With `recordClear` a clear draw is recorded (FLAG_DRAWN, `AuditDrawn(jobId, false)`) so that
    /// no later call can draw again; `finalize` settles at once instead.
    /// @return outcome DRAW_RESEEDED, DRAW_AUDITED or DRAW_CLEAR.
    function drawAudit(JobLib.StoredJob storage j, IJobMarket.Params storage p, uint256 jobId, bool recordClear)
        external
        returns (uint8 outcome)
    {
        uint32 seedBlock = j.flags & FLAG_RESEEDED != 0 ? j.seedBlock : j.commitBlock0;
        bytes32 seed = randomness(seedBlock);
        // slither-disable-next-line incorrect-equality -- a zero hash is how blockhash reports an unknown block; intended
        if (seed == bytes32(0)) {
            // slither-disable-next-line incorrect-equality -- exact block-number comparison: the seed block is the current one, its hash is not known yet
            if (uint32(block.number) == seedBlock) revert IJobMarket.JobMarketAuditNotDrawable(jobId, seedBlock);
            seedBlock = uint32(block.number);
            j.flags |= FLAG_RESEEDED;
            j.seedBlock = seedBlock;
            emit IJobMarket.AuditReseeded(jobId, seedBlock);
            return DRAW_RESEEDED;
        }
        if (!selects(seed, jobId, p.auditBps)) {
            if (recordClear) {
                j.flags |= FLAG_DRAWN;
                emit IJobMarket.AuditDrawn(jobId, false);
            }
            return DRAW_CLEAR;
        }
        startAudit(j, p, jobId, 1);
        emit IJobMarket.AuditDrawn(jobId, true);
        return DRAW_AUDITED;
    }

    /// @notice Opens audit round `round` of job `jobId` (1: k seats, 2: 2k + 1 fresh seats); its
    /// verifiers are drawn from the hash of this block, which nobody calling now can know.
    function startAudit(JobLib.StoredJob storage j, IJobMarket.Params storage p, uint256 jobId, uint8 round) public {
        uint8 k = p.verifiers;
        uint8 seats = round == 1 ? k : 2 * k + 1;
        uint32 staffBy = uint32(block.timestamp) + p.verifierAssignWindow;
        uint32 seedBlock = uint32(block.number);
        j.state = IJobMarket.JobState.Auditing;
        j.round = round;
        j.seats = seats;
        j.verifiersFrom = j.participants;
        j.draws = 0;
        j.seedBlock = seedBlock;
        j.deadline = staffBy;
        emit IJobMarket.AuditStarted(jobId, round, seats, seedBlock, staffBy);
    }

    /// @notice Hands the caller's executor seat of Assigned job `jobId` back (see
    /// IJobMarket.release); the caller has checked the state. The release fee (units x clearing
    /// price) is slashed to the market, the rest of the collateral unlocked, and the caller
    /// excluded from the job.
    /// @return fee What the registry sent to the market, for the caller to place.
    function release(
        JobLib.StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage parts,
        mapping(address => bool) storage excluded,
        JobLib.Accounts storage accounts,
        IProviderRegistry registry,
        uint256 jobId
    ) external returns (uint256 fee) {
        if (block.timestamp > j.deadline) revert IJobMarket.JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 replicas = j.replicas;
        for (uint256 i; i < replicas; ++i) {
            if (!JobLib.holds(j, parts, accounts, i, msg.sender)) continue;
            uint256 bit = 1 << i;
            // A committed result stays: its audit draw is seeded after the commit.
            if (j.commitMask & bit != 0) revert IJobMarket.JobMarketAlreadyCommitted(jobId, msg.sender);
            uint256 active = j.activeMask;
            if (active & bit == 0) break;
            j.activeMask = uint32(active & ~bit);
            excluded[msg.sender] = true;
            uint96 collateral = JobLib.collateral(j);
            fee = JobLib.pay(j);
            registry.slash(jobId, msg.sender, uint96(fee));
            registry.releaseCollateral(jobId, msg.sender, collateral - uint96(fee), false);
            emit IJobMarket.ProviderReleased(jobId, msg.sender, fee);
            return fee;
        }
        revert IJobMarket.JobMarketNotParticipant(jobId, msg.sender);
    }

    /// @notice Every seat of job `j` in order, seat 0's id turned back into its address (the
    /// market's `participants` view; kept here, off the market's code-size budget).
    function participants(
        JobLib.StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage parts,
        JobLib.Accounts storage accounts
    ) external view returns (IJobMarket.Participant[] memory list) {
        uint256 n = j.participants;
        list = new IJobMarket.Participant[](n);
        for (uint256 i; i < n; ++i) {
            IJobMarket.Participant storage s = JobLib.seat(j, parts, i);
            list[i] = IJobMarket.Participant({
                provider: JobLib.providerOf(j, parts, accounts, i),
                commitment: s.commitment,
                commitBlock: s.commitBlock
            });
        }
    }

    /// @notice Whether `seed` selects job `jobId` for an audit at probability `auditBps`.
    function selects(bytes32 seed, uint256 jobId, uint16 auditBps) internal pure returns (bool) {
        // slither-disable-next-line weak-prng -- the documented randomness seam (block hash of a block after the trigger); replace with a VRF on chains where block hashes are weak
        return uint256(keccak256(abi.encode(seed, jobId))) % BPS < auditBps;
    }

    /// @notice Draws verifiers for the current round of Auditing job `jobId` (see
    /// IJobMarket.staffAudit); the caller has checked the state.
    function staffAudit(
        JobLib.StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage parts,
        JobLib.Accounts storage accounts,
        IProviderRegistry registry,
        uint256 jobId,
        uint32 verifierExecWindow
    ) external returns (uint256 filled) {
        uint256 from = j.verifiersFrom;
        uint256 n = j.participants;
        uint256 seats = j.seats;
        filled = n - from;
        if (filled == seats) revert IJobMarket.JobMarketAuditStaffed(jobId);
        if (block.timestamp > j.deadline) revert IJobMarket.JobMarketDeadlinePassed(jobId, j.deadline);
        uint32 seedBlock = j.seedBlock;
        // slither-disable-next-line incorrect-equality -- exact block-number comparison: the seed block is the current one, its hash is not known yet
        if (uint32(block.number) == seedBlock) revert IJobMarket.JobMarketSeedNotReady(jobId, seedBlock);
        bytes32 seed = randomness(seedBlock);
        // The registry draws from the weights at the start of the current epoch; a seed from an
        // earlier epoch was known while those weights could still change, so it is replaced.
        // slither-disable-next-line incorrect-equality -- a zero hash means unknown or aged; the epoch comparison is exact integer arithmetic
        if (seed == bytes32(0) || seedBlock / SortitionTree.EPOCH_BLOCKS != SortitionTree.epoch()) {
            seedBlock = uint32(block.number);
            j.seedBlock = seedBlock;
            j.draws = 0;
            emit IJobMarket.AuditReseeded(jobId, seedBlock);
            return filled;
        }
        address[] memory drawn = _drawVerifiers(j, parts, accounts, registry, jobId, seed, n, seats - filled);
        filled += drawn.length;
        // slither-disable-next-line incorrect-equality -- seat counts are small exact integers
        _seatVerifiers(j, parts, jobId, drawn, n, filled == seats ? verifierExecWindow : 0);
    }

    /// @dev Records drawn verifiers as participants from index `n`; once the round is staffed
    /// (`execWindow` non-zero) their commit window starts now.
    function _seatVerifiers(
        JobLib.StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage parts,
        uint256 jobId,
        address[] memory drawn,
        uint256 n,
        uint32 execWindow
    ) private {
        uint256 got = drawn.length;
        bool staffed = execWindow != 0;
        uint32 deadline = staffed ? uint32(block.timestamp) + execWindow : j.deadline;
        uint80 price = j.clearingPrice;
        for (uint256 i; i < got; ++i) {
            parts[n + i] = IJobMarket.Participant({provider: drawn[i], commitment: 0, commitBlock: 0});
            emit IJobMarket.ProviderAssigned(jobId, drawn[i], uint8(n + i), price, deadline);
        }
        j.participants = uint8(n + got);
        j.activeMask = uint32(j.activeMask | JobLib.range(n, n + got));
        if (staffed) {
            j.deadline = deadline;
            emit IJobMarket.AuditStaffed(jobId, j.round, deadline);
        }
    }

    /// @dev Asks the registry for `need` verifiers, excluding the requester and every participant so
    /// far; the draw sequence continues where the round's earlier calls left it.
    function _drawVerifiers(
        JobLib.StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage parts,
        JobLib.Accounts storage accounts,
        IProviderRegistry registry,
        uint256 jobId,
        bytes32 seed,
        uint256 n,
        uint256 need
    ) private returns (address[] memory drawn) {
        address[] memory excluded = new address[](n + 1);
        for (uint256 i; i < n; ++i) {
            excluded[i] = JobLib.providerOf(j, parts, accounts, i);
        }
        excluded[n] = accounts.accountOf[j.requester];
        uint256 draws;
        (drawn, draws) = registry.drawVerifiers(jobId, _drawRequest(j, jobId, seed, need), excluded);
        j.draws = uint8(j.draws + draws);
    }

    function _drawRequest(JobLib.StoredJob storage j, uint256 jobId, bytes32 seed, uint256 need)
        private
        view
        returns (IProviderRegistry.Draw memory)
    {
        uint256 used = j.draws;
        uint256 budget = MAX_DRAWS - used;
        if (budget > need * DRAWS_PER_SEAT) budget = need * DRAWS_PER_SEAT;
        return IProviderRegistry.Draw({
            seed: keccak256(abi.encode(seed, jobId, j.round)),
            profile: j.profile,
            count: uint8(need),
            firstDraw: uint16(used),
            maxDraws: uint16(budget),
            collateral: JobLib.collateral(j)
        });
    }

    /// @dev `executions`: accept, execute, reassign and execute again; `staffAndExec`: one audit
    /// round's draw and commit windows.
    function _lifetime(uint256 executions, uint256 challenge, uint256 revealTime, uint256 staffAndExec)
        private
        pure
        returns (uint256)
    {
        uint256 first = challenge > revealTime ? challenge : revealTime;
        return executions + first + 2 * (staffAndExec + revealTime);
    }

    function _windowOk(uint32 w) private pure returns (bool) {
        return w >= MIN_WINDOW && w <= MAX_WINDOW;
    }
}
