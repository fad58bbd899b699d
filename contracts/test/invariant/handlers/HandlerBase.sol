// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "../../utils/Test.sol";
import {GhostLedger} from "./GhostLedger.sol";
import {HonestyOracle} from "./HonestyOracle.sol";
import {ComputeToken} from "../../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../../src/libraries/JobLib.sol";

/// @notice What the action handlers share: the wiring, job picking, how each provider behaves
/// (honest providers only ever commit and reveal the true digest; colluders commit the shared
/// wrong digest, a wrong one of their own, a copy or garbage, or stay away, and may withhold
/// their reveal), the matcher's and keeper's steps, and one step of a job along its lifecycle.
/// @dev Every contract call goes through the GhostLedger, which books and checks it. Where the
/// outcome of a call is fully determined by state the handler can read, the handler checks it
/// too (an eligible assignment, an in-time commit or reveal, a due staffing, an overdue finalize or
/// expire must succeed; a copied or wrong reveal, a foreign cancel or challenge must not).
abstract contract HandlerBase is Test {
    uint8 internal constant OPEN = 1;
    uint8 internal constant ASSIGNED = 2;
    uint8 internal constant COMMITTED = 3;
    uint8 internal constant AUDITING = 4;
    uint8 internal constant REVEALING = 5;
    uint8 internal constant SETTLED = 6;
    uint8 internal constant REFUNDED = 7;
    uint8 internal constant EXPIRED = 8;
    uint256 internal constant S_OPEN = 1 << OPEN;
    uint256 internal constant S_ASSIGNED = 1 << ASSIGNED;
    uint256 internal constant S_COMMITTED = 1 << COMMITTED;
    uint256 internal constant S_AUDITING = 1 << AUDITING;
    uint256 internal constant S_REVEALING = 1 << REVEALING;
    uint256 internal constant S_LIVE = S_OPEN | S_ASSIGNED | S_COMMITTED | S_AUDITING | S_REVEALING;
    uint256 internal constant S_ALL = S_LIVE | (1 << SETTLED) | (1 << REFUNDED) | (1 << EXPIRED);

    /// @dev How a provider commits.
    uint256 internal constant HONEST = 0;
    uint256 internal constant COLLUDE = 1; // the digest every colluder agrees on
    uint256 internal constant WRONG = 2; //   a wrong digest of its own
    uint256 internal constant COPY = 3; //    copies another participant's resultHash and seal
    uint256 internal constant GARBAGE = 4; // a commitment no digest opens

    /// @dev What an action needs of the job it picks, besides its state.
    uint8 internal constant ANY = 0;
    uint8 internal constant IN_TIME = 1;
    uint8 internal constant TO_COMMIT = 2;
    uint8 internal constant TO_REVEAL = 3;
    uint8 internal constant TO_STAFF = 4;

    uint256 internal constant N_PROVIDERS = 14;

    GhostLedger public immutable ledger;
    /// @dev Told what each actor was made to commit and which of its reveals went through.
    HonestyOracle internal immutable oracle;
    ComputeToken internal immutable token;
    ProviderRegistry internal immutable registry;
    JobMarket internal immutable market;
    address internal immutable owner;
    address internal immutable matcher;
    address internal immutable keeper;
    address internal immutable outsider;
    address internal immutable mallory;

    address internal immutable _deployer;
    /// @dev The provider addresses and who colludes, cached from the ledger (they never change).
    address[] internal _providers;
    mapping(address account => bool) internal _colluder;

    constructor(GhostLedger ledger_) {
        _deployer = msg.sender;
        for (uint256 i; i < N_PROVIDERS; ++i) {
            address p = ledger_.provider(i);
            _providers.push(p);
            _colluder[p] = ledger_.isColluder(p);
        }
        ledger = ledger_;
        oracle = ledger_.oracle();
        token = ledger_.token();
        registry = ledger_.registry();
        market = ledger_.market();
        owner = ledger_.owner();
        matcher = ledger_.matcher();
        keeper = ledger_.keeper();
        outsider = ledger_.outsider();
        mallory = ledger_.mallory();
    }

    // ================================================================ plumbing

    function _call(address from, uint256 id, bytes memory data) internal returns (bool) {
        return ledger.execJob(from, id, data);
    }

    function _violate(uint256 invariantNo, string memory why) internal {
        ledger.violate(invariantNo, why);
    }

    function _hit(bytes32 name) internal {
        if (_recordHits) ledger.hit(name);
    }

    /// @dev Mirrors the ledger's switch: path counters only for the coverage test.
    bool internal _recordHits;

    function setRecordHits(bool on) external {
        require(msg.sender == _deployer, "handler: deployer only");
        _recordHits = on;
    }

    function _state(uint256 id) internal view returns (uint8) {
        return ledger.lastState(id);
    }

    function _provider(uint256 i) internal view returns (address) {
        return _providers[i % N_PROVIDERS];
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

    function colludingDigest(uint256 id) public pure returns (bytes32) {
        return keccak256(abi.encode("fabricated output", id));
    }

    function _trueDigest(uint256 id) internal pure returns (bytes32) {
        return keccak256(abi.encode("correct output", id));
    }

    // ================================================================ job selection

    /// @notice A job whose last observed state is in `mask` and that meets `need`, searching from a
    /// fuzzed start; 0 when there is none.
    function _pickJob(uint256 seed, uint256 mask, uint8 need) internal view returns (uint256) {
        if (mask & ~S_LIVE == 0) {
            (uint256[] memory ids, uint8[] memory states) = ledger.liveStates();
            uint256 n = ids.length;
            for (uint256 k; k < n; ++k) {
                uint256 i = (seed % n + k) % n;
                if ((1 << states[i]) & mask != 0 && _meets(ids[i], need)) return ids[i];
            }
            return 0;
        }
        uint256 count = ledger.jobsSeen();
        for (uint256 k; k < count; ++k) {
            uint256 id = 1 + (seed % count + k) % count;
            if ((1 << _state(id)) & mask != 0 && _meets(id, need)) return id;
        }
        return 0;
    }

    function _meets(uint256 id, uint8 need) internal view returns (bool) {
        if (need == ANY) return true;
        IJobMarket.Job memory j = market.job(id);
        if (block.timestamp > j.deadline) return false;
        if (need == TO_COMMIT) return _pendingCommitter(id, j, 0) != address(0);
        if (need == TO_REVEAL) return _pendingRevealer(id, 0) != address(0);
        if (need == TO_STAFF) return _unstaffed(j);
        return true;
    }

    function _unstaffed(IJobMarket.Job memory j) internal pure returns (bool) {
        return uint8(j.state) == AUDITING && j.participants - j.verifiersFrom < j.seats;
    }

    /// @notice The live, in-time job furthest along its lifecycle (0 if none); `onlyOf` restricts it to
    /// one requester's jobs (zero: anyone's).
    function _deepestJob(uint256 seed, address onlyOf) internal view returns (uint256 best) {
        (uint256[] memory ids, uint8[] memory states) = ledger.liveStates();
        uint256 n = ids.length;
        uint8 bestState;
        for (uint256 k; k < n; ++k) {
            uint256 i = (seed % n + k) % n;
            if (states[i] <= bestState) continue;
            IJobMarket.Job memory j = market.job(ids[i]);
            if ((onlyOf != address(0) && j.requester != onlyOf) || block.timestamp > j.deadline) continue;
            (best, bestState) = (ids[i], states[i]);
        }
    }

    // ================================================================ requester steps

    function _cancel(uint256 id, bool foreign) internal {
        address caller = foreign ? outsider : ledger.jobRequester(id);
        bool ok = _call(caller, id, abi.encodeCall(IJobMarket.cancel, (id)));
        if (foreign && ok) _violate(5, "a stranger cancelled a job");
        if (!foreign && !ok) _violate(8, "the requester could not cancel an Open job");
        if (ok) _hit("cancelled");
    }

    function _challenge(uint256 id, bool foreign) internal {
        IJobMarket.Job memory j = market.job(id);
        address caller = foreign ? outsider : j.requester;
        bool ok = _call(caller, id, abi.encodeCall(IJobMarket.challenge, (id)));
        bool due = uint8(j.state) == COMMITTED && block.timestamp <= j.deadline;
        if (foreign && ok) _violate(5, "a stranger challenged a job");
        if (!foreign && !ok && due) _violate(8, "an in-time challenge was rejected");
        if (!foreign && ok && !due) _violate(5, "a late challenge was accepted");
    }

    // ================================================================ matcher steps

    /// @notice Assigns providers that meet every rule to an Open job; with `adversarial`, as many
    /// colluders as possible. Sometimes slips in one that breaks a rule, which must be refused.
    function _assign(uint256 id, uint256 seed, bool adversarial) internal {
        IJobMarket.Job memory j = market.job(id);
        if (uint8(j.state) != OPEN || block.timestamp > j.deadline) return;
        (address[] memory chosen, bool enough) = _choose(id, j, seed, adversarial);
        if (!enough) {
            _hit("unassignable");
            return;
        }
        bool bad;
        if (seed % 8 == 0) bad = _spoil(id, j, chosen, seed >> 8);
        bool ok = _call(matcher, id, abi.encodeCall(IJobMarket.assign, (id, chosen)));
        if (ok && bad) _violate(4, "an ineligible provider was assigned");
        if (!ok && !bad) _violate(8, "an assignment of eligible providers was rejected");
        if (!ok && bad) _hit("badAssignRefused");
    }

    /// @notice Whether `p` meets the job's rules on its own (the shared clearing price aside).
    function _fits(uint256 id, IJobMarket.Job memory j, address p, IProviderRegistry.Provider memory r)
        internal
        view
        returns (bool)
    {
        return p != j.requester && r.registered && r.unbondAt == 0 && (r.profileMask >> j.profile) & 1 != 0
            && r.vramGiB >= j.minVramGiB && r.pricePerUnit <= j.maxPricePerUnit && j.execWindow >= r.minExecWindow
            && j.units <= r.maxUnits && !ledger.noShowExcluded(id, p);
    }

    /// @dev A set of executors being built: each keeps free stake for the collateral at the
    /// clearing price (the highest ask) of the set.
    struct Pick {
        address[] chosen;
        uint256[] free;
        uint256 count;
        uint256 clearing;
    }

    /// @notice `replicas` providers that together meet every rule: added greedily in a fuzzed order
    /// (colluders first when `adversarial`), each only if everyone chosen still has free stake for
    /// the collateral at the raised clearing price.
    function _choose(uint256 id, IJobMarket.Job memory j, uint256 seed, bool adversarial)
        internal
        view
        returns (address[] memory chosen, bool enough)
    {
        Pick memory k = Pick(new address[](j.replicas), new uint256[](j.replicas), 0, 0);
        uint256 start = seed % N_PROVIDERS;
        if (adversarial) {
            for (uint256 i; i < 3 && k.count < j.replicas; ++i) {
                _consider(id, j, k, _provider(11 + (start + i) % 3));
            }
        }
        for (uint256 i; i < N_PROVIDERS && k.count < j.replicas; ++i) {
            _consider(id, j, k, _provider(start + i));
        }
        return (k.chosen, k.count == j.replicas);
    }

    function _consider(uint256 id, IJobMarket.Job memory j, Pick memory k, address p) internal view {
        if (_listed(p, k.chosen, k.count)) return;
        IProviderRegistry.Provider memory r = registry.provider(p);
        if (!_fits(id, j, p, r)) return;
        uint256 price = r.pricePerUnit > k.clearing ? r.pricePerUnit : k.clearing;
        uint256 collateral = uint256(j.collateralMultiple) * j.units * price;
        uint256 f = uint256(r.stake) - r.locked;
        if (f < collateral) return;
        for (uint256 i; i < k.count; ++i) {
            if (k.free[i] < collateral) return;
        }
        (k.chosen[k.count], k.free[k.count], k.clearing) = (p, f, price);
        ++k.count;
    }

    function _listed(address p, address[] memory list, uint256 n) internal pure returns (bool) {
        for (uint256 i; i < n; ++i) {
            if (list[i] == p) return true;
        }
        return false;
    }

    /// @notice Breaks one rule in `chosen`: a duplicate, the requester itself, or a provider that
    /// is unregistered, unbonding, an excluded no-show, or whose terms the job does not meet.
    function _spoil(uint256 id, IJobMarket.Job memory j, address[] memory chosen, uint256 seed)
        internal
        view
        returns (bool)
    {
        uint256 slot = seed % chosen.length;
        uint256 kind = (seed >> 8) % 3;
        if (kind == 0 && chosen.length > 1) {
            chosen[slot] = chosen[(slot + 1) % chosen.length];
            return true;
        }
        if (kind == 1) {
            chosen[slot] = j.requester;
            return true;
        }
        for (uint256 k; k < N_PROVIDERS; ++k) {
            address p = _provider(seed % N_PROVIDERS + k);
            if (_listed(p, chosen, chosen.length)) continue;
            if (!_fits(id, j, p, registry.provider(p)) && p != j.requester) {
                chosen[slot] = p;
                return true;
            }
        }
        return false;
    }

    // ================================================================ provider steps

    /// @notice How `p` commits: an honest provider the true digest, always; a colluder mostly the
    /// shared wrong digest (always, when `coordinated`), else a wrong one, a copy, garbage, or the truth.
    function _modeFor(address p, uint256 seed, bool coordinated) internal view returns (uint256) {
        if (!_colluder[p]) return HONEST;
        if (coordinated) return COLLUDE;
        uint256 r = seed % 20;
        if (r < 10) return COLLUDE;
        if (r < 12) return WRONG;
        if (r < 14) return COPY;
        if (r < 15) return GARBAGE;
        return HONEST;
    }

    /// @dev Whether the seat `pt` owes a commit now: executors while Assigned, the current round's
    /// verifiers while Auditing.
    function _owes(IJobMarket.Job memory j, GhostLedger.Part memory pt) internal pure returns (bool) {
        if (!pt.assigned || !pt.active || pt.committed) return false;
        if (uint8(j.state) == ASSIGNED) return pt.index < j.replicas;
        return uint8(j.state) == AUDITING && pt.index >= j.verifiersFrom;
    }

    function _pendingCommitter(uint256 id, IJobMarket.Job memory j, uint256 seed) internal view returns (address) {
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        uint256 n = ps.length;
        for (uint256 k; k < n; ++k) {
            uint256 i = (seed % n + k) % n;
            if (_owes(j, parts[i])) return ps[i];
        }
        return address(0);
    }

    /// @dev Executors commit while Assigned, verifiers of the current round while Auditing, in time.
    function _commitDue(uint256 id, IJobMarket.Job memory j, address p) internal view returns (bool) {
        return block.timestamp <= j.deadline && _owes(j, ledger.part(id, p));
    }

    function _commitAs(uint256 id, address p, uint256 mode, uint256 seed) internal returns (bool ok) {
        bytes32 digest;
        bytes32 rh;
        bytes32 sl;
        bool known = true;
        (bytes32 lastRh, bytes32 lastSl) = ledger.lastCommit(id);
        if (mode == COPY && lastRh != 0) {
            (rh, sl) = (lastRh, lastSl);
            known = false;
        } else if (mode == GARBAGE) {
            rh = keccak256(abi.encode("garbage", id, p, seed));
            sl = keccak256(abi.encode("garbage seal", id, p, seed));
            known = false;
        } else {
            digest = mode == COLLUDE
                ? colludingDigest(id)
                : mode == WRONG ? keccak256(abi.encode("wrong", id, p)) : _trueDigest(id);
            rh = JobLib.resultHash(id, digest);
            sl = JobLib.seal(p, id, digest);
        }
        bool due = _commitDue(id, market.job(id), p);
        ok = _call(p, id, abi.encodeCall(IJobMarket.commit, (id, rh, sl)));
        if (ok && !due) _violate(5, "a commit was accepted out of turn or late");
        if (!ok && due) _violate(8, "an in-time commit of a participant was rejected");
        if (!ok) return false;
        ledger.noteCommit(id, p, known, digest, rh, sl);
        oracle.noteCommit(id, p, digest, known);
        _hit(mode == HONEST ? bytes32("commitHonest") : mode == COPY ? bytes32("commitCopy") : bytes32("commitBad"));
    }

    /// @notice Every participant that owes a commit commits: honest ones always (the truth, in
    /// time), colluders by their strategy; an uncoordinated colluder stays away one time in four.
    function _commitAll(uint256 id, uint256 seed, bool coordinated) internal {
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        IJobMarket.Job memory j = market.job(id);
        for (uint256 i; i < ps.length; ++i) {
            if (!_owes(j, parts[i])) continue;
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            if (_colluder[ps[i]] && !coordinated && r % 4 == 0) {
                _hit("colluderNoShow");
                continue;
            }
            _commitAs(id, ps[i], _modeFor(ps[i], r >> 8, coordinated), r);
            j = market.job(id);
            if (uint8(j.state) != ASSIGNED && uint8(j.state) != AUDITING) break;
        }
    }

    function _pendingRevealer(uint256 id, uint256 seed) internal view returns (address) {
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        uint256 n = ps.length;
        for (uint256 k; k < n; ++k) {
            uint256 i = (seed % n + k) % n;
            if (parts[i].committed && !parts[i].revealed && parts[i].active) return ps[i];
        }
        return address(0);
    }

    /// @notice Every participant with a pending reveal reveals, honest ones always; colluders one
    /// time in four withhold (all of them together when `coordinated`, to force an escalation).
    function _revealAll(uint256 id, uint256 seed, bool coordinated) internal {
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        bool withholdAll = coordinated && seed % 4 == 0;
        for (uint256 i; i < ps.length; ++i) {
            GhostLedger.Part memory pt = parts[i];
            if (!pt.committed || pt.revealed || !pt.active) continue;
            if (_colluder[ps[i]] && (withholdAll || (!coordinated && (seed >> (i + 2)) % 4 == 0))) {
                _hit("withheld");
                continue;
            }
            _revealAs(id, ps[i]);
        }
    }

    /// @dev Reveals what `p` committed; a copycat or garbage committer tries the true and the
    /// colluding digest, which must both fail.
    function _revealAs(uint256 id, address p) internal {
        GhostLedger.Part memory pt = ledger.part(id, p);
        if (!pt.digestKnown) {
            _revealForged(id, p, _trueDigest(id));
            _revealForged(id, p, colludingDigest(id));
            return;
        }
        IJobMarket.Job memory j = market.job(id);
        bool due = uint8(j.state) == REVEALING && block.timestamp <= j.deadline && pt.committed && !pt.revealed;
        bool ok = _call(p, id, abi.encodeCall(IJobMarket.reveal, (id, pt.digest)));
        if (ok && due) oracle.noteReveal(id, p);
        if (!ok && due) _violate(9, "a reveal matching hash and seal was rejected");
        if (ok && !due) _violate(9, "a late or repeated reveal was accepted");
    }

    /// @dev A reveal whose digest does not open the caller's commitment: it must fail.
    function _revealForged(uint256 id, address p, bytes32 digest) internal {
        GhostLedger.Part memory pt = ledger.part(id, p);
        if (pt.digestKnown && pt.digest == digest) return; // not forged after all
        if (_call(p, id, abi.encodeCall(IJobMarket.reveal, (id, digest)))) {
            _violate(9, "a reveal not matching hash and seal was accepted");
        } else {
            _hit("forgedRevealRefused");
        }
    }

    /// @notice `p` hands its seat of job `id` back: it must go through exactly when `p` holds an
    /// active executor seat it has not committed to, the job is Assigned and the deadline has not
    /// passed.
    function _release(uint256 id, address p) internal {
        IJobMarket.Job memory j = market.job(id);
        GhostLedger.Part memory pt = ledger.part(id, p);
        bool due = uint8(j.state) == ASSIGNED && block.timestamp <= j.deadline && pt.assigned && pt.active
            && !pt.committed && pt.index < j.replicas;
        bool ok = _call(p, id, abi.encodeCall(IJobMarket.release, (id)));
        if (ok && !due) _violate(5, "a release the rules forbid went through");
        if (!ok && due) _violate(8, "an in-time release of an uncommitted executor was refused");
        _hit(ok ? bytes32("releaseCall") : bytes32("releaseRefused"));
    }

    // ================================================================ keeper steps

    function _drawAudit(uint256 id) internal {
        if (block.number <= market.participants(id)[0].commitBlock) _advance(12);
        IJobMarket.Job memory j = market.job(id);
        if (j.flags & 8 != 0 && block.number <= j.seedBlock) _advance(12); // re-seeded: the next block
        if (!_call(keeper, id, abi.encodeCall(IJobMarket.drawAudit, (id)))) {
            _violate(8, "the audit draw failed on a Committed job");
        }
    }

    /// @notice Draws the verifiers of an unstaffed, in-time audit round (from the block after its seed).
    function _staff(uint256 id) internal {
        IJobMarket.Job memory j = market.job(id);
        if (uint8(j.state) != AUDITING || j.participants - j.verifiersFrom == j.seats) return;
        if (block.number <= j.seedBlock) _advance(12);
        if (block.timestamp > j.deadline) return;
        if (_call(keeper, id, abi.encodeCall(IJobMarket.staffAudit, (id)))) _hit("staffCall");
        else _violate(8, "staffAudit of an unstaffed in-time audit failed");
    }

    function _finalize(uint256 id) internal returns (bool ok) {
        IJobMarket.Job memory j = market.job(id);
        ok = _call(keeper, id, abi.encodeCall(IJobMarket.finalize, (id)));
        bool allRevealed = uint8(j.state) == REVEALING && j.revealMask == j.commitMask;
        if (!ok && (block.timestamp > j.deadline || allRevealed) && !_sameBlockReseed(j)) {
            _violate(
                8,
                string.concat(
                    "finalize failed after the deadline or with every reveal in: job ",
                    vm.toString(id),
                    " state ",
                    vm.toString(uint256(uint8(j.state))),
                    " ",
                    vm.toString(ledger.lastRevert())
                )
            );
        }
        if (ok) _hit("finalized");
    }

    /// @dev The one overdue finalize that may revert: a Committed job whose draw was re-seeded in
    /// this very block (it draws from the next one).
    function _sameBlockReseed(IJobMarket.Job memory j) internal view returns (bool) {
        return uint8(j.state) == COMMITTED && j.flags & 8 != 0 && j.seedBlock == uint32(block.number);
    }

    function _expire(uint256 id) internal returns (bool ok) {
        uint256 deadline = market.job(id).deadline;
        ok = _call(keeper, id, abi.encodeCall(IJobMarket.expire, (id)));
        if (!ok && block.timestamp > deadline) {
            _violate(8, string.concat("expire failed after the deadline: ", vm.toString(ledger.lastRevert())));
        }
        if (ok && block.timestamp <= deadline) _violate(5, "a job was expired before its deadline");
        if (ok) _hit("expiredCall");
    }

    /// @notice Advances every overdue live job: expire (Open, Assigned, Auditing) or finalize
    /// (Committed, Revealing); returns how many live jobs remain.
    function _advanceAll() internal returns (uint256 remaining) {
        (uint256[] memory ids, uint8[] memory states) = ledger.liveStates();
        for (uint256 k; k < ids.length; ++k) {
            if (block.timestamp <= market.job(ids[k]).deadline) continue;
            if ((1 << states[k]) & (S_OPEN | S_ASSIGNED | S_AUDITING) != 0) _expire(ids[k]);
            else _finalize(ids[k]);
        }
        return ledger.live().length;
    }

    /// @notice More than 256 fast blocks pass in a few seconds: a seed block's hash ages out while
    /// every window stays open.
    function _ageSeed() internal {
        vm.roll(block.number + 257);
        vm.warp(block.timestamp + 1);
    }

    // ================================================================ one lifecycle step

    /// @dev One step of job `id` along its path, the branch chosen by `choice`. `adversarial`: the
    /// requester challenges whenever it can, the relayer assigns colluders first and sometimes
    /// lets an audit go unstaffed, colluders coordinate (all commit the same wrong digest; all
    /// reveal it or all withhold).
    function _step(uint256 id, uint256 choice, bool adversarial) internal {
        uint8 s = _state(id);
        IJobMarket.Job memory j = market.job(id);
        uint256 c = choice % 16;
        bool late = block.timestamp > j.deadline;
        if (s == OPEN) {
            if (c == 0) return _cancel(id, false);
            if (late || c == 1) {
                _advancePast(j.deadline, 0);
                _expire(id);
                return;
            }
            return _assign(id, choice >> 4, adversarial && c < 12);
        }
        if (s == COMMITTED) {
            if (!late && (adversarial ? c < 12 : c < 3)) return _challenge(id, false);
            if (c < 8 && !late) {
                if (adversarial && c == 7) _ageSeed(); // the relayer sits on the draw
                return _drawAudit(id);
            }
            _advancePast(j.deadline, (choice >> 4) % 4 == 0 ? 2 hours : 0); // sometimes long enough to re-seed
            _finalize(id);
            return;
        }
        if (s == AUDITING && _unstaffed(j)) {
            if (late || c < (adversarial ? 3 : 1)) {
                _advancePast(j.deadline, 0); // nobody staffed the round in time: no verdict
                if (c % 2 == 0) _expire(id);
                else _finalize(id);
                return;
            }
            if (adversarial && c >= 14) _ageSeed(); // the relayer sits on the round
            return _staff(id);
        }
        if (s == ASSIGNED || s == AUDITING) {
            // a reopened job sees more no-shows, so that a second no-show (Expired) is reached
            uint256 noShows = j.flags & 1 != 0 ? 8 : 2;
            if (late || c < noShows || _pendingCommitter(id, j, 0) == address(0)) {
                _advancePast(j.deadline, 0); // whoever has not committed is a no-show
                if (s == AUDITING && c % 2 == 0) _finalize(id);
                else _expire(id);
                return;
            }
            // an executor whose worker cannot run the job hands its seat back
            if (s == ASSIGNED && c == 15) return _release(id, _pendingCommitter(id, j, choice >> 4));
            return _commitAll(id, choice >> 4, adversarial);
        }
        // Revealing
        if (_pendingRevealer(id, 0) == address(0)) {
            _finalize(id); // everyone revealed: resolves at once
            return;
        }
        if (late || c < 2) {
            _advancePast(j.deadline, 0); // the rest withhold
            _finalize(id);
            return;
        }
        if (c < 5) {
            // some reveal in time, the rest miss the window: a round decided by fewer than all its
            // seats, where a majority of the reveals need not be a majority of the seats
            _revealSome(id, choice >> 4);
            _advancePast(market.job(id).deadline, 0);
            _finalize(id);
            return;
        }
        _revealAll(id, choice >> 4, adversarial);
    }

    /// @dev Each participant with a pending reveal reveals with even odds, whoever it is.
    function _revealSome(uint256 id, uint256 seed) internal {
        (address[] memory ps, GhostLedger.Part[] memory parts) = ledger.seatParts(id);
        for (uint256 i; i < ps.length; ++i) {
            GhostLedger.Part memory pt = parts[i];
            if (!pt.committed || pt.revealed || !pt.active || (seed >> i) & 1 == 0) continue;
            _revealAs(id, ps[i]);
            _hit("revealedSome");
        }
    }
}
