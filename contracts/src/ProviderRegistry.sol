// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";

import {IProviderRegistry} from "./interfaces/IProviderRegistry.sol";
import {IJobMarket} from "./interfaces/IJobMarket.sol";

/// @title ProviderRegistry
/// @notice Provider registration, stake, delayed unbonding, collateral locks and slashing.
contract ProviderRegistry is IProviderRegistry, Ownable, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

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
        uint96 unbonding;
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
        _setTerms(p, terms);
        emit TermsUpdated(msg.sender, terms);
    }

    /// @inheritdoc IProviderRegistry
    function stake(uint96 amount) external nonReentrant {
        if (amount == 0) revert ProviderRegistryZeroAmount();
        ProviderData storage p = _registered(msg.sender);
        uint96 newStake = p.stake + amount;
        p.stake = newStake;
        _totalStaked += amount;
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
        emit UnbondRequested(msg.sender, amount, unbondAt);
    }

    /// @inheritdoc IProviderRegistry
    function cancelUnbond() external {
        ProviderData storage p = _registered(msg.sender);
        if (p.unbondAt == 0) revert ProviderRegistryNoUnbondPending(msg.sender);
        uint96 amount = p.unbonding;
        p.unbonding = 0;
        p.unbondAt = 0;
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
        emit Unbonded(msg.sender, payout);
        _token.safeTransfer(msg.sender, payout);
        return payout;
    }

    // ---------------------------------------------------------------- market hooks

    /// @inheritdoc IProviderRegistry
    function lockCollateral(
        uint256,
        address account,
        uint96 amount,
        uint8 profileId,
        uint16 minVramGiB,
        uint80 maxPricePerUnit
    ) external onlyMarket returns (uint80 pricePerUnit) {
        ProviderData storage p = _providers[account];
        if (!p.registered) revert ProviderRegistryNotRegistered(account);
        if (p.unbondAt != 0) revert ProviderRegistryProviderUnbonding(account);
        if ((p.profileMask >> profileId) & 1 == 0) revert ProviderRegistryProfileUnsupported(account, profileId);
        if (p.vramGiB < minVramGiB) revert ProviderRegistryInsufficientVram(account, p.vramGiB, minVramGiB);
        pricePerUnit = p.pricePerUnit;
        if (pricePerUnit > maxPricePerUnit) {
            revert ProviderRegistryPriceTooHigh(account, pricePerUnit, maxPricePerUnit);
        }
        uint96 locked = p.locked;
        uint256 free = p.stake - locked;
        if (amount > free) revert ProviderRegistryInsufficientStake(account, free, amount);
        p.locked = locked + amount;
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
            endpoint: p.endpoint
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
        if (terms.pricePerUnit == 0 || terms.profileMask == 0 || (terms.profileMask >> _profileCount) != 0) {
            revert ProviderRegistryInvalidTerms(terms.profileMask, terms.pricePerUnit);
        }
        p.pricePerUnit = terms.pricePerUnit;
        p.vramGiB = terms.vramGiB;
        p.profileMask = uint64(terms.profileMask);
        p.gpuModel = terms.gpuModel;
        p.endpoint = terms.endpoint;
    }

    function _checkUnbondingPeriod(uint40 period) private view {
        uint256 minimum = _market == address(0) ? 1 : 2 * IJobMarket(_market).maxJobLifetime();
        if (period < minimum || period > MAX_UNBONDING_PERIOD) {
            revert ProviderRegistryInvalidUnbondingPeriod(period, minimum, MAX_UNBONDING_PERIOD);
        }
    }
}
