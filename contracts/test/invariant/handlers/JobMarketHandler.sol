// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {HandlerBase} from "./HandlerBase.sol";
import {GhostLedger} from "./GhostLedger.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {JobLib} from "../../../src/libraries/JobLib.sol";

/// @notice Drives the JobMarket through every v2 lifecycle path with bounded fuzzed inputs: 3
/// honest requesters create jobs (1, 3 or 5 replicas), the matcher assigns providers that meet
/// every rule, providers commit by who they are (honest: the truth; colluders: see HandlerBase),
/// keepers draw audits, staff audit rounds from the on-chain draw, finalize and expire after
/// moving time, requesters challenge, everybody withdraws.
/// @dev Each action prefers a job in a state where it can succeed, so most calls do something.
contract JobMarketHandler is HandlerBase {
    constructor(GhostLedger ledger_) HandlerBase(ledger_) {}

    // ================================================================ requester actions

    function _request(uint256 seed, uint256 unitsSeed, uint256 priceSeed)
        internal
        view
        returns (IJobMarket.JobRequest memory r)
    {
        IJobMarket.Params memory p = market.params();
        uint256 rep = seed % 20;
        r.replicas = rep < 10 ? 1 : rep < 17 ? 3 : 5;
        r.units = uint32(bound(unitsSeed, 1, 500));
        r.maxPricePerUnit =
            (seed >> 8) % 8 == 0 ? uint80(bound(priceSeed, 3, 999)) : uint80(bound(priceSeed, 1e14, 2e15));
        r.profile = uint8((seed >> 16) % 2);
        uint16[8] memory vram = [uint16(0), 0, 0, 0, 0, 24, 40, 80];
        r.minVramGiB = vram[(seed >> 24) % 8];
        uint256 acceptHi = p.maxAcceptWindow < 6 hours ? p.maxAcceptWindow : 6 hours;
        r.acceptWindow = uint32(bound(seed >> 32, acceptHi < 10 minutes ? 10 : 10 minutes, acceptHi));
        uint256 execLo = p.minExecWindow > 10 minutes ? p.minExecWindow : 10 minutes;
        if (execLo > p.maxExecWindow) execLo = p.maxExecWindow;
        uint256 execHi = p.maxExecWindow < 6 hours ? p.maxExecWindow : 6 hours;
        r.execWindow = uint32(bound(seed >> 64, execLo, execHi < execLo ? execLo : execHi));
        r.specHash = keccak256(abi.encode("spec", seed)); // keccak, not sha256: no precompile between prank and call
    }

    function _room(uint256 who, uint256 n) internal view returns (bool) {
        if (ledger.jobsSeen() + n > ledger.MAX_JOBS()) return false;
        // Few jobs at a time, so that a 64-call run takes some of them all the way.
        return who % 4 == 0 || ledger.live().length < 4;
    }

    function createJob(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (!_room(who, 1)) return;
        address r = ledger.requester(who % 3);
        IJobMarket.JobRequest memory req = _request(seed, unitsSeed, priceSeed);
        if (!_call(r, 0, abi.encodeCall(IJobMarket.createJob, (req)))) _violate(8, "a valid job request was rejected");
    }

    function createJobs(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (!_room(who, 3)) return;
        address r = ledger.requester(who % 3);
        uint256 n = 2 + seed % 2;
        IJobMarket.JobRequest[] memory reqs = new IJobMarket.JobRequest[](n);
        for (uint256 i; i < n; ++i) {
            reqs[i] = _request(uint256(keccak256(abi.encode(seed, i))), unitsSeed >> (i * 16), priceSeed >> (i * 16));
        }
        if (_call(r, 0, abi.encodeCall(IJobMarket.createJobs, (reqs)))) _hit("createJobs");
        else _violate(8, "a valid batch of job requests was rejected");
    }

    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    /// @notice Creates jobs authorising the pull with an ERC-2612 permit (for an unlimited amount,
    /// so the requester's allowance stays unlimited); sometimes the signature is stale, and the
    /// earlier approval must still carry the pull.
    function createJobsWithPermit(uint256 who, uint256 seed, uint256 unitsSeed, uint256 priceSeed) external {
        if (!_room(who, 2)) return;
        uint256 i = who % 3;
        address r = ledger.requester(i);
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
        (uint8 v, bytes32 rs, bytes32 ss) = vm.sign(ledger.requesterKey(i), digest);
        bytes memory data =
            abi.encodeCall(IJobMarket.createJobsWithPermit, (reqs, type(uint256).max, deadline, v, rs, ss));
        if (_call(r, 0, data)) _hit("createJobsWithPermit");
        else _violate(8, "a valid batch of job requests with a permit was rejected");
    }

    /// @notice The requester cancels an Open job; sometimes someone else tries and must fail.
    function cancel(uint256 jobSeed, uint256 who) external {
        uint256 id = _pickJob(jobSeed, S_OPEN, ANY);
        if (id != 0) _cancel(id, who % 4 == 0);
    }

    /// @notice The requester challenges a Committed job; sometimes a stranger tries and must fail.
    function challenge(uint256 jobSeed, uint256 who) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED, IN_TIME);
        if (id != 0) _challenge(id, who % 5 == 0);
    }

    // ================================================================ matcher, providers, keepers

    function assign(uint256 jobSeed, uint256 pickSeed) external {
        uint256 id = _pickJob(jobSeed, S_OPEN, IN_TIME);
        if (id != 0) _assign(id, pickSeed, false);
    }

    /// @notice One participant that still owes a commit commits, as who it is.
    function commit(uint256 jobSeed, uint256 who, uint256 modeSeed) external {
        uint256 id = _pickJob(jobSeed, S_ASSIGNED | S_AUDITING, TO_COMMIT);
        if (id == 0) return;
        address p = _pendingCommitter(id, market.job(id), who);
        if (p != address(0)) _commitAs(id, p, _modeFor(p, modeSeed, false), modeSeed);
    }

    function commitRound(uint256 jobSeed, uint256 pattern) external {
        uint256 id = _pickJob(jobSeed, S_ASSIGNED | S_AUDITING, TO_COMMIT);
        if (id != 0) _commitAll(id, pattern, false);
    }

    /// @notice A participant reveals what it committed (must succeed in time), or a digest it did
    /// not commit, or a stranger tries (both must fail). DESIGN 9.
    function reveal(uint256 jobSeed, uint256 who, uint256 modeSeed) external {
        uint256 id = _pickJob(jobSeed, S_REVEALING, TO_REVEAL);
        if (id == 0) return;
        address p = _pendingRevealer(id, who);
        if (p == address(0)) return;
        uint256 m = modeSeed % 6;
        if (m == 0) _revealForged(id, outsider, _trueDigest(id));
        else if (m == 1) _revealForged(id, p, keccak256(abi.encode("never committed", id, modeSeed)));
        else _revealAs(id, p);
    }

    function revealRound(uint256 jobSeed, uint256 pattern) external {
        uint256 id = _pickJob(jobSeed, S_REVEALING, TO_REVEAL);
        if (id != 0) _revealAll(id, pattern, false);
    }

    function drawAudit(uint256 jobSeed) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED, ANY);
        if (id != 0) _drawAudit(id);
    }

    /// @notice A keeper staffs an audit round from the on-chain draw.
    function staff(uint256 jobSeed) external {
        uint256 id = _pickJob(jobSeed, S_AUDITING, TO_STAFF);
        if (id != 0) _staff(id);
    }

    /// @notice Finalizes a Committed / Auditing / Revealing job, usually after moving past its deadline.
    function finalize(uint256 jobSeed, uint256 timing) external {
        uint256 id = _pickJob(jobSeed, S_COMMITTED | S_AUDITING | S_REVEALING, ANY);
        if (id == 0) return;
        if (timing % 4 != 0) _advancePast(market.job(id).deadline, timing % 10 minutes);
        _finalize(id);
    }

    /// @notice Expires an Open / Assigned / Auditing job, usually after moving past its deadline.
    function expire(uint256 jobSeed, uint256 timing) external {
        uint256 id = _pickJob(jobSeed, S_OPEN | S_ASSIGNED | S_AUDITING, ANY);
        if (id == 0) return;
        if (timing % 4 != 0) _advancePast(market.job(id).deadline, timing % 10 minutes);
        _expire(id);
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

    /// @notice DESIGN 8: every job past its deadline can be advanced; any failure is a violation.
    function advanceAll() external {
        _advanceAll();
    }

    /// @notice Drives one live job one step along its natural path.
    function progress(uint256 jobSeed, uint256 choice) external {
        uint256 id = (choice >> 128) % 2 == 0 ? _deepestJob(jobSeed, address(0)) : _pickJob(jobSeed, S_LIVE, IN_TIME);
        if (id == 0) id = _pickJob(jobSeed, S_LIVE, ANY);
        if (id != 0) _step(id, choice, false);
    }

    /// @notice Takes the most advanced live job up to 6 steps along its path: whole lifecycles,
    /// audits and escalations included, in one call.
    function lifecycle(uint256 jobSeed, uint256 choices) external {
        uint256 id = _deepestJob(jobSeed, address(0));
        if (id == 0) id = _pickJob(jobSeed, S_LIVE, ANY);
        if (id == 0) return;
        for (uint256 k; k < 6 && (1 << _state(id)) & S_LIVE != 0; ++k) {
            _step(id, uint256(keccak256(abi.encode(choices, k))), false);
        }
        _hit("lifecycle");
    }

    // ================================================================ misuse

    /// @notice A call on a random job whatever its state, by its rightful caller: it may only
    /// succeed in a state the function allows (DESIGN 5: terminal states are final, no shortcut
    /// edges). Commits and reveals go through the checked helpers, which judge them the same way.
    function misuse(uint256 jobSeed, uint256 fnSeed, uint256 who) external {
        uint256 fn = fnSeed % 9;
        address p = _provider(who);
        uint256[9] memory allowedBy = [
            S_OPEN, // cancel
            S_COMMITTED, // challenge
            S_COMMITTED | S_AUDITING | S_REVEALING, // finalize
            S_OPEN | S_ASSIGNED | S_AUDITING, // expire
            S_COMMITTED, // drawAudit
            S_OPEN, // assign
            S_AUDITING, // staffAudit
            S_ASSIGNED | S_AUDITING, // commit
            S_REVEALING // reveal
        ];
        uint256 allowed = allowedBy[fn];
        // Mostly a job in a state the function forbids (terminal ones included).
        uint256 id = _pickJob(jobSeed, (fnSeed >> 8) % 4 == 0 ? S_ALL : S_ALL & ~allowed, ANY);
        if (id == 0) return;
        if (fn == 7) {
            _commitAs(id, p, HONEST, who);
            return;
        }
        if (fn == 8) {
            GhostLedger.Part memory pt = ledger.part(id, p);
            if (pt.digestKnown && !pt.revealed) _revealAs(id, p);
            else _revealForged(id, p, _trueDigest(id));
            return;
        }
        IJobMarket.Job memory j = market.job(id);
        address caller = fn < 2 ? j.requester : fn < 5 || fn == 6 ? keeper : matcher;
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
        } else if (fn == 6) {
            data = abi.encodeCall(IJobMarket.staffAudit, (id));
        } else {
            address[] memory list = new address[](j.replicas);
            for (uint256 i; i < list.length; ++i) {
                list[i] = _provider(who % N_PROVIDERS + i);
            }
            data = abi.encodeCall(IJobMarket.assign, (id, list));
        }
        if (_call(caller, id, data)) {
            if ((1 << uint8(j.state)) & allowed == 0) _violate(5, "a call succeeded in a state that forbids it");
            _hit("misuseAccepted");
        } else {
            _hit("misuseRefused");
        }
    }

    // ================================================================ batches

    /// @notice One of the batched entry points, on items that are actionable: the matcher assigns
    /// several Open jobs, a provider commits to every job it owes a commit, a keeper draws audits,
    /// staffs rounds, finalizes or expires several overdue jobs.
    function batch(uint256 seed, uint256 pick) external {
        uint256 kind = seed % 7;
        if (kind == 0) return _assignBatch(pick);
        if (kind == 1 || kind == 6) return _commitBatch(seed >> 8);
        uint256 mask = kind == 2 ? S_COMMITTED : kind == 3 ? S_AUDITING : kind == 4 ? S_COMMITTED | S_REVEALING : S_OPEN | S_ASSIGNED | S_AUDITING;
        if (kind >= 4) _advance(bound(pick >> 64, 12, 2 hours));
        else _advance(12); // every seed block is at least a block old
        uint256[] memory live = ledger.live();
        uint256[] memory ids = new uint256[](live.length);
        uint256 count;
        for (uint256 k; k < live.length; ++k) {
            uint256 id = live[(pick % live.length + k) % live.length];
            if ((1 << _state(id)) & mask == 0) continue;
            if (kind == 3 && !_meets(id, TO_STAFF)) continue;
            if (kind >= 4 && block.timestamp <= market.job(id).deadline) continue;
            ids[count++] = id;
        }
        if (count == 0) return;
        assembly {
            mstore(ids, count)
        }
        bytes memory data = kind == 2
            ? abi.encodeCall(IJobMarket.drawAudits, (ids))
            : kind == 3
                ? abi.encodeCall(IJobMarket.staffAudits, (ids))
                : kind == 4 ? abi.encodeCall(IJobMarket.finalizeBatch, (ids)) : abi.encodeCall(IJobMarket.expireBatch, (ids));
        if (ledger.exec(keeper, ids, data)) _hit(kind == 2 ? bytes32("drawAudits") : kind == 3 ? bytes32("staffAudits") : kind == 4 ? bytes32("finalizeBatch") : bytes32("expireBatch"));
        else _violate(8, "a keeper batch reverted");
    }

    function _assignBatch(uint256 pick) internal {
        uint256[] memory live = ledger.live();
        uint256[] memory ids = new uint256[](3);
        address[][] memory lists = new address[][](3);
        uint256 count;
        for (uint256 k; k < live.length && count < 3; ++k) {
            uint256 id = live[(pick % live.length + k) % live.length];
            if (_state(id) != OPEN) continue;
            IJobMarket.Job memory j = market.job(id);
            if (block.timestamp > j.deadline) continue;
            (address[] memory chosen, bool enough) = _choose(id, j, pick >> (8 * count), false);
            if (!enough || _overlaps(chosen, lists, count)) continue;
            (ids[count], lists[count]) = (id, chosen);
            ++count;
        }
        if (count == 0) return;
        assembly {
            mstore(ids, count)
            mstore(lists, count)
        }
        if (!ledger.exec(matcher, ids, abi.encodeCall(IJobMarket.assignBatch, (ids, lists)))) {
            _violate(8, "a batch assignment reverted");
            return;
        }
        (uint256[] memory skipped,) = ledger.lastSkipped();
        if (skipped.length != 0) _violate(8, "a batch assignment of eligible providers skipped an item");
        _hit("assignBatch");
    }

    /// @dev Each provider's free stake is checked against one job only: no provider in two lists.
    function _overlaps(address[] memory chosen, address[][] memory lists, uint256 count) internal pure returns (bool) {
        for (uint256 i; i < count; ++i) {
            for (uint256 k; k < chosen.length; ++k) {
                if (_listed(chosen[k], lists[i], lists[i].length)) return true;
            }
        }
        return false;
    }

    /// @notice A provider commits to every job it owes a commit, as who it is.
    function _commitBatch(uint256 who) internal {
        uint256[] memory live = ledger.live();
        uint256[] memory ids = new uint256[](live.length);
        uint256 count;
        address p;
        for (uint256 i; i < N_PROVIDERS && count == 0; ++i) {
            p = _provider(who % N_PROVIDERS + i);
            for (uint256 k; k < live.length; ++k) {
                if (_commitDue(live[k], market.job(live[k]), p)) ids[count++] = live[k];
            }
        }
        if (count == 0) return;
        assembly {
            mstore(ids, count)
        }
        bytes32[] memory hashes = new bytes32[](count);
        bytes32[] memory seals = new bytes32[](count);
        bytes32[] memory digests = new bytes32[](count);
        for (uint256 i; i < count; ++i) {
            digests[i] = _colluder[p] ? colludingDigest(ids[i]) : _trueDigest(ids[i]);
            (hashes[i], seals[i]) = (JobLib.resultHash(ids[i], digests[i]), JobLib.seal(p, ids[i], digests[i]));
        }
        if (!ledger.exec(p, ids, abi.encodeCall(IJobMarket.commitBatch, (ids, hashes, seals)))) {
            _violate(8, "a batch of due commits was rejected");
            return;
        }
        for (uint256 i; i < count; ++i) {
            ledger.noteCommit(ids[i], p, true, digests[i], hashes[i], seals[i]);
            oracle.noteCommit(ids[i], p, digests[i], true);
        }
        _hit("commitBatch");
    }

    // ================================================================ payouts

    /// @notice Someone withdraws: usually an account with credits, sometimes one without (must fail).
    function withdraw(uint256 who) external {
        uint256 n = ledger.holderCount();
        address a = ledger.holder(who % n);
        for (uint256 k; k < n && who % 5 != 0; ++k) {
            a = ledger.holder((who % n + k) % n);
            if (market.credits(a) != 0) break;
        }
        uint256 credit = market.credits(a);
        bool ok = _call(a, 0, abi.encodeCall(IJobMarket.withdraw, ()));
        if (ok != (credit != 0)) _violate(8, "withdraw outcome differs from the credit");
    }

    function withdrawFees() external {
        uint256 fees = market.protocolFees();
        bool ok = _call(keeper, 0, abi.encodeCall(IJobMarket.withdrawFees, ()));
        if (ok != (fees != 0)) _violate(8, "withdrawFees outcome differs from the fees held");
    }

    // ================================================================ end of a run

    /// @notice Moves far past every deadline until every job is terminal (a re-seeded draw gets
    /// its next block), then everybody withdraws. Used by afterInvariant: a whole campaign must
    /// wind down with nothing stuck.
    /// @return remaining Jobs still not terminal (must be 0).
    function drain() external returns (uint256 remaining) {
        for (uint256 round; round < 8; ++round) {
            _advance(2 days);
            _advanceAll();
            _advance(12);
            remaining = _advanceAll();
            if (remaining == 0) break;
        }
        uint256 n = ledger.holderCount();
        for (uint256 i; i < n; ++i) {
            address a = ledger.holder(i);
            if (market.credits(a) != 0) _call(a, 0, abi.encodeCall(IJobMarket.withdraw, ()));
        }
        if (market.protocolFees() != 0) _call(keeper, 0, abi.encodeCall(IJobMarket.withdrawFees, ()));
    }

    /// @notice The selectors the invariant campaign calls; a selector listed twice is called twice
    /// as often (progress and lifecycle are the routes to the deep states).
    function selectors() external pure returns (bytes4[] memory s) {
        bytes4[25] memory list = [
            this.createJob.selector,
            this.createJob.selector,
            this.createJobs.selector,
            this.createJobsWithPermit.selector,
            this.batch.selector,
            this.misuse.selector,
            this.cancel.selector,
            this.challenge.selector,
            this.assign.selector,
            this.commit.selector,
            this.commitRound.selector,
            this.reveal.selector,
            this.revealRound.selector,
            this.drawAudit.selector,
            this.staff.selector,
            this.finalize.selector,
            this.expire.selector,
            this.warp.selector,
            this.advanceAll.selector,
            this.progress.selector,
            this.progress.selector,
            this.lifecycle.selector,
            this.lifecycle.selector,
            this.withdraw.selector,
            this.withdrawFees.selector
        ];
        s = new bytes4[](list.length);
        for (uint256 i; i < list.length; ++i) {
            s[i] = list[i];
        }
    }
}
