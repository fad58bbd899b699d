// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title IProviderRegistry
/// @notice Compute providers: registration with hardware and determinism profiles, stake, delayed
/// unbonding that stays slashable, per-job collateral locks and on-chain reputation counters.
/// @dev Only the JobMarket set once by the owner may lock, release or slash collateral. Locks and
/// releases emit no event of their own: the JobMarket's assignment and close events carry them.
interface IProviderRegistry {
    /// @notice A provider's on-chain record.
    /// @param stake Tokens staked, including any amount waiting to unbond.
    /// @param locked Collateral locked by active jobs; never above `stake`.
    /// @param jobsDone Jobs (and audits) completed without a slash.
    /// @param jobsSlashed Times the provider was slashed.
    /// @param pricePerUnit Price the provider asks per job unit, in token base units.
    /// @param vramGiB GPU memory in GiB (0 for a CPU-only provider).
    /// @param unbondAt Time from which `unbonding` may be withdrawn; 0 when not unbonding.
    /// @param registered Whether the provider has registered.
    /// @param unbonding Stake requested for withdrawal; still slashable until withdrawn.
    /// @param profileMask Bit i set when the provider supports determinism profile id i.
    /// @param gpuModel GPU model name, right-padded ASCII ("cpu" for CPU-only providers).
    /// @param endpoint Where the provider can be reached (informational; not used on-chain).
    /// @param minExecWindow Shortest exec window the provider accepts as an executor, in seconds.
    /// @param maxUnits Most units the provider accepts in one job as an executor.
    struct Provider {
        uint96 stake;
        uint96 locked;
        uint32 jobsDone;
        uint32 jobsSlashed;
        uint80 pricePerUnit;
        uint16 vramGiB;
        uint40 unbondAt;
        bool registered;
        uint96 unbonding;
        uint256 profileMask;
        bytes32 gpuModel;
        string endpoint;
        uint32 minExecWindow;
        uint32 maxUnits;
    }

    /// @notice The provider's registration terms.
    /// @param minExecWindow Shortest exec window (seconds) the provider accepts: a job with a shorter
    /// window cannot be assigned to it, so a requester cannot turn an assignment into a no-show.
    /// @param maxUnits Most units per job the provider accepts as an executor (at least 1).
    struct Terms {
        uint256 profileMask;
        bytes32 gpuModel;
        uint16 vramGiB;
        uint80 pricePerUnit;
        string endpoint;
        uint32 minExecWindow;
        uint32 maxUnits;
    }

    /// @notice What a job asks of its executors, checked against each executor's terms.
    struct Requirements {
        uint8 profile;
        uint16 minVramGiB;
        uint80 maxPricePerUnit;
        uint32 units;
        uint32 execWindow;
        uint8 collateralMultiple;
    }

    /// @notice A verifier draw (see `drawVerifiers`).
    struct Draw {
        bytes32 seed;
        uint8 profile;
        uint8 count;
        uint16 firstDraw;
        uint16 maxDraws;
        uint96 collateral;
    }

    // ---------------------------------------------------------------- errors

    /// @notice The caller is not the JobMarket.
    error ProviderRegistryUnauthorizedMarket(address caller);
    /// @notice The JobMarket address was already set, or is zero.
    error ProviderRegistryMarketAlreadySet(address market);
    /// @notice `provider` registered already; use `updateTerms`.
    error ProviderRegistryAlreadyRegistered(address provider);
    /// @notice `provider` has not registered; call `register` first.
    error ProviderRegistryNotRegistered(address provider);
    /// @notice The terms are unusable: a zero price, an empty profile mask or a bit for an undefined profile.
    error ProviderRegistryInvalidTerms(uint256 profileMask, uint80 pricePerUnit);
    /// @notice The job's exec window `execWindow` is shorter than `provider`'s minimum `minExecWindow`.
    error ProviderRegistryExecWindowTooShort(address provider, uint32 execWindow, uint32 minExecWindow);
    /// @notice The job's `units` exceed `provider`'s maximum `maxUnits`.
    error ProviderRegistryTooManyUnits(address provider, uint32 units, uint32 maxUnits);
    /// @notice Amount must be non-zero.
    error ProviderRegistryZeroAmount();
    /// @notice Not enough unlocked, non-unbonding stake for the request.
    error ProviderRegistryInsufficientStake(address provider, uint256 available, uint256 requested);
    /// @notice An unbond request is already pending; cancel it or wait and withdraw it.
    error ProviderRegistryUnbondPending(address provider, uint40 unbondAt);
    /// @notice There is no pending unbond request.
    error ProviderRegistryNoUnbondPending(address provider);
    /// @notice The unbonding delay has not passed yet.
    error ProviderRegistryUnbondLocked(address provider, uint40 unbondAt, uint256 nowTs);
    /// @notice The provider is unbonding and cannot take new jobs.
    error ProviderRegistryProviderUnbonding(address provider);
    /// @notice The provider does not support determinism profile `profile`.
    error ProviderRegistryProfileUnsupported(address provider, uint8 profile);
    /// @notice The provider has less GPU memory than the job requires.
    error ProviderRegistryInsufficientVram(address provider, uint16 vramGiB, uint16 requiredGiB);
    /// @notice The provider asks more per unit than the job's maximum.
    error ProviderRegistryPriceTooHigh(address provider, uint80 pricePerUnit, uint80 maxPricePerUnit);
    /// @notice No more determinism profiles fit (64 at most), or the descriptor is zero or known.
    error ProviderRegistryInvalidProfile(bytes32 descriptor);
    /// @notice The unbonding period is below twice the JobMarket's longest job lifetime, or above the cap.
    error ProviderRegistryInvalidUnbondingPeriod(uint40 period, uint256 minimum, uint256 maximum);

