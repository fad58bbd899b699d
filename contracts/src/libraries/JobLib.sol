// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IJobMarket} from "../interfaces/IJobMarket.sol";

/// @title JobLib
/// @notice Pure job arithmetic and the result hashing shared with the off-chain SDK.
library JobLib {
    uint256 internal constant BPS = 10_000;

    /// @notice The market's compact account ids: a uint32 per requester and provider, assigned on
    /// first use (ids start at 1; 0 means none), so a job stores 4 bytes per account instead of 20.
    struct Accounts {
        mapping(address account => uint32 id) ids;
        mapping(uint32 id => address account) accountOf;
        uint32 count;
    }

    /// @notice A job as the market stores it: the fields of IJobMarket.Job (whose order is part
    /// of the ABI), ordered by when they are written, with the executor of seat 0 inside, so that a
    /// replicas = 1 job fills two fresh slots at creation and a third at its first assignment.
    /// Slot 0, written at creation, then on every transition (state and deadline): provider0 (seat
    /// 0's account id), requester (an account id), deadline, flags, state, replicas, participants,
    /// profile, collateralMultiple, feeBps (20 bytes), then seat 0's commitment0 and commitBlock0 at
    /// the byte offsets an IJobMarket.Participant has them (20 and 28), so that `seat` can point at
    /// them. Seat 0 is written at the assignment and the commit, which write slot 0 anyway.
    /// Slot 1, written once at creation and only read afterwards: the requester's terms and the
    /// fee snapshots (maxPricePerUnit, units, minVramGiB, execWindow, premiumBps, minFee).
    /// Slot 2, written from the first assignment on: clearingPrice, the commit, reveal and
    /// active-seat masks, and the audit round (seedBlock, round, seats, verifiersFrom, draws).
    /// A reopened job keeps its clearing price (the `job` view reads 0 while `participants` is 0),
    /// so slot 2 never returns to zero and a reassignment rewrites it instead of filling it anew.
    /// Seats 1 and on (executors of replicas 3 and 5, verifiers) stay IJobMarket.Participant
    /// records with addresses, one slot each: ids would save them no slot.
    struct StoredJob {
        uint32 provider0;
        uint32 requester;
        uint32 deadline;
        uint8 flags;
        IJobMarket.JobState state;
        uint8 replicas;
        uint8 participants;
        uint8 profile;
        uint8 collateralMultiple;
        uint16 feeBps;
        uint64 commitment0;
        uint32 commitBlock0;
        uint80 maxPricePerUnit;
        uint32 units;
        uint16 minVramGiB;
        uint32 execWindow;
        uint16 premiumBps;
        uint64 minFee;
        uint80 clearingPrice;
        uint32 commitMask;
        uint32 revealMask;
        uint32 activeMask;
        uint32 seedBlock;
        uint8 round;
        uint8 seats;
        uint8 verifiersFrom;
        uint8 draws;
    }

    /// @notice The commitment record of seat `i` of job `j`: seat 0's is the job's slot 0 (its
    /// `commitment` and `commitBlock` are commitment0 and commitBlock0), the others are in `rest`.
    /// The `provider` field read through seat 0's record is not an address: use `providerOf` and
    /// `holds` for who sits in a seat.
    function seat(StoredJob storage j, mapping(uint256 => IJobMarket.Participant) storage rest, uint256 i)
        internal
        view
        returns (IJobMarket.Participant storage s)
    {
        if (i != 0) return rest[i];
        assembly ("memory-safe") {
            s.slot := j.slot
        }
    }

    /// @notice The address in seat `i` of job `j`.
    function providerOf(
        StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage rest,
        Accounts storage a,
        uint256 i
    ) internal view returns (address) {
        return i == 0 ? a.accountOf[j.provider0] : rest[i].provider;
    }

    /// @notice Whether `account` sits in seat `i` (< participants) of job `j`; reads the id only for seat 0.
    function holds(
        StoredJob storage j,
        mapping(uint256 => IJobMarket.Participant) storage rest,
        Accounts storage a,
        uint256 i,
        address account
    ) internal view returns (bool) {
        return i == 0 ? a.ids[account] == j.provider0 : rest[i].provider == account;
    }

    /// @notice The id of `account`, assigned now when it has none.
    function idOf(Accounts storage a, address account) internal returns (uint32 id) {
        id = a.ids[account];
        if (id != 0) return id;
        uint32 count = a.count;
        if (count == type(uint32).max) revert IJobMarket.JobMarketAccountIdsExhausted();
        id = count + 1;
        a.count = id;
        a.ids[account] = id;
        a.accountOf[id] = account;
    }

    /// @notice Job `j` in the order of IJobMarket.Job (the market's `job` view). Without
    /// participants (created, or reopened) the clearing price reads 0: a reopen leaves the stored
    /// one in place (see StoredJob).
    function toJob(StoredJob storage j, Accounts storage a) internal view returns (IJobMarket.Job memory v) {
        v.requester = a.accountOf[j.requester];
        v.deadline = j.deadline;
        v.flags = j.flags;
        v.state = j.state;
        v.replicas = j.replicas;
        v.participants = j.participants;
        v.profile = j.profile;
        v.collateralMultiple = j.collateralMultiple;
        v.feeBps = j.feeBps;
        v.maxPricePerUnit = j.maxPricePerUnit;
        v.clearingPrice = v.participants == 0 ? 0 : j.clearingPrice;
        v.units = j.units;
        v.minVramGiB = j.minVramGiB;
        v.execWindow = j.execWindow;
        v.premiumBps = j.premiumBps;
        v.commitMask = j.commitMask;
        v.revealMask = j.revealMask;
        v.activeMask = j.activeMask;
        v.seedBlock = j.seedBlock;
        v.round = j.round;
        v.seats = j.seats;
        v.verifiersFrom = j.verifiersFrom;
        v.draws = j.draws;
        v.minFee = j.minFee;
    }

    /// @notice keccak256(abi.encode(jobId, digest)): the public result hash.
    function resultHash(uint256 jobId, bytes32 digest) internal pure returns (bytes32) {
        return keccak256(abi.encode(jobId, digest));
    }

    /// @notice keccak256(abi.encode(provider, jobId, digest)): binds a result to its committer.
    function seal(address provider, uint256 jobId, bytes32 digest) internal pure returns (bytes32) {
        return keccak256(abi.encode(provider, jobId, digest));
    }

    /// @notice The stored commitment: the first 8 bytes of keccak256(abi.encode(resultHash, seal)).
    /// @dev 64 bits suffice: a committer that does not know the digest must guess the value the
    /// honest digest will produce for its own address, a 2^-64 chance per job.
    function commitment(bytes32 resultHash_, bytes32 seal_) internal pure returns (uint64) {
        return uint64(bytes8(keccak256(abi.encode(resultHash_, seal_))));
    }

    /// @notice The commitment `provider` must have made to reveal `digest` for `jobId`.
    function commitmentOf(uint256 jobId, address provider, bytes32 digest) internal pure returns (uint64) {
        return commitment(resultHash(jobId, digest), seal(provider, jobId, digest));
    }

    /// @notice The protocol fee on `pay`: `feeBps` of it, at least `minFee`; nothing on nothing.
    function feeOf(uint256 amount, uint256 feeBps, uint256 minFee) internal pure returns (uint256) {
        if (amount == 0) return 0;
        uint256 fee = amount * feeBps / BPS;
        return fee < minFee ? minFee : fee;
    }

    /// @notice Escrow of a job: every replica at the maximum price, the fee on that and the audit
    /// premium (`premiumBps` of it; zero unless replicas = 1).
    function escrowOf(
        uint256 replicas,
        uint256 units,
        uint256 maxPricePerUnit,
        uint256 feeBps,
        uint256 minFee,
        uint256 premiumBps
    ) internal pure returns (uint256) {
        uint256 payment = replicas * units * maxPricePerUnit;
        return payment + feeOf(payment, feeBps, minFee) + payment * premiumBps / BPS;
    }

    /// @notice Escrow held for `j`.
    function escrow(StoredJob storage j) internal view returns (uint256) {
        return escrowOf(j.replicas, j.units, j.maxPricePerUnit, j.feeBps, j.minFee, j.premiumBps);
    }

    /// @notice What one upheld executor or verifier of `j` is paid: units x clearing price.
    function pay(StoredJob storage j) internal view returns (uint256) {
        return uint256(j.units) * j.clearingPrice;
    }

    /// @notice Collateral each participant of `j` locks: multiple x units x clearing price.
    function collateral(StoredJob storage j) internal view returns (uint96) {
        return uint96(uint256(j.collateralMultiple) * j.units * j.clearingPrice);
    }

    /// @notice Number of set bits.
    function popcount(uint256 x) internal pure returns (uint256 c) {
        for (; x != 0; x &= x - 1) ++c;
    }

    /// @notice Bits lo .. hi-1 set.
    function range(uint256 lo, uint256 hi) internal pure returns (uint256) {
        return ((1 << hi) - 1) & ~((1 << lo) - 1);
    }
}
