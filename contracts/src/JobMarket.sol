// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {JobLib} from "./libraries/JobLib.sol";
import {MarketLib} from "./libraries/MarketLib.sol";

/// @title JobMarket
/// @notice Escrow, assignment, commit-reveal, audits by drawn verifiers, resolution, slashing and
/// pull payments.
/// @dev Every amount a job moves is derived from its three storage slots, so no per-job escrow
/// figure is stored. All loops run over a job's participants, at most 5 + 5 + 11. Verifiers are
/// drawn by the registry's per-profile sortition trees; no caller names them.
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_REPLICAS = 5;
    /// @dev No window a requester sets can be shorter than this.
    uint32 internal constant MIN_WINDOW = 10;
    uint8 internal constant FLAG_REOPENED = 1;
    uint8 internal constant FLAG_CHALLENGED = 2;
    uint8 internal constant FLAG_DRAWN = 4;

    uint256 internal constant S_OPEN = 1 << uint8(JobState.Open);
    uint256 internal constant S_ASSIGNED = 1 << uint8(JobState.Assigned);
    uint256 internal constant S_COMMITTED = 1 << uint8(JobState.Committed);
    uint256 internal constant S_AUDITING = 1 << uint8(JobState.Auditing);
    uint256 internal constant S_REVEALING = 1 << uint8(JobState.Revealing);

    IERC20 private immutable _token;
    IProviderRegistry private immutable _registry;

    Params private _params;
    address private _treasury;
    /// @dev Job counter and the registry's profile count cached beside it: creating a job reads one
    /// slot and calls the registry only when a request names a profile beyond the cached count.
    uint64 private _jobCount;
    uint16 private _profilesKnown;
    /// @dev Audit pool and protocol fees share one slot: settlement touches both.
    uint128 private _auditPool;
    uint128 private _protocolFees;
    uint256 private _totalBonds;

    mapping(uint256 jobId => JobLib.StoredJob) private _jobs;
    /// @dev Seats 1 and on; seat 0 is stored in its job's slot 0 (JobLib.StoredJob).
    mapping(uint256 jobId => mapping(uint256 index => Participant)) private _participants;
    mapping(uint256 jobId => mapping(uint256 index => bytes32 digest)) private _digests;
    mapping(uint256 jobId => uint256 bond) private _bonds;
    mapping(uint256 jobId => mapping(address provider => bool)) private _excluded;
    mapping(address account => uint256 amount) private _credits;
    mapping(address account => bool) private _matchers;
    /// @dev Jobs name requesters and providers by these ids; views and events report addresses.
    JobLib.Accounts private _accounts;

    /// @dev Totals of one resolution, reported in JobClosed.
    struct Tally {
        uint256 paid;
        uint256 refunded;
        uint256 fees;
        uint256 burned;
    }

    modifier onlyMatcher() {
        _checkMatcher();
        _;
    }

    constructor(IERC20 token_, IProviderRegistry registry_, address initialOwner, address treasury_, Params memory p)
        Ownable(initialOwner)
    {
        if (treasury_ == address(0) || address(token_) == address(0) || address(registry_) == address(0)) {
            revert JobMarketZeroAddress();
        }
        _token = token_;
        _registry = registry_;
        _treasury = treasury_;
        MarketLib.check(p, 0);
        _params = p;
        emit TreasurySet(treasury_);
        emit ParamsSet(p);
    }

    // ================================================================ requester

    /// @inheritdoc IJobMarket
    function createJob(JobRequest calldata request) external nonReentrant returns (uint256 jobId) {
        jobId = _jobCount + 1;
        _jobCount = uint64(jobId);
        uint256 escrow = _create(jobId, request, _profileCount(request.profile), _id(msg.sender));
        _token.safeTransferFrom(msg.sender, address(this), escrow);
    }

    /// @inheritdoc IJobMarket
    function createJobs(JobRequest[] calldata requests) external nonReentrant returns (uint256 firstJobId) {
        uint256 total;
        (firstJobId, total) = _createMany(requests, _id(msg.sender));
        _token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @inheritdoc IJobMarket
    function createJobsWithPermit(
        JobRequest[] calldata requests,
        uint256 value,
        uint256 permitDeadline,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external nonReentrant returns (uint256 firstJobId) {
        // A permit front-run by someone else has already set the allowance; the pull below decides.
        try IERC20Permit(address(_token)).permit(msg.sender, address(this), value, permitDeadline, v, r, s) {} catch {}
        uint256 total;
        (firstJobId, total) = _createMany(requests, _id(msg.sender));
        _token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId) external {
        JobLib.StoredJob storage j = _requesterJob(jobId, S_OPEN);
        _close(jobId, j, JobState.Expired, bytes32(0), 0, _emptyTally());
    }

    /// @inheritdoc IJobMarket
    function challenge(uint256 jobId) external nonReentrant {
        JobLib.StoredJob storage j = _requesterJob(jobId, S_COMMITTED);
        _requireBefore(jobId, j);
        uint256 bond = _params.verifiers * JobLib.pay(j);
        j.flags |= FLAG_CHALLENGED;
        _bonds[jobId] = bond;
        _totalBonds += bond;
        _startAudit(jobId, j, 1);
        emit JobChallenged(jobId, msg.sender, bond);
        _token.safeTransferFrom(msg.sender, address(this), bond);
    }

    // ================================================================ matcher

    /// @inheritdoc IJobMarket
    function assign(uint256 jobId, address[] calldata providers) external onlyMatcher {
        _assign(jobId, providers);
    }

    /// @inheritdoc IJobMarket
    function assignBatch(uint256[] calldata jobIds, address[][] calldata providers) external onlyMatcher {
        uint256 n = jobIds.length;
        if (n == 0 || n != providers.length) revert JobMarketInvalidBatch(n, providers.length);
        for (uint256 i; i < n; ++i) {
            _tryItem(this.assign.selector, jobIds[i], providers[i]);
        }
    }

    // ================================================================ providers

    /// @inheritdoc IJobMarket
    function commit(uint256 jobId, bytes32 resultHash, bytes32 seal) external {
        _commit(jobId, resultHash, seal);
    }

    /// @inheritdoc IJobMarket
    function release(uint256 jobId) external nonReentrant {
        JobLib.StoredJob storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_ASSIGNED);
        // slither-disable-next-line reentrancy-no-eth -- MarketLib (delegatecalled) only calls the registry, the trusted contract fixed at construction; every entry point is nonReentrant
        uint256 fee = MarketLib.release(j, _participants[jobId], _excluded[jobId], _accounts, _registry, jobId);
        _auditPool += uint128(fee);
        // No seat left uncommitted: go on as after a commit deadline with nobody missing.
        if (j.activeMask & ~uint256(j.commitMask) == 0) {
            Tally memory t = _emptyTally();
            t.fees = fee;
            _afterDeadline(jobId, j, t);
        }
    }

    /// @inheritdoc IJobMarket
    function commitBatch(uint256[] calldata jobIds, bytes32[] calldata resultHashes, bytes32[] calldata seals)
        external
    {
        uint256 n = jobIds.length;
        if (n == 0 || n != resultHashes.length || n != seals.length) {
            revert JobMarketInvalidBatch(n, resultHashes.length == n ? seals.length : resultHashes.length);
        }
        for (uint256 i; i < n; ++i) {
            _commit(jobIds[i], resultHashes[i], seals[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function reveal(uint256 jobId, bytes32 digest) external {
        JobLib.StoredJob storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_REVEALING);
        _requireBefore(jobId, j);
        // In the market, not MarketLib: every audit path reveals once per seat, and a library call
        // is a cold account (2.6k) in each of those transactions.
        uint256 n = j.participants;
        uint256 i = _callerSeat(jobId, j, j.commitMask & ~uint256(j.revealMask), n);
        if (i == n) revert JobMarketNothingToReveal(jobId, msg.sender);
        if (_seat(jobId, i).commitment != JobLib.commitmentOf(jobId, msg.sender, digest)) {
            revert JobMarketRevealMismatch(jobId, msg.sender);
        }
        _digests[jobId][i] = digest;
        j.revealMask = uint32(j.revealMask | (1 << i));
        emit ResultRevealed(jobId, msg.sender, digest);
    }

    // ================================================================ keepers

    /// @inheritdoc IJobMarket
    function drawAudit(uint256 jobId) external returns (bool audited) {
        return _drawAudit(jobId);
    }

    /// @inheritdoc IJobMarket
    function drawAudits(uint256[] calldata jobIds) external nonReentrant {
        _tryEach(this.drawAudit.selector, jobIds);
    }

    /// @inheritdoc IJobMarket
    function staffAudit(uint256 jobId) external nonReentrant returns (uint256 filled) {
        return _staffAudit(jobId);
    }

    /// @inheritdoc IJobMarket
    function staffAudits(uint256[] calldata jobIds) external nonReentrant {
        _tryEach(this.staffAudit.selector, jobIds);
    }

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId) external nonReentrant {
        _finalize(jobId);
    }

    /// @inheritdoc IJobMarket
    function finalizeBatch(uint256[] calldata jobIds) external nonReentrant {
        _tryEach(this.finalize.selector, jobIds);
    }

    /// @inheritdoc IJobMarket
    function expire(uint256 jobId) external nonReentrant {
        _expireDue(jobId);
    }

    /// @inheritdoc IJobMarket
    function expireBatch(uint256[] calldata jobIds) external nonReentrant {
        _tryEach(this.expire.selector, jobIds);
    }

    /// @notice One item of a batched call, run by the market itself so that a revert skips the item
    /// instead of the batch. Callable only by the market.
    function runBatchItem(bytes4 operation, uint256 jobId, address[] calldata providers) external {
        if (msg.sender != address(this)) revert JobMarketOnlySelf(msg.sender);
        if (operation == this.finalize.selector) _finalize(jobId);
        else if (operation == this.expire.selector) _expireDue(jobId);
        else if (operation == this.staffAudit.selector) _staffAudit(jobId);
        else if (operation == this.drawAudit.selector) _drawAudit(jobId);
        else _assign(jobId, providers);
    }

    // ================================================================ payouts

    /// @inheritdoc IJobMarket
    function withdraw() external nonReentrant returns (uint256 amount) {
        amount = _credits[msg.sender];
        if (amount == 0) revert JobMarketNothingToWithdraw(msg.sender);
        _credits[msg.sender] = 0;
        emit Withdrawn(msg.sender, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    /// @inheritdoc IJobMarket
    function withdrawFees() external nonReentrant returns (uint256 amount) {
        amount = _protocolFees;
        address to = _treasury;
        if (amount == 0) revert JobMarketNothingToWithdraw(to);
        _protocolFees = 0;
        emit FeesWithdrawn(to, amount);
        _token.safeTransfer(to, amount);
    }

    // ================================================================ owner

    /// @inheritdoc IJobMarket
    function setParams(Params calldata p) external onlyOwner {
        MarketLib.checkUpdate(p, _registry);
        _params = p;
        emit ParamsSet(p);
    }

    /// @inheritdoc IJobMarket
    function setMatcher(address matcher, bool allowed) external onlyOwner {
        if (matcher == address(0)) revert JobMarketZeroAddress();
        _matchers[matcher] = allowed;
        emit MatcherSet(matcher, allowed);
    }

    /// @inheritdoc IJobMarket
    function setTreasury(address treasury_) external onlyOwner {
        if (treasury_ == address(0)) revert JobMarketZeroAddress();
        _treasury = treasury_;
        emit TreasurySet(treasury_);
    }

    // ================================================================ views

    /// @inheritdoc IJobMarket
    function state(uint256 jobId) external view returns (JobState) {
        return _jobs[jobId].state;
    }

    /// @inheritdoc IJobMarket
    function job(uint256 jobId) external view returns (Job memory) {
        return JobLib.toJob(_jobs[jobId], _accounts);
    }

    /// @inheritdoc IJobMarket
    function participants(uint256 jobId) external view returns (Participant[] memory) {
        return MarketLib.participants(_jobs[jobId], _participants[jobId], _accounts);
    }

    /// @inheritdoc IJobMarket
    function revealedDigest(uint256 jobId, uint256 index) external view returns (bytes32) {
        return _digests[jobId][index];
    }

    /// @inheritdoc IJobMarket
    function challengeBond(uint256 jobId) external view returns (uint256) {
        return _bonds[jobId];
    }

    /// @inheritdoc IJobMarket
    function auditSelected(uint256 jobId) external view returns (bool) {
        return MarketLib.auditSelected(_jobs[jobId], _params, jobId);
    }

    /// @inheritdoc IJobMarket
    function escrowFor(JobRequest calldata request) external view returns (uint256) {
        Params storage p = _params;
        return JobLib.escrowOf(
            request.replicas, request.units, request.maxPricePerUnit, p.feeBps, p.minFee, _premiumBps(p, request.replicas)
        );
    }

    /// @inheritdoc IJobMarket
    function jobCount() external view returns (uint256) {
        return _jobCount;
    }

    /// @inheritdoc IJobMarket
    function credits(address account) external view returns (uint256) {
        return _credits[account];
    }

    /// @inheritdoc IJobMarket
    function protocolFees() external view returns (uint256) {
        return _protocolFees;
    }

    /// @inheritdoc IJobMarket
    function totalBonds() external view returns (uint256) {
        return _totalBonds;
    }

    /// @inheritdoc IJobMarket
    function auditPool() external view returns (uint256) {
        return _auditPool;
    }

    /// @inheritdoc IJobMarket
    function params() external view returns (Params memory) {
        return _params;
    }

    /// @inheritdoc IJobMarket
    function maxJobLifetime() public view returns (uint256) {
        return MarketLib.lifetimeOf(_params);
    }

    /// @inheritdoc IJobMarket
    function isMatcher(address account) external view returns (bool) {
        return _matchers[account];
    }

    /// @inheritdoc IJobMarket
    function treasury() external view returns (address) {
        return _treasury;
    }

    /// @inheritdoc IJobMarket
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IJobMarket
    function registry() external view returns (address) {
        return address(_registry);
    }

    // ================================================================ creation and assignment

    function _createMany(JobRequest[] calldata requests, uint32 requester)
        private
        returns (uint256 firstJobId, uint256 total)
    {
        uint256 n = requests.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        firstJobId = _jobCount + 1;
        for (uint256 i; i < n; ++i) {
            total += _create(firstJobId + i, requests[i], _profileCount(requests[i].profile), requester);
        }
        _jobCount = uint64(firstJobId + n - 1);
    }

    /// @dev Profiles are only ever added, so a cached count is a lower bound; it is refreshed
    /// from the registry only when `profileId` lies beyond it.
    function _profileCount(uint8 profileId) private returns (uint256 count) {
        count = _profilesKnown;
        if (profileId < count) return count;
        count = _registry.profileCount();
        _profilesKnown = uint16(count);
    }

    function _create(uint256 jobId, JobRequest calldata r, uint256 profiles, uint32 requester)
        private
        returns (uint256 escrow)
    {
        Params storage p = _params;
        if (r.replicas == 0 || r.replicas > MAX_REPLICAS || r.replicas % 2 == 0) {
            revert JobMarketInvalidReplicas(r.replicas);
        }
        if (r.acceptWindow < MIN_WINDOW || r.acceptWindow > p.maxAcceptWindow) {
            revert JobMarketInvalidWindow(r.acceptWindow, MIN_WINDOW, p.maxAcceptWindow);
        }
        if (r.execWindow < p.minExecWindow || r.execWindow > p.maxExecWindow) {
            revert JobMarketInvalidWindow(r.execWindow, p.minExecWindow, p.maxExecWindow);
        }
        if (r.profile >= profiles) revert JobMarketUnknownProfile(r.profile);
        uint8 multiple = p.collateralMultiple;
        uint256 perReplica = uint256(r.units) * r.maxPricePerUnit;
        if (perReplica == 0 || perReplica * multiple > type(uint96).max) {
            revert JobMarketInvalidAmount(r.units, r.maxPricePerUnit);
        }
        uint16 feeBps = p.feeBps;
        uint64 minFee = p.minFee;
        uint16 premiumBps = _premiumBps(p, r.replicas);
        escrow = JobLib.escrowOf(r.replicas, r.units, r.maxPricePerUnit, feeBps, minFee, premiumBps);
        uint32 acceptBy = uint32(block.timestamp) + r.acceptWindow;
        JobLib.StoredJob storage j = _jobs[jobId];
        j.requester = requester;
        j.deadline = acceptBy;
        j.state = JobState.Open;
        j.replicas = r.replicas;
        j.profile = r.profile;
        j.collateralMultiple = multiple;
        j.feeBps = feeBps;
        j.maxPricePerUnit = r.maxPricePerUnit;
        j.units = r.units;
        j.minVramGiB = r.minVramGiB;
        j.execWindow = r.execWindow;
        j.premiumBps = premiumBps;
        j.minFee = minFee;
        emit JobCreated(jobId, msg.sender, r.specHash, r, acceptBy, escrow);
    }

    function _assign(uint256 jobId, address[] calldata providers) private {
        JobLib.StoredJob storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_OPEN);
        _requireBefore(jobId, j);
        uint256 n = providers.length;
        if (n != j.replicas) revert JobMarketWrongProviderCount(jobId, n, j.replicas);
        bool reopened = j.flags & FLAG_REOPENED != 0;
        uint32 requesterId = j.requester;
        // Seat 0 compares ids; the requester's address is read only when there are other seats.
        address requester = n == 1 ? address(0) : _accounts.accountOf[requesterId];
        for (uint256 i; i < n; ++i) {
            address provider = providers[i];
            bool own;
            if (i == 0) {
                uint32 id = _id(provider);
                own = id == requesterId;
                // Seat 0's commitment0 and commitBlock0 are still zero: a job reopens only when
                // nobody committed.
                j.provider0 = id;
            } else {
                own = provider == requester;
                _participants[jobId][i] = Participant({provider: provider, commitment: 0, commitBlock: 0});
            }
            if (own) revert JobMarketRequesterAsProvider(jobId, provider);
            for (uint256 k; k < i; ++k) {
                if (providers[k] == provider) revert JobMarketDuplicateProvider(jobId, provider);
            }
            if (reopened && _excluded[jobId][provider]) revert JobMarketProviderExcluded(jobId, provider);
        }
        // slither-disable-next-line reentrancy-no-eth,unused-return -- the registry is the trusted contract fixed at construction; the collateral it returns is recomputed from the job (JobLib.collateral)
        (uint80 clearing,) = _registry.lockExecutors(
            jobId,
            providers,
            IProviderRegistry.Requirements({
                profile: j.profile,
                minVramGiB: j.minVramGiB,
                maxPricePerUnit: j.maxPricePerUnit,
                units: j.units,
                execWindow: j.execWindow,
                collateralMultiple: j.collateralMultiple
            })
        );
        uint32 deadline = uint32(block.timestamp) + j.execWindow;
        for (uint256 i; i < n; ++i) {
            emit ProviderAssigned(jobId, providers[i], uint8(i), clearing, deadline);
        }
        j.state = JobState.Assigned;
        j.participants = uint8(n);
        j.activeMask = uint32((1 << n) - 1);
        j.deadline = deadline;
        j.clearingPrice = clearing;
    }

    // ================================================================ commit and audit

    function _commit(uint256 jobId, bytes32 resultHash, bytes32 seal) private {
        JobLib.StoredJob storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_ASSIGNED | S_AUDITING);
        _requireBefore(jobId, j);
        uint256 n = j.participants;
        uint256 active = j.activeMask;
        // Executors commit while Assigned; during an audit only the current round's verifiers do.
        // A seat handed back (release) is no longer the provider's.
        uint256 from = s == JobState.Auditing ? j.verifiersFrom : 0;
        uint256 i = _callerSeat(jobId, j, active >> from << from, n);
        if (i == n) revert JobMarketNotParticipant(jobId, msg.sender);
        uint256 mask = j.commitMask;
        if (mask & (1 << i) != 0) revert JobMarketAlreadyCommitted(jobId, msg.sender);
        Participant storage p = _seat(jobId, i);
        p.commitment = JobLib.commitment(resultHash, seal);
        p.commitBlock = uint32(block.number);
        mask |= 1 << i;
        j.commitMask = uint32(mask);
        emit ResultCommitted(jobId, msg.sender, resultHash, seal);
        _afterCommit(jobId, j, mask, active, n);
    }

    function _afterCommit(uint256 jobId, JobLib.StoredJob storage j, uint256 mask, uint256 active, uint256 n) private {
        if (j.state == JobState.Assigned) {
            // Seats handed back (release) owe no commit.
            if (active & ~mask != 0) return;
            if (j.replicas == 1) {
                j.state = JobState.Committed;
                j.deadline = uint32(block.timestamp) + _params.challengeWindow;
            } else {
                _startReveal(jobId, j);
            }
            return;
        }
        uint256 round = JobLib.range(j.verifiersFrom, uint256(j.verifiersFrom) + j.seats);
        if (n - j.verifiersFrom == j.seats && mask & round == round) _startReveal(jobId, j);
    }

    function _startReveal(uint256 jobId, JobLib.StoredJob storage j) private {
        uint32 deadline = uint32(block.timestamp) + _params.revealWindow;
        j.state = JobState.Revealing;
        j.deadline = deadline;
        emit RevealStarted(jobId, deadline);
    }

    function _startAudit(uint256 jobId, JobLib.StoredJob storage j, uint8 round) private {
        MarketLib.startAudit(j, _params, jobId, round);
    }

    function _drawAudit(uint256 jobId) private returns (bool audited) {
        JobLib.StoredJob storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_COMMITTED);
        if (j.flags & FLAG_DRAWN != 0) return false; // drawn already: not selected
        return MarketLib.drawAudit(j, _params, jobId, true) == MarketLib.DRAW_AUDITED;
    }

    function _staffAudit(uint256 jobId) private returns (uint256 filled) {
        JobLib.StoredJob storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_AUDITING);
        return MarketLib.staffAudit(j, _participants[jobId], _accounts, _registry, jobId, _params.verifierExecWindow);
    }

    // ================================================================ advancing

    function _finalize(uint256 jobId) private {
        JobLib.StoredJob storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_COMMITTED | S_AUDITING | S_REVEALING);
        if (s == JobState.Revealing) {
            if (block.timestamp <= j.deadline && j.revealMask != j.commitMask) {
                revert JobMarketDeadlineNotReached(jobId, j.deadline);
            }
            _resolve(jobId, j);
            return;
        }
        _requireAfter(jobId, j);
        if (s == JobState.Auditing) return _auditTimedOut(jobId, j);
        if (j.flags & FLAG_DRAWN == 0) {
            // Nobody drew the audit during the window: draw it now.
            uint8 outcome = MarketLib.drawAudit(j, _params, jobId, false);
            if (outcome != MarketLib.DRAW_CLEAR) return;
        }
        _settleUnverified(jobId, j);
    }

    function _expireDue(uint256 jobId) private {
        JobLib.StoredJob storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_OPEN | S_ASSIGNED | S_AUDITING);
        _requireAfter(jobId, j);
        if (s == JobState.Open) {
            _close(jobId, j, JobState.Expired, bytes32(0), 0, _emptyTally());
        } else if (s == JobState.Auditing) {
            _auditTimedOut(jobId, j);
        } else {
            Tally memory t = _emptyTally();
            // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
            _slashMissingCommits(jobId, j, 0, t);
            _afterDeadline(jobId, j, t);
        }
    }

    /// @dev Every executor seat still held has committed: reveal if anyone did, else reopen once,
    /// else expire with a full refund.
    function _afterDeadline(uint256 jobId, JobLib.StoredJob storage j, Tally memory t) private {
        if (j.commitMask != 0) {
            _startReveal(jobId, j);
        } else if (j.flags & FLAG_REOPENED == 0) {
            _reopen(jobId, j);
        } else {
            _close(jobId, j, JobState.Expired, bytes32(0), 0, t);
        }
    }

    /// @dev A round's deadline passed. Not fully staffed: no verdict is possible, so nobody is
    /// slashed and the requester is refunded. Staffed: verifiers that did not commit are slashed
    /// and everyone who committed reveals.
    function _auditTimedOut(uint256 jobId, JobLib.StoredJob storage j) private {
        if (j.participants - j.verifiersFrom != j.seats) return _noVerdict(jobId, j, _emptyTally());
        Tally memory t = _emptyTally();
        // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
        _slashMissingCommits(jobId, j, j.verifiersFrom, t);
        _startReveal(jobId, j);
    }

    function _reopen(uint256 jobId, JobLib.StoredJob storage j) private {
        uint32 acceptBy = uint32(block.timestamp) + _params.reassignWindow;
        j.state = JobState.Open;
        j.flags |= FLAG_REOPENED;
        // The clearing price stays (the view reads 0 without participants): the third slot stays
        // non-zero, so the next assignment rewrites it instead of filling it anew.
        j.participants = 0;
        j.commitMask = 0;
        j.revealMask = 0;
        j.activeMask = 0;
        j.deadline = acceptBy;
        emit JobReopened(jobId, acceptBy);
    }

    /// @dev Slashes every participant from index `from` on that owed a commit and did not make it,
    /// and excludes it from a reopened job. A no-show never compensates the requester (who could
    /// otherwise profit from it); its reward share funds audits.
    function _slashMissingCommits(uint256 jobId, JobLib.StoredJob storage j, uint256 from, Tally memory t) private {
        uint256 n = j.participants;
        uint256 missing = j.activeMask & ~uint256(j.commitMask) & JobLib.range(from, n);
        if (missing == 0) return;
        uint96 collateral = JobLib.collateral(j);
        uint256 reward = 0;
        for (uint256 i = from; i < n; ++i) {
            if (missing & (1 << i) == 0) continue;
            address provider = _providerOf(jobId, i);
            _excluded[jobId][provider] = true;
            reward += _slash(jobId, j, i, collateral, false, t);
        }
        _auditPool += uint128(reward);
        t.fees += reward;
    }

    // ================================================================ resolution

    /// @dev The result was never checked by anyone else (no audit selected): the executor is paid.
    function _settleUnverified(uint256 jobId, JobLib.StoredJob storage j) private {
        address executor = _accounts.accountOf[j.provider0];
        uint256 pay = JobLib.pay(j);
        _credit(jobId, executor, pay);
        // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
        _release(jobId, j, 0, JobLib.collateral(j), true);
        Tally memory t = _emptyTally();
        t.paid = pay;
        _close(jobId, j, JobState.Settled, bytes32(0), pay, t);
    }

    /// @dev Reveals are in (or their window passed). Before any audit (replicas 3 or 5) executors
    /// that agree settle the job; any disagreement goes to drawn verifiers. In an audit round the
    /// verifiers decide: a strict majority of the round's seats for one digest is the verdict;
    /// without one, round 1 escalates to round 2 and round 2 ends with no verdict. A round-1
    /// majority that would slash an executor who revealed stands only when unanimous; a split one
    /// escalates too, so a minority that wins two of three seats by chance still faces 2k + 1
    /// fresh verifiers before anyone honest can be slashed.
    function _resolve(uint256 jobId, JobLib.StoredJob storage j) private {
        if (j.round == 0) {
            (bytes32 digest, uint256 agreeing, uint256 revealed) = _plurality(jobId, 0, j.replicas, j.revealMask);
            if (revealed == 0) return _verdict(jobId, j, bytes32(0), false);
            if (agreeing == revealed) return _verdict(jobId, j, digest, true);
            return _startAudit(jobId, j, 1);
        }
        uint256 from = j.verifiersFrom;
        (bytes32 d, uint256 votes,) = _plurality(jobId, from, from + j.seats, j.revealMask);
        uint256 seats = j.seats;
        bool round1 = j.round == 1;
        if (votes * 2 > seats && !(round1 && votes < seats && _executorDissents(jobId, j, d))) {
            return _verdict(jobId, j, d, true);
        }
        if (round1) return _startAudit(jobId, j, 2);
        _noVerdict(jobId, j, _emptyTally());
    }

    /// @dev Whether an executor revealed a digest other than `digest`.
    function _executorDissents(uint256 jobId, JobLib.StoredJob storage j, bytes32 digest) private view returns (bool) {
        uint256 replicas = j.replicas;
        uint256 revealMask = j.revealMask;
        for (uint256 i; i < replicas; ++i) {
            if (revealMask & (1 << i) != 0 && _digests[jobId][i] != digest) return true;
        }
        return false;
    }

    /// @dev Judges every participant still holding collateral against `digest`: those that
    /// revealed it are upheld (paid, released); verifiers that revealed another digest before the
    /// escalation round are released unpaid; the rest are slashed. With `found` false (no
    /// executor revealed before any audit) everyone still locked is slashed for not revealing.
    function _verdict(uint256 jobId, JobLib.StoredJob storage j, bytes32 digest, bool found) private {
        Tally memory t = _emptyTally();
        // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
        (uint256 upheld, uint256 reward) = _judge(jobId, j, digest, found, t);
        uint256 replicas = j.replicas;
        uint256 pay = JobLib.pay(j);
        uint256 executorPay = _payEach(jobId, upheld & ((1 << replicas) - 1), pay);
        t.paid += executorPay;
        _payVerifiers(jobId, upheld >> replicas << replicas, pay, t);
        _distributeReward(jobId, upheld, reward, t);
        _close(jobId, j, executorPay != 0 ? JobState.Settled : JobState.Refunded, digest, executorPay, t);
    }

    /// @dev Releases the participants that revealed `digest` and slashes the rest still locked;
    /// returns the upheld set and the slashed reward share to distribute.
    function _judge(uint256 jobId, JobLib.StoredJob storage j, bytes32 digest, bool found, Tally memory t)
        private
        returns (uint256 upheld, uint256 reward)
    {
        uint256 n = j.participants;
        uint256 active = j.activeMask;
        for (uint256 i; i < n; ++i) {
            if (active & (1 << i) == 0) continue;
            bool revealed = j.revealMask & (1 << i) != 0;
            if (found && revealed && _digests[jobId][i] == digest) {
                upheld |= 1 << i;
                // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
                _release(jobId, j, i, JobLib.collateral(j), true);
            } else if (revealed && i >= j.replicas && j.round < 2) {
                // A verifier outvoted in a three-seat round goes unpaid but keeps its stake: two
                // colluding seats must not be able to slash an honest third. Only the 2k + 1 round
                // slashes verifiers for what they revealed.
                // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
                _release(jobId, j, i, JobLib.collateral(j), false);
            } else {
                // Only an executor whose revealed result lost the verdict compensates the requester.
                reward += _slash(jobId, j, i, JobLib.collateral(j), found && revealed && i < j.replicas, t);
            }
        }
    }

    /// @dev No verdict could be reached: everyone still locked is released unslashed and unpaid,
    /// and the requester gets its escrow and any bond back.
    function _noVerdict(uint256 jobId, JobLib.StoredJob storage j, Tally memory t) private {
        uint256 n = j.participants;
        uint256 active = j.activeMask;
        uint96 collateral = JobLib.collateral(j);
        for (uint256 i; i < n; ++i) {
            // slither-disable-next-line reentrancy-no-eth -- the only external calls go to the registry and the token, trusted contracts fixed at construction; every entry point is nonReentrant
            if (active & (1 << i) != 0) _release(jobId, j, i, collateral, false);
        }
        _close(jobId, j, JobState.Refunded, bytes32(0), 0, t);
    }

    /// @dev Upholding verifiers are paid units x clearing price each: from the challenge bond when
    /// the requester challenged, else (and for what the bond does not cover) from the audit pool,
    /// which every settled replicas = 1 job funds with its premium. Nobody can inflate the price.
    function _payVerifiers(uint256 jobId, uint256 mask, uint256 pay, Tally memory t) private {
        uint256 count = JobLib.popcount(mask);
        if (count == 0) return;
        uint256 wanted = count * pay;
        uint256 bond = _bonds[jobId];
        uint256 fromBond = bond < wanted ? bond : wanted;
        if (fromBond != 0) {
            _bonds[jobId] = bond - fromBond;
            _totalBonds -= fromBond;
        }
        uint256 fromPool = wanted - fromBond;
        uint256 pool = _auditPool;
        if (fromPool > pool) fromPool = pool;
        _auditPool = uint128(pool - fromPool);
        uint256 budget = fromBond + fromPool;
        // slither-disable-next-line divide-before-multiply -- intended: equal shares, and the remainder (budget - share x count) goes back to the audit pool
        uint256 share = budget / count;
        t.paid += _payEach(jobId, mask, share);
        uint256 dust = budget - share * count;
        if (dust != 0) {
            _auditPool += uint128(dust);
            if (fromBond != 0) t.fees += dust;
        }
    }

    /// @dev Splits slashed rewards among `mask`; with nobody to reward they fund future audits.
    function _distributeReward(uint256 jobId, uint256 mask, uint256 amount, Tally memory t) private {
        if (amount == 0) return;
        uint256 recipients = JobLib.popcount(mask);
        if (recipients == 0) {
            _auditPool += uint128(amount);
            t.fees += amount;
            return;
        }
        uint256 share = amount / recipients;
        uint256 given = _payEach(jobId, mask, share);
        t.paid += given;
        _auditPool += uint128(amount - given);
        t.fees += amount - given;
    }

    function _payEach(uint256 jobId, uint256 mask, uint256 amount) private returns (uint256 total) {
        if (amount == 0) return 0;
        for (uint256 i; mask >> i != 0; ++i) {
            if (mask & (1 << i) == 0) continue;
            _credit(jobId, _providerOf(jobId, i), amount);
            total += amount;
        }
    }

    /// @dev The most common digest among the revealed participants in [from, to), its votes and
    /// the number that revealed.
    function _plurality(uint256 jobId, uint256 from, uint256 to, uint256 revealMask)
        private
        view
        returns (bytes32 digest, uint256 votes, uint256 revealed)
    {
        for (uint256 i = from; i < to; ++i) {
            if (revealMask & (1 << i) == 0) continue;
            ++revealed;
            bytes32 d = _digests[jobId][i];
            uint256 count = 0;
            for (uint256 k = from; k < to; ++k) {
                if (revealMask & (1 << k) != 0 && _digests[jobId][k] == d) ++count;
            }
            if (count > votes) (digest, votes) = (d, count);
        }
    }

    function _release(uint256 jobId, JobLib.StoredJob storage j, uint256 index, uint96 collateral, bool completed) private {
        j.activeMask = uint32(j.activeMask & ~(uint256(1) << index));
        _registry.releaseCollateral(jobId, _providerOf(jobId, index), collateral, completed);
    }

    /// @dev Slashes participant `index`'s whole collateral: the requester share is credited to the
    /// requester when `compensate` (else burned with the burn share), and the reward share is
    /// returned for the caller to place.
    function _slash(uint256 jobId, JobLib.StoredJob storage j, uint256 index, uint96 amount, bool compensate, Tally memory t)
        private
        returns (uint256 reward)
    {
        address provider = _providerOf(jobId, index);
        j.activeMask = uint32(j.activeMask & ~(uint256(1) << index));
        _registry.slash(jobId, provider, amount);
        emit ProviderSlashed(jobId, provider, amount);
        uint256 compensation = compensate ? amount * _params.requesterShareBps / BPS : 0;
        reward = amount * _params.rewardShareBps / BPS;
        uint256 burned = amount - compensation - reward;
        _creditRequester(jobId, j, compensation);
        t.refunded += compensation;
        t.burned += burned;
        if (burned != 0) ERC20Burnable(address(_token)).burn(burned);
    }

    /// @dev Closes a job: charges the fee (and, for replicas = 1, the audit premium) on
    /// `executorPay`, refunds the rest of the escrow and any bond still held, and records the
    /// terminal state.
    function _close(
        uint256 jobId,
        JobLib.StoredJob storage j,
        JobState outcome,
        bytes32 digest,
        uint256 executorPay,
        Tally memory t
    ) private {
        uint256 fee = JobLib.feeOf(executorPay, j.feeBps, j.minFee);
        uint256 premium = executorPay * j.premiumBps / BPS;
        if (fee != 0) {
            uint256 auditShare = fee * _params.auditShareBps / BPS;
            _auditPool += uint128(auditShare + premium);
            _protocolFees += uint128(fee - auditShare);
            t.fees += fee + premium;
        }
        uint256 refund = JobLib.escrow(j) - executorPay - fee - premium;
        // Only a challenge posts a bond: an unchallenged job skips reading its (empty) bond slot.
        if (j.flags & FLAG_CHALLENGED != 0) {
            uint256 bond = _bonds[jobId];
            if (bond != 0) {
                _bonds[jobId] = 0;
                _totalBonds -= bond;
                refund += bond;
            }
        }
        _creditRequester(jobId, j, refund);
        t.refunded += refund;
        j.state = outcome;
        emit JobClosed(jobId, outcome, digest, t.paid, t.refunded, t.fees, t.burned);
    }

    function _credit(uint256 jobId, address account, uint256 amount) private {
        if (amount == 0) return;
        _credits[account] += amount;
        emit Credited(jobId, account, amount);
    }

    /// @dev The requester's address is read only when something is credited to it.
    function _creditRequester(uint256 jobId, JobLib.StoredJob storage j, uint256 amount) private {
        if (amount != 0) _credit(jobId, _accounts.accountOf[j.requester], amount);
    }

    /// @dev The id of `account`, assigned on its first job or seat.
    function _id(address account) private returns (uint32) {
        return JobLib.idOf(_accounts, account);
    }

    function _seat(uint256 jobId, uint256 i) private view returns (Participant storage) {
        return JobLib.seat(_jobs[jobId], _participants[jobId], i);
    }

    /// @dev The first seat below `n` among the seats in `mask` that the caller holds; `n` when none.
    /// The caller's id is read only if seat 0 is in `mask`.
    function _callerSeat(uint256 jobId, JobLib.StoredJob storage j, uint256 mask, uint256 n)
        private
        view
        returns (uint256 i)
    {
        for (; i < n; ++i) {
            if (mask & (1 << i) != 0 && JobLib.holds(j, _participants[jobId], _accounts, i, msg.sender)) return i;
        }
    }

    function _providerOf(uint256 jobId, uint256 i) private view returns (address) {
        return JobLib.providerOf(_jobs[jobId], _participants[jobId], _accounts, i);
    }

    function _emptyTally() private pure returns (Tally memory t) {}

    // ================================================================ batches

    function _tryEach(bytes4 operation, uint256[] calldata jobIds) private {
        uint256 n = jobIds.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        address[] memory none = new address[](0);
        for (uint256 i; i < n; ++i) {
            _tryItem(operation, jobIds[i], none);
        }
    }

    /// @dev Runs one item through `runBatchItem`; a revert is reported and skipped, so one job that
    /// changed state (or a griefer's 1-wei action) cannot sink a keeper's whole batch. Every revert
    /// of the market, the registry and the token carries an error; an empty one means the item ran
    /// out of gas, which fails the whole batch so that gas estimation (and the sender) sees it
    /// instead of a silently skipped item.
    function _tryItem(bytes4 operation, uint256 jobId, address[] memory providers) private {
        try this.runBatchItem(operation, jobId, providers) {}
        catch (bytes memory reason) {
            if (reason.length == 0) revert JobMarketBatchItemOutOfGas(jobId, operation);
            emit BatchItemSkipped(jobId, operation, reason);
        }
    }

    // ================================================================ guards and params

    function _checkMatcher() private view {
        if (!_matchers[msg.sender]) revert JobMarketNotMatcher(msg.sender);
    }

    /// @dev The one state guard: reverts with the job, its state and the allowed-state bitmap.
    function _requireState(uint256 jobId, JobState current, uint256 allowed) private pure {
        if ((1 << uint8(current)) & allowed == 0) revert JobMarketUnexpectedState(jobId, current, allowed);
    }

    /// @dev Job `jobId`, checked to be in a state of `allowed` and to be the caller's request.
    function _requesterJob(uint256 jobId, uint256 allowed) private view returns (JobLib.StoredJob storage j) {
        j = _jobs[jobId];
        _requireState(jobId, j.state, allowed);
        if (_accounts.accountOf[j.requester] != msg.sender) revert JobMarketNotRequester(jobId, msg.sender);
    }

    function _requireBefore(uint256 jobId, JobLib.StoredJob storage j) private view {
        uint32 deadline = j.deadline;
        if (block.timestamp > deadline) revert JobMarketDeadlinePassed(jobId, deadline);
    }

    function _requireAfter(uint256 jobId, JobLib.StoredJob storage j) private view {
        uint32 deadline = j.deadline;
        if (block.timestamp <= deadline) revert JobMarketDeadlineNotReached(jobId, deadline);
    }

    function _premiumBps(Params storage p, uint8 replicas) private view returns (uint16) {
        return replicas == 1 ? uint16(uint256(p.auditBps) * p.verifiers) : 0;
    }
}
