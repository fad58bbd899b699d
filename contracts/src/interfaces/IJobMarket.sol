// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IJobMarket
/// @notice Escrowed compute jobs: creation, assignment to staked providers, commit-reveal of result
/// digests, optimistic settlement with random audits and requester challenges, majority
/// resolution, slashing and pull payments.
/// @dev Results are committed as `resultHash = keccak256(abi.encode(jobId, digest))` and
/// `seal = keccak256(abi.encode(provider, jobId, digest))`; a copied commitment cannot be revealed
/// by the copier because the seal binds the committing address.
interface IJobMarket {
    /// @notice Lifecycle states. Settled, Refunded and Expired are terminal.
    enum JobState {
        None, //       no such job
        Open, //       escrowed, waiting for assignment until `deadline`
        Assigned, //   executors assigned, commits due by `deadline`
        Committed, //  replicas = 1: result committed, challenge window ends at `deadline`
        Auditing, //   verifiers of the current round being drawn (until `deadline`), then committing
        Revealing, //  commitments in; reveals due by `deadline`
        Settled, //    result upheld, executors paid
        Refunded, //   no upheld result (cheat caught, or no verdict); requester refunded
        Expired //     never executed (cancelled, not assigned in time, or no-show twice); full refund
    }

    /// @notice What a requester asks for.
    /// @param specHash sha256 of the canonical job spec JSON in the artifact store.
    /// @param units Work units the job is priced in (at least 1).
    /// @param maxPricePerUnit Most the requester pays per unit and replica.
    /// @param profile Determinism profile id (see ProviderRegistry.profile).
    /// @param replicas Independent executions: 1 (optimistic with audits), 3 or 5.
    /// @param minVramGiB GPU memory each executor must have.
    /// @param acceptWindow Seconds the job waits for assignment.
    /// @param execWindow Seconds each executor has, from assignment, to commit; at least the
    /// protocol's `minExecWindow` and each executor's own minimum.
    struct JobRequest {
        bytes32 specHash;
        uint32 units;
        uint80 maxPricePerUnit;
        uint8 profile;
        uint8 replicas;
        uint16 minVramGiB;
        uint32 acceptWindow;
        uint32 execWindow;
    }

    /// @notice A job as stored (three slots).
    /// @param deadline Meaning depends on the state (see JobState); unix seconds.
    /// @param flags Bit 0: reopened after a no-show (a second no-show expires the job); bit 1:
    /// challenged; bit 2: the audit draw ran and did not select the job; bit 3: the audit draw was
    /// re-seeded from `seedBlock` after its block hash aged out.
    /// @param participants Executors (indices below `replicas`) plus drawn verifiers of every round.
    /// @param collateralMultiple Collateral per participant = multiple x units x clearingPrice.
    /// @param feeBps Protocol fee snapshot, charged on what executors are paid (at least `minFee`).
    /// @param clearingPrice Price per unit paid to every executor (the highest ask among them) and
    /// to every upholding verifier.
    /// @param premiumBps Audit premium snapshot (auditBps x verifiers) charged on a settled
    /// replicas = 1 job's pay into the audit pool.
    /// @param commitMask Bit i set when participant i committed.
    /// @param revealMask Bit i set when participant i revealed.
    /// @param activeMask Bit i set while participant i's collateral is locked for the job.
    /// @param seedBlock Block whose hash seeds the current verifier draw (or a re-seeded audit draw).
    /// @param round 0 before any audit; 1 for the first audit round; 2 for the escalation round.
    /// @param seats Verifier seats of the current round (k, then 2k + 1).
    /// @param verifiersFrom Index of the current round's first verifier.
    /// @param draws Draws used so far staffing the current round.
    /// @param minFee Fee floor snapshot.
    struct Job {
        address requester;
        uint32 deadline;
        uint8 flags;
        JobState state;
        uint8 replicas;
        uint8 participants;
        uint8 profile;
        uint8 collateralMultiple;
        uint16 feeBps;
        uint80 maxPricePerUnit;
        uint80 clearingPrice;
        uint32 units;
        uint16 minVramGiB;
        uint32 execWindow;
        uint16 premiumBps;
        uint32 commitMask;
        uint32 revealMask;
        uint32 activeMask;
        uint32 seedBlock;
        uint8 round;
        uint8 seats;
        uint8 verifiersFrom;
        uint8 draws;
        uint64 minFee;
    }

