// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";

import {Test, Vm} from "../../utils/Test.sol";
import {ComputeToken} from "../../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";
import {HonestyOracle} from "./HonestyOracle.sol";

/// @notice The actors and the ghost ledger of the invariant campaign. Every call the handlers make
/// into the contracts goes through `exec` / `execJob` / `execRegistry`, which prank the actor,
/// record the logs and book what the call did from what was observed (events, token transfers,
/// the audit pool and fee counters). The ledger keeps an independent model of the v2 money flows
/// (escrow with fee floor and audit premium, verifier pay from the bond then the pool, the slash
/// split, fee and premium into the pool) and checks every call against it. Properties that can
/// only be judged at the moment of a call are recorded as violations, bucketed by the DESIGN.md
/// invariant number; the invariant functions assert that every bucket is empty.
/// @dev A separate contract from the action handlers so that each stays under EIP-170.
contract GhostLedger is Test {
    // ---------------------------------------------------------------- state ids (IJobMarket.JobState)
    uint8 internal constant NONE = 0;
    uint8 internal constant OPEN = 1;
    uint8 internal constant ASSIGNED = 2;
    uint8 internal constant COMMITTED = 3;
    uint8 internal constant AUDITING = 4;
    uint8 internal constant REVEALING = 5;
    uint8 internal constant SETTLED = 6;
    uint8 internal constant REFUNDED = 7;
    uint8 internal constant EXPIRED = 8;
    uint256 internal constant BPS = 10_000;

    // ---------------------------------------------------------------- actors
    /// @notice Providers 0..10 are honest: they only ever commit the true digest. Providers 11..13
    /// collude (wrong digests, no-shows, withheld reveals); provider 11 ("mallory") is also the
    /// malicious requester. Colluders hold 100 tokens each against 300 for each honest provider:
    /// about 10% of every profile's stake.
    /// @dev The colluders are small identities on purpose. A verifier draw skips providers whose
    /// free stake is below the job's collateral, so colluders that each stake more than every
    /// honest provider but the executor can take every seat of a job only they can collateralise,
    /// whatever their share of the profile; that attack is outside this model (invariant 11
    /// counts such rounds as colluder majorities and excludes them).
    uint256 public constant N_HONEST = 11;
    uint256 public constant N_PROVIDERS = 14;
    uint256 public constant N_REQUESTERS = 3;
    /// @notice The honest provider that joins later, through RegistryHandler.registerProvider.
    uint256 public constant LATE_PROVIDER = 7;
    uint96 public constant HONEST_STAKE = 300e18;
    uint96 public constant COLLUDER_STAKE = 100e18;
    /// @notice Caps the jobs of a run (and so the invariant functions' loops).
    uint256 public constant MAX_JOBS = 32;

    ComputeToken public immutable token;
    ProviderRegistry public immutable registry;
    JobMarket public immutable market;
    address public immutable owner;
    address public immutable matcher;
    address public immutable keeper;
    address public immutable treasury;
    /// @notice Never a participant: tries foreign cancels, challenges and copycat reveals.
    address public immutable outsider;
    address public immutable mallory;
    address internal immutable _deployer;

    address[] internal _providers;
    address[] internal _requesters;
    uint256[] internal _requesterKeys;
    address[] internal _holders;
    mapping(address account => bool) public isColluder;
    mapping(address account => uint256) internal _index1; // provider index + 1
    /// @notice Bit i set while provider i has an unbond request pending (from the registry's events).
    uint256 public unbondingMask;
    mapping(address account => bool) public isHandler;

    // ---------------------------------------------------------------- ghost ledger
    uint256 public ghostMinted;
    uint256 public ghostBurned;
    uint256 public ghostEscrowed;
    uint256 public ghostBondsPosted;
    uint256 public ghostSlashed;
    uint256 public ghostCredited;
    uint256 public ghostWithdrawn;
    uint256 public ghostFeesWithdrawn;
    uint256 public ghostUnbonded;
    uint256 public ghostOpenEscrow;
    uint256 public ghostBondsHeld;
    /// @notice Sum over jobs of the modelled change of auditPool + protocolFees.
    int256 public ghostPoolAttributed;

    uint256 public ghostTotalStake;
    uint256 public ghostLockedTotal;
    /// @notice Per profile: the sum of the draw weights the registry must hold (stake of each
    /// provider registered in the profile and not unbonding), booked from the checked providers.
    uint256[2] public ghostWeight;
    mapping(address provider => uint256[2]) internal _weightSeen;

    mapping(address account => uint256) public ghostCredits;
    mapping(address provider => uint256) public ghostStake;
    mapping(address provider => uint256) public ghostLocked;
    mapping(uint256 jobId => uint256) public ghostBondHeld;
    /// @notice Everything the job credited to each account over its whole life.
    mapping(uint256 jobId => mapping(address account => uint256)) public jobCredit;

    /// @notice Judges every closed job from what the handlers made each actor do.
    HonestyOracle public oracle;
    uint256[] internal _closedNow;
    mapping(uint256 jobId => uint256) internal _bondAtClose;
    uint256 internal _poolAtStart;

    // ---------------------------------------------------------------- invariant 11
    /// @notice Slashes of a provider whose accepted reveal was the true digest, in a job where
    /// colluders never held a majority of a round's seats (must stay 0).
    uint256 public honestSlashes;
    /// @notice The same, in a job where colluders did hold a round majority (excluded, counted).
    uint256 public excusedHonestSlashes;
    uint256 public truthUpheld;
    uint256 public liarsSlashed;
    uint256 public roundsStaffed;
    uint256 public roundsWithColluder;
    uint256 public roundsColluderMajority;
    uint256 public taintedJobs;
    uint256 public verdicts;

    /// @notice What the ledger saw of one job.
    struct GJob {
        address requester;
        uint8 replicas;
        uint8 lastState; //    driven by the events, checked against the contract after each call
        uint8 closedCount;
        uint8 reopenCount;
        uint8 closedState;
        uint8 round;
        uint8 seats; //        of the current audit round
        uint8 verifiersFrom; // index of the current round's first seat
        uint8 colluderSeats; // colluders seated in the current round
        bool tainted; //       colluders held a majority of some round's seats
        uint8 profile; //      the request's fields, from JobCreated
        uint8 multiple;
        uint16 minVramGiB;
        uint32 units;
        uint32 execWindow;
        uint80 clearingPrice; // from the assignment
        uint256 escrow;
        uint256 bondPosted;
        uint256 slashed;
        uint256 slashCap; //   collateral of every seat the job ever locked
        uint256 credited;
        uint256 burned;
        int256 poolNet; //     modelled change of auditPool + protocolFees due to the job
        bytes32 lastResultHash; // a committed (resultHash, seal) pair a copycat can copy
        bytes32 lastSeal;
        bytes32 closedDigest; // the verdict JobClosed reported
    }

    /// @notice The closing call of a job: JobClosed figures, the v2 model's figures, what moved.
    struct GClose {
        bytes32 digest;
        uint256 paid;
        uint256 refunded;
        uint256 fees;
        uint256 burned;
        uint256 mPaid;
        uint256 mRefunded;
        uint256 mFees;
        uint256 mBurned;
        uint256 credited;
        uint256 burnedSeen;
    }

    /// @notice What the ledger saw of one provider in one job (the current epoch: a reopen clears it).
    struct Part {
        bool assigned;
        bool active; //        collateral locked and neither released nor slashed
        bool slashed;
        bool committed;
        bool digestKnown; //   committed keccak(jobId, digest) and seal(provider, jobId, digest)
        bool revealed;
        uint8 index;
        uint96 collateral;
        bytes32 digest;
    }

    mapping(uint256 jobId => GJob) internal _jobs;
    mapping(uint256 jobId => address[]) internal _seats;
    mapping(uint256 jobId => mapping(address provider => Part)) internal _parts;
    mapping(uint256 jobId => mapping(address provider => bool)) public noShowExcluded;
    uint256 public jobsSeen;
    uint256[] internal _live;
    mapping(uint256 jobId => uint256) internal _liveIndex; // index + 1

    mapping(bytes32 name => uint256) public hits;
    mapping(uint256 invariantNo => uint256) public violations;
    mapping(uint256 invariantNo => string) public firstViolation;

    // ---------------------------------------------------------------- per-call context
    /// @dev What one closing (or phase-changing) step of a job moved; reset at each phase event.
    struct Tally {
        uint256 comp; //         requester share of slashed executors that lost the verdict
        uint256 reward; //       reward share of verdict slashes, to distribute at the close
        uint256 noShowReward; // reward share of no-show slashes (into the pool at once)
        uint256 releaseFee; //   fees of released seats (into the pool at once)
        uint256 burnExpected;
        uint256 burned;
        uint256 credited;
    }

    uint256 internal _nonce;
    uint256 internal _mPool;
    uint256 internal _mFees;
    IJobMarket.Params internal _cp;
    uint256 internal _cpAt; // the call whose parameters _cp holds
    mapping(uint256 jobId => bool) internal _tallyDirty;
    /// @notice Whether the path counters (`hits`) are kept: only the coverage test needs them.
    bool public recordHits;
    uint256 internal _lastJob;
    uint256[] internal _touched;
    mapping(uint256 jobId => uint256) internal _touchedAt;
    mapping(uint256 jobId => Tally) internal _tally;
    mapping(uint256 jobId => mapping(address => uint256)) internal _itemCredit;
    mapping(uint256 jobId => address[]) internal _itemCreditKeys;
    uint256 internal _regSlashJob;
    address internal _regSlashProvider;
    uint256 internal _regSlashAmount;
    uint256[] internal _skippedJobs;
    bytes4[] internal _skippedOps;
    uint256 internal _touchedProviders; // bit i: provider i's record may have changed in this call
    address[] internal _creditTouched;
    /// @notice Revert data of the last market call that failed.
    bytes public lastRevert;

    modifier onlyHandler() {
        require(isHandler[msg.sender], "ledger: handlers only");
        _;
    }

    constructor(
        ComputeToken token_,
        ProviderRegistry registry_,
        JobMarket market_,
        address owner_,
        address matcher_,
        address keeper_,
        address treasury_
    ) {
        token = token_;
        registry = registry_;
        market = market_;
        owner = owner_;
        matcher = matcher_;
        keeper = keeper_;
        treasury = treasury_;
        _deployer = msg.sender;
        outsider = makeAddr("outsider");
        ghostMinted = token_.totalSupply();
        for (uint256 i; i < N_PROVIDERS; ++i) {
            address p = makeAddr(string.concat(i < N_HONEST ? "honest-" : "colluder-", vm.toString(i)));
            _providers.push(p);
            _holders.push(p);
            _index1[p] = i + 1;
            isColluder[p] = i >= N_HONEST;
            vm.prank(p);
            token.approve(address(registry_), type(uint256).max);
        }
        mallory = _providers[N_HONEST];
        _mint(mallory, 1e30);
        vm.prank(mallory);
        token.approve(address(market_), type(uint256).max);
        for (uint256 i; i < N_REQUESTERS; ++i) {
            (address r, uint256 key) = makeAddrAndKey(string.concat("requester-", vm.toString(i)));
            _requesters.push(r);
            _requesterKeys.push(key);
            _holders.push(r);
            _mint(r, 1e27);
            vm.prank(r);
            token.approve(address(market_), type(uint256).max);
        }
        _holders.push(outsider);
        _mint(outsider, 1e24);
        vm.prank(outsider);
        token.approve(address(market_), type(uint256).max);
        for (uint256 i; i < N_PROVIDERS; ++i) {
            if (i != LATE_PROVIDER) _register(i, i < N_HONEST ? HONEST_STAKE : COLLUDER_STAKE);
        }
    }

    function setOracle(HonestyOracle oracle_) external {
        require(msg.sender == _deployer, "ledger: deployer only");
        oracle = oracle_;
    }

    function allow(address handler) external {
        require(msg.sender == _deployer, "ledger: deployer only");
        isHandler[handler] = true;
    }

    // ================================================================ provider terms

    /// @dev Provider i asks PRICES[i] per unit, has VRAM[i] GiB, supports MASKS[i], accepts exec
    /// windows of at least MIN_EXEC[i] and at most MAX_UNITS[i] units. Providers 6, 7 and 13 ask
    /// dust prices so that rounding in fees, shares and splits is exercised.
    function terms(uint256 i) public pure returns (IProviderRegistry.Terms memory t) {
        uint80[14] memory prices =
            [uint80(1e14), 2e14, 5e14, 1e15, 3e14, 1e14, 3, 11, 2e14, 4e14, 1e14, 1e14, 2e14, 5];
        uint16[14] memory vram = [uint16(80), 80, 40, 80, 24, 80, 80, 80, 80, 48, 80, 80, 80, 80];
        uint8[14] memory masks = [uint8(3), 3, 3, 1, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3];
        uint32[14] memory minExec = [uint32(0), 0, 30 minutes, 0, 0, 0, 0, 0, 1 hours, 0, 0, 0, 0, 0];
        uint32[14] memory maxUnits =
            [uint32(1000), 1000, 1000, 1000, 200, 1000, 1000, 1000, 500, 1000, 1000, 1000, 1000, 1000];
        t = IProviderRegistry.Terms({
            profileMask: masks[i],
            gpuModel: bytes32("NVIDIA H100"),
            vramGiB: vram[i],
            pricePerUnit: prices[i],
            endpoint: "",
            minExecWindow: minExec[i],
            maxUnits: maxUnits[i]
        });
    }

    function _register(uint256 i, uint96 amount) internal {
        address p = _providers[i];
        if (!_registryCall(p, abi.encodeCall(IProviderRegistry.register, (terms(i))))) return;
        _hit("registered");
        _mint(p, amount);
        if (!_registryCall(p, abi.encodeCall(IProviderRegistry.stake, (amount)))) _violate(8, "stake failed");
    }

    // ================================================================ views for handlers and invariants

    function provider(uint256 i) external view returns (address) {
        return _providers[i];
    }

    function requester(uint256 i) external view returns (address) {
        return _requesters[i];
    }

    function requesterKey(uint256 i) external view returns (uint256) {
        return _requesterKeys[i];
    }

    function holderCount() external view returns (uint256) {
        return _holders.length;
    }

    function holder(uint256 i) external view returns (address) {
        return _holders[i];
    }

    /// @notice Per-job books of a terminal job: escrow + bond + slashed - credited - burned - pool
    /// flow (zero when they close), and how often it was closed.
    function books(uint256 jobId) external view returns (int256 gap, uint8 closedCount, uint8 state) {
        GJob storage j = _jobs[jobId];
        gap = int256(j.escrow + j.bondPosted + j.slashed) - int256(j.credited + j.burned) - j.poolNet;
        return (gap, j.closedCount, j.lastState);
    }

    /// @notice The flows of a job (invariant 3): escrow, bond, slashed, credited, burned, pool flow.
    function flows(uint256 jobId)
        external
        view
        returns (uint256 escrow, uint256 bond, uint256 slashed, uint256 credited, uint256 burned, int256 poolNet)
    {
        GJob storage j = _jobs[jobId];
        return (j.escrow, j.bondPosted, j.slashed, j.credited, j.burned, j.poolNet);
    }

    /// @notice What invariants 5 and 6 read of a job.
    function status(uint256 jobId)
        external
        view
        returns (uint8 state, uint8 closedCount, uint8 reopenCount, uint256 slashed, uint256 slashCap)
    {
        GJob storage j = _jobs[jobId];
        return (j.lastState, j.closedCount, j.reopenCount, j.slashed, j.slashCap);
    }

    function closedDigest(uint256 jobId) external view returns (bytes32) {
        return _jobs[jobId].closedDigest;
    }

    function lastState(uint256 jobId) external view returns (uint8) {
        return _jobs[jobId].lastState;
    }

    function lastCommit(uint256 jobId) external view returns (bytes32, bytes32) {
        return (_jobs[jobId].lastResultHash, _jobs[jobId].lastSeal);
    }

    function jobRequester(uint256 jobId) external view returns (address) {
        return _jobs[jobId].requester;
    }

    function part(uint256 jobId, address p) external view returns (Part memory) {
        return _parts[jobId][p];
    }

    function live() external view returns (uint256[] memory) {
        return _live;
    }

    /// @notice The live jobs and the state the ledger last saw each in.
    function liveStates() external view returns (uint256[] memory ids, uint8[] memory states) {
        ids = _live;
        states = new uint8[](ids.length);
        for (uint256 k; k < ids.length; ++k) {
            states[k] = _jobs[ids[k]].lastState;
        }
    }

    /// @notice What a handler needs of a job in one call: its requester, its seats and the ledger's
    /// view of each seat.
    function seatParts(uint256 jobId) external view returns (address[] memory ps, Part[] memory parts) {
        ps = _seats[jobId];
        parts = new Part[](ps.length);
        for (uint256 i; i < ps.length; ++i) {
            parts[i] = _parts[jobId][ps[i]];
        }
    }

    /// @notice Items the last batched call skipped (BatchItemSkipped), in order.
    function lastSkipped() external view returns (uint256[] memory, bytes4[] memory) {
        return (_skippedJobs, _skippedOps);
    }

    /// @notice The digest an honest provider computes for job `jobId`.
    function trueDigest(uint256 jobId) public pure returns (bytes32) {
        return keccak256(abi.encode("correct output", jobId));
    }

    // ================================================================ handler entry points

    function exec(address from, uint256[] calldata ids, bytes calldata data) external onlyHandler returns (bool) {
        return _marketCall(from, ids, data);
    }

    function execJob(address from, uint256 jobId, bytes calldata data) external onlyHandler returns (bool) {
        uint256[] memory ids = new uint256[](jobId == 0 ? 0 : 1);
        if (jobId != 0) ids[0] = jobId;
        return _marketCall(from, ids, data);
    }

    function execRegistry(address from, bytes calldata data) external onlyHandler returns (bool) {
        return _registryCall(from, data);
    }

    /// @notice A handler's commit succeeded: what it committed (for the reveal checks).
    function noteCommit(uint256 jobId, address p, bool known, bytes32 digest, bytes32 rh, bytes32 sl)
        external
        onlyHandler
    {
        Part storage pt = _parts[jobId][p];
        pt.digestKnown = known;
        pt.digest = digest;
        if (known) (_jobs[jobId].lastResultHash, _jobs[jobId].lastSeal) = (rh, sl);
    }

    function mint(address to, uint256 amount) external onlyHandler {
        _mint(to, amount);
    }

    function register(uint256 i, uint96 amount) external onlyHandler {
        _register(i, amount);
    }

    function violate(uint256 invariantNo, string calldata why) external onlyHandler {
        _violate(invariantNo, why);
    }

    function hit(bytes32 name) external onlyHandler {
        _hit(name);
    }

    // ================================================================ recording helpers

    function _violate(uint256 invariantNo, string memory why) internal {
        if (violations[invariantNo] == 0) firstViolation[invariantNo] = why;
        violations[invariantNo] += 1;
    }

    function _jobViolate(uint256 invariantNo, uint256 jobId, string memory why) internal {
        _violate(invariantNo, string.concat("job ", vm.toString(jobId), ": ", why));
    }

    function _hit(bytes32 name) internal {
        if (recordHits) hits[name] += 1;
    }

    function setRecordHits(bool on) external {
        require(msg.sender == _deployer, "ledger: deployer only");
        recordHits = on;
    }

    function _mint(address to, uint256 amount) internal {
        vm.prank(owner);
        token.mint(to, amount);
        ghostMinted += amount;
    }

    // ================================================================ calls

    function _marketCall(address from, uint256[] memory ids, bytes memory data) internal returns (bool ok) {
        _begin(ids);
        _poolAtStart = market.auditPool();
        vm.recordLogs();
        vm.prank(from);
        bytes memory ret;
        (ok, ret) = address(market).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) {
            lastRevert = ret;
            return false;
        }
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.topics.length == 0) continue;
            if (l.emitter == address(market)) _onMarketLog(l, ids);
            else if (l.emitter == address(registry)) _onRegistryLog(l);
            else if (l.emitter == address(token)) _onTokenLog(l);
        }
        _end();
    }

    function _registryCall(address from, bytes memory data) internal returns (bool ok) {
        vm.recordLogs();
        vm.prank(from);
        (ok,) = address(registry).call(data);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        if (!ok) return false;
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.topics.length == 0) continue;
            if (l.emitter == address(registry)) {
                if (l.topics[0] == IProviderRegistry.Slashed.selector) _violate(6, "a provider action slashed");
                else _onRegistryLog(l);
            } else if (l.emitter == address(market)) {
                _violate(6, "a provider action moved market funds");
            }
        }
        _checkProviders();
    }

    function _begin(uint256[] memory ids) internal {
        ++_nonce;
        delete _touched;
        if (_skippedJobs.length != 0) {
            delete _skippedJobs;
            delete _skippedOps;
        }
        _lastJob = 0;
        _regSlashAmount = 0;
        for (uint256 i; i < ids.length; ++i) {
            if (ids[i] != 0 && ids[i] <= jobsSeen) _touch(ids[i]);
        }
    }

    /// @dev After a successful market call: every step's tally is balanced, each touched job's
    /// stored state is the one its events led to, and the audit pool and protocol fees are what
    /// the v2 flow model says.
    function _end() internal {
        for (uint256 i; i < _touched.length; ++i) {
            uint256 id = _touched[i];
            _settleTally(id);
            _checkJobRecord(id);
        }
        // the model is carried from call to call: the counters move only through market calls
        if (market.auditPool() != _mPool) {
            _violate(2, "audit pool differs from the v2 flow model");
            _mPool = market.auditPool();
        }
        if (market.protocolFees() != _mFees) {
            _violate(2, "protocol fees differ from the v2 flow model");
            _mFees = market.protocolFees();
        }
        for (uint256 i; i < _creditTouched.length; ++i) {
            address a = _creditTouched[i];
            if (market.credits(a) != ghostCredits[a]) _violate(2, "credits != credited - withdrawn");
        }
        delete _creditTouched;
        _checkProviders();
        uint256 closed = _closedNow.length;
        for (uint256 i; i < closed; ++i) {
            uint256 id = _closedNow[i];
            oracle.judge(id, _poolAtStart, _bondAtClose[id], closed == 1);
        }
        if (closed != 0) delete _closedNow;
    }

    /// @dev The touched job's record against the ledger: the state its events led to, the seats
    /// still locked (DESIGN 4), the escrow it pulled (v2 formula), and its conservation while live.
    function _checkJobRecord(uint256 id) internal {
        IJobMarket.Job memory r = market.job(id);
        GJob storage j = _jobs[id];
        if (uint8(r.state) != j.lastState) _jobViolate(5, id, "state changed without the events that say so");
        address[] storage list = _seats[id];
        if (r.participants != list.length) _jobViolate(5, id, "seats differ from the assignments seen");
        uint256 active;
        for (uint256 i; i < list.length; ++i) {
            if (_parts[id][list[i]].active) active |= 1 << i;
        }
        if (r.activeMask != active) _jobViolate(4, id, "locked seats differ from the assignments, slashes and releases seen");
        if (r.clearingPrice != j.clearingPrice || r.collateralMultiple != j.multiple || r.units != j.units) {
            _jobViolate(4, id, "clearing price, multiple or units differ from the ledger's");
        }
        uint256 payment = uint256(r.replicas) * r.units * r.maxPricePerUnit;
        if (j.escrow != payment + _feeOf(payment, r.feeBps, r.minFee) + payment * r.premiumBps / BPS) {
            _jobViolate(2, id, "escrow from the record != escrow pulled");
        }
    }

    /// @dev The market's parameters during the current call (read once, when first needed).
    function _params() internal returns (IJobMarket.Params storage) {
        if (_cpAt != _nonce) {
            _cp = market.params();
            _cpAt = _nonce;
        }
        return _cp;
    }

    function _touch(uint256 id) internal {
        if (_touchedAt[id] == _nonce) return;
        _touchedAt[id] = _nonce;
        _touched.push(id);
        _resetTally(id);
    }

    function _resetTally(uint256 id) internal {
        if (!_tallyDirty[id]) return;
        _tallyDirty[id] = false;
        delete _tally[id];
        address[] storage keys = _itemCreditKeys[id];
        for (uint256 i; i < keys.length; ++i) {
            delete _itemCredit[id][keys[i]];
        }
        delete _itemCreditKeys[id];
    }

    /// @dev A step that did not close the job: its slashes were all no-show slashes (no credit, the
    /// reward share into the pool, the rest burned).
    function _settleTally(uint256 id) internal {
        Tally storage t = _tally[id];
        if (t.burned != t.burnExpected) _jobViolate(10, id, "burned differs from the slash split");
        if (t.credited != 0) _jobViolate(10, id, "credited outside a close");
        if (t.comp != 0 || t.reward != 0) _jobViolate(10, id, "verdict slash without a close");
        _resetTally(id);
    }

    function _inScope(uint256 id, uint256[] memory ids) internal pure returns (bool) {
        for (uint256 i; i < ids.length; ++i) {
            if (ids[i] == id) return true;
        }
        return false;
    }

    // ================================================================ log decoding

    function _onMarketLog(Vm.Log memory l, uint256[] memory ids) internal {
        bytes32 t = l.topics[0];
        if (t == IJobMarket.Withdrawn.selector) {
            address account = address(uint160(uint256(l.topics[1])));
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount != ghostCredits[account]) _violate(2, "withdraw paid other than the whole credit");
            ghostCredits[account] -= amount > ghostCredits[account] ? ghostCredits[account] : amount;
            ghostWithdrawn += amount;
            _creditTouched.push(account);
            _hit("withdrawn");
            return;
        }
        if (t == IJobMarket.FeesWithdrawn.selector) {
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount != _mFees) _violate(2, "withdrawFees paid other than the fees");
            _mFees = 0;
            ghostFeesWithdrawn += amount;
            _hit("feesWithdrawn");
            return;
        }
        if (t == IJobMarket.ParamsSet.selector) return;
        uint256 id = uint256(l.topics[1]);
        if (t == IJobMarket.JobCreated.selector) return _onCreated(id, l);
        if (t == IJobMarket.BatchItemSkipped.selector) {
            _skippedJobs.push(id);
            _skippedOps.push(bytes4(l.topics[2]));
            _hit("batchItemSkipped");
            return;
        }
        if (id == 0 || id > jobsSeen || !_inScope(id, ids)) {
            _jobViolate(5, id, "a call emitted events of a job it was not called on");
            return;
        }
        _touch(id);
        _lastJob = id;
        if (t == IJobMarket.ProviderAssigned.selector) {
            (uint8 index, uint80 price,) = abi.decode(l.data, (uint8, uint80, uint32));
            return _onAssigned(id, address(uint160(uint256(l.topics[2]))), index, price);
        }
        if (t == IJobMarket.Credited.selector) {
            return _onCredited(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (uint256)));
        }
        if (t == IJobMarket.ProviderSlashed.selector) {
            return _onSlashed(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (uint256)));
        }
        if (t == IJobMarket.ResultCommitted.selector) return _onCommitted(id, address(uint160(uint256(l.topics[2]))));
        if (t == IJobMarket.ResultRevealed.selector) {
            return _onRevealed(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (bytes32)));
        }
        if (t == IJobMarket.JobClosed.selector) return _onClosed(id, l.data);
        if (t == IJobMarket.AuditStarted.selector) {
            (uint8 round, uint8 seatCount,,) = abi.decode(l.data, (uint8, uint8, uint32, uint32));
            return _onAuditStarted(id, round, seatCount);
        }
        if (t == IJobMarket.AuditStaffed.selector) return _onAuditStaffed(id);
        if (t == IJobMarket.RevealStarted.selector) {
            _settleTally(id);
            return _edge(id, REVEALING);
        }
        if (t == IJobMarket.JobChallenged.selector) return _onChallenged(id, abi.decode(l.data, (uint256)));
        if (t == IJobMarket.JobReopened.selector) return _onReopened(id);
        if (t == IJobMarket.ProviderReleased.selector) {
            return _onReleased(id, address(uint160(uint256(l.topics[2]))), abi.decode(l.data, (uint256)));
        }
        if (t == IJobMarket.AuditDrawn.selector) {
            _hit(abi.decode(l.data, (bool)) ? bytes32("auditSelected") : bytes32("auditCleared"));
            return;
        }
        if (t == IJobMarket.AuditReseeded.selector) {
            _hit(_jobs[id].lastState == COMMITTED ? bytes32("drawReseeded") : bytes32("staffReseeded"));
            return;
        }
    }

    function _onCreated(uint256 id, Vm.Log memory l) internal {
        (, IJobMarket.JobRequest memory r,, uint256 escrow) =
            abi.decode(l.data, (bytes32, IJobMarket.JobRequest, uint32, uint256));
        GJob storage j = _jobs[id];
        if (j.lastState != NONE) _violate(5, "job id created twice");
        if (id != jobsSeen + 1) _violate(5, "job ids not consecutive");
        jobsSeen = id;
        _touch(id);
        j.requester = address(uint160(uint256(l.topics[2])));
        j.replicas = r.replicas;
        j.lastState = OPEN;
        (j.profile, j.multiple, j.minVramGiB, j.units, j.execWindow) =
            (r.profile, _params().collateralMultiple, r.minVramGiB, r.units, r.execWindow);
        j.escrow = escrow;
        ghostEscrowed += escrow;
        ghostOpenEscrow += escrow;
        _live.push(id);
        _liveIndex[id] = _live.length;
        // v2: escrow = payment + max(payment x feeBps, minFee) + payment x premiumBps, at the max price
        uint256 payment = uint256(r.replicas) * r.units * r.maxPricePerUnit;
        uint256 premiumBps = r.replicas == 1 ? uint256(_params().auditBps) * _params().verifiers : 0;
        if (escrow != payment + _feeOf(payment, _params().feeBps, _params().minFee) + payment * premiumBps / BPS) {
            _jobViolate(2, id, "escrow is not payment + fee (floored) + premium");
        }
        if (r.replicas % 2 == 0 || r.replicas > 5) _jobViolate(5, id, "even or oversized replicas accepted");
        _hit("created");
    }

    function _onAssigned(uint256 id, address p, uint8 index, uint80 price) internal {
        GJob storage j = _jobs[id];
        Part storage pt = _parts[id][p];
        if (pt.assigned) _jobViolate(4, id, "a provider holds two seats");
        if (index != _seats[id].length) _jobViolate(5, id, "participant index out of sequence");
        if (p == j.requester) _jobViolate(5, id, "the requester took a seat in its own job");
        if (index == 0) j.clearingPrice = price;
        else if (price != j.clearingPrice) _jobViolate(4, id, "seat priced other than the clearing price");
        uint96 collateral = uint96(uint256(j.multiple) * j.units * price);
        _seats[id].push(p);
        (pt.assigned, pt.active, pt.index, pt.collateral) = (true, true, index, collateral);
        ghostLocked[p] += collateral;
        ghostLockedTotal += collateral;
        _touchProvider(p);
        j.slashCap += collateral;
        IProviderRegistry.Provider memory rp = registry.provider(p);
        if (rp.unbondAt != 0) _jobViolate(7, id, "an unbonding provider took a seat");
        if (!rp.registered || (rp.profileMask >> j.profile) & 1 == 0) _jobViolate(4, id, "seat outside the profile");
        if (index < j.replicas) {
            if (index == 0) _edge(id, ASSIGNED);
            else if (j.lastState != ASSIGNED) _jobViolate(5, id, "executor seated outside an assignment");
            if (noShowExcluded[id][p]) _jobViolate(4, id, "an excluded no-show was reassigned");
            if (rp.pricePerUnit > price || rp.vramGiB < j.minVramGiB) _jobViolate(4, id, "executor price or VRAM");
            if (j.execWindow < rp.minExecWindow || j.units > rp.maxUnits) {
                _jobViolate(4, id, "executor exec window or units outside its terms");
            }
            _hit("assigned");
        } else {
            if (j.lastState != AUDITING) _jobViolate(5, id, "verifier seated outside an audit");
            if (index < j.verifiersFrom || index >= uint256(j.verifiersFrom) + j.seats) {
                _jobViolate(5, id, "verifier seated outside the round's seats");
            }
            if (registry.drawWeight(j.profile, p) == 0) _jobViolate(4, id, "drawn verifier without draw weight");
            if (noShowExcluded[id][p]) _hit("exNoShowDrawn");
            if (isColluder[p]) {
                j.colluderSeats += 1;
                _hit("colluderSeated");
            }
            _hit("verifierDrawn");
        }
    }

    function _onCommitted(uint256 id, address p) internal {
        GJob storage j = _jobs[id];
        Part storage pt = _parts[id][p];
        if (!pt.assigned || !pt.active || pt.committed) _jobViolate(5, id, "commit without an open seat");
        pt.committed = true;
        uint8 s = j.lastState;
        bool executor = pt.index < j.replicas;
        if (executor ? s != ASSIGNED : s != AUDITING) _jobViolate(5, id, "commit out of phase");
        if (!executor && pt.index < j.verifiersFrom) _jobViolate(5, id, "an earlier round committed");
        if (s == ASSIGNED && j.replicas == 1) _edge(id, COMMITTED);
    }

    /// @dev DESIGN 9: an accepted reveal must be the digest the handler committed for that provider.
    function _onRevealed(uint256 id, address p, bytes32 digest) internal {
        Part storage pt = _parts[id][p];
        if (_jobs[id].lastState != REVEALING) _jobViolate(9, id, "reveal outside Revealing");
        if (!pt.committed || pt.revealed) _jobViolate(9, id, "reveal without a pending commitment");
        if (!pt.digestKnown) _jobViolate(9, id, "a copied or unrevealable commitment was revealed");
        else if (pt.digest != digest) _jobViolate(9, id, "revealed a digest other than the committed one");
        pt.revealed = true;
        _hit("revealed");
    }

    function _onCredited(uint256 id, address account, uint256 amount) internal {
        ghostCredits[account] += amount;
        ghostCredited += amount;
        _jobs[id].credited += amount;
        _tallyDirty[id] = true;
        _tally[id].credited += amount;
        if (_itemCredit[id][account] == 0) {
            _itemCreditKeys[id].push(account);
            _creditTouched.push(account);
        }
        _itemCredit[id][account] += amount;
        jobCredit[id][account] += amount;
    }

    function _onChallenged(uint256 id, uint256 bond) internal {
        GJob storage j = _jobs[id];
        if (bond != uint256(_params().verifiers) * j.units * j.clearingPrice) {
            _jobViolate(2, id, "bond is not verifiers x units x clearing price");
        }
        if (ghostBondHeld[id] != 0) _jobViolate(5, id, "challenged twice");
        ghostBondHeld[id] = bond;
        ghostBondsHeld += bond;
        ghostBondsPosted += bond;
        j.bondPosted += bond;
        _hit("challenged");
    }

    function _onAuditStarted(uint256 id, uint8 round, uint8 seatCount) internal {
        GJob storage j = _jobs[id];
        _settleTally(id);
        if (round != j.round + 1 || round > 2) _jobViolate(5, id, "audit round out of sequence");
        uint256 k = _params().verifiers;
        if (seatCount != (round == 1 ? k : 2 * k + 1)) _jobViolate(5, id, "round seats are not k / 2k + 1");
        if (j.lastState == COMMITTED && round != 1) _jobViolate(5, id, "a committed job escalated");
        _edge(id, AUDITING);
        j.round = round;
        j.seats = seatCount;
        j.verifiersFrom = uint8(_seats[id].length);
        j.colluderSeats = 0;
        _hit(round == 1 ? bytes32("round1") : bytes32("round2"));
    }

    /// @dev All seats of the round are filled; invariant 11's ghost records whether the colluders
    /// hold a majority of them (then the job is excluded from invariant 11 and counted).
    function _onAuditStaffed(uint256 id) internal {
        GJob storage j = _jobs[id];
        if (_seats[id].length - j.verifiersFrom != j.seats) _jobViolate(5, id, "staffed with seats missing");
        roundsStaffed += 1;
        if (j.colluderSeats != 0) roundsWithColluder += 1;
        if (uint256(j.colluderSeats) * 2 > j.seats) {
            roundsColluderMajority += 1;
            if (!j.tainted) {
                j.tainted = true;
                taintedJobs += 1;
            }
        }
        _hit("staffed");
    }

    function _onReopened(uint256 id) internal {
        GJob storage j = _jobs[id];
        _settleTally(id);
        if (j.reopenCount != 0) _jobViolate(5, id, "reopened twice");
        _edge(id, OPEN);
        j.reopenCount += 1;
        address[] storage list = _seats[id];
        for (uint256 i; i < list.length; ++i) {
            Part storage pt = _parts[id][list[i]];
            if (pt.active) _jobViolate(4, id, "collateral still locked when the job reopened");
            if (pt.committed) _jobViolate(5, id, "reopened although someone committed");
            noShowExcluded[id][list[i]] = true;
            delete _parts[id][list[i]];
        }
        delete _seats[id];
        j.clearingPrice = 0;
        _hit("reopened");
    }

    /// @dev DESIGN 6 and the v2 slash split: a slash takes exactly the collateral this provider
    /// locked for this job, once. A no-show (never committed) compensates nobody: its reward share
    /// goes to the pool at once. A committed participant is slashed only by a verdict: the requester
    /// share only for an executor whose revealed digest lost, the reward share to the upheld, the
    /// rest burned. Invariant 11: never a provider that revealed the true digest.
    function _onSlashed(uint256 id, address p, uint256 amount) internal {
        GJob storage j = _jobs[id];
        Part storage pt = _parts[id][p];
        if (!pt.assigned || !pt.active) _jobViolate(6, id, "slashed a provider without collateral in the job");
        if (amount != pt.collateral) _jobViolate(6, id, "slash differs from the seat's collateral");
        if (_regSlashAmount != amount || _regSlashJob != id || _regSlashProvider != p) {
            _jobViolate(6, id, "market and registry disagree on a slash");
        }
        _regSlashAmount = 0;
        if (pt.active) _unlock(p, pt.collateral);
        pt.active = false;
        pt.slashed = true;
        ghostSlashed += amount;
        j.slashed += amount;
        Tally storage t = _tally[id];
        _tallyDirty[id] = true;
        uint256 reward = amount * _params().rewardShareBps / BPS;
        if (!pt.committed) {
            t.noShowReward += reward;
            t.burnExpected += amount - reward;
            _mPool += reward;
            j.poolNet += int256(reward);
            ghostPoolAttributed += int256(reward);
            _hit("slashedNoShow");
        } else {
            if (pt.revealed && pt.index >= j.replicas && j.round < 2) {
                _jobViolate(6, id, "a verifier was slashed for what it revealed in round 1");
            }
            uint256 comp = pt.revealed && pt.index < j.replicas ? amount * _params().requesterShareBps / BPS : 0;
            t.comp += comp;
            t.reward += reward;
            t.burnExpected += amount - comp - reward;
            _hit(comp != 0 ? bytes32("slashedLoserCompensated") : bytes32("slashedByVerdict"));
            if (pt.revealed && pt.digest == trueDigest(id)) {
                if (j.tainted) {
                    excusedHonestSlashes += 1;
                } else {
                    honestSlashes += 1;
                    _jobViolate(11, id, string.concat("slashed ", vm.toString(p), " who revealed the true digest"));
                }
            } else if (pt.revealed) {
                liarsSlashed += 1;
            }
        }
        _hit("slashed");
        if (registry.provider(p).unbondAt != 0) _hit("slashedWhileUnbonding");
    }

    /// @dev An executor handed its seat back: only an active executor seat that has not committed,
    /// while the job is Assigned; the fee is units x clearing price, taken from its collateral by a
    /// registry slash of exactly that amount and put into the audit pool whole (nobody is credited,
    /// nothing burned); the rest of the collateral is unlocked, and the provider may not be
    /// assigned to the job again.
    function _onReleased(uint256 id, address p, uint256 fee) internal {
        GJob storage j = _jobs[id];
        Part storage pt = _parts[id][p];
        if (!pt.assigned || !pt.active || pt.committed || pt.index >= j.replicas || j.lastState != ASSIGNED) {
            _jobViolate(5, id, "a seat was released that may not be");
        }
        if (fee != uint256(j.units) * j.clearingPrice) _jobViolate(6, id, "release fee is not units x clearing price");
        if (_regSlashAmount != fee || _regSlashJob != id || _regSlashProvider != p) {
            _jobViolate(6, id, "market and registry disagree on a release fee");
        }
        _regSlashAmount = 0;
        if (pt.active) _unlock(p, pt.collateral);
        pt.active = false;
        noShowExcluded[id][p] = true;
        ghostSlashed += fee;
        j.slashed += fee;
        _tallyDirty[id] = true;
        _tally[id].releaseFee += fee;
        _mPool += fee;
        j.poolNet += int256(fee);
        ghostPoolAttributed += int256(fee);
        _hit("released");
    }

    /// @dev The close model: who is upheld, what each is paid (executors units x clearing price;
    /// verifiers the same from the bond, then the pool, capped by the pool), the reward split, the
    /// fee (floored) and premium on executor pay, the refund; compared with JobClosed, the Credited
    /// events per account and (at the end of the call) the pool and fee counters.
    struct Model {
        uint256 pay;
        uint256 upheld; // bit i: seat i upheld
        uint256 execUp;
        uint256 verUp;
        uint256 bond;
        uint256 fromBond;
        uint256 fromPool;
        uint256 vshare;
        uint256 dust;
        uint256 rshare;
        uint256 given;
        uint256 fee;
        uint256 premium;
        uint256 refund;
    }

    function _onClosed(uint256 id, bytes memory data) internal {
        GJob storage j = _jobs[id];
        GClose memory c;
        uint8 st;
        (st, c.digest, c.paid, c.refunded, c.fees, c.burned) =
            abi.decode(data, (uint8, bytes32, uint256, uint256, uint256, uint256));
        if (j.closedCount != 0) _jobViolate(5, id, "closed twice");
        j.closedCount += 1;
        j.closedState = st;
        j.closedDigest = c.digest;
        _edge(id, st);
        Model memory m = _closeModel(id, st, c);
        _checkClose(id, c);
        _checkCredits(id, j, m, _tally[id].comp);
        // per-job conservation over the whole life: nothing is held for a terminal job
        if (int256(j.escrow + j.bondPosted + j.slashed) != int256(j.credited + j.burned) + j.poolNet) {
            _jobViolate(3, id, "escrow + bond + slashed != credited + burned + pool");
        }
        _releaseSeats(id);
        _bondAtClose[id] = m.bond;
        if (address(oracle) != address(0)) _closedNow.push(id);
        ghostBondHeld[id] = 0;
        ghostBondsHeld -= m.bond;
        ghostOpenEscrow -= j.escrow;
        _removeLive(id);
        _resetTally(id);
        if (m.fromPool != 0) _hit("poolPaidVerifiers");
        if (m.fromBond != 0) _hit("bondPaidVerifiers");
        if (m.given != 0) _hit("rewardShared");
        if (st == SETTLED) _hit(c.digest == 0 ? bytes32("settledUnverified") : bytes32("settledByVerdict"));
        else if (st == REFUNDED) _hit(c.digest == 0 ? bytes32("refundedNoVerdict") : bytes32("refundedExecutorLost"));
        else _hit("expired");
    }

    /// @dev Runs the v2 model of the closing step: fills the model figures of `c` and
    /// moves the modelled pool and fee counters.
    function _closeModel(uint256 id, uint8 st, GClose memory c) internal returns (Model memory m) {
        GJob storage j = _jobs[id];
        IJobMarket.Job memory r = market.job(id);
        m.pay = uint256(r.units) * r.clearingPrice;
        _judge(id, j, r, st, c.digest, m);
        Tally storage t = _tally[id];
        // verifier pay: the bond first, then the pool (capped), split evenly, dust to the pool
        m.bond = ghostBondHeld[id];
        uint256 wanted = m.verUp * m.pay;
        m.fromBond = m.bond < wanted ? m.bond : wanted;
        m.fromPool = wanted - m.fromBond < _mPool ? wanted - m.fromBond : _mPool;
        if (m.verUp != 0) {
            m.vshare = (m.fromBond + m.fromPool) / m.verUp;
            m.dust = m.fromBond + m.fromPool - m.vshare * m.verUp;
        }
        _mPool = _mPool - m.fromPool + m.dust;
        // verdict slashes' reward share: split among the upheld, the rest to the pool
        if (m.execUp + m.verUp != 0) {
            m.rshare = t.reward / (m.execUp + m.verUp);
            m.given = m.rshare * (m.execUp + m.verUp);
        }
        _mPool += t.reward - m.given;
        // fee (floored) and premium on executor pay; the audit share of the fee and the premium to the pool
        uint256 executorPay = m.execUp * m.pay;
        m.fee = _feeOf(executorPay, r.feeBps, r.minFee);
        m.premium = executorPay * r.premiumBps / BPS;
        uint256 auditShare = m.fee * _params().auditShareBps / BPS;
        _mPool += auditShare + m.premium;
        _mFees += m.fee - auditShare;
        if (executorPay + m.fee + m.premium > j.escrow) {
            _jobViolate(10, id, "pay + fee + premium above the escrow");
        } else {
            m.refund = j.escrow - executorPay - m.fee - m.premium + (m.bond - m.fromBond);
        }
        c.mPaid = executorPay + m.vshare * m.verUp + m.given;
        c.mRefunded = t.comp + m.refund;
        c.mFees = t.noShowReward + t.releaseFee + (t.reward - m.given) + (m.fromBond != 0 ? m.dust : 0) + m.fee + m.premium;
        c.mBurned = t.burnExpected;
        c.credited = t.credited;
        c.burnedSeen = t.burned;
        int256 poolDelta = int256(t.reward - m.given + m.dust + m.fee + m.premium) - int256(m.fromPool);
        j.poolNet += poolDelta;
        ghostPoolAttributed += poolDelta;
    }

    function _checkClose(uint256 id, GClose memory c) internal {
        if (c.paid != c.mPaid || c.refunded != c.mRefunded || c.fees != c.mFees || c.burned != c.mBurned) {
            _jobViolate(3, id, "JobClosed figures differ from the v2 model");
        }
        if (c.paid + c.refunded != c.credited || c.burned != c.burnedSeen) {
            _jobViolate(3, id, "JobClosed figures differ from what the close moved");
        }
    }

    /// @dev A closed job holds no collateral: every seat still locked is released.
    function _releaseSeats(uint256 id) internal {
        address[] storage list = _seats[id];
        for (uint256 i; i < list.length; ++i) {
            Part storage pt = _parts[id][list[i]];
            if (pt.active) {
                pt.active = false;
                _unlock(list[i], pt.collateral);
            }
        }
    }

    /// @dev Who the close upholds, and whether the verdict is one the rules allow. Settled with no
    /// digest: the unverified executor. Another digest: every seat still locked must have revealed
    /// it (the rest were slashed first); round 0 needs every revealed executor to agree, an audit
    /// round a strict majority of its seats. Refunded with no digest: nobody is paid.
    function _judge(uint256 id, GJob storage j, IJobMarket.Job memory r, uint8 st, bytes32 digest, Model memory m)
        internal
    {
        address[] storage list = _seats[id];
        bool unverified = st == SETTLED && digest == 0;
        uint256 votes;
        bool dissent;
        for (uint256 i; i < list.length; ++i) {
            Part storage pt = _parts[id][list[i]];
            bool voter = j.round == 0 ? i < j.replicas : i >= r.verifiersFrom && i < uint256(r.verifiersFrom) + r.seats;
            if (digest != 0 && pt.revealed && pt.digest == digest && voter) ++votes;
            if (digest != 0 && i < j.replicas && pt.revealed && pt.digest != digest) dissent = true;
            if (pt.active) _judgeSeat(id, j, i, pt, unverified, digest, m);
        }
        if (unverified && (m.upheld != 1 || j.replicas != 1 || j.round != 0)) {
            _jobViolate(5, id, "settled unverified other than a lone executor");
        }
        if (digest != 0) {
            ++verdicts;
            if (j.round == 0 && dissent) _jobViolate(5, id, "round-0 verdict without agreement");
            if (j.round == 0 && votes == 0) _jobViolate(5, id, "verdict nobody revealed");
            if (j.round != 0 && votes * 2 <= j.seats) _jobViolate(5, id, "audit verdict without a seat majority");
            if (j.round == 1 && votes < j.seats && dissent) {
                _jobViolate(5, id, "split round-1 verdict against an executor that revealed");
            }
        } else if (st == REFUNDED && j.round == 0) {
            for (uint256 i; i < list.length; ++i) {
                if (_parts[id][list[i]].revealed) _jobViolate(5, id, "refunded with revealed executors and no audit");
            }
        }
        if (st == SETTLED && m.execUp == 0) _jobViolate(5, id, "settled with no executor upheld");
        if (st == REFUNDED && m.execUp != 0) _jobViolate(5, id, "refunded with an executor upheld");
    }

    /// @dev One seat still locked at the close: upheld (revealed the verdict, or the unverified
    /// executor), spared (a verifier outvoted in round 1: released unpaid), or released with no
    /// verdict; any other seat should have been slashed before the close.
    function _judgeSeat(
        uint256 id,
        GJob storage j,
        uint256 i,
        Part storage pt,
        bool unverified,
        bytes32 digest,
        Model memory m
    ) internal {
        bool up = unverified ? i == 0 : digest != 0 && pt.revealed && pt.digest == digest;
        if (!up) {
            bool spared = pt.revealed && i >= j.replicas && j.round < 2;
            if (digest != 0 && !spared) _jobViolate(6, id, "a seat that did not reveal the verdict kept its collateral");
            if (digest != 0 && spared) _hit("outvotedVerifierSpared");
            return;
        }
        m.upheld |= 1 << i;
        if (i < j.replicas) ++m.execUp;
        else ++m.verUp;
        if (pt.revealed && pt.digest == trueDigest(id)) ++truthUpheld;
    }

    /// @dev Each account's credits in the closing step: the requester gets its refund and the
    /// compensation, each upheld executor its pay and reward share, each upheld verifier its share of
    /// the verifier budget and its reward share, nobody else anything.
    function _checkCredits(uint256 id, GJob storage j, Model memory m, uint256 comp) internal {
        if (_itemCredit[id][j.requester] != comp + m.refund) _jobViolate(10, id, "requester credit != refund + compensation");
        uint256 expectedTotal = comp + m.refund;
        address[] storage list = _seats[id];
        for (uint256 i; i < list.length; ++i) {
            uint256 expected;
            if (m.upheld & (1 << i) != 0) expected = (i < j.replicas ? m.pay : m.vshare) + m.rshare;
            if (_itemCredit[id][list[i]] != expected) _jobViolate(10, id, "a seat was credited other than the model");
            expectedTotal += expected;
        }
        if (_tally[id].credited != expectedTotal) _jobViolate(10, id, "credits to accounts outside the job");
    }

    /// @dev Ghost arithmetic never reverts (a revert would silently undo the handler's call): an
    /// inconsistency is a violation instead.
    function _unlock(address p, uint256 amount) internal {
        _touchProvider(p);
        if (amount > ghostLocked[p]) {
            _violate(4, "released more than the ghost lock");
            ghostLockedTotal -= ghostLocked[p];
            ghostLocked[p] = 0;
        } else {
            ghostLocked[p] -= amount;
            ghostLockedTotal -= amount;
        }
    }

    function _touchProvider(address p) internal {
        uint256 i1 = _index1[p];
        if (i1 != 0) _touchedProviders |= 1 << (i1 - 1);
    }

    /// @dev The checks of DESIGN 2, 4 and 7 for every provider the call touched (its storage is
    /// warm): stake and locked as booked, locked <= stake, a pending unbond covered by free stake,
    /// draw weights equal to the stake while drawable; then each profile's total weight.
    function _checkProviders() internal {
        uint256 mask = _touchedProviders;
        if (mask == 0) return;
        _touchedProviders = 0;
        for (uint256 i; mask != 0; (++i, mask >>= 1)) {
            if (mask & 1 == 0) continue;
            address p = _providers[i];
            IProviderRegistry.Provider memory r = registry.provider(p);
            if (r.stake != ghostStake[p]) _violate(2, "stake != staked - slashed - unbonded");
            if (r.locked != ghostLocked[p]) _violate(4, "locked != booked locks - releases - slashes");
            if (r.locked > r.stake) _violate(4, "locked above stake");
            if (r.unbondAt == 0 ? r.unbonding != 0 : uint256(r.unbonding) + r.locked > r.stake) {
                _violate(7, "a pending unbond is not covered by free stake");
            }
            if ((r.unbondAt != 0) != ((unbondingMask >> i) & 1 == 1)) _violate(7, "unbond request not as its events say");
            for (uint8 prof; prof < 2; ++prof) {
                bool drawable = r.registered && r.unbondAt == 0 && (r.profileMask >> prof) & 1 != 0;
                uint256 expected = drawable ? r.stake : 0;
                if (registry.drawWeight(prof, p) != expected) _violate(2, "draw weight != stake while drawable");
                ghostWeight[prof] = ghostWeight[prof] + expected - _weightSeen[p][prof];
                _weightSeen[p][prof] = expected;
            }
        }
        for (uint8 prof; prof < 2; ++prof) {
            if (registry.profileStake(prof) != ghostWeight[prof]) _violate(2, "profileStake != sum of draw weights");
        }
    }

    function _removeLive(uint256 id) internal {
        uint256 k = _liveIndex[id];
        if (k == 0) return _jobViolate(5, id, "closed a job that was not live");
        uint256 last = _live[_live.length - 1];
        _live[k - 1] = last;
        _liveIndex[last] = k;
        _live.pop();
        delete _liveIndex[id];
    }

    function _onRegistryLog(Vm.Log memory l) internal {
        bytes32 t = l.topics[0];
        if (t != IProviderRegistry.Slashed.selector && l.topics.length > 1) {
            _touchProvider(address(uint160(uint256(l.topics[1]))));
        }
        if (t == IProviderRegistry.Staked.selector) {
            (uint256 amount,) = abi.decode(l.data, (uint256, uint256));
            ghostStake[address(uint160(uint256(l.topics[1])))] += amount;
            ghostTotalStake += amount;
        } else if (t == IProviderRegistry.Slashed.selector) {
            address p = address(uint160(uint256(l.topics[2])));
            uint256 amount = abi.decode(l.data, (uint256));
            _touchProvider(p);
            if (amount > ghostStake[p]) {
                _violate(6, "slash above the provider's stake");
            } else {
                ghostStake[p] -= amount;
                ghostTotalStake -= amount;
            }
            (_regSlashJob, _regSlashProvider, _regSlashAmount) = (uint256(l.topics[1]), p, amount);
        } else if (t == IProviderRegistry.UnbondRequested.selector) {
            unbondingMask |= 1 << (_index1[address(uint160(uint256(l.topics[1])))] - 1);
        } else if (t == IProviderRegistry.UnbondCancelled.selector) {
            unbondingMask &= ~(1 << (_index1[address(uint160(uint256(l.topics[1])))] - 1));
        } else if (t == IProviderRegistry.Unbonded.selector) {
            address p = address(uint160(uint256(l.topics[1])));
            unbondingMask &= ~(1 << (_index1[p] - 1));
            uint256 amount = abi.decode(l.data, (uint256));
            if (amount > ghostStake[p]) {
                _violate(7, "unbonded more than the stake");
            } else {
                ghostStake[p] -= amount;
                ghostTotalStake -= amount;
            }
            ghostUnbonded += amount;
        }
    }

    /// @dev Burns happen only in a slash, right after the job's ProviderSlashed event.
    function _onTokenLog(Vm.Log memory l) internal {
        if (l.topics[0] != IERC20.Transfer.selector || l.topics.length < 3) return;
        if (address(uint160(uint256(l.topics[2]))) != address(0)) return;
        uint256 amount = abi.decode(l.data, (uint256));
        ghostBurned += amount;
        if (address(uint160(uint256(l.topics[1]))) != address(market) || _lastJob == 0) {
            _violate(10, "tokens burned outside a job's slash");
            return;
        }
        _tallyDirty[_lastJob] = true;
        _tally[_lastJob].burned += amount;
        _jobs[_lastJob].burned += amount;
    }

    // ================================================================ transitions

    /// @dev DESIGN 5: every state change, as the events report it, is an edge of the v2 graph.
    function _edge(uint256 id, uint8 to) internal {
        GJob storage j = _jobs[id];
        uint8 from = j.lastState;
        if (!_allowedEdge(from, to, j)) {
            _jobViolate(
                5, id, string.concat("illegal transition ", vm.toString(uint256(from)), " -> ", vm.toString(uint256(to)))
            );
        }
        _hit(bytes32(uint256(keccak256(abi.encode("edge", from, to)))));
        j.lastState = to;
    }

    function _allowedEdge(uint8 a, uint8 b, GJob storage j) internal view returns (bool) {
        if (a == OPEN) return b == ASSIGNED || b == EXPIRED;
        if (a == ASSIGNED) {
            return (b == COMMITTED && j.replicas == 1) || b == REVEALING || (b == OPEN && j.reopenCount == 0)
                || (b == EXPIRED && j.reopenCount == 1);
        }
        if (a == COMMITTED) return b == AUDITING || b == SETTLED;
        if (a == AUDITING) return b == REVEALING || b == REFUNDED;
        if (a == REVEALING) return b == SETTLED || b == REFUNDED || (b == AUDITING && j.round < 2);
        return false; // None is left only by creation; terminal states are final
    }

    function _feeOf(uint256 amount, uint256 feeBps, uint256 minFee) internal pure returns (uint256) {
        if (amount == 0) return 0;
        uint256 fee = amount * feeBps / BPS;
        return fee < minFee ? minFee : fee;
    }
}
