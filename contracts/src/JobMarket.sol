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

/// @title JobMarket
/// @notice Escrow, assignment, commit-reveal, audits, resolution, slashing and pull payments.
/// @dev Every amount a job moves is derived from its two storage slots, so no per-job escrow
/// figure is stored. All loops run over a job's participants, at most 1 + 7.
contract JobMarket is IJobMarket, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 internal constant BPS = 10_000;
    uint256 internal constant MAX_REPLICAS = 5;
    uint256 internal constant MAX_VERIFIERS = 7;
    uint256 internal constant MAX_WINDOW = 30 days;
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

    /// @dev Everything settlement reads is in the first slot of Params (see IJobMarket.Params).
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

    mapping(uint256 jobId => Job) private _jobs;
    mapping(uint256 jobId => mapping(uint256 index => Participant)) private _participants;
    mapping(uint256 jobId => mapping(uint256 index => bytes32 digest)) private _digests;
    mapping(uint256 jobId => uint256 bond) private _bonds;
    mapping(uint256 jobId => mapping(address provider => bool)) private _excluded;
    mapping(address account => uint256 amount) private _credits;
    mapping(address account => bool) private _matchers;

    /// @dev Totals of one resolution, reported in JobClosed.
    struct Tally {
        uint256 paid;
        uint256 refunded;
        uint256 fees;
        uint256 burned;
    }

    modifier onlyMatcher() {
        if (!_matchers[msg.sender]) revert JobMarketNotMatcher(msg.sender);
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
        _checkParams(p, false);
        _params = p;
        emit TreasurySet(treasury_);
        emit ParamsSet(p);
    }

    // ================================================================ requester

    /// @inheritdoc IJobMarket
    function createJob(JobRequest calldata request) external nonReentrant returns (uint256 jobId) {
        jobId = _jobCount + 1;
        _jobCount = uint64(jobId);
        uint256 escrow = _create(jobId, request, _profileCount(request.profile));
        _token.safeTransferFrom(msg.sender, address(this), escrow);
    }

    /// @inheritdoc IJobMarket
    function createJobs(JobRequest[] calldata requests) external nonReentrant returns (uint256 firstJobId) {
        uint256 total;
        (firstJobId, total) = _createMany(requests);
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
        (firstJobId, total) = _createMany(requests);
        _token.safeTransferFrom(msg.sender, address(this), total);
    }

    /// @inheritdoc IJobMarket
    function cancel(uint256 jobId) external {
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_OPEN);
        if (j.requester != msg.sender) revert JobMarketNotRequester(jobId, msg.sender);
        _close(jobId, j, JobState.Expired, bytes32(0), 0, _emptyTally());
    }

    /// @inheritdoc IJobMarket
    function challenge(uint256 jobId) external nonReentrant {
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_COMMITTED);
        if (j.requester != msg.sender) revert JobMarketNotRequester(jobId, msg.sender);
        if (block.timestamp > j.deadline) revert JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 bond = _params.challengeBond;
        j.flags |= FLAG_CHALLENGED;
        _bonds[jobId] = bond;
        _totalBonds += bond;
        _startAudit(j);
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
            _assign(jobIds[i], providers[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function assignVerifiers(uint256 jobId, address[] calldata verifiers) external onlyMatcher {
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_AUDITING);
        uint256 first = j.replicas;
        // Verifiers are assigned once; after that the audit runs against its own deadline.
        if (j.participants != first) revert JobMarketVerifiersAssigned(jobId);
        if (block.timestamp > j.deadline) revert JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 k = verifiers.length;
        if (k != _params.verifiers) revert JobMarketWrongProviderCount(jobId, k, _params.verifiers);
        uint32 deadline = uint32(block.timestamp) + j.execWindow;
        uint96 collateral = JobLib.collateral(j);
        for (uint256 i; i < k; ++i) {
            address v = verifiers[i];
            for (uint256 e; e < first; ++e) {
                if (_participants[jobId][e].provider == v) revert JobMarketDuplicateProvider(jobId, v);
            }
            _lockParticipant(jobId, j, first + i, v, verifiers, i, collateral, deadline);
        }
        j.participants = uint8(first + k);
        j.deadline = deadline;
    }

    // ================================================================ providers

    /// @inheritdoc IJobMarket
    function commit(uint256 jobId, bytes32 resultHash, bytes32 seal) external {
        _commit(jobId, resultHash, seal);
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
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_REVEALING);
        if (block.timestamp > j.deadline) revert JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 n = j.participants;
        uint256 commitMask = j.commitMask;
        uint256 revealMask = j.revealMask;
        for (uint256 i; i < n; ++i) {
            uint256 bit = 1 << i;
            if (commitMask & bit == 0 || revealMask & bit != 0) continue;
            Participant storage p = _participants[jobId][i];
            if (p.provider != msg.sender) continue;
            if (p.commitment != JobLib.commitmentOf(jobId, msg.sender, digest)) {
                revert JobMarketRevealMismatch(jobId, msg.sender);
            }
            _digests[jobId][i] = digest;
            j.revealMask = uint8(revealMask | bit);
            emit ResultRevealed(jobId, msg.sender, digest);
            return;
        }
        revert JobMarketNothingToReveal(jobId, msg.sender);
    }

    // ================================================================ keepers

    /// @inheritdoc IJobMarket
    function drawAudit(uint256 jobId) external returns (bool audited) {
        return _drawAudit(jobId);
    }

    /// @inheritdoc IJobMarket
    function drawAudits(uint256[] calldata jobIds) external {
        uint256 n = jobIds.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        for (uint256 i; i < n; ++i) {
            _drawAudit(jobIds[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function finalize(uint256 jobId) external nonReentrant {
        _finalize(jobId);
    }

    /// @inheritdoc IJobMarket
    function finalizeBatch(uint256[] calldata jobIds) external nonReentrant {
        uint256 n = jobIds.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        for (uint256 i; i < n; ++i) {
            _finalize(jobIds[i]);
        }
    }

    /// @inheritdoc IJobMarket
    function expire(uint256 jobId) external nonReentrant {
        _expireDue(jobId);
    }

    /// @inheritdoc IJobMarket
    function expireBatch(uint256[] calldata jobIds) external nonReentrant {
        uint256 n = jobIds.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        for (uint256 i; i < n; ++i) {
            _expireDue(jobIds[i]);
        }
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
        _checkParams(p, true);
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
        return _jobs[jobId];
    }

    /// @inheritdoc IJobMarket
    function participants(uint256 jobId) external view returns (Participant[] memory list) {
        uint256 n = _jobs[jobId].participants;
        list = new Participant[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = _participants[jobId][i];
        }
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
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_COMMITTED);
        if (j.flags & FLAG_DRAWN != 0) return false;
        return _auditSelected(jobId);
    }

    /// @inheritdoc IJobMarket
    function escrowFor(JobRequest calldata request) external view returns (uint256) {
        return JobLib.escrowOf(request.replicas, request.units, request.maxPricePerUnit, _params.feeBps);
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
        return _lifetime(_params);
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

    function _createMany(JobRequest[] calldata requests) private returns (uint256 firstJobId, uint256 total) {
        uint256 n = requests.length;
        if (n == 0) revert JobMarketInvalidBatch(0, 0);
        uint256 profiles = _profileCount(type(uint8).max);
        firstJobId = _jobCount + 1;
        for (uint256 i; i < n; ++i) {
            total += _create(firstJobId + i, requests[i], profiles);
        }
        _jobCount = uint64(firstJobId + n - 1);
    }

    /// @dev Profiles are only ever added, so a cached count is a lower bound; it is refreshed
    /// from the registry when `profileId` lies beyond it (or always, for `type(uint8).max`).
    function _profileCount(uint8 profileId) private returns (uint256 count) {
        count = _profilesKnown;
        if (profileId < count) return count;
        count = _registry.profileCount();
        _profilesKnown = uint16(count);
    }

    function _create(uint256 jobId, JobRequest calldata r, uint256 profiles) private returns (uint256 escrow) {
        Params storage p = _params;
        if (r.replicas == 0 || r.replicas > MAX_REPLICAS) revert JobMarketInvalidReplicas(r.replicas);
        if (r.acceptWindow == 0 || r.acceptWindow > p.maxAcceptWindow) {
            revert JobMarketInvalidWindow(r.acceptWindow, p.maxAcceptWindow);
        }
        if (r.execWindow == 0 || r.execWindow > p.maxExecWindow) {
            revert JobMarketInvalidWindow(r.execWindow, p.maxExecWindow);
        }
        if (r.profile >= profiles) revert JobMarketUnknownProfile(r.profile);
        uint8 multiple = p.collateralMultiple;
        uint16 feeBps = p.feeBps;
        uint256 perReplica = uint256(r.units) * r.maxPricePerUnit;
        if (perReplica == 0 || perReplica * multiple > type(uint96).max) {
            revert JobMarketInvalidAmount(r.units, r.maxPricePerUnit);
        }
        escrow = JobLib.escrowOf(r.replicas, r.units, r.maxPricePerUnit, feeBps);
        uint32 acceptBy = uint32(block.timestamp) + r.acceptWindow;
        _jobs[jobId] = Job({
            requester: msg.sender,
            deadline: acceptBy,
            flags: 0,
            state: JobState.Open,
            replicas: r.replicas,
            participants: 0,
            profile: r.profile,
            commitMask: 0,
            revealMask: 0,
            collateralMultiple: multiple,
            maxPricePerUnit: r.maxPricePerUnit,
            clearingPrice: 0,
            units: r.units,
            minVramGiB: r.minVramGiB,
            execWindow: r.execWindow,
            feeBps: feeBps
        });
        emit JobCreated(jobId, msg.sender, r.specHash, r, acceptBy, escrow);
    }

    function _assign(uint256 jobId, address[] calldata providers) private {
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_OPEN);
        if (block.timestamp > j.deadline) revert JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 n = providers.length;
        if (n != j.replicas) revert JobMarketWrongProviderCount(jobId, n, j.replicas);
        uint32 deadline = uint32(block.timestamp) + j.execWindow;
        uint96 collateral = JobLib.collateral(j);
        uint80 clearing;
        for (uint256 i; i < n; ++i) {
            uint80 price = _lockParticipant(jobId, j, i, providers[i], providers, i, collateral, deadline);
            if (price > clearing) clearing = price;
        }
        j.state = JobState.Assigned;
        j.participants = uint8(n);
        j.deadline = deadline;
        j.clearingPrice = clearing;
    }

    /// @dev Checks `provider` against the earlier entries of `list` and the job's exclusions,
    /// locks its collateral through the registry (which checks its terms) and records it.
    function _lockParticipant(
        uint256 jobId,
        Job storage j,
        uint256 index,
        address provider,
        address[] calldata list,
        uint256 listIndex,
        uint96 collateral,
        uint32 deadline
    ) private returns (uint80 price) {
        for (uint256 k; k < listIndex; ++k) {
            if (list[k] == provider) revert JobMarketDuplicateProvider(jobId, provider);
        }
        if (j.flags & FLAG_REOPENED != 0 && _excluded[jobId][provider]) {
            revert JobMarketProviderExcluded(jobId, provider);
        }
        price = _registry.lockCollateral(jobId, provider, collateral, j.profile, j.minVramGiB, j.maxPricePerUnit);
        _participants[jobId][index] = Participant({provider: provider, commitment: 0, commitBlock: 0});
        emit ProviderAssigned(jobId, provider, uint8(index), price, deadline);
    }

    // ================================================================ commit and audit

    function _commit(uint256 jobId, bytes32 resultHash, bytes32 seal) private {
        Job storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_ASSIGNED | S_AUDITING);
        if (block.timestamp > j.deadline) revert JobMarketDeadlinePassed(jobId, j.deadline);
        uint256 n = j.participants;
        // Executors commit while Assigned; during an audit only the verifiers still owe a commit.
        uint256 i = s == JobState.Auditing ? j.replicas : 0;
        for (; i < n; ++i) {
            Participant storage p = _participants[jobId][i];
            if (p.provider != msg.sender) continue;
            uint256 mask = j.commitMask;
            if (mask & (1 << i) != 0) revert JobMarketAlreadyCommitted(jobId, msg.sender);
            p.commitment = JobLib.commitment(resultHash, seal);
            p.commitBlock = uint32(block.number);
            mask |= 1 << i;
            j.commitMask = uint8(mask);
            emit ResultCommitted(jobId, msg.sender, resultHash, seal);
            if (mask == (1 << n) - 1) _allCommitted(jobId, j);
            return;
        }
        revert JobMarketNotParticipant(jobId, msg.sender);
    }

    function _allCommitted(uint256 jobId, Job storage j) private {
        if (j.state == JobState.Assigned && j.replicas == 1) {
            j.state = JobState.Committed;
            j.deadline = uint32(block.timestamp) + _params.challengeWindow;
        } else {
            _startReveal(jobId, j);
        }
    }

    function _startReveal(uint256 jobId, Job storage j) private {
        uint32 deadline = uint32(block.timestamp) + _params.revealWindow;
        j.state = JobState.Revealing;
        j.deadline = deadline;
        emit RevealStarted(jobId, deadline);
    }

    function _startAudit(Job storage j) private {
        j.state = JobState.Auditing;
        j.deadline = uint32(block.timestamp) + _params.verifierAssignWindow;
    }

    function _drawAudit(uint256 jobId) private returns (bool audited) {
        Job storage j = _jobs[jobId];
        _requireState(jobId, j.state, S_COMMITTED);
        if (j.flags & FLAG_DRAWN != 0) return false; // drawn already: not selected
        audited = _auditSelected(jobId);
        // Record a clear draw: a later one could find the hash aged out and force an audit.
        if (audited) _startAudit(j);
        else j.flags |= FLAG_DRAWN;
        emit AuditDrawn(jobId, audited);
    }

    /// @dev The single source of randomness: swap for a VRF on chains where block hashes are weak.
    /// A hash older than 256 blocks is gone; the job is then audited, so a late draw never helps a cheater.
    function _randomness(uint32 commitBlock) internal view returns (bytes32) {
        uint256 age;
        unchecked {
            age = uint32(uint32(block.number) - commitBlock); // commitBlock holds the low 32 bits
        }
        return blockhash(block.number - age);
    }

    /// @dev The audit draw of a Committed job; it needs the block after the commit.
    function _auditSelected(uint256 jobId) private view returns (bool) {
        uint32 commitBlock = _participants[jobId][0].commitBlock;
        if (uint32(block.number) == commitBlock) revert JobMarketAuditNotDrawable(jobId, commitBlock);
        bytes32 seed = _randomness(commitBlock);
        if (seed == bytes32(0)) return true;
        return uint256(keccak256(abi.encode(seed, jobId))) % BPS < _params.auditBps;
    }

    // ================================================================ advancing

    function _finalize(uint256 jobId) private {
        Job storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_COMMITTED | S_AUDITING | S_REVEALING);
        if (s == JobState.Revealing) {
            if (block.timestamp <= j.deadline && j.revealMask != j.commitMask) {
                revert JobMarketDeadlineNotReached(jobId, j.deadline);
            }
            _resolve(jobId, j);
            return;
        }
        if (block.timestamp <= j.deadline) revert JobMarketDeadlineNotReached(jobId, j.deadline);
        if (s == JobState.Auditing) return _auditTimedOut(jobId, j);
        if (j.flags & FLAG_DRAWN == 0) {
            // Nobody drew the audit during the window: draw it now, without a storage write when clear.
            if (_auditSelected(jobId)) {
                _startAudit(j);
                emit AuditDrawn(jobId, true);
                return;
            }
        }
        _settleUnverified(jobId, j, _emptyTally());
    }

    function _expireDue(uint256 jobId) private {
        Job storage j = _jobs[jobId];
        JobState s = j.state;
        _requireState(jobId, s, S_OPEN | S_ASSIGNED | S_AUDITING);
        if (block.timestamp <= j.deadline) revert JobMarketDeadlineNotReached(jobId, j.deadline);
        if (s == JobState.Open) {
            _close(jobId, j, JobState.Expired, bytes32(0), 0, _emptyTally());
        } else if (s == JobState.Auditing) {
            _auditTimedOut(jobId, j);
        } else {
            Tally memory t = _emptyTally();
            _slashMissingCommits(jobId, j, t);
            if (j.commitMask != 0) {
                _startReveal(jobId, j);
            } else if (j.flags & FLAG_REOPENED == 0) {
                _reopen(jobId, j);
            } else {
                _close(jobId, j, JobState.Expired, bytes32(0), 0, t);
            }
        }
    }

    /// @dev An audit's deadline passed. Without verifiers the result stands unverified; with them,
    /// verifiers that did not commit are slashed and the rest reveal (or, if none committed, the
    /// result stands).
    function _auditTimedOut(uint256 jobId, Job storage j) private {
        Tally memory t = _emptyTally();
        if (j.participants != j.replicas) {
            _slashMissingCommits(jobId, j, t);
            if (j.commitMask > 1) return _startReveal(jobId, j);
        }
        _settleUnverified(jobId, j, t);
    }

    function _reopen(uint256 jobId, Job storage j) private {
        uint32 acceptBy = uint32(block.timestamp) + _params.reassignWindow;
        j.state = JobState.Open;
        j.flags |= FLAG_REOPENED;
        j.participants = 0;
        j.clearingPrice = 0;
        j.deadline = acceptBy;
        emit JobReopened(jobId, acceptBy);
    }

    /// @dev Slashes every participant that owed a commit and did not make it and excludes it from a
    /// reopened job; they take no further part. The amounts moved are added to `t`.
    function _slashMissingCommits(uint256 jobId, Job storage j, Tally memory t) private {
        uint256 n = j.participants;
        uint256 mask = j.commitMask;
        uint96 collateral = JobLib.collateral(j);
        uint256 reward;
        for (uint256 i; i < n; ++i) {
            if (mask & (1 << i) != 0) continue;
            address provider = _participants[jobId][i].provider;
            _excluded[jobId][provider] = true;
            reward += _slash(jobId, j, provider, collateral, t);
        }
        // No honest party is known yet: the reward share funds future audits.
        if (reward != 0) _auditPool += uint128(reward);
        t.fees += reward;
    }

    // ================================================================ resolution

    /// @dev The result was never checked by anyone else (no audit selected, or no verifier took
    /// part): the executor is paid and any challenge bond is returned.
    function _settleUnverified(uint256 jobId, Job storage j, Tally memory t) private {
        address executor = _participants[jobId][0].provider;
        uint256 pay = uint256(j.units) * j.clearingPrice;
        _credit(jobId, executor, pay);
        _registry.releaseCollateral(jobId, executor, JobLib.collateral(j), true);
        t.paid += pay;
        _close(jobId, j, JobState.Settled, bytes32(0), pay, t);
    }

    /// @dev Majority resolution over the committed participants. Those that revealed the majority
    /// digest are honest; those that revealed another digest or did not reveal are slashed. With no
    /// majority the requester is refunded and only non-revealers are slashed.
    function _resolve(uint256 jobId, Job storage j) private {
        (bytes32 majority, bool found) = _majority(jobId, j.participants, j.revealMask);
        Tally memory t = _emptyTally();
        (uint256 honestMask, uint256 rewardPool) = _judge(jobId, j, majority, found, t);
        bool isAudit = j.participants > j.replicas;
        uint256 executorMask = isAudit ? 1 : (1 << j.replicas) - 1;
        bool settled = honestMask & executorMask != 0;
        uint256 executorPay;
        if (settled) executorPay = _payEach(jobId, honestMask & executorMask, uint256(j.units) * j.clearingPrice);
        t.paid += executorPay;
        uint256 rewardMask = isAudit ? honestMask & ~executorMask : honestMask;
        if (isAudit && settled) _payVerifiers(jobId, j, rewardMask, t);
        _distributeReward(jobId, rewardMask, rewardPool, t);
        _close(jobId, j, settled ? JobState.Settled : JobState.Refunded, majority, executorPay, t);
    }

    /// @dev Releases the honest participants' collateral and slashes the rest; returns the honest
    /// set (empty without a majority) and the slashed reward share to distribute.
    function _judge(uint256 jobId, Job storage j, bytes32 majority, bool found, Tally memory t)
        private
        returns (uint256 honestMask, uint256 rewardPool)
    {
        uint256 n = j.participants;
        uint256 commitMask = j.commitMask;
        uint256 revealMask = j.revealMask;
        uint96 collateral = JobLib.collateral(j);
        for (uint256 i; i < n; ++i) {
            if (commitMask & (1 << i) == 0) continue; // slashed when it missed its commit
            address provider = _participants[jobId][i].provider;
            if (revealMask & (1 << i) != 0 && (!found || _digests[jobId][i] == majority)) {
                if (found) honestMask |= 1 << i;
                _registry.releaseCollateral(jobId, provider, collateral, found);
            } else {
                rewardPool += _slash(jobId, j, provider, collateral, t);
            }
        }
    }

    /// @dev Honest verifiers of an audit the executor passed are paid from the challenge bond when a
    /// requester challenged, else from the audit pool (up to units x max price each).
    function _payVerifiers(uint256 jobId, Job storage j, uint256 mask, Tally memory t) private {
        uint256 honest = JobLib.popcount(mask);
        if (honest == 0) return; // any bond is returned at close
        uint256 bond = j.flags & FLAG_CHALLENGED != 0 ? _bonds[jobId] : 0;
        uint256 budget = bond;
        if (bond != 0) {
            _bonds[jobId] = 0;
            _totalBonds -= bond;
        } else {
            uint256 wanted = honest * uint256(j.units) * j.maxPricePerUnit;
            uint256 pool = _auditPool;
            budget = wanted < pool ? wanted : pool;
            _auditPool = uint128(pool - budget);
        }
        uint256 share = budget / honest;
        t.paid += _payEach(jobId, mask, share);
        // Rounding dust goes to the audit pool; only dust of a bond is new money there.
        uint256 dust = budget - share * honest;
        if (dust != 0) {
            _auditPool += uint128(dust);
            if (bond != 0) t.fees += dust;
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
        for (uint256 i; mask >> i != 0; ++i) {
            if (mask & (1 << i) == 0) continue;
            _credit(jobId, _participants[jobId][i].provider, amount);
            total += amount;
        }
    }

    function _majority(uint256 jobId, uint256 n, uint256 revealMask)
        private
        view
        returns (bytes32 digest, bool found)
    {
        uint256 revealed = JobLib.popcount(revealMask);
        for (uint256 i; i < n; ++i) {
            if (revealMask & (1 << i) == 0) continue;
            bytes32 d = _digests[jobId][i];
            uint256 votes;
            for (uint256 k; k < n; ++k) {
                if (revealMask & (1 << k) != 0 && _digests[jobId][k] == d) ++votes;
            }
            if (votes * 2 > revealed) return (d, true);
        }
    }

    /// @dev Slashes `provider`'s whole collateral for `jobId`: the requester share is credited to the
    /// requester, the burn share destroyed, and the reward share returned for the caller to place.
    function _slash(uint256 jobId, Job storage j, address provider, uint96 amount, Tally memory t)
        private
        returns (uint256 reward)
    {
        _registry.slash(jobId, provider, amount);
        emit ProviderSlashed(jobId, provider, amount);
        uint256 compensation = amount * _params.requesterShareBps / BPS;
        reward = amount * _params.rewardShareBps / BPS;
        uint256 burned = amount - compensation - reward;
        _credit(jobId, j.requester, compensation);
        t.refunded += compensation;
        t.burned += burned;
        if (burned != 0) ERC20Burnable(address(_token)).burn(burned);
    }

    /// @dev Closes a job: charges the fee on `executorPay`, refunds the rest of the escrow and any
    /// bond still held, and records the terminal state.
    function _close(
        uint256 jobId,
        Job storage j,
        JobState outcome,
        bytes32 digest,
        uint256 executorPay,
        Tally memory t
    ) private {
        uint256 fee = executorPay * j.feeBps / BPS;
        if (fee != 0) {
            uint256 auditShare = fee * _params.auditShareBps / BPS;
            _auditPool += uint128(auditShare);
            _protocolFees += uint128(fee - auditShare);
            t.fees += fee;
        }
        uint256 refund = JobLib.escrow(j) - executorPay - fee;
        uint256 bond = j.flags & FLAG_CHALLENGED != 0 ? _bonds[jobId] : 0;
        if (bond != 0) {
            _bonds[jobId] = 0;
            _totalBonds -= bond;
            refund += bond;
        }
        _credit(jobId, j.requester, refund);
        t.refunded += refund;
        j.state = outcome;
        emit JobClosed(jobId, outcome, digest, t.paid, t.refunded, t.fees, t.burned);
    }

    function _credit(uint256 jobId, address account, uint256 amount) private {
        if (amount == 0) return;
        _credits[account] += amount;
        emit Credited(jobId, account, amount);
    }

    function _emptyTally() private pure returns (Tally memory t) {}

    // ================================================================ guards and params

    /// @dev The one state guard: reverts with the job, its state and the allowed-state bitmap.
    function _requireState(uint256 jobId, JobState current, uint256 allowed) private pure {
        if ((1 << uint8(current)) & allowed == 0) revert JobMarketUnexpectedState(jobId, current, allowed);
    }

    function _lifetime(Params memory p) private pure returns (uint256) {
        // Accept + execute, a reopen after a no-show (accept + execute again), the challenge window,
        // verifier assignment and execution, and the reveal window.
        return uint256(p.maxAcceptWindow) + p.maxExecWindow + p.reassignWindow + p.maxExecWindow
            + p.challengeWindow + p.verifierAssignWindow + p.maxExecWindow + p.revealWindow;
    }

    function _checkParams(Params memory p, bool checkUnbonding) private view {
        if (p.feeBps > 1000) revert JobMarketInvalidParams("feeBps above 1000");
        if (p.auditShareBps > BPS) revert JobMarketInvalidParams("auditShareBps above 10000");
        if (p.auditBps > BPS) revert JobMarketInvalidParams("auditBps above 10000");
        if (uint256(p.requesterShareBps) + p.rewardShareBps > BPS) {
            revert JobMarketInvalidParams("requesterShareBps + rewardShareBps above 10000");
        }
        if (p.verifiers == 0 || p.verifiers > MAX_VERIFIERS) revert JobMarketInvalidParams("verifiers not in 1..7");
        if (p.collateralMultiple == 0 || p.collateralMultiple > 20) {
            revert JobMarketInvalidParams("collateralMultiple not in 1..20");
        }
        if (
            !_windowOk(p.challengeWindow) || !_windowOk(p.verifierAssignWindow) || !_windowOk(p.revealWindow)
                || !_windowOk(p.reassignWindow) || !_windowOk(p.maxAcceptWindow) || !_windowOk(p.maxExecWindow)
        ) revert JobMarketInvalidParams("a window is 0 or above 30 days");
        if (p.challengeBond == 0) revert JobMarketInvalidParams("challengeBond is 0");
        if (checkUnbonding && 2 * _lifetime(p) > _registry.unbondingPeriod()) {
            revert JobMarketInvalidParams("2 x maxJobLifetime above the registry's unbonding period");
        }
    }

    function _windowOk(uint32 w) private pure returns (bool) {
        return w != 0 && w <= MAX_WINDOW;
    }
}