    /// @notice One executor or verifier of a job.
    /// @param commitment First 8 bytes of keccak256(resultHash, seal); zero before the commit.
    /// @param commitBlock Low 32 bits of the commit's block number (its hash seeds the audit draw).
    struct Participant {
        address provider;
        uint64 commitment;
        uint32 commitBlock;
    }

    /// @notice Owner-set protocol parameters, each bounded (see `setParams`).
    struct Params {
        uint16 feeBps; //               protocol fee on executor payments, <= 1000
        uint16 auditShareBps; //        share of the fee that funds the audit pool
        uint16 auditBps; //             audit probability for replicas = 1, in bps;
        //                              auditBps x (1 + collateralMultiple) >= 10000
        uint16 requesterShareBps; //    share of a cheating executor's slash compensating the requester
        uint16 rewardShareBps; //       share of a slash rewarding the upholding participants; rest burned
        uint8 verifiers; //             k verifiers per audit round: 1, 3 or 5 (escalation: 2k + 1)
        uint8 collateralMultiple; //    1..20
        uint32 challengeWindow; //      seconds after a commit to challenge or draw the audit
        uint32 verifierAssignWindow; // seconds to draw a round's verifiers once it starts
        uint32 verifierExecWindow; //   seconds verifiers have to commit once drawn
        uint32 revealWindow; //         seconds to reveal once all commitments are in
        uint32 minExecWindow; //        floor of every job's exec window
        uint32 maxAcceptWindow;
        uint32 maxExecWindow;
        uint32 reassignWindow; //       accept window of a job reopened after a no-show
        uint64 minFee; //               fee floor per settled job (no zero-fee reputation farming)
    }

    // ---------------------------------------------------------------- errors

    /// @notice Job `jobId` is in `current`; the call needs one of the states in bitmap `allowed`
    /// (bit i = JobState(i)).
    error JobMarketUnexpectedState(uint256 jobId, JobState current, uint256 allowed);
    /// @notice `caller` is not an authorised matcher.
    error JobMarketNotMatcher(address caller);
    /// @notice Only the job's requester may do this.
    error JobMarketNotRequester(uint256 jobId, address caller);
    /// @notice `caller` is not a participant of job `jobId`.
    error JobMarketNotParticipant(uint256 jobId, address caller);
    /// @notice Replicas must be 1, 3 or 5: an odd count always has a majority.
    error JobMarketInvalidReplicas(uint8 replicas);
    /// @notice Units and max price must be non-zero, and the collateral (collateral multiple x units x
    /// max price) must fit in 96 bits.
    error JobMarketInvalidAmount(uint32 units, uint80 maxPricePerUnit);
    /// @notice A window is below its minimum or above its maximum.
    error JobMarketInvalidWindow(uint32 window, uint32 minimum, uint32 maximum);
    /// @notice Profile `profile` is not defined in the ProviderRegistry.
    error JobMarketUnknownProfile(uint8 profile);
    /// @notice The batch is empty, or two arrays differ in length.
    error JobMarketInvalidBatch(uint256 length, uint256 otherLength);
    /// @notice `given` providers for job `jobId`, which needs `expected`.
    error JobMarketWrongProviderCount(uint256 jobId, uint256 given, uint256 expected);
    /// @notice `provider` appears twice in job `jobId`.
    error JobMarketDuplicateProvider(uint256 jobId, address provider);
    /// @notice `provider` was excluded from job `jobId` after failing to commit or releasing it.
    error JobMarketProviderExcluded(uint256 jobId, address provider);
    /// @notice The requester of job `jobId` cannot execute it.
    error JobMarketRequesterAsProvider(uint256 jobId, address provider);
    /// @notice The current audit round of job `jobId` has all its verifiers.
    error JobMarketAuditStaffed(uint256 jobId);
    /// @notice The draw of job `jobId` needs the hash of block `seedBlock`; try again next block.
    error JobMarketSeedNotReady(uint256 jobId, uint256 seedBlock);
    /// @notice `provider` already committed to job `jobId` (and so can no longer release it).
    error JobMarketAlreadyCommitted(uint256 jobId, address provider);
    /// @notice `provider` has no commitment to reveal, or revealed already.
    error JobMarketNothingToReveal(uint256 jobId, address provider);
    /// @notice The digest does not match `provider`'s result hash and seal.
    error JobMarketRevealMismatch(uint256 jobId, address provider);
    /// @notice The deadline `deadline` of job `jobId` has passed.
    error JobMarketDeadlinePassed(uint256 jobId, uint32 deadline);
    /// @notice Job `jobId` cannot advance before `deadline`.
    error JobMarketDeadlineNotReached(uint256 jobId, uint32 deadline);
    /// @notice The audit draw needs the block after the commit; try again next block.
    error JobMarketAuditNotDrawable(uint256 jobId, uint256 commitBlock);
    /// @notice A parameter is out of bounds; `reason` names it.
    error JobMarketInvalidParams(string reason);
    /// @notice `account` has nothing to withdraw.
    error JobMarketNothingToWithdraw(address account);
    /// @notice The zero address was given.
    error JobMarketZeroAddress();
    /// @notice Only the market itself may call this (the batch entry points use it to skip items).
    error JobMarketOnlySelf(address caller);
    /// @notice Item `jobId` of a batched `operation` ran out of gas; send the batch with more gas.
    error JobMarketBatchItemOutOfGas(uint256 jobId, bytes4 operation);
    /// @notice Every one of the 2^32 - 1 account ids the market keeps is taken: a new requester or
    /// provider cannot be given one. Use accounts that already hold a job or a seat, or a new market.
    error JobMarketAccountIdsExhausted();

