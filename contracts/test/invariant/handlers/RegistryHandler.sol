// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {HandlerBase} from "./HandlerBase.sol";
import {ComputeToken} from "../../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../../src/ProviderRegistry.sol";
import {JobMarket} from "../../../src/JobMarket.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";

/// @notice Provider-side and owner-side actions: register, stake, unbond (request, cancel,
/// withdraw) and bounded parameter changes. Sets up the fixed actor set.
abstract contract RegistryHandler is HandlerBase {
    /// @dev Provider i asks PRICES[i] per unit, has VRAM[i] GiB and supports the profiles in MASKS[i].
    /// Providers 6 and 7 ask dust prices so that rounding in fees, shares and splits is exercised.
    uint80[8] internal PRICES = [uint80(1e14), 2e14, 5e14, 1e15, 3e14, 1e14, 3, 11];
    uint16[8] internal VRAM = [uint16(80), 80, 40, 80, 24, 80, 80, 80];
    uint8[8] internal MASKS = [uint8(3), 3, 3, 1, 3, 2, 3, 3];
    /// @dev Providers registered and staked at deployment; the last one joins through `registerProvider`.
    uint256 internal constant INITIAL_PROVIDERS = 7;

    /// @dev The requesters' keys, to sign ERC-2612 permits.
    uint256[] internal _requesterKeys;

    constructor() {
        for (uint256 i; i < N_PROVIDERS; ++i) {
            address p = makeAddr(string.concat("provider-", vm.toString(i)));
            _providers.push(p);
            _holders.push(p);
            vm.prank(p);
            token.approve(address(registry), type(uint256).max);
        }
        for (uint256 i; i < N_REQUESTERS; ++i) {
            (address r, uint256 key) = makeAddrAndKey(string.concat("requester-", vm.toString(i)));
            _requesters.push(r);
            _requesterKeys.push(key);
            _holders.push(r);
            _mint(r, 1e27);
            vm.prank(r);
            token.approve(address(market), type(uint256).max);
        }
        _holders.push(outsider);
        _mint(outsider, 1e24);
        vm.prank(outsider);
        token.approve(address(market), type(uint256).max);
        for (uint256 i; i < INITIAL_PROVIDERS; ++i) {
            _register(i, INITIAL_STAKE);
        }
    }

    function _terms(uint256 i) internal view returns (IProviderRegistry.Terms memory) {
        return IProviderRegistry.Terms({
            profileMask: MASKS[i],
            gpuModel: bytes32("NVIDIA H100"),
            vramGiB: VRAM[i],
            pricePerUnit: PRICES[i],
            endpoint: "http://127.0.0.1:9000"
        });
    }

    function _register(uint256 i, uint96 amount) internal returns (bool ok) {
        address p = _providers[i];
        ok = _registryCall(p, abi.encodeCall(IProviderRegistry.register, (_terms(i))));
        if (!ok) return false;
        _hit("registered");
        _mint(p, amount);
        if (!_registryCall(p, abi.encodeCall(IProviderRegistry.stake, (amount)))) {
            _violate(8, "staking a minted amount failed");
        }
    }

    function _pickProvider(uint256 seed) internal view returns (address p, uint256 i) {
        i = seed % N_PROVIDERS;
        p = _providers[i];
    }

    function _unbondingProviders() internal view returns (uint256 count) {
        for (uint256 i; i < N_PROVIDERS; ++i) {
            if (registry.provider(_providers[i]).unbondAt != 0) ++count;
        }
    }

    // ---------------------------------------------------------------- actions

    /// @notice A provider that has not registered yet registers and stakes.
    function registerProvider(uint256 seed, uint256 amountSeed) external {
        for (uint256 k; k < N_PROVIDERS; ++k) {
            uint256 i = (seed % N_PROVIDERS + k) % N_PROVIDERS;
            if (!registry.provider(_providers[i]).registered) {
                _register(i, uint96(bound(amountSeed, 10e18, 100e18)));
                return;
            }
        }
    }

    /// @notice A registered provider adds stake.
    function stakeMore(uint256 seed, uint256 amountSeed) external {
        (address p,) = _pickProvider(seed);
        if (!registry.provider(p).registered) return;
        uint96 amount = uint96(bound(amountSeed, 1, 50e18));
        _mint(p, amount);
        if (_registryCall(p, abi.encodeCall(IProviderRegistry.stake, (amount)))) _hit("staked");
        else _violate(8, "a registered provider could not stake");
    }

    /// @notice A provider asks to unbond part of its free stake (sometimes more than it may).
    function requestUnbond(uint256 seed, uint256 amountSeed) external {
        (address p,) = _pickProvider(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        if (!r.registered) return;
        uint256 free = uint256(r.stake) - r.locked;
        bool tooMuch = amountSeed % 8 == 0;
        if (!tooMuch && r.unbondAt == 0 && _unbondingProviders() >= 2) return; // keep most providers at work
        uint256 amount = tooMuch ? free + 1 + amountSeed % 1e18 : bound(amountSeed, 1, free == 0 ? 1 : free);
        if (amount > type(uint96).max) amount = type(uint96).max;
        bool allowed = r.unbondAt == 0 && amount <= free;
        bool ok = _registryCall(p, abi.encodeCall(IProviderRegistry.requestUnbond, (uint96(amount))));
        if (ok && !allowed) _violate(7, "an unbond of locked or pending stake was accepted");
        if (!ok && allowed) _violate(7, "an unbond of free stake was rejected");
        if (ok) _hit("unbondRequested");
    }

    /// @notice A provider with a pending unbond, searching from a fuzzed start (else any provider).
    function _pickUnbonding(uint256 seed) internal view returns (address) {
        for (uint256 k; k < N_PROVIDERS; ++k) {
            address p = _providers[(seed % N_PROVIDERS + k) % N_PROVIDERS];
            if (registry.provider(p).unbondAt != 0) return p;
        }
        return _providers[seed % N_PROVIDERS];
    }

    function cancelUnbond(uint256 seed) external {
        address p = seed % 4 == 0 ? _providers[seed % N_PROVIDERS] : _pickUnbonding(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        bool ok = _registryCall(p, abi.encodeCall(IProviderRegistry.cancelUnbond, ()));
        if (ok != (r.registered && r.unbondAt != 0)) _violate(7, "cancelUnbond outcome differs from the rule");
        if (ok) _hit("unbondCancelled");
    }

    /// @notice A provider withdraws its unbonded stake, sometimes before the unlock time, sometimes
    /// after jumping to it. DESIGN 7: nothing leaves before unbondAt, and locked collateral never leaves.
    function withdrawUnbonded(uint256 seed, uint256 when) external {
        address p = _pickUnbonding(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        if (!r.registered || r.unbondAt == 0) return;
        if (when % 3 == 0) _advancePast(r.unbondAt - 1, when % 1 hours); // a 14-day jump: rarely
        r = registry.provider(p); // unchanged by time, re-read for clarity
        bool early = block.timestamp < r.unbondAt;
        uint256 balanceBefore = token.balanceOf(p);
        bool ok = _registryCall(p, abi.encodeCall(IProviderRegistry.withdrawUnbonded, ()));
        if (ok && early) _violate(7, "stake withdrawn before unbondAt");
        if (!ok && !early) _violate(7, "a due unbond could not be withdrawn");
        if (!ok) return;
        IProviderRegistry.Provider memory a = registry.provider(p);
        uint256 free = uint256(r.stake) - r.locked;
        uint256 expected = r.unbonding < free ? r.unbonding : free;
        if (token.balanceOf(p) - balanceBefore != expected) _violate(7, "unbond payout is not min(unbonding, free)");
        if (a.locked != r.locked || a.stake < a.locked) _violate(7, "withdrawUnbonded touched locked collateral");
        _hit("unbonded");
    }

    /// @notice The owner changes every parameter within the bounds the market checks, keeping
    /// 2 x the longest job lifetime within the registry's 14-day unbonding period.
    function setParams(uint256 a, uint256 b, uint256 c) external {
        IJobMarket.Params memory p;
        p.feeBps = uint16(bound(a, 0, 1000));
        p.auditShareBps = uint16(bound(a >> 16, 0, 10_000));
        uint256 pick = (a >> 32) % 5;
        p.auditBps = pick == 0 ? 0 : pick == 1 ? 10_000 : uint16(bound(a >> 40, 0, 10_000));
        p.requesterShareBps = uint16(bound(b, 0, 10_000));
        p.rewardShareBps = uint16(bound(b >> 16, 0, 10_000 - p.requesterShareBps));
        p.verifiers = uint8(bound(b >> 32, 1, 4));
        p.collateralMultiple = uint8(bound(b >> 40, 1, 5));
        p.challengeWindow = uint32(bound(c, 1 minutes, 1 hours));
        p.verifierAssignWindow = uint32(bound(c >> 32, 5 minutes, 1 hours));
        p.revealWindow = uint32(bound(c >> 64, 5 minutes, 1 hours));
        p.reassignWindow = uint32(bound(c >> 96, 10 minutes, 2 hours));
        p.maxAcceptWindow = uint32(bound(c >> 128, 1 hours, 1 days));
        p.maxExecWindow = uint32(bound(c >> 160, 1 hours, 1 days));
        p.challengeBond = uint96(bound(c >> 192, 1e15, 20e18));
        vm.prank(owner);
        try market.setParams(p) {
            _hit("paramsSet");
        } catch {
            _violate(8, "in-bounds parameters were rejected");
        }
    }
}
