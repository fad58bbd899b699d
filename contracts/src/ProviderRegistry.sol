// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";
import {SortitionTree} from "./libraries/SortitionTree.sol";

/// @title ProviderRegistry
/// @notice Provider registration, stake, delayed unbonding, collateral locks and slashing.
contract ProviderRegistry is IProviderRegistry, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;
    using SortitionTree for SortitionTree.Tree;

    /// @dev Hot fields first: `stake`, `locked` and the counters share one slot, so a lock,
    /// release or slash is a single storage write; everything an assignment checks is in the
    /// second slot, which is why profiles are capped at 64.
    struct ProviderData {
        uint96 stake;
        uint96 locked;
        uint32 jobsDone;
        uint32 jobsSlashed;
        uint80 pricePerUnit;
        uint16 vramGiB;
        uint40 unbondAt;
        bool registered;
        uint64 profileMask;
        uint32 minExecWindow;
        uint96 unbonding;
        uint32 maxUnits;
        bytes32 gpuModel;
        string endpoint;
    }

    uint40 internal constant MAX_UNBONDING_PERIOD = 365 days;
    uint16 internal constant MAX_PROFILES = 64;

    IERC20 private immutable _token;
    address private _market;
    uint40 private _unbondingPeriod;
    uint16 private _profileCount;
    uint256 private _totalStaked;

    mapping(address account => ProviderData) private _providers;
    mapping(uint8 id => bytes32 descriptor) private _profiles;
    mapping(bytes32 descriptor => bool) private _knownProfiles;
    /// @dev One sum tree of draw weights per profile: verifiers are drawn from it, never named.
    mapping(uint8 id => SortitionTree.Tree) private _trees;

    modifier onlyMarket() {
        if (msg.sender != _market) revert ProviderRegistryUnauthorizedMarket(msg.sender);
        _;
    }

    constructor(IERC20 token_, address initialOwner, uint40 unbondingPeriod_) Ownable(initialOwner) {
        if (unbondingPeriod_ == 0 || unbondingPeriod_ > MAX_UNBONDING_PERIOD) {
            revert ProviderRegistryInvalidUnbondingPeriod(unbondingPeriod_, 1, MAX_UNBONDING_PERIOD);
        }
        _token = token_;
        _unbondingPeriod = unbondingPeriod_;
    }

    // ---------------------------------------------------------------- provider actions

    /// @inheritdoc IProviderRegistry
    function register(Terms calldata terms) external {
        ProviderData storage p = _providers[msg.sender];
        if (p.registered) revert ProviderRegistryAlreadyRegistered(msg.sender);
        p.registered = true;
        _setTerms(p, terms);
        emit ProviderRegistered(msg.sender, terms);
    }

    /// @inheritdoc IProviderRegistry
    function updateTerms(Terms calldata terms) external {
        ProviderData storage p = _registered(msg.sender);
        uint64 oldMask = p.profileMask;
        _setTerms(p, terms);
        _reweigh(msg.sender, p, oldMask);
        emit TermsUpdated(msg.sender, terms);
    }

    /// @inheritdoc IProviderRegistry
    function stake(uint96 amount) external nonReentrant {
        if (amount == 0) revert ProviderRegistryZeroAmount();
        ProviderData storage p = _registered(msg.sender);
        uint96 newStake = p.stake + amount;
        p.stake = newStake;
        _totalStaked += amount;
        _reweigh(msg.sender, p, p.profileMask);
        emit Staked(msg.sender, amount, newStake);
        _token.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @inheritdoc IProviderRegistry
    function requestUnbond(uint96 amount) external {
        if (amount == 0) revert ProviderRegistryZeroAmount();
        ProviderData storage p = _registered(msg.sender);
        if (p.unbondAt != 0) revert ProviderRegistryUnbondPending(msg.sender, p.unbondAt);
        uint256 free = p.stake - p.locked;
        if (amount > free) revert ProviderRegistryInsufficientStake(msg.sender, free, amount);
        uint40 unbondAt = uint40(block.timestamp) + _unbondingPeriod;
        p.unbonding = amount;
        p.unbondAt = unbondAt;
        _reweigh(msg.sender, p, p.profileMask);
        emit UnbondRequested(msg.sender, amount, unbondAt);
    }

    /// @inheritdoc IProviderRegistry
    function cancelUnbond() external {
        ProviderData storage p = _registered(msg.sender);
        if (p.unbondAt == 0) revert ProviderRegistryNoUnbondPending(msg.sender);
        uint96 amount = p.unbonding;
        p.unbonding = 0;
        p.unbondAt = 0;
        _reweigh(msg.sender, p, p.profileMask);
        emit UnbondCancelled(msg.sender, amount);
    }

    /// @inheritdoc IProviderRegistry
    function withdrawUnbonded() external nonReentrant returns (uint256 amount) {
        ProviderData storage p = _registered(msg.sender);
        uint40 unbondAt = p.unbondAt;
        if (unbondAt == 0) revert ProviderRegistryNoUnbondPending(msg.sender);
        if (block.timestamp < unbondAt) {
            revert ProviderRegistryUnbondLocked(msg.sender, unbondAt, block.timestamp);
        }
        // Slashes during the delay come out of the stake first; locked collateral never leaves.
        uint96 free = p.stake - p.locked;
        uint96 payout = p.unbonding < free ? p.unbonding : free;
        p.stake -= payout;
        p.unbonding = 0;
        p.unbondAt = 0;
        _totalStaked -= payout;
        _reweigh(msg.sender, p, p.profileMask);
        emit Unbonded(msg.sender, payout);
        _token.safeTransfer(msg.sender, payout);
        return payout;
    }

    // ---------------------------------------------------------------- market hooks

    /// @inheritdoc IProviderRegistry
    function lockExecutors(uint256, address[] calldata providers, Requirements calldata req)
        external
        onlyMarket
        returns (uint80 clearingPrice, uint96 collateral)
    {
        uint256 n = providers.length;
        for (uint256 i; i < n; ++i) {
            uint80 price = _checkExecutor(providers[i], req);
            if (price > clearingPrice) clearingPrice = price;
        }
        collateral = uint96(uint256(req.collateralMultiple) * req.units * clearingPrice);
        for (uint256 i; i < n; ++i) {
            address account = providers[i];
            ProviderData storage p = _providers[account];
            uint96 locked = p.locked;
            uint256 free = p.stake - locked;
            if (collateral > free) revert ProviderRegistryInsufficientStake(account, free, collateral);
            p.locked = locked + collateral;
        }
    }

    /// @inheritdoc IProviderRegistry
    function drawVerifiers(uint256, Draw calldata d, address[] calldata excluded)
        external
        onlyMarket
        returns (address[] memory drawn, uint256 draws)
    {
        SortitionTree.Tree storage tree = _trees[d.profile];
        // Weights as they stood when this epoch began: stake changed after a seed became known
        // cannot move the draw (the market re-seeds a round whose seed is from an earlier epoch).
        uint256 weight = tree.totalAtEpochStart();
        uint256 count = d.count;
        uint96 collateral = d.collateral;
        drawn = new address[](count);
        uint256 filled;
        if (weight == 0) {
            assembly ("memory-safe") {
                mstore(drawn, 0)
            }
            return (drawn, 0);
        }
        while (filled < count && draws < d.maxDraws) {
            address account = tree.draw(uint256(keccak256(abi.encode(d.seed, d.firstDraw + draws))) % weight);
            ++draws;
            // A seat is never given to someone excluded, drawn already, or who left the pool this
            // epoch (zero owner), and those checks only ever remove a candidate: the draw sequence
            // is fixed by the seed, so nobody can add themselves by changing their own state.
            if (account == address(0) || _listed(account, excluded, excluded.length) || _inMemory(account, drawn, filled)) {
                continue;
            }
            ProviderData storage p = _providers[account];
            uint96 locked = p.locked;
            if (p.unbondAt != 0 || (p.profileMask >> d.profile) & 1 == 0) continue;
            if (uint256(p.stake) - locked - p.unbonding < collateral) continue;
            p.locked = locked + collateral;
            drawn[filled++] = account;
        }
        assembly ("memory-safe") {
            mstore(drawn, filled)
        }
    }

    /// @inheritdoc IProviderRegistry
    function releaseCollateral(uint256, address account, uint96 amount, bool completed) external onlyMarket {
        ProviderData storage p = _providers[account];
        p.locked -= amount;
        if (completed) p.jobsDone += 1;
    }

    /// @inheritdoc IProviderRegistry
    function slash(uint256 jobId, address account, uint96 amount) external onlyMarket nonReentrant {
        ProviderData storage p = _providers[account];
        p.locked -= amount;
        uint96 newStake = p.stake - amount;
        p.stake = newStake;
        p.jobsSlashed += 1;
        if (p.unbonding > newStake) p.unbonding = newStake;
        _totalStaked -= amount;
        _reweigh(account, p, p.profileMask);
        emit Slashed(jobId, account, amount);
        _token.safeTransfer(msg.sender, amount);
    }

    // ---------------------------------------------------------------- owner

    /// @inheritdoc IProviderRegistry
    function setMarket(address market_) external onlyOwner {
        if (_market != address(0) || market_ == address(0)) revert ProviderRegistryMarketAlreadySet(_market);
        _market = market_;
        _checkUnbondingPeriod(_unbondingPeriod);
        emit MarketSet(market_);
    }

    /// @inheritdoc IProviderRegistry
    function addProfile(bytes32 descriptor) external onlyOwner returns (uint8 id) {
        uint16 count = _profileCount;
        if (descriptor == bytes32(0) || count == MAX_PROFILES || _knownProfiles[descriptor]) {
            revert ProviderRegistryInvalidProfile(descriptor);
        }
        id = uint8(count);
        _profiles[id] = descriptor;
        _knownProfiles[descriptor] = true;
        _profileCount = count + 1;
        emit ProfileAdded(id, descriptor);
    }

    /// @inheritdoc IProviderRegistry
    function setUnbondingPeriod(uint40 period) external onlyOwner {
        _checkUnbondingPeriod(period);
        _unbondingPeriod = period;
        emit UnbondingPeriodSet(period);
    }

    // ---------------------------------------------------------------- views

    /// @inheritdoc IProviderRegistry
    function token() external view returns (address) {
        return address(_token);
    }

    /// @inheritdoc IProviderRegistry
    function market() external view returns (address) {
        return _market;
    }

    /// @inheritdoc IProviderRegistry
    function provider(address account) external view returns (Provider memory) {
        ProviderData storage p = _providers[account];
        return Provider({
            stake: p.stake,
            locked: p.locked,
            jobsDone: p.jobsDone,
            jobsSlashed: p.jobsSlashed,
            pricePerUnit: p.pricePerUnit,
            vramGiB: p.vramGiB,
            unbondAt: p.unbondAt,
            registered: p.registered,
            unbonding: p.unbonding,
            profileMask: p.profileMask,
            gpuModel: p.gpuModel,
            endpoint: p.endpoint,
            minExecWindow: p.minExecWindow,
            maxUnits: p.maxUnits
        });
    }

    /// @inheritdoc IProviderRegistry
    function freeStake(address account) external view returns (uint256) {
        ProviderData storage p = _providers[account];
        return p.stake - p.locked - p.unbonding;
    }

    /// @inheritdoc IProviderRegistry
    function totalStaked() external view returns (uint256) {
        return _totalStaked;
    }

    /// @inheritdoc IProviderRegistry
    function profileStake(uint8 id) external view returns (uint256) {
        return _trees[id].total();
    }

    /// @inheritdoc IProviderRegistry
    function drawWeight(uint8 id, address account) external view returns (uint256) {
        return _trees[id].weightOf(account);
    }

    /// @inheritdoc IProviderRegistry
    function profile(uint8 id) external view returns (bytes32) {
        return _profiles[id];
    }

    /// @inheritdoc IProviderRegistry
    function profileCount() external view returns (uint256) {
        return _profileCount;
    }

    /// @inheritdoc IProviderRegistry
    function unbondingPeriod() external view returns (uint40) {
        return _unbondingPeriod;
    }

    // ---------------------------------------------------------------- internal

    function _registered(address account) private view returns (ProviderData storage p) {
        p = _providers[account];
        if (!p.registered) revert ProviderRegistryNotRegistered(account);
    }

    function _setTerms(ProviderData storage p, Terms calldata terms) private {
        if (
            terms.pricePerUnit == 0 || terms.profileMask == 0 || (terms.profileMask >> _profileCount) != 0
                || terms.maxUnits == 0
        ) {
            revert ProviderRegistryInvalidTerms(terms.profileMask, terms.pricePerUnit);
        }
        p.minExecWindow = terms.minExecWindow;
        p.maxUnits = terms.maxUnits;
        p.pricePerUnit = terms.pricePerUnit;
        p.vramGiB = terms.vramGiB;
        p.profileMask = uint64(terms.profileMask);
        p.gpuModel = terms.gpuModel;
        p.endpoint = terms.endpoint;
    }

    function _checkExecutor(address account, Requirements calldata req) private view returns (uint80 price) {
        ProviderData storage p = _providers[account];
        if (!p.registered) revert ProviderRegistryNotRegistered(account);
        if (p.unbondAt != 0) revert ProviderRegistryProviderUnbonding(account);
        if ((p.profileMask >> req.profile) & 1 == 0) revert ProviderRegistryProfileUnsupported(account, req.profile);
        if (p.vramGiB < req.minVramGiB) revert ProviderRegistryInsufficientVram(account, p.vramGiB, req.minVramGiB);
        if (req.execWindow < p.minExecWindow) {
            revert ProviderRegistryExecWindowTooShort(account, req.execWindow, p.minExecWindow);
        }
        if (req.units > p.maxUnits) revert ProviderRegistryTooManyUnits(account, req.units, p.maxUnits);
        price = p.pricePerUnit;
        if (price > req.maxPricePerUnit) revert ProviderRegistryPriceTooHigh(account, price, req.maxPricePerUnit);
    }

    /// @dev Brings `account`'s leaves in line with its stake and profiles: weight is the stake while
    /// registered and not unbonding, in every profile of the mask; `oldMask` names the leaves it had.
    function _reweigh(address account, ProviderData storage p, uint64 oldMask) private {
        uint64 mask = p.profileMask;
        uint256 weight = p.unbondAt == 0 ? p.stake : 0;
        uint64 all = oldMask | mask;
        for (uint8 id; all != 0; ++id) {
            if (all & 1 != 0) _trees[id].set(account, (mask >> id) & 1 != 0 ? weight : 0);
            all >>= 1;
        }
    }

    function _listed(address account, address[] calldata list, uint256 n) private pure returns (bool) {
        for (uint256 i; i < n; ++i) {
            if (list[i] == account) return true;
        }
        return false;
    }

    function _inMemory(address account, address[] memory list, uint256 n) private pure returns (bool) {
        for (uint256 i; i < n; ++i) {
            if (list[i] == account) return true;
        }
        return false;
    }

    function _checkUnbondingPeriod(uint40 period) private view {
        uint256 minimum = _market == address(0) ? 1 : 2 * IJobMarket(_market).maxJobLifetime();
        if (period < minimum || period > MAX_UNBONDING_PERIOD) {
            revert ProviderRegistryInvalidUnbondingPeriod(period, minimum, MAX_UNBONDING_PERIOD);
        }
    }
}