    // ---------------------------------------------------------------- events

    /// @notice A job was created and `escrow` tokens pulled from the requester.
    event JobCreated(
        uint256 indexed jobId,
        address indexed requester,
        bytes32 specHash,
        JobRequest request,
        uint32 acceptBy,
        uint256 escrow
    );
    /// @notice `provider` was assigned to job `jobId` as participant `index` (verifiers from
    /// `replicas` on, drawn on-chain); `pricePerUnit` is what the job pays it per unit if upheld.
    event ProviderAssigned(
        uint256 indexed jobId, address indexed provider, uint8 index, uint80 pricePerUnit, uint32 deadline
    );
    /// @notice `provider` committed a result to job `jobId`.
    event ResultCommitted(uint256 indexed jobId, address indexed provider, bytes32 resultHash, bytes32 seal);
    /// @notice The audit draw for job `jobId` ran; `audited` says whether it selected the job.
    event AuditDrawn(uint256 indexed jobId, bool audited);
    /// @notice The audit draw of job `jobId` found its block hash aged out and will use the hash of
    /// `seedBlock` instead.
    event AuditReseeded(uint256 indexed jobId, uint32 seedBlock);
    /// @notice Audit round `round` of job `jobId` started: `seats` verifiers are drawn from the hash
    /// of `seedBlock` until `staffBy`.
    event AuditStarted(uint256 indexed jobId, uint8 round, uint8 seats, uint32 seedBlock, uint32 staffBy);
    /// @notice Every seat of job `jobId`'s current audit round is filled; verifiers commit by `deadline`.
    event AuditStaffed(uint256 indexed jobId, uint8 round, uint32 deadline);
    /// @notice The requester challenged job `jobId`, posting `bond`.
    event JobChallenged(uint256 indexed jobId, address indexed requester, uint256 bond);
    /// @notice All commitments of job `jobId` are in; reveals are due by `deadline`.
    event RevealStarted(uint256 indexed jobId, uint32 deadline);
    /// @notice `provider` revealed `digest` for job `jobId`.
    event ResultRevealed(uint256 indexed jobId, address indexed provider, bytes32 digest);
    /// @notice `provider` was slashed `amount` in job `jobId`.
    event ProviderSlashed(uint256 indexed jobId, address indexed provider, uint256 amount);
    /// @notice Job `jobId` failed to get commits from every executor and was reopened.
    event JobReopened(uint256 indexed jobId, uint32 acceptBy);
    /// @notice Executor `provider` handed its seat of job `jobId` back before its deadline, paying
    /// `fee` of its collateral into the audit pool; the rest was unlocked.
    event ProviderReleased(uint256 indexed jobId, address indexed provider, uint256 fee);
    /// @notice Job `jobId` reached terminal state `state` with `digest` upheld (zero: none). Totals
    /// of the closing transaction: `paid` went to providers and verifiers, `refunded` (escrow, bond
    /// and slash compensation) to the requester, `fees` to treasury and audit pool (premium, slash
    /// shares with nobody to reward and the fee of a release that closed the job included),
    /// `burned` was destroyed. Slashes and releases in earlier transactions of the job are in
    /// their own ProviderSlashed, ProviderReleased and Credited events.
    event JobClosed(
        uint256 indexed jobId, JobState state, bytes32 digest, uint256 paid, uint256 refunded, uint256 fees, uint256 burned
    );
    /// @notice `amount` was credited to `account` for job `jobId` (payment, refund, reward or compensation).
    event Credited(uint256 indexed jobId, address indexed account, uint256 amount);
    /// @notice A batched call skipped job `jobId`: `operation` (the single-item function's
    /// selector) reverted with `reason` (an ABI-encoded custom error of this interface).
    event BatchItemSkipped(uint256 indexed jobId, bytes4 indexed operation, bytes reason);
    /// @notice `account` withdrew `amount`.
    event Withdrawn(address indexed account, uint256 amount);
    /// @notice Parameters changed.
    event ParamsSet(Params params);
    /// @notice `matcher` was allowed (`allowed`) or disallowed to assign jobs.
    event MatcherSet(address indexed matcher, bool allowed);
    /// @notice `amount` of protocol fees was sent to the treasury.
    event FeesWithdrawn(address indexed treasury, uint256 amount);
    /// @notice Protocol fees now accrue to `treasury`.
    event TreasurySet(address indexed treasury);

