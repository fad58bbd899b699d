// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {GhostLedger} from "./GhostLedger.sol";

/// @notice Who should win each job, decided from what the handlers made every actor do, never
/// from the market's code or its events. The handlers tell it each commit they made an actor
/// send (the digest they told it to commit, or a copy or garbage it can never open) and each
/// reveal of that digest the market accepted in time. When a job closes, the oracle takes the
/// round that decided it, counts the reveals of its seats by digest, and applies the protocol
/// (DESIGN, Verification v2) in its own terms:
/// - a digest revealed by a strict majority of the deciding round's seats (the replicas before
///   any audit, else the k or 2k + 1 verifiers of the last round) is the verdict;
/// - whoever revealed the verdict is upheld: never slashed, and paid its seat (an executor units
///   x clearing price; a verifier the same, as far as the challenge bond and the audit pool cover
///   it); the job settles when an executor revealed it, else it is refunded;
/// - whoever committed and did not reveal the verdict is slashed, except a verifier outvoted in a
///   three-seat round-1 verdict, which keeps its stake and goes unpaid;
/// - a last round without a majority ends with no verdict (only round 2 may: round 1 escalates);
/// - an actor that revealed the true digest can lose only to a lie holding every seat of round 1
///   or a strict majority of round 2's seats: a colluding minority never slashes it.
/// @dev The market is only read for what the job is (its seats, the round it reached, its price)
/// and the ledger for what happened to each account (slashed, credited), both facts, not rules.
contract HonestyOracle {
    uint8 internal constant SETTLED = 6;
    uint8 internal constant REFUNDED = 7;

    /// @notice Violation buckets, one per invariant the oracle backs.
    uint256 public constant HONEST_SLASHED = 13;
    uint256 public constant HONEST_UNPAID = 14;
    uint256 public constant LIAR_SPARED = 15;
    uint256 public constant WRONG_VERDICT = 16;

    /// @notice What a handler made one actor do in one job.
    struct Act {
        bool committed;
        bool revealable; // it committed a digest it knows (not a copy, not garbage)
        bool revealed; //   its reveal of `told` was accepted before the deadline
        bytes32 told; //    the digest it was made to commit
    }

    JobMarket public immutable market;
    GhostLedger public immutable ledger;
    address internal immutable _deployer;
    mapping(address account => bool) public isReporter;
    mapping(uint256 jobId => mapping(address provider => Act)) internal _acts;

    mapping(uint256 bucket => uint256) public violations;
    mapping(uint256 bucket => string) public firstViolation;

    /// @notice How much each rule was exercised (a rule never met proves nothing).
    uint256 public judged;
    uint256 public honestRevealers;
    uint256 public honestExcused;
    uint256 public honestPaid;
    uint256 public truthMajorities;
    uint256 public lieMajorities;
    uint256 public liarsOutvoted;
    uint256 public noVerdicts;

    constructor(JobMarket market_, GhostLedger ledger_) {
        market = market_;
        ledger = ledger_;
        _deployer = msg.sender;
    }

    function allow(address reporter) external {
        require(msg.sender == _deployer, "oracle: deployer only");
        isReporter[reporter] = true;
    }

    modifier onlyReporter() {
        require(isReporter[msg.sender], "oracle: reporters only");
        _;
    }

    /// @notice The digest an honest provider computes for `jobId`.
    function truth(uint256 jobId) public pure returns (bytes32) {
        return keccak256(abi.encode("correct output", jobId));
    }

    // ================================================================ what the handlers made actors do

    /// @notice `p`'s commit to `jobId` went through: `told` is the digest it was made to commit,
    /// `revealable` false for a copied or garbage commitment.
    function noteCommit(uint256 jobId, address p, bytes32 told, bool revealable) external onlyReporter {
        _acts[jobId][p] = Act({committed: true, revealable: revealable, revealed: false, told: told});
    }

    /// @notice `p`'s reveal of what it was told to commit went through before the deadline.
    function noteReveal(uint256 jobId, address p) external onlyReporter {
        Act storage a = _acts[jobId][p];
        if (a.committed && a.revealable) a.revealed = true;
    }

    function act(uint256 jobId, address p) external view returns (Act memory) {
        return _acts[jobId][p];
    }

    // ================================================================ judging a closed job

    /// @dev The deciding round of a closed job and what its seats revealed.
    struct Round {
        uint256 from; //   first seat
        uint256 seats;
        uint256 round;
        bool staffed;
        bytes32 verdict; // the digest a strict majority of the seats revealed (0: none)
        uint256 votes;
        uint256 pay;
        uint256 upheldVerifiers;
        bool excused; //   a lie holding every round-1 seat or a majority of round 2 decided
        uint256 verifierShare; // what the bond and pool cover of each upheld verifier's pay
    }

    /// @notice Called by the ledger once a job has closed, after every event of the closing call
    /// was booked.
    function judge(uint256 jobId, uint256 poolBefore, uint256 bond, bool alone) external onlyReporter {
        IJobMarket.Job memory j = market.job(jobId);
        IJobMarket.Participant[] memory ps = market.participants(jobId);
        uint8 st = uint8(j.state);
        ++judged;
        Round memory r = _round(jobId, j, ps);
        if (j.replicas == 1 && r.round == 0) return _judgeUnverified(jobId, j, ps, st);
        // A verifier's pay comes from the bond, then the pool; in a call that closed this job
        // alone the oracle knows both as they stood before it (else it claims nothing).
        if (alone && r.upheldVerifiers != 0) r.verifierShare = (poolBefore + bond) / r.upheldVerifiers;
        for (uint256 i; i < ps.length; ++i) {
            _judgeHonest(jobId, r, ps[i].provider);
            if (r.verdict != 0) _judgeSeat(jobId, j.replicas, r, i, ps[i].provider);
        }
        bytes32 closed = ledger.closedDigest(jobId);
        if (r.verdict != 0) {
            if (closed != r.verdict) {
                _violate(WRONG_VERDICT, jobId, address(0), "the verdict is not the majority's digest");
            }
            bool executorUpheld;
            for (uint256 i; i < j.replicas && i < ps.length; ++i) {
                Act memory a = _acts[jobId][ps[i].provider];
                if (a.revealed && a.told == r.verdict) executorUpheld = true;
            }
            if (st != (executorUpheld ? SETTLED : REFUNDED)) {
                _violate(WRONG_VERDICT, jobId, address(0), "settled or refunded against who revealed the verdict");
            }
            if (r.verdict == truth(jobId)) ++truthMajorities;
            else ++lieMajorities;
        } else if (r.staffed && r.round != 0) {
            ++noVerdicts;
            if (r.round == 1) _violate(WRONG_VERDICT, jobId, address(0), "round 1 without a majority closed the job");
            if (closed != 0 || st != REFUNDED) {
                _violate(WRONG_VERDICT, jobId, address(0), "a verdict without a majority");
            }
        }
    }

    /// @dev The round that decided the job and the digest a strict majority of its seats revealed.
    function _round(uint256 jobId, IJobMarket.Job memory j, IJobMarket.Participant[] memory ps)
        internal
        view
        returns (Round memory r)
    {
        r.round = j.round;
        (r.from, r.seats) = r.round == 0 ? (0, uint256(j.replicas)) : (uint256(j.verifiersFrom), uint256(j.seats));
        r.staffed = r.from + r.seats <= ps.length;
        r.pay = uint256(j.units) * j.clearingPrice;
        if (!r.staffed) return r;
        for (uint256 i = r.from; i < r.from + r.seats; ++i) {
            Act memory a = _acts[jobId][ps[i].provider];
            if (!a.revealed) continue;
            uint256 same;
            for (uint256 k = r.from; k < r.from + r.seats; ++k) {
                Act memory b = _acts[jobId][ps[k].provider];
                if (b.revealed && b.told == a.told) ++same;
            }
            if (same * 2 > r.seats) (r.verdict, r.votes) = (a.told, same);
        }
        if (r.verdict != 0 && r.verdict != truth(jobId)) {
            r.excused = r.round == 2 || (r.round == 1 && r.votes == r.seats);
        }
        for (uint256 i = j.replicas; i < ps.length; ++i) {
            Act memory a = _acts[jobId][ps[i].provider];
            if (r.verdict != 0 && a.revealed && a.told == r.verdict) ++r.upheldVerifiers;
        }
    }

    /// @dev An actor that revealed the true digest is never slashed, unless the lie won as the
    /// protocol allows.
    function _judgeHonest(uint256 jobId, Round memory r, address p) internal {
        Act memory a = _acts[jobId][p];
        if (!a.revealed || a.told != truth(jobId)) return;
        ++honestRevealers;
        if (r.excused) {
            ++honestExcused;
        } else if (ledger.part(jobId, p).slashed) {
            _violate(HONEST_SLASHED, jobId, p, "slashed an actor that revealed the true digest");
        }
    }

    /// @dev One seat of a job with a verdict: upheld and paid its seat, or outvoted and slashed
    /// (a round-1 verifier of a round-1 verdict: unpaid and unslashed). Seats that never committed
    /// were no-shows, slashed at their deadline by a rule outside the verdict.
    function _judgeSeat(uint256 jobId, uint256 replicas, Round memory r, uint256 i, address p) internal {
        Act memory a = _acts[jobId][p];
        if (!a.committed) return;
        bool slashed = ledger.part(jobId, p).slashed;
        uint256 credit = ledger.jobCredit(jobId, p);
        bool executor = i < replicas;
        if (a.revealed && a.told == r.verdict) {
            if (slashed) {
                _violate(
                    r.excused ? WRONG_VERDICT : HONEST_SLASHED, jobId, p, "slashed a seat that revealed the verdict"
                );
            }
            uint256 owed = executor || r.verifierShare > r.pay ? r.pay : r.verifierShare;
            if (credit < owed) _violate(HONEST_UNPAID, jobId, p, "an upheld seat was paid less than its seat earns");
            else if (a.told == truth(jobId)) ++honestPaid;
            return;
        }
        bool spared = !executor && a.revealed && r.round == 1;
        if (credit != 0) _violate(LIAR_SPARED, jobId, p, "an outvoted seat was paid");
        if (spared) {
            if (slashed) _violate(WRONG_VERDICT, jobId, p, "slashed a verifier outvoted in round 1");
            return;
        }
        ++liarsOutvoted;
        if (!slashed) _violate(LIAR_SPARED, jobId, p, "an outvoted or silent seat kept its stake");
    }

    /// @dev A lone executor never audited: paid its seat when the job settled; nothing else decides.
    function _judgeUnverified(uint256 jobId, IJobMarket.Job memory j, IJobMarket.Participant[] memory ps, uint8 st)
        internal
    {
        if (st != SETTLED || ps.length == 0) return;
        address p = ps[0].provider;
        Act memory a = _acts[jobId][p];
        if (!a.committed || a.told != truth(jobId)) return;
        ++honestRevealers;
        if (ledger.jobCredit(jobId, p) != uint256(j.units) * j.clearingPrice) {
            _violate(HONEST_UNPAID, jobId, p, "an unaudited honest executor was not paid its seat");
        } else {
            ++honestPaid;
        }
        if (ledger.part(jobId, p).slashed) _violate(HONEST_SLASHED, jobId, p, "slashed an unaudited honest executor");
    }

    function _violate(uint256 bucket, uint256 jobId, address p, string memory why) internal {
        if (violations[bucket] == 0) {
            firstViolation[bucket] = string.concat("job ", _toString(jobId), " provider ", _toHex(p), ": ", why);
        }
        violations[bucket] += 1;
    }

    function _toString(uint256 v) internal pure returns (string memory) {
        if (v == 0) return "0";
        bytes memory b;
        for (; v != 0; v /= 10) {
            b = abi.encodePacked(bytes1(uint8(48 + v % 10)), b);
        }
        return string(b);
    }

    function _toHex(address a) internal pure returns (string memory) {
        bytes memory s = new bytes(42);
        (s[0], s[1]) = ("0", "x");
        bytes16 digits = "0123456789abcdef";
        for (uint256 i; i < 20; ++i) {
            uint8 c = uint8(uint160(a) >> (8 * (19 - i)));
            (s[2 + 2 * i], s[3 + 2 * i]) = (digits[c >> 4], digits[c & 15]);
        }
        return string(s);
    }
}
