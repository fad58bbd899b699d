// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "./Test.sol";
import {ComputeToken} from "../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";

/// @notice Deploys the three contracts with the devnet parameters and offers the steps of a job's
/// lifecycle as helpers, so each test reads as the path it walks.
abstract contract MarketFixture is Test {
    ComputeToken internal token;
    ProviderRegistry internal registry;
    JobMarket internal market;

    address internal owner = makeAddr("owner");
    address internal treasury = makeAddr("treasury");
    address internal matcher = makeAddr("matcher");
    address internal requester = makeAddr("requester");
    address internal keeper = makeAddr("keeper");

    uint8 internal constant CPU_PROFILE = 0;
    uint8 internal constant CUDA_PROFILE = 1;
    uint80 internal constant PRICE = 1e15; // 0.001 token per unit
    uint32 internal constant UNITS = 100;
    uint96 internal constant PROVIDER_STAKE = 1_000e18;
    uint40 internal constant UNBONDING = 14 days;
    /// @dev Most units per job a fixture provider accepts (its `maxUnits` term).
    uint32 internal constant MAX_UNITS = 1_000_000;

    function setUp() public virtual {
        vm.warp(1_700_000_000);
        vm.roll(100);
        vm.startPrank(owner);
        token = new ComputeToken(owner);
        registry = new ProviderRegistry(token, owner, UNBONDING);
        market = new JobMarket(token, registry, owner, treasury, defaultParams());
        registry.setMarket(address(market));
        registry.addProfile(keccak256("torch-2.13.0/cpu/float32/deterministic"));
        registry.addProfile(keccak256("torch-2.13.0/cuda-sm90/float32/deterministic"));
        market.setMatcher(matcher, true);
        token.mint(requester, 1_000_000e18);
        vm.stopPrank();
        vm.prank(requester);
        token.approve(address(market), type(uint256).max);
    }

    function defaultParams() internal pure returns (IJobMarket.Params memory) {
        return IJobMarket.Params({
            feeBps: 250,
            auditShareBps: 5000,
            auditBps: 1000,
            requesterShareBps: 5000,
            rewardShareBps: 3000,
            verifiers: 3,
            collateralMultiple: 10,
            challengeWindow: 10 minutes,
            verifierAssignWindow: 10 minutes,
            verifierExecWindow: 30 minutes,
            revealWindow: 10 minutes,
            minExecWindow: 60,
            maxAcceptWindow: 1 days,
            maxExecWindow: 1 days,
            reassignWindow: 30 minutes,
            minFee: 1e14
        });
    }

    // ---------------------------------------------------------------- providers

    function terms(uint80 price, uint16 vramGiB) internal pure returns (IProviderRegistry.Terms memory) {
        return IProviderRegistry.Terms({
            profileMask: (1 << CPU_PROFILE) | (1 << CUDA_PROFILE),
            gpuModel: bytes32("NVIDIA H100"),
            vramGiB: vramGiB,
            pricePerUnit: price,
            endpoint: "http://127.0.0.1:9000",
            minExecWindow: 0,
            maxUnits: MAX_UNITS
        });
    }

    /// @notice A registered, staked provider named `name` asking `price` per unit.
    function newProvider(string memory name, uint80 price) internal returns (address p) {
        p = makeAddr(name);
        vm.prank(owner);
        token.mint(p, PROVIDER_STAKE);
        vm.startPrank(p);
        registry.register(terms(price, 80));
        token.approve(address(registry), PROVIDER_STAKE);
        registry.stake(PROVIDER_STAKE);
        vm.stopPrank();
    }

    function newProviders(uint256 n, uint80 price) internal returns (address[] memory list) {
        list = new address[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = newProvider(string.concat("provider-", vm.toString(i)), price);
        }
    }

    // ---------------------------------------------------------------- requests

    function request(uint8 replicas) internal pure returns (IJobMarket.JobRequest memory) {
        return IJobMarket.JobRequest({
            specHash: sha256("spec"),
            units: UNITS,
            maxPricePerUnit: PRICE,
            profile: CPU_PROFILE,
            replicas: replicas,
            minVramGiB: 0,
            acceptWindow: 1 hours,
            execWindow: 1 hours
        });
    }

    function createJob(uint8 replicas) internal returns (uint256 jobId) {
        IJobMarket.JobRequest memory r = request(replicas); // sha256 is a call: build before the prank
        vm.prank(requester);
        jobId = market.createJob(r);
    }

    function one(address p) internal pure returns (address[] memory list) {
        list = new address[](1);
        list[0] = p;
    }

    function assignJob(uint256 jobId, address[] memory providers) internal {
        vm.prank(matcher);
        market.assign(jobId, providers);
    }

    // ---------------------------------------------------------------- results

    function digestOf(string memory output) internal pure returns (bytes32) {
        return sha256(bytes(output));
    }

    function commitAs(address p, uint256 jobId, bytes32 digest) internal {
        vm.prank(p);
        market.commit(jobId, JobLib.resultHash(jobId, digest), JobLib.seal(p, jobId, digest));
        if (auditsDisabled && market.state(jobId) == IJobMarket.JobState.Committed) steerDraw(jobId, false);
    }

    function revealAs(address p, uint256 jobId, bytes32 digest) internal {
        vm.prank(p);
        market.reveal(jobId, digest);
    }

    /// @notice Moves time and blocks forward together, as a real chain does.
    function skipTime(uint256 secondsForward) internal {
        vm.warp(block.timestamp + secondsForward);
        vm.roll(block.number + secondsForward / 12 + 1);
    }

    /// @notice Advances one block: the audit draw needs the block after the commit.
    function nextBlock() internal {
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + 12);
    }

    /// @notice When set, every replicas = 1 commit gets a block hash the audit draw does not
    /// select (see `disableAudits`).
    bool internal auditsDisabled;

    /// @notice v2 forbids auditBps 0 (auditBps x (1 + collateralMultiple) >= 10000), so "no
    /// audit" is arranged through the randomness instead: from now on each replicas = 1 commit
    /// that moves its job to Committed sets its block's hash (vm.setBlockhash) to one the draw
    /// does not select for that job. Parameters are left as they are.
    function disableAudits() internal {
        auditsDisabled = true;
    }

    /// @notice Parameters with the audit rate set to `auditBps` (the collateral multiple is
    /// raised to the least the v2 bound allows if needed). `setAuditBps(0)` is `disableAudits()`.
    function setAuditBps(uint16 auditBps) internal {
        if (auditBps == 0) return disableAudits();
        auditsDisabled = false;
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = auditBps;
        while (uint256(auditBps) * (1 + uint256(p.collateralMultiple)) < 10_000) ++p.collateralMultiple;
        vm.prank(owner);
        market.setParams(p);
    }

    /// @notice Sets the hash of the current block to one whose audit draw for `jobId` gives
    /// `selected`.
    function steerDraw(uint256 jobId, bool selected) internal {
        uint256 auditBps = market.params().auditBps;
        for (uint256 salt;; ++salt) {
            bytes32 h = keccak256(abi.encode("steer", jobId, salt));
            if ((uint256(keccak256(abi.encode(h, jobId))) % 10_000 < auditBps) == selected) {
                vm.setBlockhash(block.number, h);
                return;
            }
        }
    }

    /// @notice Collateral each participant of `jobId` locks: multiple x units x clearing price.
    function collateralOf(uint256 jobId) internal view returns (uint256) {
        IJobMarket.Job memory j = market.job(jobId);
        return uint256(j.collateralMultiple) * j.units * j.clearingPrice;
    }

    // ---------------------------------------------------------------- audits (v2: drawn verifiers)

    uint256 private _verifierPoolSize;

    /// @notice Registers and stakes `n` more providers (named "verifier-<i>") that the registry can
    /// draw as verifiers, then moves to the next draw epoch (draws weigh stake as it stood at the
    /// start of the epoch); returns the new ones.
    function stakeVerifiers(uint256 n) internal returns (address[] memory list) {
        list = new address[](n);
        for (uint256 i; i < n; ++i) {
            list[i] = newProvider(string.concat("verifier-", vm.toString(_verifierPoolSize++)), PRICE);
        }
        nextEpoch();
    }

    /// @notice Draw epochs are runs of this many blocks (SortitionTree.EPOCH_BLOCKS).
    uint256 internal constant EPOCH_BLOCKS = 64;

    /// @notice Moves to the first block of the next draw epoch (12 s per block).
    function nextEpoch() internal {
        uint256 target = (block.number / EPOCH_BLOCKS + 1) * EPOCH_BLOCKS;
        vm.warp(block.timestamp + 12 * (target - block.number));
        vm.roll(target);
    }

    /// @notice Staffs the current audit round of `jobId`: moves to the block after the seed block
    /// and calls `staffAudit` until every seat is filled (the draw budget continues across calls).
    /// Reverts if the round cannot be staffed. Returns the round's verifiers.
    function staffRound(uint256 jobId) internal returns (address[] memory) {
        for (uint256 tries; tries < 40; ++tries) {
            IJobMarket.Job memory j = market.job(jobId);
            if (j.participants - j.verifiersFrom == j.seats) return roundVerifiers(jobId);
            // A new block each try: the seed block's hash must be known, and a seed re-drawn
            // (aged, or from an earlier epoch) needs the next block.
            if (block.number == j.seedBlock || tries != 0) nextBlock();
            vm.prank(keeper);
            market.staffAudit(jobId);
        }
        revert("staffRound: round not staffed");
    }

    /// @notice The verifiers drawn so far for the current audit round of `jobId`.
    function roundVerifiers(uint256 jobId) internal view returns (address[] memory list) {
        IJobMarket.Job memory j = market.job(jobId);
        IJobMarket.Participant[] memory ps = market.participants(jobId);
        list = new address[](j.participants - j.verifiersFrom);
        for (uint256 i; i < list.length; ++i) {
            list[i] = ps[j.verifiersFrom + i].provider;
        }
    }

    /// @notice Staffs the current round and has every drawn verifier commit `digest` (reveals come
    /// once the job is Revealing: `revealAll`). Returns the round's verifiers.
    function staffAndCommit(uint256 jobId, bytes32 digest) internal returns (address[] memory vs) {
        vs = staffRound(jobId);
        for (uint256 i; i < vs.length; ++i) commitAs(vs[i], jobId, digest);
    }

    /// @notice Every address in `list` reveals `digest` for `jobId`.
    function revealAll(address[] memory list, uint256 jobId, bytes32 digest) internal {
        for (uint256 i; i < list.length; ++i) revealAs(list[i], jobId, digest);
    }

    /// @notice Audit premium a replicas = 1 job pays on `pay` under the current parameters.
    function premiumOf(uint256 pay) internal view returns (uint256) {
        IJobMarket.Params memory p = market.params();
        return pay * uint256(p.auditBps) * p.verifiers / 10_000;
    }

    /// @notice Protocol fee on `pay` under the current parameters (at least `minFee`).
    function feeOf(uint256 pay) internal view returns (uint256) {
        IJobMarket.Params memory p = market.params();
        if (pay == 0) return 0;
        uint256 fee = pay * p.feeBps / 10_000;
        return fee < p.minFee ? p.minFee : fee;
    }

    function escrowOf(uint8 replicas) internal view returns (uint256) {
        return market.escrowFor(request(replicas));
    }

    /// @notice Tokens held by the two contracts; with all credits withdrawn and no job open it
    /// equals total stake + audit pool + protocol fees.
    function heldByContracts() internal view returns (uint256) {
        return token.balanceOf(address(market)) + token.balanceOf(address(registry));
    }
}
