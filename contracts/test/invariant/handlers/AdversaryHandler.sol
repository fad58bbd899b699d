// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {HandlerBase} from "./HandlerBase.sol";
import {GhostLedger} from "./GhostLedger.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";

/// @notice The adversary of invariant 11: a malicious requester (mallory, who is also one of the
/// colluding providers), a misbehaving relayer (matcher and keeper), and the colluding minority
/// of providers (about 10% of every profile's stake), against honest providers that commit and
/// reveal the true digest on time.
/// - mallory creates jobs at dust and huge prices, with the shortest windows and far too many
///   units, and invalid requests (refused); challenges her own jobs whenever she can (and others'
///   or late ones, refused); cancels.
/// - the relayer assigns colluders first, lets audit rounds go unstaffed, sits on draws until
///   their block hash ages out, calls everything at the deadline's edge, and feeds the batched
///   entry points stale, duplicate, foreign and non-existent items.
/// - colluders, wherever they hold a seat, commit the one wrong digest together, or stay away, and
///   reveal it together or all withhold (to force an escalation).
contract AdversaryHandler is HandlerBase {
    uint256 internal constant BPS = 10_000;

    constructor(GhostLedger ledger_) HandlerBase(ledger_) {}

    // ================================================================ malicious requester

    /// @notice mallory asks for a job at an extreme (or invalid) price, size or window.
    function advCreate(uint256 seed, uint256 a, uint256 b) external {
        if (ledger.jobsSeen() >= ledger.MAX_JOBS()) return;
        if (ledger.live().length >= 5 && seed % 4 != 0) return;
        IJobMarket.Params memory p = market.params();
        IJobMarket.JobRequest memory r;
        uint8[4] memory reps = [uint8(1), 1, 3, 5];
        r.replicas = reps[seed % 4];
        uint256 unitsKind = (seed >> 16) % 4;
        r.units = unitsKind == 0 ? 1 : unitsKind == 1 ? uint32(bound(b, 1, 1000)) : unitsKind == 2 ? uint32(bound(b, 1001, 1e6)) : 1000;
        uint256 priceKind = (seed >> 8) % 5;
        if (priceKind == 0) {
            r.maxPricePerUnit = 1;
        } else if (priceKind == 1) {
            r.maxPricePerUnit = uint80(bound(a, 2, 20));
        } else if (priceKind == 2) {
            r.maxPricePerUnit = uint80(bound(a, 1e14, 2e15));
        } else {
            // the largest price whose collateral still fits in 96 bits
            uint256 cap = type(uint96).max / (uint256(r.units) * p.collateralMultiple);
            r.maxPricePerUnit = uint80(cap > type(uint80).max ? type(uint80).max : cap);
            if (priceKind == 4) r.maxPricePerUnit = 5e15;
        }
        r.profile = uint8((seed >> 24) % 2);
        r.minVramGiB = (seed >> 32) % 6 == 0 ? 81 : 0; // 81 GiB: nobody qualifies
        r.acceptWindow = (seed >> 40) % 2 == 0 ? 10 : p.maxAcceptWindow;
        r.execWindow = (seed >> 48) % 3 == 0 ? p.maxExecWindow : p.minExecWindow; // mostly the shortest allowed
        r.specHash = keccak256(abi.encode("mallory", seed));
        if ((seed >> 56) % 4 == 0) _breakRequest(r, p, seed >> 64);
        bool valid = _requestValid(r, p);
        if (valid) {
            uint256 escrow = market.escrowFor(r);
            if (token.balanceOf(mallory) < escrow) ledger.mint(mallory, escrow);
        }
        bool ok = _call(mallory, 0, abi.encodeCall(IJobMarket.createJob, (r)));
        if (ok && !valid) _violate(5, "an invalid job request was accepted");
        if (!ok && valid) _violate(8, "a valid extreme job request was rejected");
        _hit(ok ? bytes32("advCreated") : bytes32("advCreateRefused"));
    }

    function _breakRequest(IJobMarket.JobRequest memory r, IJobMarket.Params memory p, uint256 s) internal pure {
        uint256 kind = s % 9;
        uint8[5] memory badReplicas = [uint8(0), 2, 4, 6, 7];
        if (kind == 0) r.replicas = badReplicas[(s >> 8) % 5];
        else if (kind == 1) r.units = 0;
        else if (kind == 2) r.maxPricePerUnit = 0;
        else if (kind == 3) r.acceptWindow = uint32((s >> 8) % 10);
        else if (kind == 4) r.acceptWindow = p.maxAcceptWindow + 1;
        else if (kind == 5) r.execWindow = p.minExecWindow - 1;
        else if (kind == 6) r.execWindow = p.maxExecWindow + 1;
        else if (kind == 7) r.profile = uint8(2 + (s >> 8) % 250);
        else r.maxPricePerUnit = type(uint80).max; // the collateral overflows 96 bits
    }

    /// @notice createJob's rules, written out: odd replicas up to 5, windows within bounds, a known
    /// profile, a non-zero payment whose collateral fits in 96 bits.
    function _requestValid(IJobMarket.JobRequest memory r, IJobMarket.Params memory p) internal view returns (bool) {
        if (r.replicas != 1 && r.replicas != 3 && r.replicas != 5) return false;
        if (r.acceptWindow < 10 || r.acceptWindow > p.maxAcceptWindow) return false;
        if (r.execWindow < p.minExecWindow || r.execWindow > p.maxExecWindow) return false;
        if (r.profile >= registry.profileCount()) return false;
        uint256 perReplica = uint256(r.units) * r.maxPricePerUnit;
        return perReplica != 0 && perReplica * p.collateralMultiple <= type(uint96).max;
    }

    /// @notice mallory challenges her own Committed job whenever the window is open; sometimes she
    /// tries someone else's job, or her own after the window (both refused).
    function advChallenge(uint256 seed) external {
        uint256 id = _pickOwn(seed, S_COMMITTED);
        if (seed % 5 == 0) {
            uint256 other = _pickJob(seed, S_COMMITTED, ANY);
            if (other != 0 && ledger.jobRequester(other) != mallory) {
                if (_call(mallory, other, abi.encodeCall(IJobMarket.challenge, (other)))) {
                    _violate(5, "a stranger challenged a job");
                }
                return;
            }
        }
        if (id == 0) return;
        if (seed % 7 == 0) _advancePast(market.job(id).deadline, 0);
        _challenge(id, false);
        _hit("advChallenge");
    }

    /// @notice mallory cancels her Open job, or tries to cancel a job that is not hers or not Open.
    function advCancel(uint256 seed) external {
        uint256 id = _pickJob(seed, (seed >> 8) % 2 == 0 ? S_OPEN : S_ALL, ANY);
        if (id == 0) return;
        bool allowed = ledger.jobRequester(id) == mallory && _state(id) == OPEN;
        bool ok = _call(mallory, id, abi.encodeCall(IJobMarket.cancel, (id)));
        if (ok != allowed) _violate(5, "cancel outcome differs from the rule");
        if (ok) _hit("advCancelled");
    }

    function _pickOwn(uint256 seed, uint256 mask) internal view returns (uint256) {
        uint256[] memory ids = ledger.live();
        uint256 n = ids.length;
        for (uint256 k; k < n; ++k) {
            uint256 id = ids[(seed % n + k) % n];
            if (ledger.jobRequester(id) == mallory && (1 << _state(id)) & mask != 0) return id;
        }
        return 0;
    }

    // ================================================================ malicious relayer

    /// @notice The matcher assigns colluders first to any Open job (mallory's included, where she
    /// herself must be refused).
    function advAssign(uint256 jobSeed, uint256 seed) external {
        uint256 id = _pickJob(jobSeed, S_OPEN, IN_TIME);
        if (id != 0) _assign(id, seed, true);
    }

    /// @notice The relayer sits on a job: more than 256 blocks pass before it draws the audit or
    /// staffs the round, so the seed's block hash has aged out and the call re-seeds; the next
    /// block's call then goes through.
    function keeperDelay(uint256 jobSeed, uint256 seed) external {
        uint256 id = seed % 2 == 0 ? _pickJob(jobSeed, S_AUDITING, TO_STAFF) : _pickJob(jobSeed, S_COMMITTED, IN_TIME);
        if (id == 0) id = _pickJob(jobSeed, S_AUDITING, TO_STAFF);
        if (id == 0) id = _pickJob(jobSeed, S_COMMITTED, IN_TIME);
        if (id == 0) return;
        if (_state(id) == COMMITTED && seed % 2 == 0) {
            _challenge(id, false); // its requester challenges: a round to staff, which the relayer sits on
            if (!_meets(id, TO_STAFF)) return;
        }
        bool committed = _state(id) == COMMITTED;
        vm.roll(block.number + 257 + seed % 64); // fast blocks: the hash ages out, the window is still open
        vm.warp(block.timestamp + 1);
        if (committed) _drawAudit(id);
        else _staff(id);
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + 1);
        if (_state(id) == COMMITTED) _drawAudit(id);
        else if (_meets(id, TO_STAFF)) _staff(id);
        _hit("keeperDelay");
    }

    /// @notice Calls at the edge: finalize / expire exactly at the deadline (refused unless every
    /// reveal is in), staffAudit or drawAudit in the seed block (refused), the batch runner called
    /// directly (refused).
    function earlyCalls(uint256 jobSeed, uint256 seed) external {
        if (seed % 5 == 0) {
            address[] memory none = new address[](0);
            if (_call(mallory, 0, abi.encodeCall(JobMarketBatchRunner.runBatchItem, (IJobMarket.finalize.selector, 1, none)))) {
                _violate(5, "runBatchItem accepted an outside call");
            }
            return;
        }
        uint256 id = _pickJob(jobSeed, S_LIVE, IN_TIME);
        if (id == 0) return;
        IJobMarket.Job memory j = market.job(id);
        uint8 s = _state(id);
        if (block.timestamp < j.deadline) {
            vm.warp(j.deadline);
            vm.roll(block.number + 1);
        }
        bool viaFinalize = (s == COMMITTED || s == REVEALING || s == AUDITING) && (seed >> 8) % 2 == 0;
        bool allowed = viaFinalize && s == REVEALING && j.revealMask == j.commitMask;
        bool ok = viaFinalize
            ? _call(keeper, id, abi.encodeCall(IJobMarket.finalize, (id)))
            : _call(keeper, id, abi.encodeCall(IJobMarket.expire, (id)));
        if (ok && !allowed) _violate(5, "a job advanced at its deadline, not after it");
        if (s == AUDITING && j.seedBlock == uint32(block.number) && j.participants - j.verifiersFrom < j.seats) {
            if (_call(keeper, id, abi.encodeCall(IJobMarket.staffAudit, (id)))) {
                _violate(5, "staffAudit drew from the current block's hash");
            }
        }
        _hit("earlyCalls");
    }

    /// @notice A griefer (mallory, permissionless) runs a batched keeper call on items that are
    /// stale, duplicated, terminal, foreign or non-existent, front-running one item herself. The
    /// batch must go through; each item that cannot act is skipped and says so.
    function griefBatch(uint256 seed, uint256 pick) external {
        uint256 kind = seed % 4;
        bytes4 op = kind == 0
            ? IJobMarket.finalize.selector
            : kind == 1 ? IJobMarket.expire.selector : kind == 2 ? IJobMarket.staffAudit.selector : IJobMarket.drawAudit.selector;
        _advance(bound(pick, 12, 1 hours));
        uint256 n = ledger.jobsSeen();
        uint256[] memory ids = new uint256[](6);
        for (uint256 i; i < 6; ++i) {
            uint256 r = uint256(keccak256(abi.encode(pick, i)));
            ids[i] = r % 5 == 0 ? n + 1 + r % 3 : n == 0 ? 0 : 1 + (r >> 8) % n; // some do not exist
        }
        ids[5] = ids[0]; // a duplicate
        // front-run the first item with the same operation
        if (ids[0] != 0 && ids[0] <= n) _call(mallory, ids[0], abi.encodeWithSelector(op, ids[0]));
        bool[6] memory doomed;
        for (uint256 i; i < 6; ++i) {
            doomed[i] = ids[i] == 0 || ids[i] > n || _state(ids[i]) >= SETTLED;
        }
        bytes memory data = kind == 0
            ? abi.encodeCall(IJobMarket.finalizeBatch, (ids))
            : kind == 1
                ? abi.encodeCall(IJobMarket.expireBatch, (ids))
                : kind == 2 ? abi.encodeCall(IJobMarket.staffAudits, (ids)) : abi.encodeCall(IJobMarket.drawAudits, (ids));
        if (!ledger.exec(mallory, ids, data)) {
            _violate(8, "a keeper batch reverted on stale items");
            return;
        }
        (uint256[] memory skipped, bytes4[] memory ops) = ledger.lastSkipped();
        uint256 expectedSkips;
        for (uint256 i; i < 6; ++i) {
            if (doomed[i]) ++expectedSkips;
        }
        uint256 doomedSkips;
        for (uint256 k; k < skipped.length; ++k) {
            if (ops[k] != op) _violate(8, "a skipped item names another operation");
            for (uint256 i; i < 6; ++i) {
                if (doomed[i] && ids[i] == skipped[k]) {
                    ++doomedSkips;
                    break;
                }
            }
        }
        if (doomedSkips != expectedSkips) _violate(8, "a doomed batch item was not reported skipped");
        if (skipped.length != 0) _hit("griefSkipped");
        uint256[] memory empty = new uint256[](0);
        if (_call(mallory, 0, abi.encodeCall(IJobMarket.finalizeBatch, (empty)))) _violate(8, "an empty batch went through");
        _hit("griefBatch");
    }

    /// @notice The relayer's assignBatch with one item broken (the requester as its own executor,
    /// or a duplicate): the other items are assigned, the broken one skipped.
    function griefAssignBatch(uint256 pick) external {
        uint256[] memory live = ledger.live();
        uint256[] memory ids = new uint256[](2);
        address[][] memory lists = new address[][](2);
        uint256 count;
        for (uint256 k; k < live.length && count < 2; ++k) {
            uint256 id = live[(pick % live.length + k) % live.length];
            if (_state(id) != OPEN) continue;
            IJobMarket.Job memory j = market.job(id);
            if (block.timestamp > j.deadline) continue;
            (address[] memory chosen, bool enough) = _choose(id, j, pick >> 8, count == 0);
            if (!enough || (count == 1 && _overlap(chosen, lists[0]))) continue;
            (ids[count], lists[count]) = (id, chosen);
            ++count;
        }
        if (count < 2) return;
        address[] memory broken = new address[](lists[0].length);
        for (uint256 i; i < broken.length; ++i) {
            broken[i] = lists[0][i];
        }
        broken[0] = ledger.jobRequester(ids[0]);
        lists[0] = broken;
        if (!ledger.exec(matcher, ids, abi.encodeCall(IJobMarket.assignBatch, (ids, lists)))) {
            _violate(8, "assignBatch reverted on one broken item");
            return;
        }
        (uint256[] memory skipped,) = ledger.lastSkipped();
        if (skipped.length != 1 || skipped[0] != ids[0]) _violate(8, "assignBatch did not skip exactly the broken item");
        if (_state(ids[1]) != ASSIGNED) _violate(8, "assignBatch dropped a good item");
        _hit("griefAssignBatch");
    }

    function _overlap(address[] memory a, address[] memory b) internal pure returns (bool) {
        for (uint256 i; i < a.length; ++i) {
            if (_listed(a[i], b, b.length)) return true;
        }
        return false;
    }

    // ================================================================ colluding providers

    /// @notice Wherever colluders owe a commit, they all commit the one wrong digest (or, one time
    /// in four, all stay away).
    function colludeCommit(uint256 jobSeed, uint256 seed) external {
        uint256 id = _pickJob(jobSeed, S_ASSIGNED | S_AUDITING, TO_COMMIT);
        if (id == 0) return;
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        IJobMarket.Job memory j = market.job(id);
        for (uint256 i; i < ps.length; ++i) {
            if (!_colluder[ps[i]] || !_owes(j, parts[i])) continue;
            if (seed % 4 == 0) {
                _hit("colludersStayedAway");
                continue;
            }
            _commitAs(id, ps[i], COLLUDE, seed);
            j = market.job(id);
            if (uint8(j.state) != ASSIGNED && uint8(j.state) != AUDITING) break;
        }
    }

    /// @notice Colluders with a pending reveal all reveal, or all withhold.
    function colludeReveal(uint256 jobSeed, uint256 seed) external {
        uint256 id = _pickJob(jobSeed, S_REVEALING, TO_REVEAL);
        if (id == 0) return;
        if (seed % 3 == 0) {
            _hit("colludersWithheld");
            return;
        }
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        for (uint256 i; i < ps.length; ++i) {
            GhostLedger.Part memory pt = parts[i];
            if (_colluder[ps[i]] && pt.committed && !pt.revealed && pt.active) _revealAs(id, ps[i]);
        }
    }

    /// @notice A colluder (or anyone) releases: an executor that takes seats only to hand them
    /// back (paying the fee each time, excluded afterwards), or a release the rules forbid: a
    /// committed executor, a verifier during an audit, a stranger, a seat already released, at the
    /// deadline's edge or after it.
    function advRelease(uint256 jobSeed, uint256 seed) external {
        uint256 id = _pickJob(jobSeed, seed % 4 == 0 ? S_LIVE : S_ASSIGNED, ANY);
        if (id == 0) return;
        (address[] memory ps,) = ledger.seatParts(id);
        uint256 kind = (seed >> 8) % 8;
        address p = kind == 0 || ps.length == 0 ? outsider : ps[(seed >> 16) % ps.length];
        uint256 deadline = market.job(id).deadline;
        if (kind == 1 && block.timestamp < deadline) {
            vm.warp(deadline); // the last second a release is allowed
            vm.roll(block.number + 1);
        } else if (kind == 2) {
            _advancePast(deadline, 0);
        }
        _release(id, p);
        _hit("advRelease");
    }

    /// @notice A whole adversarial lifecycle: mallory's most advanced job (or, one time in three,
    /// anyone's), up to 10 adversarial steps: she challenges, the relayer seats colluders first and
    /// sometimes lets rounds go unstaffed, colluders coordinate; honest providers do their job.
    function advLifecycle(uint256 seed, uint256 choices) external {
        uint256 id = _deepestJob(seed, seed % 3 == 0 ? address(0) : mallory);
        if (id == 0) id = _pickOwn(seed, S_LIVE);
        if (id == 0) return;
        for (uint256 k; k < 10 && (1 << _state(id)) & S_LIVE != 0; ++k) {
            _step(id, uint256(keccak256(abi.encode(choices, k))), true);
        }
        _hit("advLifecycle");
    }

    function selectors() external pure returns (bytes4[] memory s) {
        bytes4[13] memory list = [
            this.advCreate.selector,
            this.advRelease.selector,
            this.advChallenge.selector,
            this.advCancel.selector,
            this.advAssign.selector,
            this.keeperDelay.selector,
            this.earlyCalls.selector,
            this.griefBatch.selector,
            this.griefAssignBatch.selector,
            this.colludeCommit.selector,
            this.colludeReveal.selector,
            this.advLifecycle.selector,
            this.advLifecycle.selector
        ];
        s = new bytes4[](list.length);
        for (uint256 i; i < list.length; ++i) {
            s[i] = list[i];
        }
    }
}

/// @dev The market's self-call entry point, which only the market may call.
interface JobMarketBatchRunner {
    function runBatchItem(bytes4 operation, uint256 jobId, address[] calldata providers) external;
}
