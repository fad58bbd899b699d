// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {HandlerBase} from "./HandlerBase.sol";
import {RegistryHandler} from "./RegistryHandler.sol";
import {ComputeToken} from "../../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../../src/libraries/JobLib.sol";

/// @notice Drives the JobMarket through every lifecycle path with bounded fuzzed inputs: 3
/// requesters create jobs (1..5 replicas), the matcher assigns eligible distinct providers,
/// providers commit honest, colluding-wrong, unique-wrong, copied or garbage results or skip,
/// keepers draw audits, requesters challenge, verifiers are assigned, results are revealed or
/// withheld, keepers finalize and expire after moving time, everybody withdraws.
/// @dev Each action prefers a job in a state where it can succeed, so most calls do something.
/// Where the outcome of a call is fully determined by state the handler can read, it is checked
/// (an eligible assignment, an in-time honest commit or reveal, an overdue finalize or expire
/// must succeed; a copied or wrong reveal, a foreign cancel or challenge must not).
contract JobMarketHandler is RegistryHandler {
    uint256 internal constant S_OPEN = 1 << OPEN;
    uint256 internal constant S_ASSIGNED = 1 << ASSIGNED;
    uint256 internal constant S_COMMITTED = 1 << COMMITTED;
    uint256 internal constant S_AUDITING = 1 << AUDITING;
    uint256 internal constant S_REVEALING = 1 << REVEALING;
    uint256 internal constant S_LIVE = S_OPEN | S_ASSIGNED | S_COMMITTED | S_AUDITING | S_REVEALING;

    /// @dev How a provider commits.
    uint256 internal constant HONEST = 0;
    uint256 internal constant COLLUDE = 1; // the same wrong digest as every other colluder
    uint256 internal constant WRONG = 2; //   a wrong digest of its own
    uint256 internal constant COPY = 3; //    copies another participant's resultHash and seal
    uint256 internal constant GARBAGE = 4; // a commitment no digest opens

    constructor(
        ComputeToken token_,
        ProviderRegistry registry_,
        JobMarket market_,
        address owner_,
        address matcher_,
        address keeper_,
        address treasury_
    ) HandlerBase(token_, registry_, market_, owner_, matcher_, keeper_, treasury_) {}

    // ================================================================ digests

    function honestDigest(uint256 id) public pure returns (bytes32) {
        return keccak256(abi.encode("correct output", id));
    }

    function colludingDigest(uint256 id) public pure returns (bytes32) {
        return keccak256(abi.encode("fabricated output", id));
    }

    function _commitMode(uint256 seed) internal pure returns (uint256) {
        uint256 r = seed % 20;
        if (r < 12) return HONEST;
        if (r < 15) return COLLUDE;
        if (r < 17) return WRONG;
        if (r < 19) return COPY;
        return GARBAGE;
    }

    // ================================================================ job selection

    /// @dev What an action needs of the job it picks, besides its state.
    uint8 internal constant ANY = 0;
    uint8 internal constant IN_TIME = 1; //      its deadline has not passed
    uint8 internal constant TO_COMMIT = 2; //    in time, and a participant owes a commit
    uint8 internal constant TO_REVEAL = 3; //    in time, and a participant has not revealed
    uint8 internal constant NO_VERIFIERS = 4; // in time, an audit whose verifiers are not assigned

    /// @notice A job whose last observed state is in `mask` and that meets `need`, searching from a
    /// fuzzed start; 0 when there is none.
    function _pickJob(uint256 seed, uint256 mask) internal view returns (uint256) {
        return _pickJob(seed, mask, ANY);
    }

    function _pickJob(uint256 seed, uint256 mask, uint8 need) internal view returns (uint256) {
        uint256 n = jobsSeen;
        if (n == 0) return 0;
        uint256 start = seed % n;
        for (uint256 k; k < n; ++k) {
            uint256 id = 1 + (start + k) % n;
            if ((1 << _jobs[id].lastState) & mask != 0 && _meets(id, need)) return id;
        }
        return 0;
    }

    function _meets(uint256 id, uint8 need) internal view returns (bool) {
        if (need == ANY) return true;
        IJobMarket.Job memory j = market.job(id);
        if (block.timestamp > j.deadline) return false;
        if (need == TO_COMMIT) return _pendingCommitter(id, 0) != address(0);
        if (need == TO_REVEAL) return _pendingRevealer(id, 0) != address(0);
        if (need == NO_VERIFIERS) return j.participants == j.replicas;
        return true;
    }

    function _request(uint256 seed, uint256 unitsSeed, uint256 priceSeed)
        internal
        view
        returns (IJobMarket.JobRequest memory r)
    {
        IJobMarket.Params memory p = market.params();
        uint256 rep = seed % 10;
        r.replicas = rep < 5 ? 1 : uint8(2 + rep % 4);
        r.units = uint32(bound(unitsSeed, 1, 500));
        r.maxPricePerUnit =
            (seed >> 8) % 8 == 0 ? uint80(bound(priceSeed, 3, 999)) : uint80(bound(priceSeed, 1e14, 2e15));
        r.profile = uint8((seed >> 16) % 2);
        uint16[8] memory vram = [uint16(0), 0, 0, 0, 0, 24, 40, 80];
        r.minVramGiB = vram[(seed >> 24) % 8];
        r.acceptWindow =
            uint32(bound(seed >> 32, 10 minutes, p.maxAcceptWindow < 6 hours ? p.maxAcceptWindow : 6 hours));
        r.execWindow = uint32(bound(seed >> 64, 10 minutes, p.maxExecWindow < 6 hours ? p.maxExecWindow : 6 hours));
        r.specHash = keccak256(abi.encode("spec", seed)); // keccak, not sha256: no precompile between prank and call
    }

    // ================================================================ requester actions

    /// @notice Live jobs whose deadline has not passed.
    function _busyJobs() internal view returns (uint256 busy) {
        uint256 n = jobsSeen;
        for (uint256 id = 1; id <= n; ++id) {
            if ((1 << _jobs[id].lastState) & S_LIVE != 0 && block.timestamp <= market.job(id).deadline) ++busy;
        }
    }

    function createJob(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (jobsSeen >= MAX_JOBS) return;
        // Few jobs at a time, so that a 64-call run takes some of them all the way.
        if (who % 4 != 0 && _busyJobs() >= 3) return;
        address r = _requesters[who % N_REQUESTERS];
        IJobMarket.JobRequest memory req = _request(seed, unitsSeed, priceSeed);
        if (_marketCall(r, 0, abi.encodeCall(IJobMarket.createJob, (req)))) _hit("createJob");
        else _violate(8, "a valid job request was rejected");
    }

    function createJobs(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (jobsSeen + 3 > MAX_JOBS) return;
        if (who % 4 != 0 && _busyJobs() >= 2) return;
        address r = _requesters[who % N_REQUESTERS];
        uint256 n = 2 + seed % 2;
        IJobMarket.JobRequest[] memory reqs = new IJobMarket.JobRequest[](n);
        for (uint256 i; i < n; ++i) {
            reqs[i] = _request(uint256(keccak256(abi.encode(seed, i))), unitsSeed >> (i * 16), priceSeed >> (i * 16));
        }
        if (_marketCall(r, 0, abi.encodeCall(IJobMarket.createJobs, (reqs)))) _hit("createJobs");
        else _violate(8, "a valid batch of job requests was rejected");
    }

    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    /// @notice Creates jobs authorising the pull with an ERC-2612 permit (for an unlimited amount,
    /// so the requester's allowance stays unlimited); sometimes the signature is stale, and the
    /// earlier approval must still carry the pull.
    function createJobsWithPermit(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (jobsSeen + 2 > MAX_JOBS) return;
        if (who % 4 != 0 && _busyJobs() >= 2) return;
        uint256 i = who % N_REQUESTERS;
        address r = _requesters[i];
        uint256 n = 1 + seed % 2;
        IJobMarket.JobRequest[] memory reqs = new IJobMarket.JobRequest[](n);
        for (uint256 k; k < n; ++k) {
            reqs[k] = _request(uint256(keccak256(abi.encode(seed, k))), unitsSeed >> (k * 16), priceSeed >> (k * 16));
        }
        uint256 deadline = block.timestamp + 1 hours;
        uint256 nonce = token.nonces(r) + (seed % 5 == 0 ? 1 : 0); // a stale or future nonce fails the permit
        bytes32 digest = keccak256(
            abi.encodePacked(
                "\x19\x01",
                token.DOMAIN_SEPARATOR(),
                keccak256(abi.encode(PERMIT_TYPEHASH, r, address(market), type(uint256).max, nonce, deadline))
            )
        );
        (uint8 v, bytes32 rs, bytes32 ss) = vm.sign(_requesterKeys[i], digest);
        bytes memory data =
            abi.encodeCall(IJobMarket.createJobsWithPermit, (reqs, type(uint256).max, deadline, v, rs, ss));
        if (_marketCall(r, 0, data)) _hit("createJobsWithPermit");
        else _violate(8, "a valid batch of job requests with a permit was rejected");
    }

    /// @notice The requester cancels an Open job; sometimes someone else tries and must fail.
    function cancel(uint256 jobSeed, uint256 who) external {
        uint256 id = _pickJob(jobSeed, S_OPEN);
        if (id == 0) return;
        _cancel(id, who % 4 == 0);
    }

    function _cancel(uint256 id, bool foreign) internal {
        address caller = foreign ? outsider : _jobs[id].requester;
        bool ok = _marketCall(caller, id, abi.encodeCall(IJobMarket.cancel, (id)));
        if (foreign && ok) _violate(5, "a stranger cancelled a job");
        if (!foreign && !ok) _violate(8, "the requester could not cancel an Open job");
        if (ok) _hit("cancelled");
    }

    /// @notice The requester challenges a Committed job; sometimes a stranger tries and must fail.
    function challenge(uint256 jobSeed, uint256 who) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED, IN_TIME);
        if (id == 0) return;
        _challenge(id, who % 5 == 0);
    }

    function _challenge(uint256 id, bool foreign) internal {
        IJobMarket.Job memory j = market.job(id);
        address caller = foreign ? outsider : j.requester;
        bool ok = _marketCall(caller, id, abi.encodeCall(IJobMarket.challenge, (id)));
        if (foreign && ok) _violate(5, "a stranger challenged a job");
        if (!foreign && !ok && block.timestamp <= j.deadline) _violate(8, "an in-time challenge was rejected");
        if (!foreign && ok && block.timestamp > j.deadline) _violate(5, "a late challenge was accepted");
    }

    // ================================================================ matcher actions

    /// @notice Assigns eligible distinct providers to an Open job; sometimes slips in an ineligible
    /// one (a duplicate, an excluded no-show or an unbonding provider), which must be refused.
    function assign(uint256 jobSeed, uint256 pickSeed) external {
        uint256 id = _pickJob(jobSeed, S_OPEN, IN_TIME);
        if (id == 0) return;
        _assign(id, pickSeed);
    }

    function _assign(uint256 id, uint256 pickSeed) internal {
        IJobMarket.Job memory j = market.job(id);
        if (block.timestamp > j.deadline) return;
        (address[] memory chosen, bool enough) = _choose(id, j, j.replicas, false, pickSeed);
        if (!enough) return;
        bool bad;
        if (pickSeed % 8 == 0) bad = _spoil(id, chosen, pickSeed);
        bool ok = _marketCall(matcher, id, abi.encodeCall(IJobMarket.assign, (id, chosen)));
        if (ok && bad) _violate(4, "an ineligible provider was assigned");
        if (!ok && !bad) _violate(8, "an assignment of eligible providers was rejected");
    }

    /// @notice Assigns the k verifiers of an audit from eligible providers other than the executor.
    function assignVerifiers(uint256 jobSeed, uint256 pickSeed) external {
        uint256 id = _pickJob(jobSeed, S_AUDITING, NO_VERIFIERS);
        if (id == 0) return;
        _assignVerifiers(id, pickSeed);
    }

    function _assignVerifiers(uint256 id, uint256 pickSeed) internal {
        IJobMarket.Job memory j = market.job(id);
        if (j.participants != j.replicas || block.timestamp > j.deadline) return;
        (address[] memory chosen, bool enough) = _choose(id, j, market.params().verifiers, true, pickSeed);
        if (!enough) return;
        bool bad;
        if (pickSeed % 8 == 0) bad = _spoil(id, chosen, pickSeed);
        bool ok = _marketCall(matcher, id, abi.encodeCall(IJobMarket.assignVerifiers, (id, chosen)));
        if (ok && bad) _violate(4, "an ineligible verifier was assigned");
        if (!ok && !bad) _violate(8, "an assignment of eligible verifiers was rejected");
        if (ok) _hit("verifiersAssigned");
    }

    /// @notice `n` distinct eligible providers in a fuzzed order.
    function _choose(uint256 id, IJobMarket.Job memory j, uint256 n, bool verifiers, uint256 seed)
        internal
        view
        returns (address[] memory chosen, bool enough)
    {
        address[] memory pool = new address[](N_PROVIDERS);
        uint256 count;
        uint96 collateral = _jobs[id].collateral;
        address executor = verifiers ? market.participants(id)[0].provider : address(0);
        for (uint256 i; i < N_PROVIDERS; ++i) {
            address p = _providers[i];
            if (p != executor && _eligible(id, j, p, collateral)) pool[count++] = p;
        }
        if (count < n) return (chosen, false);
        for (uint256 i; i < n; ++i) {
            uint256 k = i + uint256(keccak256(abi.encode(seed, i))) % (count - i);
            (pool[i], pool[k]) = (pool[k], pool[i]);
        }
        chosen = new address[](n);
        for (uint256 i; i < n; ++i) {
            chosen[i] = pool[i];
        }
        return (chosen, true);
    }

    /// @notice The registry's and market's assignment rules, as read from state.
    function _eligible(uint256 id, IJobMarket.Job memory j, address p, uint96 collateral) internal view returns (bool) {
        IProviderRegistry.Provider memory r = registry.provider(p);
        return r.registered && r.unbondAt == 0 && (r.profileMask >> j.profile) & 1 != 0 && r.vramGiB >= j.minVramGiB
            && r.pricePerUnit <= j.maxPricePerUnit && uint256(r.stake) - r.locked >= collateral
            && !_parts[id][p].slashed && !_parts[id][p].assigned;
    }

    /// @notice Replaces one chosen provider by an ineligible one; returns whether it found one.
    function _spoil(uint256 id, address[] memory chosen, uint256 seed) internal view returns (bool) {
        uint256 slot = (seed >> 8) % chosen.length;
        if (chosen.length > 1 && (seed >> 16) % 2 == 0) {
            chosen[slot] = chosen[(slot + 1) % chosen.length]; // a duplicate
            return true;
        }
        for (uint256 i; i < N_PROVIDERS; ++i) {
            address p = _providers[i];
            IProviderRegistry.Provider memory r = registry.provider(p);
            bool excluded = _parts[id][p].slashed;
            if (excluded || (r.registered && r.unbondAt != 0) || !r.registered) {
                chosen[slot] = p;
                return true;
            }
        }
        return false;
    }

    // ================================================================ provider actions

    /// @notice One participant that still owes a commit commits (mode fuzzed).
    function commit(uint256 jobSeed, uint256 who, uint256 modeSeed) external {
        uint256 id = _pickJob(jobSeed, S_ASSIGNED | S_AUDITING, TO_COMMIT);
        if (id == 0) return;
        address p = _pendingCommitter(id, who);
        if (p == address(0)) return;
        _commitAs(id, p, _commitMode(modeSeed), modeSeed);
    }

    /// @notice Every participant that owes a commit commits, each with its own fuzzed mode; about
    /// one in eight skips (a no-show).
    function commitRound(uint256 jobSeed, uint256 pattern) external {
        uint256 id = _pickJob(jobSeed, S_ASSIGNED | S_AUDITING, TO_COMMIT);
        if (id == 0) return;
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i; i < ps.length; ++i) {
            uint256 seed = uint256(keccak256(abi.encode(pattern, i)));
            if (seed % 8 == 0) continue;
            if (_owesCommit(id, ps[i].provider)) _commitAs(id, ps[i].provider, _commitMode(seed >> 8), seed);
            if (_jobs[id].lastState >= REVEALING || _jobs[id].lastState == COMMITTED) break;
        }
    }

    function _owesCommit(uint256 id, address p) internal view returns (bool) {
        Part storage pt = _parts[id][p];
        return pt.assigned && pt.active && !pt.committed;
    }

    function _pendingCommitter(uint256 id, uint256 seed) internal view returns (address) {
        IJobMarket.Participant[] memory ps = market.participants(id);
        uint256 n = ps.length;
        if (n == 0) return address(0);
        for (uint256 k; k < n; ++k) {
            address p = ps[(seed % n + k) % n].provider;
            if (_owesCommit(id, p)) return p;
        }
        return address(0);
    }

    function _commitAs(uint256 id, address p, uint256 mode, uint256 seed) internal returns (bool ok) {
        GJob storage g = _jobs[id];
        bytes32 digest;
        bytes32 rh;
        bytes32 sl;
        bool known = true;
        if (mode == COPY && g.lastResultHash != 0) {
            (rh, sl) = (g.lastResultHash, g.lastSeal);
            known = false;
        } else if (mode == GARBAGE) {
            rh = keccak256(abi.encode("garbage", id, p, seed));
            sl = keccak256(abi.encode("garbage seal", id, p, seed));
            known = false;
        } else {
            digest = mode == COLLUDE
                ? colludingDigest(id)
                : mode == WRONG ? keccak256(abi.encode("wrong", id, p)) : honestDigest(id);
            rh = JobLib.resultHash(id, digest);
            sl = JobLib.seal(p, id, digest);
        }
        IJobMarket.Job memory j = market.job(id);
        bool due = _commitDue(id, j, p);
        ok = _marketCall(p, id, abi.encodeCall(IJobMarket.commit, (id, rh, sl)));
        if (ok && !due) _violate(5, "a commit was accepted out of turn or late");
        if (!ok && due) _violate(8, "an in-time commit of a participant was rejected");
        if (!ok) return false;
        Part storage pt = _parts[id][p];
        pt.committed = true;
        pt.digestKnown = known;
        pt.digest = digest;
        if (known) (g.lastResultHash, g.lastSeal) = (rh, sl);
        _hit(mode == HONEST ? bytes32("commitHonest") : mode == COPY ? bytes32("commitCopy") : bytes32("commitBad"));
    }

    /// @dev Executors commit while Assigned, verifiers while Auditing, before the deadline.
    function _commitDue(uint256 id, IJobMarket.Job memory j, address p) internal view returns (bool) {
        if (block.timestamp > j.deadline || !_owesCommit(id, p)) return false;
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i; i < ps.length; ++i) {
            if (ps[i].provider != p) continue;
            if (uint8(j.state) == ASSIGNED) return i < j.replicas;
            if (uint8(j.state) == AUDITING) return i >= j.replicas;
        }
        return false;
    }

    /// @notice A participant reveals: its committed digest (must succeed in time), or a wrong one,
    /// or (for a copied / garbage commitment) the digest it copied; or a stranger tries. DESIGN 9.
    function reveal(uint256 jobSeed, uint256 who, uint256 modeSeed) external {
        uint256 id = _pickJob(jobSeed, S_REVEALING, TO_REVEAL);
        if (id == 0) return;
        address p = _pendingRevealer(id, who);
        if (p == address(0)) return;
        uint256 m = modeSeed % 6;
        if (m == 0) _revealForged(id, outsider, honestDigest(id));
        else if (m == 1) _revealForged(id, p, keccak256(abi.encode("never committed", id, modeSeed)));
        else _revealAs(id, p);
    }

    /// @notice Every pending participant reveals or withholds (about one in five withholds).
    function revealRound(uint256 jobSeed, uint256 pattern) external {
        uint256 id = _pickJob(jobSeed, S_REVEALING, TO_REVEAL);
        if (id == 0) return;
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i; i < ps.length; ++i) {
            Part storage pt = _parts[id][ps[i].provider];
            if (!pt.committed || pt.revealed || pt.slashed) continue;
            if (uint256(keccak256(abi.encode(pattern, i))) % 5 == 0) {
                _hit("withheld");
                continue;
            }
            _revealAs(id, ps[i].provider);
        }
    }

    function _pendingRevealer(uint256 id, uint256 seed) internal view returns (address) {
        IJobMarket.Participant[] memory ps = market.participants(id);
        uint256 n = ps.length;
        for (uint256 k; k < n; ++k) {
            address p = ps[(seed % n + k) % n].provider;
            Part storage pt = _parts[id][p];
            if (pt.committed && !pt.revealed && !pt.slashed) return p;
        }
        return address(0);
    }

    /// @dev Reveals what `p` committed; a copycat or garbage committer tries the honest and the
    /// colluding digest, which must both fail.
    function _revealAs(uint256 id, address p) internal {
        Part storage pt = _parts[id][p];
        if (!pt.digestKnown) {
            _revealForged(id, p, honestDigest(id));
            _revealForged(id, p, colludingDigest(id));
            return;
        }
        IJobMarket.Job memory j = market.job(id);
        bool due = uint8(j.state) == REVEALING && block.timestamp <= j.deadline;
        bool ok = _marketCall(p, id, abi.encodeCall(IJobMarket.reveal, (id, pt.digest)));
        if (!ok && due) _violate(9, "a reveal matching hash and seal was rejected");
        if (ok && !due) _violate(9, "a late reveal was accepted");
    }

    /// @dev A reveal whose digest does not open the caller's commitment: it must fail.
    function _revealForged(uint256 id, address p, bytes32 digest) internal {
        Part storage pt = _parts[id][p];
        if (pt.digestKnown && pt.digest == digest) return; // not forged after all
        if (_marketCall(p, id, abi.encodeCall(IJobMarket.reveal, (id, digest)))) {
            _violate(9, "a reveal not matching hash and seal was accepted");
        } else {
            _hit("forgedRevealRefused");
        }
    }

    // ================================================================ keeper actions

    /// @notice Runs the audit draw of a Committed job (moving one block first when needed).
    function drawAudit(uint256 jobSeed) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED);
        if (id == 0) return;
        _drawAudit(id);
    }

    function _drawAudit(uint256 id) internal {
        if (block.number <= market.participants(id)[0].commitBlock) _advance(12);
        if (!_marketCall(keeper, id, abi.encodeCall(IJobMarket.drawAudit, (id)))) {
            _violate(8, "the audit draw failed on a Committed job");
        }
    }

    /// @notice Finalizes a Committed / Auditing / Revealing job, usually after moving past its deadline.
    function finalize(uint256 jobSeed, uint256 timing) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED | S_AUDITING | S_REVEALING);
        if (id == 0) return;
        if (timing % 4 != 0) _advancePast(market.job(id).deadline, timing % 10 minutes);
        _finalize(id);
    }

    function _finalize(uint256 id) internal returns (bool ok) {
        uint256 deadline = market.job(id).deadline;
        ok = _marketCall(keeper, id, abi.encodeCall(IJobMarket.finalize, (id)));
        if (!ok && block.timestamp > deadline) _violate(8, "finalize failed after the deadline");
        if (ok) _hit("finalized");
    }

    /// @notice Expires an Open / Assigned / Auditing job, usually after moving past its deadline.
    function expire(uint256 jobSeed, uint256 timing) external {
        uint256 id = _pickJob(jobSeed, S_OPEN | S_ASSIGNED | S_AUDITING);
        if (id == 0) return;
        if (timing % 4 != 0) _advancePast(market.job(id).deadline, timing % 10 minutes);
        _expire(id);
    }

    function _expire(uint256 id) internal returns (bool ok) {
        uint256 deadline = market.job(id).deadline;
        ok = _marketCall(keeper, id, abi.encodeCall(IJobMarket.expire, (id)));
        if (!ok && block.timestamp > deadline) _violate(8, "expire failed after the deadline");
        if (ok && block.timestamp <= deadline) _violate(5, "a job was expired before its deadline");
        if (ok) _hit("expiredCall");
    }

    /// @notice Time passes: mostly a block or minutes, sometimes hours, rarely up to two days.
    function warp(uint256 seed) external {
        uint256 kind = seed % 10;
        uint256 secs = kind < 4
            ? 12
            : kind < 7
                ? bound(seed >> 8, 1 minutes, 30 minutes)
                : kind < 9 ? bound(seed >> 8, 30 minutes, 8 hours) : bound(seed >> 8, 8 hours, 2 days);
        _advance(secs);
    }

    /// @notice DESIGN 8: every job past its deadline can be advanced, by expire (Open, Assigned,
    /// Auditing) or finalize (Committed, Revealing); any failure is a liveness violation.
    function advanceAll() external {
        _advanceAll();
    }

    function _advanceAll() internal returns (uint256 live) {
        uint256 n = jobsSeen;
        for (uint256 id = 1; id <= n; ++id) {
            uint8 s = _jobs[id].lastState;
            if ((1 << s) & S_LIVE == 0) continue;
            if (block.timestamp <= market.job(id).deadline) {
                ++live;
                continue;
            }
            bool ok = (1 << s) & (S_OPEN | S_ASSIGNED | S_AUDITING) != 0 ? _expire(id) : _finalize(id);
            if (ok) _hit("advanced");
            if (_jobs[id].lastState < SETTLED) ++live;
        }
    }

    /// @notice Drives one live job one step along its natural path, with fuzzed choices; the
    /// shortest route to the deep states (audits, verifier reveals, majority resolution).
    function progress(uint256 jobSeed, uint256 choice) external {
        _progress(jobSeed, choice);
    }

    /// @notice The live, in-time job furthest along its lifecycle (0 if none).
    function _deepestJob(uint256 seed) internal view returns (uint256 best) {
        uint256 n = jobsSeen;
        if (n == 0) return 0;
        uint8 bestState;
        uint256 start = seed % n;
        for (uint256 k; k < n; ++k) {
            uint256 id = 1 + (start + k) % n;
            uint8 s = _jobs[id].lastState;
            if ((1 << s) & S_LIVE == 0 || s <= bestState || block.timestamp > market.job(id).deadline) continue;
            (best, bestState) = (id, s);
        }
    }

    /// @notice Takes one live job (the most advanced one) up to 12 steps along its path, each step
    /// with its own fuzzed choice: whole lifecycles in one call, interleaved with the other actions.
    function lifecycle(uint256 jobSeed, uint256 choices) external {
        uint256 id = _deepestJob(jobSeed);
        if (id == 0) id = _pickJob(jobSeed, S_LIVE);
        if (id == 0) return;
        for (uint256 k; k < 12 && (1 << _jobs[id].lastState) & S_LIVE != 0; ++k) {
            _step(id, uint256(keccak256(abi.encode(choices, k))));
        }
        _hit("lifecycle");
    }

    function _progress(uint256 jobSeed, uint256 choice) internal {
        // Half the time the most advanced job, so that some jobs go all the way in a short run.
        uint256 id = (choice >> 128) % 2 == 0 ? _deepestJob(jobSeed) : _pickJob(jobSeed, S_LIVE, IN_TIME);
        if (id == 0) id = _pickJob(jobSeed, S_LIVE);
        if (id == 0) return;
        _step(id, choice);
    }

    /// @dev One step of job `id` along its natural path, the branch taken chosen by `choice`.
    function _step(uint256 id, uint256 choice) internal {
        uint8 s = _jobs[id].lastState;
        IJobMarket.Job memory j = market.job(id);
        uint256 c = choice % 16;
        if (s == OPEN) {
            if (c == 0) return _cancel(id, false);
            if (block.timestamp > j.deadline || c == 1) {
                _advancePast(j.deadline, 0);
                _expire(id);
                return;
            }
            return _assign(id, choice >> 4);
        }
        if (s == ASSIGNED || (s == AUDITING && j.participants > j.replicas)) {
            address p = _pendingCommitter(id, choice >> 4);
            // a reopened job sees more no-shows, so that a second no-show (Expired) is reached
            uint256 noShows = j.flags & 1 != 0 ? 6 : 2;
            if (p == address(0) || c < noShows || block.timestamp > j.deadline) {
                _advancePast(j.deadline, 0); // the rest are no-shows
                _expire(id);
                return;
            }
            _commitAs(id, p, _commitMode(choice >> 8), choice);
            return;
        }
        if (s == AUDITING) {
            if (c < 2 || block.timestamp > j.deadline) {
                _advancePast(j.deadline, 0); // nobody picked verifiers in time
                _finalize(id);
                return;
            }
            return _assignVerifiers(id, choice >> 4);
        }
        if (s == COMMITTED) {
            if (c < 3 && block.timestamp <= j.deadline) return _challenge(id, false);
            if (c < 8) return _drawAudit(id);
            _advancePast(j.deadline, 0);
            _finalize(id);
            return;
        }
        // Revealing
        address r = _pendingRevealer(id, choice >> 4);
        if (r == address(0) || c < 3 || block.timestamp > j.deadline) {
            if (r != address(0)) _advancePast(j.deadline, 0); // the rest withhold
            _finalize(id);
            return;
        }
        _revealAs(id, r);
    }

    // ================================================================ misuse

    /// @notice A call on a random job whatever its state, by its rightful caller: it may only
    /// succeed in a state the function allows (DESIGN 5: terminal states are final, no shortcut
    /// edges). Commits and reveals go through the checked helpers, which judge them the same way.
    function misuse(uint256 jobSeed, uint256 fnSeed, uint256 who) external {
        uint256 fn = fnSeed % 9;
        address p = _providers[who % N_PROVIDERS];
        uint256[9] memory allowedBy = [
            S_OPEN, // cancel
            S_COMMITTED, // challenge
            S_COMMITTED | S_AUDITING | S_REVEALING, // finalize
            S_OPEN | S_ASSIGNED | S_AUDITING, // expire
            S_COMMITTED, // drawAudit
            S_OPEN, // assign
            S_AUDITING, // assignVerifiers
            S_ASSIGNED | S_AUDITING, // commit
            S_REVEALING // reveal
        ];
        uint256 allowed = allowedBy[fn];
        // Mostly a job in a state the function forbids (terminal ones included).
        uint256 everyState = S_LIVE | (1 << SETTLED) | (1 << REFUNDED) | (1 << EXPIRED);
        uint256 id = _pickJob(jobSeed, (fnSeed >> 8) % 4 == 0 ? everyState : everyState & ~allowed);
        if (id == 0) return;
        if (fn == 7) {
            _commitAs(id, p, HONEST, who);
            return;
        }
        if (fn == 8) {
            if (_parts[id][p].digestKnown && !_parts[id][p].revealed) _revealAs(id, p);
            else _revealForged(id, p, honestDigest(id));
            return;
        }
        IJobMarket.Job memory j = market.job(id);
        address caller = fn < 2 ? j.requester : fn < 5 ? keeper : matcher;
        bytes memory data;
        if (fn == 0) {
            data = abi.encodeCall(IJobMarket.cancel, (id));
        } else if (fn == 1) {
            data = abi.encodeCall(IJobMarket.challenge, (id));
        } else if (fn == 2) {
            data = abi.encodeCall(IJobMarket.finalize, (id));
        } else if (fn == 3) {
            data = abi.encodeCall(IJobMarket.expire, (id));
        } else if (fn == 4) {
            data = abi.encodeCall(IJobMarket.drawAudit, (id));
        } else {
            address[] memory list = new address[](fn == 5 ? j.replicas : market.params().verifiers);
            for (uint256 i; i < list.length; ++i) {
                list[i] = _providers[(who % N_PROVIDERS + i) % N_PROVIDERS];
            }
            if (fn == 5) data = abi.encodeCall(IJobMarket.assign, (id, list));
            else data = abi.encodeCall(IJobMarket.assignVerifiers, (id, list));
        }
        if (_marketCall(caller, id, data)) {
            if ((1 << uint8(j.state)) & allowed == 0) _violate(5, "a call succeeded in a state that forbids it");
            _hit("misuseAccepted");
        } else {
            _hit("misuseRefused");
        }
    }

    // ================================================================ batches

    /// @notice One of the batch entry points that move no tokens: the matcher assigns several Open
    /// jobs, a provider commits to every job it owes a commit, a keeper draws several audits.
    function batch(uint256 seed, uint256 pick) external {
        uint256 kind = seed % 3;
        if (kind == 0) _assignBatch(pick);
        else if (kind == 1) _commitBatch(seed >> 8, pick);
        else _drawAudits(pick);
    }

    function _assignBatch(uint256 pick) internal {
        uint256[] memory ids = new uint256[](3);
        address[][] memory lists = new address[][](3);
        uint256 count;
        uint256 used; // providers already in the batch: each provider's free stake is checked once
        uint256 n = jobsSeen;
        for (uint256 k; k < n && count < 3; ++k) {
            uint256 id = 1 + (pick % n + k) % n;
            if (_jobs[id].lastState != OPEN) continue;
            IJobMarket.Job memory j = market.job(id);
            if (block.timestamp > j.deadline) continue;
            (address[] memory chosen, bool enough) = _chooseUnused(id, j, used, pick >> (8 * count));
            if (!enough) continue;
            for (uint256 i; i < chosen.length; ++i) {
                used |= 1 << _indexOf(chosen[i]);
            }
            (ids[count], lists[count]) = (id, chosen);
            ++count;
        }
        if (count == 0) return;
        assembly {
            mstore(ids, count)
            mstore(lists, count)
        }
        if (_marketCallMany(matcher, ids, abi.encodeCall(IJobMarket.assignBatch, (ids, lists)))) {
            _hit("assignBatch");
        } else {
            _violate(8, "a batch assignment of eligible providers was rejected");
        }
    }

    function _chooseUnused(uint256 id, IJobMarket.Job memory j, uint256 used, uint256 seed)
        internal
        view
        returns (address[] memory chosen, bool enough)
    {
        (chosen, enough) = _choose(id, j, j.replicas, false, seed);
        if (!enough) return (chosen, false);
        for (uint256 i; i < chosen.length; ++i) {
            if (used & (1 << _indexOf(chosen[i])) != 0) return (chosen, false);
        }
    }

    function _indexOf(address p) internal view returns (uint256) {
        for (uint256 i; i < N_PROVIDERS; ++i) {
            if (_providers[i] == p) return i;
        }
        revert("not a provider");
    }

    function _commitBatch(uint256 who, uint256 pick) internal {
        address p = _providers[who % N_PROVIDERS];
        uint256[] memory ids = new uint256[](MAX_JOBS);
        uint256 count;
        uint256 n = jobsSeen;
        for (uint256 id = 1; id <= n; ++id) {
            uint8 s = _jobs[id].lastState;
            if ((s == ASSIGNED || s == AUDITING) && _commitDue(id, market.job(id), p)) ids[count++] = id;
        }
        if (count == 0) return;
        bytes32[] memory hashes = new bytes32[](count);
        bytes32[] memory seals = new bytes32[](count);
        bytes32[] memory digests = new bytes32[](count);
        for (uint256 i; i < count; ++i) {
            uint256 id = ids[i];
            digests[i] = (pick >> i) % 4 == 0 ? colludingDigest(id) : honestDigest(id);
            (hashes[i], seals[i]) = (JobLib.resultHash(id, digests[i]), JobLib.seal(p, id, digests[i]));
        }
        assembly {
            mstore(ids, count)
        }
        if (!_marketCallMany(p, ids, abi.encodeCall(IJobMarket.commitBatch, (ids, hashes, seals)))) {
            _violate(8, "a batch of due commits was rejected");
            return;
        }
        for (uint256 i; i < count; ++i) {
            Part storage pt = _parts[ids[i]][p];
            (pt.committed, pt.digestKnown, pt.digest) = (true, true, digests[i]);
            (_jobs[ids[i]].lastResultHash, _jobs[ids[i]].lastSeal) = (hashes[i], seals[i]);
        }
        _hit("commitBatch");
    }

    function _drawAudits(uint256 pick) internal {
        uint256[] memory ids = new uint256[](MAX_JOBS);
        uint256 count;
        uint256 n = jobsSeen;
        for (uint256 k; k < n; ++k) {
            uint256 id = 1 + (pick % n + k) % n;
            if (_jobs[id].lastState == COMMITTED) ids[count++] = id;
        }
        if (count == 0) return;
        assembly {
            mstore(ids, count)
        }
        _advance(12); // every commit is at least a block old
        if (_marketCallMany(keeper, ids, abi.encodeCall(IJobMarket.drawAudits, (ids)))) _hit("drawAudits");
        else _violate(8, "a batch of audit draws failed");
    }

    // ================================================================ payouts

    /// @notice Someone withdraws: usually an account with credits, sometimes one without (must fail).
    function withdraw(uint256 who) external {
        uint256 n = _holders.length;
        address a = _holders[who % n];
        for (uint256 k; k < n && who % 5 != 0; ++k) {
            a = _holders[(who % n + k) % n];
            if (market.credits(a) != 0) break;
        }
        uint256 credit = market.credits(a);
        bool ok = _marketCall(a, 0, abi.encodeCall(IJobMarket.withdraw, ()));
        if (ok != (credit != 0)) _violate(8, "withdraw outcome differs from the credit");
    }

    function withdrawFees() external {
        uint256 fees = market.protocolFees();
        bool ok = _marketCall(keeper, 0, abi.encodeCall(IJobMarket.withdrawFees, ()));
        if (ok != (fees != 0)) _violate(8, "withdrawFees outcome differs from the fees held");
    }

    // ================================================================ end of a run

    /// @notice Moves far past every deadline until every job is terminal, then everybody withdraws.
    /// Used by afterInvariant: a whole campaign must wind down with nothing stuck.
    /// @return live Jobs still not terminal after the rounds (must be 0).
    function drain() external returns (uint256 live) {
        for (uint256 round; round < 6; ++round) {
            _advance(2 days);
            live = _advanceAll();
            if (live == 0) break;
        }
        for (uint256 i; i < _holders.length; ++i) {
            if (market.credits(_holders[i]) != 0) _marketCall(_holders[i], 0, abi.encodeCall(IJobMarket.withdraw, ()));
        }
        if (market.protocolFees() != 0) _marketCall(keeper, 0, abi.encodeCall(IJobMarket.withdrawFees, ()));
    }

    /// @notice The selectors the invariant campaign calls; a selector listed twice is called twice
    /// as often (progress four times and lifecycle twice: they are the routes to the deep states).
    function selectors() external pure returns (bytes4[] memory s) {
        bytes4[34] memory list = [
            this.createJob.selector,
            this.createJobs.selector,
            this.createJobsWithPermit.selector,
            this.batch.selector,
            this.misuse.selector,
            this.cancel.selector,
            this.challenge.selector,
            this.assign.selector,
            this.assignVerifiers.selector,
            this.commit.selector,
            this.commitRound.selector,
            this.commitRound.selector,
            this.reveal.selector,
            this.revealRound.selector,
            this.revealRound.selector,
            this.drawAudit.selector,
            this.finalize.selector,
            this.expire.selector,
            this.warp.selector,
            this.advanceAll.selector,
            this.progress.selector,
            this.progress.selector,
            this.progress.selector,
            this.progress.selector,
            this.lifecycle.selector,
            this.lifecycle.selector,
            this.withdraw.selector,
            this.withdrawFees.selector,
            this.registerProvider.selector,
            this.stakeMore.selector,
            this.requestUnbond.selector,
            this.cancelUnbond.selector,
            this.withdrawUnbonded.selector,
            this.setParams.selector
        ];
        s = new bytes4[](list.length);
        for (uint256 i; i < list.length; ++i) {
            s[i] = list[i];
        }
    }
}