    // ---------------------------------------------------------------- events

    /// @notice A provider registered with `terms`.
    event ProviderRegistered(address indexed provider, Terms terms);
    /// @notice A provider changed its terms.
    event TermsUpdated(address indexed provider, Terms terms);
    /// @notice `amount` tokens were staked; `stake` is the new total.
    event Staked(address indexed provider, uint256 amount, uint256 stake);
    /// @notice An unbond of `amount` was requested, withdrawable from `unbondAt`.
    event UnbondRequested(address indexed provider, uint256 amount, uint40 unbondAt);
    /// @notice A pending unbond was cancelled.
    event UnbondCancelled(address indexed provider, uint256 amount);
    /// @notice `amount` unbonded stake was withdrawn.
    event Unbonded(address indexed provider, uint256 amount);
    /// @notice `amount` of `provider`'s stake was slashed for job `jobId`.
    event Slashed(uint256 indexed jobId, address indexed provider, uint256 amount);
    /// @notice Determinism profile `id` was defined with `descriptor`.
    event ProfileAdded(uint8 indexed id, bytes32 descriptor);
    /// @notice The JobMarket was set.
    event MarketSet(address indexed market);
    /// @notice The unbonding period changed.
    event UnbondingPeriodSet(uint40 period);

    // ---------------------------------------------------------------- provider actions

    /// @notice Registers the caller as a provider with `terms`.
    function register(Terms calldata terms) external;

    /// @notice Replaces the caller's terms; running jobs keep the price they were assigned at.
    function updateTerms(Terms calldata terms) external;

    /// @notice Pulls `amount` tokens from the caller (approve first) and adds them to its stake.
    function stake(uint96 amount) external;

    /// @notice Starts the unbonding delay for `amount` of the caller's free stake. While the request
    /// is pending the provider takes no new jobs and the amount stays slashable.
    function requestUnbond(uint96 amount) external;

    /// @notice Cancels the caller's pending unbond request.
    function cancelUnbond() external;

    /// @notice After the delay, pays out the pending unbond (less anything slashed or still locked).
    /// @return amount The tokens transferred to the caller.
    function withdrawUnbonded() external returns (uint256 amount);

    // ---------------------------------------------------------------- market hooks

    /// @notice Checks each of `providers` against `req` and its own terms (registered, not
    /// unbonding, profile, VRAM, price, exec window, units), then locks from each the collateral
    /// multiple x units x the clearing price (the highest ask among them).
    /// @return clearingPrice The price per unit every executor of the job is paid.
    /// @return collateral The amount locked from each executor.
    function lockExecutors(uint256 jobId, address[] calldata providers, Requirements calldata req)
        external
        returns (uint80 clearingPrice, uint96 collateral);

    /// @notice Draws up to `d.count` verifiers for `jobId`, weighted by stake as it stood at the start
    /// of the current draw epoch (64 blocks) among the providers staked in `d.profile` (unbonding
    /// ones carry no weight), skipping anyone in `excluded`, anyone drawn already, anyone unbonding
    /// or no longer in the profile and anyone without `d.collateral` of free stake, and locks
    /// `d.collateral` from each. Draw i uses keccak256(seed, firstDraw + i); at most `d.maxDraws`
    /// draws are made.
    /// @return drawn The verifiers drawn, in draw order.
    /// @return draws How many draws were used.
    function drawVerifiers(uint256 jobId, Draw calldata d, address[] calldata excluded)
        external
        returns (address[] memory drawn, uint256 draws);

    /// @notice Releases `amount` of `provider`'s locked collateral; counts a completed job when `completed`.
    function releaseCollateral(uint256 jobId, address provider, uint96 amount, bool completed) external;

    /// @notice Slashes `amount` of `provider`'s locked collateral and sends it to the JobMarket.
    function slash(uint256 jobId, address provider, uint96 amount) external;

    // ---------------------------------------------------------------- owner

    /// @notice Sets the JobMarket, once.
    function setMarket(address market) external;

    /// @notice Defines a new determinism profile and returns its id.
    function addProfile(bytes32 descriptor) external returns (uint8 id);

    /// @notice Sets the unbonding delay; it must stay at least twice the longest job lifetime.
    function setUnbondingPeriod(uint40 period) external;

    // ---------------------------------------------------------------- views

    /// @notice The staking token.
    function token() external view returns (address);

    /// @notice The JobMarket allowed to lock and slash.
    function market() external view returns (address);

    /// @notice The provider's full record.
    function provider(address account) external view returns (Provider memory);

    /// @notice Stake that is neither locked nor unbonding.
    function freeStake(address account) external view returns (uint256);

    /// @notice Sum of all providers' stakes.
    function totalStaked() external view returns (uint256);

    /// @notice Stake that verifier draws in `profile` weigh: the stakes of registered providers
    /// supporting it that are not unbonding.
    function profileStake(uint8 profile) external view returns (uint256);

    /// @notice `account`'s weight in `profile`'s verifier draws (draws use the weights as they stood
    /// at the start of the current 64-block epoch).
    function drawWeight(uint8 profile, address account) external view returns (uint256);

    /// @notice The descriptor hash of profile `id` (zero when undefined).
    function profile(uint8 id) external view returns (bytes32);

    /// @notice Number of defined profiles.
    function profileCount() external view returns (uint256);

    /// @notice The unbonding delay in seconds.
    function unbondingPeriod() external view returns (uint40);
}