    // ---------------------------------------------------------------- requester

    /// @notice Creates a job, pulling its escrow (approve first).
    function createJob(JobRequest calldata request) external returns (uint256 jobId);

    /// @notice Creates many jobs in one transaction with one token pull.
    /// @return firstJobId Id of the first job; the rest follow consecutively.
    function createJobs(JobRequest[] calldata requests) external returns (uint256 firstJobId);

    /// @notice Like `createJobs`, authorising the pull with an ERC-2612 permit for `value`.
    function createJobsWithPermit(
        JobRequest[] calldata requests,
        uint256 value,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external returns (uint256 firstJobId);

    /// @notice Cancels an Open job and credits its full escrow back.
    function cancel(uint256 jobId) external;

    /// @notice Challenges a Committed job (replicas = 1) before its window ends, posting a bond of
    /// `verifiers` x units x clearing price that pays the verifiers if the result is upheld.
    function challenge(uint256 jobId) external;

    // ---------------------------------------------------------------- matcher

    /// @notice Assigns the executors `providers` (exactly `replicas`, distinct, not the requester)
    /// to Open job `jobId`; each is checked against its own registered terms. Verifiers are never
    /// named by anyone: see `staffAudit`.
    function assign(uint256 jobId, address[] calldata providers) external;

    /// @notice `assign` for many jobs; a job that cannot be assigned is skipped (BatchItemSkipped).
    function assignBatch(uint256[] calldata jobIds, address[][] calldata providers) external;

    // ---------------------------------------------------------------- providers

    /// @notice Commits a result for job `jobId` as executor or verifier.
    function commit(uint256 jobId, bytes32 resultHash, bytes32 seal) external;

    /// @notice Hands the caller's executor seat of Assigned job `jobId` back before its commit
    /// deadline, for a worker that cannot run the job. The caller pays a release fee of units x
    /// clearing price (one job's pay, collateral / collateralMultiple) from its collateral into
    /// the audit pool, the rest of its collateral is unlocked, and it is excluded from the job.
    /// With no executor left the job reopens (once; a job already reopened expires with a full
    /// refund); with every remaining executor committed the reveal starts; otherwise the others
    /// keep their seats and deadline.
    /// @dev Only an active executor that has not committed may release: a result is never
    /// withdrawn once committed, so release cannot dodge the audit draw seeded after the commit.
    /// Verifiers cannot release: a verifier leaving could leave an audit round unstaffed (no
    /// verdict) and so spare a cheating executor its slash.
    function release(uint256 jobId) external;

    /// @notice `commit` for many jobs.
    function commitBatch(uint256[] calldata jobIds, bytes32[] calldata resultHashes, bytes32[] calldata seals)
        external;

    /// @notice Reveals the digest behind the caller's commitment.
    function reveal(uint256 jobId, bytes32 digest) external;

    // ---------------------------------------------------------------- keepers (permissionless)

    /// @notice Runs the audit draw for a Committed job; moves it to Auditing when selected.
    /// @return audited Whether the job is now audited.
    function drawAudit(uint256 jobId) external returns (bool audited);

    /// @notice `drawAudit` for many jobs; jobs not drawable are skipped (BatchItemSkipped).
    function drawAudits(uint256[] calldata jobIds) external;

    /// @notice Draws verifiers for the current audit round of job `jobId` on-chain, stake-weighted
    /// from the job's profile (executors, requester and earlier participants excluded), seeded by
    /// the hash of the block the round started in (its seed block). A seed that aged out, or whose
    /// block lies in an earlier 64-block draw epoch than now, is replaced by the current block
    /// (AuditReseeded) and the call must be repeated from the next block: stake can change during
    /// an epoch, but draws weigh it as it stood at the epoch's start, before any seed was known.
    /// @return filled Seats filled so far in the round.
    function staffAudit(uint256 jobId) external returns (uint256 filled);

    /// @notice `staffAudit` for many jobs; jobs not staffable are skipped (BatchItemSkipped).
    function staffAudits(uint256[] calldata jobIds) external;

    /// @notice Advances a job whose window allows it: settles (or audits, if the draw selects it)
    /// after the challenge window, resolves reveals once all are in or the reveal window passed, and
    /// ends an audit whose deadline passed.
    function finalize(uint256 jobId) external;

    /// @notice `finalize` for many jobs; jobs not finalizable are skipped (BatchItemSkipped).
    function finalizeBatch(uint256[] calldata jobIds) external;

    /// @notice Expires an Open job past its accept deadline, handles executors that missed the commit
    /// deadline (slashed and excluded; the rest reveal, or the job reopens once, else expires), and
    /// ends an audit whose deadline passed.
    function expire(uint256 jobId) external;

    /// @notice `expire` for many jobs; jobs not expirable are skipped (BatchItemSkipped).
    function expireBatch(uint256[] calldata jobIds) external;

    // ---------------------------------------------------------------- payouts

    /// @notice Transfers the caller's whole credited balance to it.
    function withdraw() external returns (uint256 amount);

    /// @notice Sends accrued protocol fees to the treasury (permissionless).
    function withdrawFees() external returns (uint256 amount);

    // ---------------------------------------------------------------- owner

    /// @notice Sets every parameter; reverts with `JobMarketInvalidParams` naming the bad one.
    function setParams(Params calldata params) external;

    /// @notice Allows or disallows `matcher` to assign jobs.
    function setMatcher(address matcher, bool allowed) external;

    /// @notice Sets where protocol fees accrue.
    function setTreasury(address treasury) external;

    // ---------------------------------------------------------------- views

    /// @notice The job's current state.
    function state(uint256 jobId) external view returns (JobState);

    /// @notice The job record.
    function job(uint256 jobId) external view returns (Job memory);

    /// @notice The job's participants: executors first, then verifiers.
    function participants(uint256 jobId) external view returns (Participant[] memory);

    /// @notice Revealed digest of participant `index` (zero if none).
    function revealedDigest(uint256 jobId, uint256 index) external view returns (bytes32);

    /// @notice Bond held for the requester's challenge of `jobId` (zero if none).
    function challengeBond(uint256 jobId) external view returns (uint256);

    /// @notice Whether the audit draw for a Committed job selects it (reverts before the next block).
    function auditSelected(uint256 jobId) external view returns (bool);

    /// @notice Escrow for a request at current parameters: replicas x units x max price, the fee
    /// (at least `minFee`) and, for replicas = 1, the audit premium, all at the max price; what
    /// the job does not spend is credited back at close.
    function escrowFor(JobRequest calldata request) external view returns (uint256);

    /// @notice Number of jobs created; ids run from 1 to this.
    function jobCount() external view returns (uint256);

    /// @notice Withdrawable balance of `account`.
    function credits(address account) external view returns (uint256);

    /// @notice Protocol fees accrued and not yet sent to the treasury.
    function protocolFees() external view returns (uint256);

    /// @notice Sum of challenge bonds held.
    function totalBonds() external view returns (uint256);

    /// @notice Tokens set aside to pay verifiers of random audits.
    function auditPool() external view returns (uint256);

    /// @notice Current parameters.
    function params() external view returns (Params memory);

    /// @notice Longest a job can stay non-terminal under current parameters.
    function maxJobLifetime() external view returns (uint256);

    /// @notice Whether `account` may assign jobs.
    function isMatcher(address account) external view returns (bool);

    /// @notice Where protocol fees accrue.
    function treasury() external view returns (address);

    /// @notice The payment token.
    function token() external view returns (address);

    /// @notice The provider registry.
    function registry() external view returns (address);
}
