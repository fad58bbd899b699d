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
            collateralMultiple: 2,
            challengeWindow: 10 minutes,
            verifierAssignWindow: 10 minutes,
            revealWindow: 10 minutes,
            reassignWindow: 30 minutes,
            maxAcceptWindow: 1 days,
            maxExecWindow: 1 days,
            challengeBond: 10e18
        });
    }

    // ---------------------------------------------------------------- providers

    function terms(uint80 price, uint16 vramGiB) internal pure returns (IProviderRegistry.Terms memory) {
        return IProviderRegistry.Terms({
            profileMask: (1 << CPU_PROFILE) | (1 << CUDA_PROFILE),
            gpuModel: bytes32("NVIDIA H100"),
            vramGiB: vramGiB,
            pricePerUnit: price,
            endpoint: "http://127.0.0.1:9000"
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

    /// @notice Parameters with the audit rate set to `auditBps`.
    function setAuditBps(uint16 auditBps) internal {
        IJobMarket.Params memory p = defaultParams();
        p.auditBps = auditBps;
        vm.prank(owner);
        market.setParams(p);
    }

    function collateralOf(uint256 jobId) internal view returns (uint256) {
        IJobMarket.Job memory j = market.job(jobId);
        return uint256(j.collateralMultiple) * j.units * j.maxPricePerUnit;
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
