// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {HandlerBase} from "./HandlerBase.sol";
import {GhostLedger} from "./GhostLedger.sol";
import {IJobMarket} from "../../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../../src/interfaces/IProviderRegistry.sol";

/// @notice Provider-side and owner-side actions: register, stake, unbond (request, cancel,
/// withdraw), term changes, and the owner's parameter changes, fuzzed and mostly out of bounds
/// (DESIGN 12: whatever is attempted, the live parameters stay within the bounds).
contract RegistryHandler is HandlerBase {
    uint256 internal constant BPS = 10_000;
    /// @dev Colluders may not stake beyond this: they stay a small minority of every profile.
    uint96 internal constant COLLUDER_CAP = 150e18;

    constructor(GhostLedger ledger_) HandlerBase(ledger_) {}

    function _unbondingProviders() internal view returns (uint256 count) {
        for (uint256 mask = ledger.unbondingMask(); mask != 0; mask &= mask - 1) {
            ++count;
        }
    }

    // ================================================================ provider actions

    /// @notice The provider that has not registered yet registers and stakes.
    function registerProvider(uint256 amountSeed) external {
        uint256 i = ledger.LATE_PROVIDER();
        if (registry.provider(_provider(i)).registered) return;
        ledger.register(i, uint96(bound(amountSeed, 50e18, 300e18)));
    }

    /// @notice A registered provider adds stake (colluders only up to a cap).
    function stakeMore(uint256 seed, uint256 amountSeed) external {
        address p = _provider(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        if (!r.registered) return;
        uint96 amount = uint96(bound(amountSeed, 1, 50e18));
        if (_colluder[p] && r.stake + amount > COLLUDER_CAP) return;
        ledger.mint(p, amount);
        if (ledger.execRegistry(p, abi.encodeCall(IProviderRegistry.stake, (amount)))) _hit("staked");
        else _violate(8, "a registered provider could not stake");
    }

    /// @notice A provider asks to unbond part of its free stake (sometimes more than it may).
    function requestUnbond(uint256 seed, uint256 amountSeed) external {
        address p = _provider(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        if (!r.registered) return;
        uint256 free = uint256(r.stake) - r.locked;
        bool tooMuch = amountSeed % 8 == 0;
        if (!tooMuch && r.unbondAt == 0 && _unbondingProviders() >= 2) return; // keep most providers at work
        uint256 amount = tooMuch ? free + 1 + amountSeed % 1e18 : bound(amountSeed, 1, free == 0 ? 1 : free);
        if (amount > type(uint96).max) amount = type(uint96).max;
        bool allowed = r.unbondAt == 0 && amount <= free && amount != 0;
        bool ok = ledger.execRegistry(p, abi.encodeCall(IProviderRegistry.requestUnbond, (uint96(amount))));
        if (ok && !allowed) _violate(7, "an unbond of locked or pending stake was accepted");
        if (!ok && allowed) _violate(7, "an unbond of free stake was rejected");
        if (ok) _hit("unbondRequested");
    }

    /// @notice A provider with a pending unbond, searching from a fuzzed start (else any provider).
    function _pickUnbonding(uint256 seed) internal view returns (address) {
        uint256 mask = ledger.unbondingMask();
        for (uint256 k; k < N_PROVIDERS; ++k) {
            uint256 i = (seed % N_PROVIDERS + k) % N_PROVIDERS;
            if (mask & (1 << i) != 0) return _provider(i);
        }
        return _provider(seed);
    }

    function cancelUnbond(uint256 seed) external {
        address p = seed % 4 == 0 ? _provider(seed) : _pickUnbonding(seed);
        IProviderRegistry.Provider memory r = registry.provider(p);
        bool ok = ledger.execRegistry(p, abi.encodeCall(IProviderRegistry.cancelUnbond, ()));
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
        bool early = block.timestamp < r.unbondAt;
        uint256 balanceBefore = token.balanceOf(p);
        bool ok = ledger.execRegistry(p, abi.encodeCall(IProviderRegistry.withdrawUnbonded, ()));
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

    /// @notice A provider changes its price, minimum exec window and maximum units (its profiles
    /// stay); sometimes to unusable terms, which must be refused. Running jobs keep their price.
    function updateTerms(uint256 seed, uint256 x) external {
        uint256 i = seed % N_PROVIDERS;
        address p = _provider(i);
        if (!registry.provider(p).registered) return;
        IProviderRegistry.Terms memory t = ledger.terms(i);
        t.pricePerUnit = uint80(bound(x, t.pricePerUnit / 2 + 1, uint256(t.pricePerUnit) * 2));
        uint32[4] memory windows = [uint32(0), 10 minutes, 30 minutes, 1 hours];
        uint32[4] memory units = [uint32(1), 50, 200, 1000];
        t.minExecWindow = windows[(x >> 96) % 4];
        t.maxUnits = units[(x >> 104) % 4];
        uint256 broken = (x >> 112) % 8;
        if (broken == 0) t.pricePerUnit = 0;
        else if (broken == 1) t.maxUnits = 0;
        else if (broken == 2) t.profileMask = 0;
        else if (broken == 3) t.profileMask |= 1 << (2 + (x >> 120) % 60); // an undefined profile
        bool valid = broken > 3;
        bool ok = ledger.execRegistry(p, abi.encodeCall(IProviderRegistry.updateTerms, (t)));
        if (ok != valid) _violate(8, valid ? "valid terms were rejected" : "unusable terms were accepted");
        if (ok) _hit("termsUpdated");
    }

    // ================================================================ owner actions

    /// @notice The owner (one time in sixteen, a stranger) sets the parameters: in bounds, one
    /// field out of bounds (or exactly at a bound), or every field arbitrary. The handler's own
    /// model of the bounds must agree with the market's verdict; invariant 12 checks the live set.
    function setParams(uint256 a, uint256 b, uint256 c, uint256 d) external {
        IJobMarket.Params memory p = _saneParams(a, b, c, d);
        uint256 mode = d % 10;
        if (mode >= 2 && mode < 8) _breakOne(p, d >> 8);
        else if (mode >= 8) p = _wildParams(a, b, c, d);
        bool valid = _paramsValid(p, registry.unbondingPeriod());
        address caller = (d >> 200) % 16 == 0 ? outsider : owner;
        bool ok = ledger.execJob(caller, 0, abi.encodeCall(IJobMarket.setParams, (p)));
        if (caller != owner) {
            if (ok) _violate(12, "a stranger set the parameters");
            return;
        }
        if (ok && !valid) _violate(12, "out-of-bounds parameters were accepted");
        if (!ok && valid) _violate(12, "in-bounds parameters were rejected");
        _hit(ok ? bytes32("paramsSet") : bytes32("paramsRejected"));
    }

    /// @notice The owner sets the registry's unbonding period (it must stay at least twice the
    /// longest job lifetime, and at most a year).
    function setUnbondingPeriod(uint256 seed) external {
        uint40 period = uint40(seed % 8 == 0 ? seed % 3 days : bound(seed, 7 days, 30 days));
        uint256 lifetime = market.maxJobLifetime();
        bool valid = period >= 2 * lifetime && period <= 365 days;
        vm.prank(owner);
        (bool ok,) = address(registry).call(abi.encodeCall(IProviderRegistry.setUnbondingPeriod, (period)));
        if (ok != valid) _violate(12, "unbonding period outcome differs from the lifetime bound");
        if (ok) _hit("unbondingPeriodSet");
    }

    function _saneParams(uint256 a, uint256 b, uint256 c, uint256 d) internal pure returns (IJobMarket.Params memory p) {
        p.feeBps = uint16(bound(a, 0, 1000));
        p.auditShareBps = uint16(bound(a >> 16, 0, BPS));
        p.collateralMultiple = uint8(bound(b >> 40, 1, 5));
        uint256 minAudit = (BPS + p.collateralMultiple) / (1 + uint256(p.collateralMultiple)); // ceil(BPS / (1 + m))
        p.auditBps = (a >> 32) % 4 == 0 ? uint16(BPS) : uint16(bound(a >> 40, minAudit, BPS));
        p.requesterShareBps = uint16(bound(b, 0, BPS));
        p.rewardShareBps = uint16(bound(b >> 16, 0, BPS - p.requesterShareBps));
        uint8[5] memory ks = [uint8(1), 3, 3, 3, 5];
        p.verifiers = ks[(b >> 32) % 5];
        p.challengeWindow = uint32(bound(c, 1 minutes, 1 hours));
        p.verifierAssignWindow = uint32(bound(c >> 32, 5 minutes, 1 hours));
        p.revealWindow = uint32(bound(c >> 64, 5 minutes, 1 hours));
        p.reassignWindow = uint32(bound(c >> 96, 10 minutes, 2 hours));
        p.maxAcceptWindow = uint32(bound(c >> 128, 1 hours, 1 days));
        p.maxExecWindow = uint32(bound(c >> 160, 1 hours, 1 days));
        p.minExecWindow = uint32(bound(c >> 192, 10, 30 minutes));
        p.verifierExecWindow = uint32(bound(c >> 224, p.minExecWindow < 5 minutes ? 5 minutes : p.minExecWindow, 2 hours));
        p.minFee = uint64(bound(d >> 64, 1, 1e15));
    }

    /// @dev One field out of bounds, or exactly at a bound (the model decides which).
    function _breakOne(IJobMarket.Params memory p, uint256 s) internal pure {
        uint256 field = s % 14;
        uint256 v = s >> 8;
        if (field == 0) {
            p.feeBps = uint16(1001 + v % 64_000);
        } else if (field == 1) {
            p.auditShareBps = uint16(BPS + 1 + v % 55_000);
        } else if (field == 2) {
            p.auditBps = uint16(v % ((BPS + p.collateralMultiple) / (1 + uint256(p.collateralMultiple)))); // below the bound
        } else if (field == 3) {
            p.requesterShareBps = uint16(BPS - v % 5000);
            p.rewardShareBps = uint16(1 + (v >> 16) % 5000 + v % 5000);
        } else if (field == 4) {
            uint8[6] memory bad = [uint8(0), 2, 4, 6, 7, 255];
            p.verifiers = bad[v % 6];
        } else if (field == 5) {
            p.collateralMultiple = v % 3 == 0 ? 0 : uint8(21 + v % 235);
        } else if (field == 6 || field == 7) {
            uint32 w = field == 6 ? uint32(v % 10) : uint32(30 days + 1 + (v >> 8) % 1e6);
            uint256 which = (v >> 64) % 8;
            if (which == 0) p.challengeWindow = w;
            else if (which == 1) p.verifierAssignWindow = w;
            else if (which == 2) p.verifierExecWindow = w;
            else if (which == 3) p.revealWindow = w;
            else if (which == 4) p.reassignWindow = w;
            else if (which == 5) p.maxAcceptWindow = w;
            else if (which == 6) p.maxExecWindow = w;
            else p.minExecWindow = w;
        } else if (field == 8) {
            p.minExecWindow = uint32(p.maxExecWindow + 1 + v % 1 days);
        } else if (field == 9) {
            p.verifierExecWindow = p.minExecWindow - 1 - uint32(v % p.minExecWindow);
        } else if (field == 10) {
            p.minFee = 0;
        } else if (field == 11) {
            p.maxExecWindow = uint32(bound(v, 3 days, 30 days)); // lifetime too long for the unbonding period
        } else if (field == 12) {
            // exactly at, or one below, the audit bound, at any multiple
            p.collateralMultiple = uint8(1 + v % 20);
            uint256 atBound = (BPS + p.collateralMultiple) / (1 + uint256(p.collateralMultiple));
            p.auditBps = uint16(atBound - (v >> 8) % 2);
        } else {
            // windows exactly at their bounds
            p.challengeWindow = 10;
            p.revealWindow = 10;
            p.minExecWindow = 10;
            p.verifierExecWindow = 10;
            p.verifierAssignWindow = v % 2 == 0 ? 10 : 30 days;
        }
    }

    function _wildParams(uint256 a, uint256 b, uint256 c, uint256 d) internal pure returns (IJobMarket.Params memory p) {
        p.feeBps = uint16(a);
        p.auditShareBps = uint16(a >> 16);
        p.auditBps = uint16(a >> 32);
        p.requesterShareBps = uint16(a >> 48);
        p.rewardShareBps = uint16(a >> 64);
        p.verifiers = uint8(a >> 80);
        p.collateralMultiple = uint8(a >> 88);
        p.challengeWindow = uint32(b);
        p.verifierAssignWindow = uint32(b >> 32);
        p.verifierExecWindow = uint32(b >> 64);
        p.revealWindow = uint32(b >> 96);
        p.minExecWindow = uint32(b >> 128);
        p.maxAcceptWindow = uint32(c);
        p.maxExecWindow = uint32(c >> 32);
        p.reassignWindow = uint32(c >> 64);
        p.minFee = uint64(d);
    }

    /// @notice The bounds of DESIGN "Verification v2", written out independently of MarketLib.
    function _paramsValid(IJobMarket.Params memory p, uint256 unbondingPeriod) internal pure returns (bool) {
        if (p.feeBps > 1000 || p.auditShareBps > BPS || p.auditBps > BPS) return false;
        if (uint256(p.requesterShareBps) + p.rewardShareBps > BPS) return false;
        if (p.verifiers != 1 && p.verifiers != 3 && p.verifiers != 5) return false;
        if (p.collateralMultiple == 0 || p.collateralMultiple > 20) return false;
        if (uint256(p.auditBps) * (1 + uint256(p.collateralMultiple)) < BPS) return false;
        uint32[8] memory w = [
            p.challengeWindow,
            p.verifierAssignWindow,
            p.verifierExecWindow,
            p.revealWindow,
            p.minExecWindow,
            p.maxAcceptWindow,
            p.maxExecWindow,
            p.reassignWindow
        ];
        for (uint256 i; i < 8; ++i) {
            if (w[i] < 10 || w[i] > 30 days) return false;
        }
        if (p.minExecWindow > p.maxExecWindow || p.verifierExecWindow < p.minExecWindow || p.minFee == 0) return false;
        uint256 round = uint256(p.verifierAssignWindow) + p.verifierExecWindow + p.revealWindow;
        uint256 first = p.challengeWindow > p.revealWindow ? p.challengeWindow : p.revealWindow;
        uint256 lifetime =
            uint256(p.maxAcceptWindow) + 2 * uint256(p.maxExecWindow) + p.reassignWindow + first + 2 * round;
        return 2 * lifetime <= unbondingPeriod;
    }
}
