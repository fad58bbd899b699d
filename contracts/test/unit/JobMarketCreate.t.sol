// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {Vm} from "../utils/Test.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {JobLib} from "../../src/libraries/JobLib.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";

/// @notice createJob, createJobs, createJobsWithPermit and cancel.
contract JobMarketCreateTest is UnitBase {
    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    // ---------------------------------------------------------------- createJob

    function test_createJob() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 3);
        r.profile = CUDA_PROFILE;
        r.minVramGiB = 40;
        r.acceptWindow = 2 hours;
        r.execWindow = 3 hours;
        uint256 escrow = 3 * (PAY + FEE);
        uint32 acceptBy = uint32(block.timestamp + 2 hours);
        uint256 balBefore = token.balanceOf(requester);

        vm.expectEmit(address(market));
        emit IJobMarket.JobCreated(1, requester, SPEC, r, acceptBy, escrow);
        vm.expectEmit(address(token));
        emit IERC20.Transfer(requester, address(market), escrow);
        vm.prank(requester);
        uint256 id = market.createJob(r);

        assertEq(id, 1);
        assertEq(market.jobCount(), 1);
        assertEq(token.balanceOf(address(market)), escrow, "escrow pulled");
        assertEq(token.balanceOf(requester), balBefore - escrow);
        assertEq(market.escrowFor(r), escrow);
        IJobMarket.Job memory j = market.job(id);
        assertEq(j.requester, requester);
        assertEq(uint256(j.deadline), acceptBy);
        assertEq(uint256(j.flags), 0);
        assertEq(uint256(uint8(j.state)), uint256(uint8(IJobMarket.JobState.Open)));
        assertEq(uint256(j.replicas), 3);
        assertEq(uint256(j.participants), 0);
        assertEq(uint256(j.profile), CUDA_PROFILE);
        assertEq(uint256(j.commitMask), 0);
        assertEq(uint256(j.revealMask), 0);
        assertEq(uint256(j.collateralMultiple), 10);
        assertEq(uint256(j.premiumBps), 0, "no audit premium for replicas 3");
        assertEq(uint256(j.minFee), 1e14, "fee floor snapshot");
        assertEq(uint256(j.maxPricePerUnit), PRICE);
        assertEq(uint256(j.clearingPrice), 0);
        assertEq(uint256(j.units), UNITS);
        assertEq(uint256(j.minVramGiB), 40);
        assertEq(uint256(j.execWindow), 3 hours);
        assertEq(uint256(j.feeBps), 250);
        assertEq(market.participants(id).length, 0);
    }

    function test_createJob_idsIncrement() public {
        assertEq(createJob(1), 1);
        assertEq(createJob(3), 2);
        assertEq(createJob(5), 3);
        assertEq(market.jobCount(), 3);
        assertEq(token.balanceOf(address(market)), ESCROW1 + 8 * (PAY + FEE));
        assertEq(uint256(market.job(1).premiumBps), 3000, "replicas 1: auditBps x verifiers");
    }

    function test_createJob_snapshotsFeeAndCollateralMultiple() public {
        uint256 id = createJob(1);
        IJobMarket.Params memory p = defaultParams();
        p.feeBps = 1000;
        p.collateralMultiple = 15;
        p.minFee = 1e16;
        applyParams(p);
        IJobMarket.Job memory j = market.job(id);
        assertEq(uint256(j.feeBps), 250, "fee of the old job unchanged");
        assertEq(uint256(j.collateralMultiple), 10);
        assertEq(uint256(j.minFee), 1e14);
        uint256 id2 = createJob(1);
        assertEq(uint256(market.job(id2).feeBps), 1000);
        assertEq(uint256(market.job(id2).collateralMultiple), 15);
        assertEq(uint256(market.job(id2).minFee), 1e16);
    }

    function test_createJob_revertsZeroReplicas() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 0);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, uint8(0)));
        market.createJob(r);
    }

    function test_createJob_revertsSixReplicas() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 6);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, uint8(6)));
        market.createJob(r);
    }

    function test_createJob_revertsZeroAcceptWindow() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.acceptWindow = 0;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobMarketInvalidWindow.selector, uint32(0), uint32(10), uint32(1 days))
        );
        market.createJob(r);
    }

    function test_createJob_revertsAcceptWindowAboveMax() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.acceptWindow = 1 days + 1;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.JobMarketInvalidWindow.selector, uint32(1 days + 1), uint32(10), uint32(1 days)
            )
        );
        market.createJob(r);
    }

    /// @notice v2: the exec window has a protocol floor (params.minExecWindow, 60 s).
    function test_createJob_revertsExecWindowBelowFloor() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.execWindow = 59;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(IJobMarket.JobMarketInvalidWindow.selector, uint32(59), uint32(60), uint32(1 days))
        );
        market.createJob(r);
        r.execWindow = 60;
        vm.prank(requester);
        market.createJob(r);
    }

    function test_createJob_revertsExecWindowAboveMax() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.execWindow = 1 days + 1;
        vm.prank(requester);
        vm.expectRevert(
            abi.encodeWithSelector(
                IJobMarket.JobMarketInvalidWindow.selector, uint32(1 days + 1), uint32(60), uint32(1 days)
            )
        );
        market.createJob(r);
    }

    function test_createJob_revertsUnknownProfile() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.profile = 2;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketUnknownProfile.selector, uint8(2)));
        market.createJob(r);
    }

    function test_createJob_acceptsProfileAddedLater() public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.profile = 2;
        createReq(req(UNITS, PRICE, 1)); // the market has seen two profiles
        vm.prank(owner);
        registry.addProfile(keccak256("torch-2.13.0/rocm/float32/deterministic"));
        uint256 id = createReq(r);
        assertEq(uint256(market.job(id).profile), 2);
    }

    function test_createJob_revertsZeroUnits() public {
        IJobMarket.JobRequest memory r = req(0, PRICE, 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidAmount.selector, uint32(0), PRICE));
        market.createJob(r);
    }

    function test_createJob_revertsZeroPrice() public {
        IJobMarket.JobRequest memory r = req(UNITS, 0, 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidAmount.selector, UNITS, uint80(0)));
        market.createJob(r);
    }

    function test_createJob_revertsCollateralOverflow() public {
        // units x price x collateralMultiple (10) must fit in 96 bits.
        uint32 units = type(uint32).max;
        uint80 price = uint80(uint256(type(uint96).max) / 10 / units + 1);
        IJobMarket.JobRequest memory r = req(units, price, 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidAmount.selector, units, price));
        market.createJob(r);
    }

    function test_createJob_revertsWithoutAllowance() public {
        address poor = makeAddr("poor");
        vm.prank(owner);
        token.mint(poor, 1e18);
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        vm.prank(poor);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, ESCROW1)
        );
        market.createJob(r);
    }

    function test_createJob_revertsWithoutBalance() public {
        address poor = makeAddr("poor");
        vm.prank(poor);
        token.approve(address(market), type(uint256).max);
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        vm.prank(poor);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, poor, 0, ESCROW1));
        market.createJob(r);
    }

    function testFuzz_createJob_amounts(uint32 units, uint80 price, uint8 replicas) public {
        replicas = oddReplicas(replicas);
        IJobMarket.JobRequest memory r = req(units, price, replicas);
        uint256 perReplica = uint256(units) * price;
        if (perReplica == 0 || perReplica * 10 > type(uint96).max) {
            vm.prank(requester);
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidAmount.selector, units, price));
            market.createJob(r);
            return;
        }
        uint256 payment = perReplica * replicas;
        uint256 fee = payment * 250 / 10_000;
        if (fee < 1e14) fee = 1e14;
        uint256 escrow = payment + fee + (replicas == 1 ? payment * 3000 / 10_000 : 0);
        assertEq(escrow, escrowAt(replicas, units, price));
        assertEq(market.escrowFor(r), escrow);
        vm.prank(owner);
        token.mint(requester, escrow);
        uint256 before = token.balanceOf(requester);
        uint256 id = createReq(r);
        assertEq(before - token.balanceOf(requester), escrow, "exact pull");
        assertEq(token.balanceOf(address(market)), escrow);
        assertEq(uint256(market.job(id).collateralMultiple), 10);
    }

    function testFuzz_createJob_overflowBound(uint32 units, uint8 multiple) public {
        units = uint32(bound(units, 1, type(uint32).max));
        multiple = uint8(bound(multiple, 1, 20));
        IJobMarket.Params memory p = defaultParams();
        p.collateralMultiple = multiple;
        p.auditBps = 5000; // the audit bound holds for every multiple
        applyParams(p);
        uint256 limit = uint256(type(uint96).max) / multiple / units; // largest price that fits
        vm.assume(limit >= 1 && limit < type(uint80).max);
        IJobMarket.JobRequest memory r = req(units, uint80(limit + 1), 1);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidAmount.selector, units, uint80(limit + 1)));
        market.createJob(r);
        r.maxPricePerUnit = uint80(limit);
        uint256 escrow = market.escrowFor(r);
        vm.prank(owner);
        token.mint(requester, escrow);
        uint256 id = createReq(r);
        assertEq(uint256(market.job(id).maxPricePerUnit), limit, "the largest price whose collateral fits");
    }

    function testFuzz_createJob_windows(uint32 acceptWindow, uint32 execWindow) public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, 1);
        r.acceptWindow = acceptWindow;
        r.execWindow = execWindow;
        vm.prank(requester);
        if (acceptWindow < 10 || acceptWindow > 1 days) {
            vm.expectRevert(
                abi.encodeWithSelector(
                    IJobMarket.JobMarketInvalidWindow.selector, acceptWindow, uint32(10), uint32(1 days)
                )
            );
            market.createJob(r);
            return;
        }
        if (execWindow < 60 || execWindow > 1 days) {
            vm.expectRevert(
                abi.encodeWithSelector(IJobMarket.JobMarketInvalidWindow.selector, execWindow, uint32(60), uint32(1 days))
            );
            market.createJob(r);
            return;
        }
        uint256 id = market.createJob(r);
        assertEq(deadlineOf(id), block.timestamp + acceptWindow);
        assertEq(uint256(market.job(id).execWindow), execWindow);
    }

    function testFuzz_createJob_replicas(uint8 replicas) public {
        IJobMarket.JobRequest memory r = req(UNITS, PRICE, replicas);
        vm.prank(requester);
        if (replicas == 0 || replicas > 5 || replicas % 2 == 0) {
            vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, replicas));
            market.createJob(r);
            return;
        }
        market.createJob(r);
        assertEq(token.balanceOf(address(market)), escrowAt(replicas, UNITS, PRICE));
    }

    // ---------------------------------------------------------------- createJobs

    function batch3() internal pure returns (IJobMarket.JobRequest[] memory rs) {
        rs = new IJobMarket.JobRequest[](3);
        rs[0] = req(UNITS, PRICE, 1);
        rs[1] = req(2 * UNITS, PRICE, 3);
        rs[2] = req(UNITS, PRICE / 2, 5);
    }

    function batchTotal(IJobMarket.JobRequest[] memory rs) internal view returns (uint256 total) {
        for (uint256 i; i < rs.length; ++i) total += market.escrowFor(rs[i]);
    }

    function countTransfers(Vm.Log[] memory logs, address from, address to) internal view returns (uint256 n, uint256 sum) {
        bytes32 sig = keccak256("Transfer(address,address,uint256)");
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.emitter != address(token) || l.topics[0] != sig) continue;
            if (address(uint160(uint256(l.topics[1]))) != from || address(uint160(uint256(l.topics[2]))) != to) {
                continue;
            }
            ++n;
            sum += abi.decode(l.data, (uint256));
        }
    }

    function test_createJobs() public {
        createJob(1); // ids continue after existing jobs
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        assertEq(total, ESCROW1 + 3 * 2 * (PAY + FEE) + 5 * (PAY / 2 + PAY / 2 * 250 / 10_000));
        uint32 acceptBy = uint32(block.timestamp + 1 hours);
        uint256 before = token.balanceOf(requester);

        vm.expectEmit(address(market));
        emit IJobMarket.JobCreated(2, requester, SPEC, rs[0], acceptBy, market.escrowFor(rs[0]));
        vm.expectEmit(address(market));
        emit IJobMarket.JobCreated(3, requester, SPEC, rs[1], acceptBy, market.escrowFor(rs[1]));
        vm.expectEmit(address(market));
        emit IJobMarket.JobCreated(4, requester, SPEC, rs[2], acceptBy, market.escrowFor(rs[2]));
        vm.recordLogs();
        vm.prank(requester);
        uint256 first = market.createJobs(rs);
        (uint256 pulls, uint256 pulled) = countTransfers(vm.getRecordedLogs(), requester, address(market));

        assertEq(first, 2);
        assertEq(market.jobCount(), 4);
        assertEq(pulls, 1, "one token pull");
        assertEq(pulled, total, "of the sum");
        assertEq(before - token.balanceOf(requester), total);
        assertEq(uint256(market.job(2).replicas), 1);
        assertEq(uint256(market.job(3).units), 2 * UNITS);
        assertEq(uint256(market.job(4).maxPricePerUnit), PRICE / 2);
        for (uint256 id = 2; id <= 4; ++id) {
            assertState(id, IJobMarket.JobState.Open);
            assertEq(market.job(id).requester, requester);
        }
    }

    function test_createJobs_revertsEmpty() public {
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](0);
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.createJobs(rs);
    }

    function test_createJobs_oneInvalidRevertsAll() public {
        IJobMarket.JobRequest[] memory rs = batch3();
        rs[2].replicas = 9;
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidReplicas.selector, uint8(9)));
        market.createJobs(rs);
        assertEq(market.jobCount(), 0);
        assertEq(token.balanceOf(address(market)), 0);
    }

    function test_createJobs_revertsWithoutAllowance() public {
        address poor = makeAddr("poor");
        vm.prank(owner);
        token.mint(poor, 1_000e18);
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        vm.prank(poor);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, total)
        );
        market.createJobs(rs);
    }

    function testFuzz_createJobs(uint8 n, uint256 seed) public {
        n = uint8(bound(n, 1, 12));
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](n);
        uint256 total;
        for (uint256 i; i < n; ++i) {
            uint256 x = uint256(keccak256(abi.encode(seed, i)));
            rs[i] = req(uint32(bound(x, 1, 1e6)), uint80(bound(x >> 32, 1, 1e18)), oddReplicas(x >> 128));
            total += escrowAt(rs[i].replicas, rs[i].units, rs[i].maxPricePerUnit);
        }
        vm.prank(owner);
        token.mint(requester, total);
        uint256 before = token.balanceOf(requester);
        vm.prank(requester);
        uint256 first = market.createJobs(rs);
        assertEq(first, 1);
        assertEq(market.jobCount(), n);
        assertEq(before - token.balanceOf(requester), total);
        for (uint256 i; i < n; ++i) {
            assertEq(uint256(market.job(first + i).units), rs[i].units);
            assertEq(uint256(market.job(first + i).replicas), rs[i].replicas);
        }
    }

    // ---------------------------------------------------------------- createJobsWithPermit

    function permitSig(uint256 key, address holder, uint256 value, uint256 nonce, uint256 deadline)
        internal
        view
        returns (uint8 v, bytes32 r, bytes32 s)
    {
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, holder, address(market), value, nonce, deadline));
        return vm.sign(key, keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash)));
    }

    function newBuyer() internal returns (address buyer, uint256 key) {
        (buyer, key) = makeAddrAndKey("buyer");
        vm.prank(owner);
        token.mint(buyer, 1_000e18);
    }

    function test_createJobsWithPermit() public {
        (address buyer, uint256 key) = newBuyer();
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, total, 0, deadline);
        vm.expectEmit(address(token));
        emit IERC20.Approval(buyer, address(market), total);
        vm.prank(buyer);
        uint256 first = market.createJobsWithPermit(rs, total, deadline, v, r, s);
        assertEq(first, 1);
        assertEq(market.jobCount(), 3);
        assertEq(token.balanceOf(buyer), 1_000e18 - total);
        assertEq(token.balanceOf(address(market)), total);
        assertEq(token.allowance(buyer, address(market)), 0, "permit used up exactly");
        assertEq(token.nonces(buyer), 1);
        assertEq(market.job(1).requester, buyer);
    }

    function test_createJobsWithPermit_frontRunPermitStillCreates() public {
        (address buyer, uint256 key) = newBuyer();
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, total, 0, deadline);
        // Someone saw the transaction and submitted the permit first.
        vm.prank(keeper);
        token.permit(buyer, address(market), total, deadline, v, r, s);
        assertEq(token.allowance(buyer, address(market)), total);
        vm.prank(buyer);
        uint256 first = market.createJobsWithPermit(rs, total, deadline, v, r, s);
        assertEq(first, 1);
        assertEq(market.jobCount(), 3);
        assertEq(token.balanceOf(buyer), 1_000e18 - total);
        assertEq(token.nonces(buyer), 1, "the permit ran once");
    }

    function test_createJobsWithPermit_badPermitWithApprovalStillCreates() public {
        (address buyer,) = newBuyer();
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        vm.prank(buyer);
        token.approve(address(market), total);
        vm.prank(buyer);
        market.createJobsWithPermit(rs, total, block.timestamp - 1, 27, bytes32(0), bytes32(0));
        assertEq(market.jobCount(), 3);
        assertEq(token.balanceOf(address(market)), total);
    }

    function test_createJobsWithPermit_revertsWhenPermitInvalidAndNoAllowance() public {
        (address buyer, uint256 key) = newBuyer();
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        uint256 deadline = block.timestamp - 1; // expired permit: permit fails, the pull decides
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, total, 0, deadline);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, total)
        );
        market.createJobsWithPermit(rs, total, deadline, v, r, s);
    }

    function test_createJobsWithPermit_revertsWhenPermitValueTooLow() public {
        (address buyer, uint256 key) = newBuyer();
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, total - 1, 0, deadline);
        vm.prank(buyer);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), total - 1, total)
        );
        market.createJobsWithPermit(rs, total - 1, deadline, v, r, s);
    }

    function test_createJobsWithPermit_revertsEmpty() public {
        (address buyer, uint256 key) = newBuyer();
        IJobMarket.JobRequest[] memory rs = new IJobMarket.JobRequest[](0);
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, 1, 0, deadline);
        vm.prank(buyer);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketInvalidBatch.selector, 0, 0));
        market.createJobsWithPermit(rs, 1, deadline, v, r, s);
    }

    function test_createJobsWithPermit_someoneElsesPermitDoesNotPay() public {
        // A permit signed by the buyer cannot be used by a third party to create jobs on the buyer's
        // funds: the permit is for msg.sender, so the third party's call tries its own permit.
        (address buyer, uint256 key) = newBuyer();
        address thief = makeAddr("thief");
        IJobMarket.JobRequest[] memory rs = batch3();
        uint256 total = batchTotal(rs);
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = permitSig(key, buyer, total, 0, deadline);
        vm.prank(thief);
        vm.expectRevert(
            abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, address(market), 0, total)
        );
        market.createJobsWithPermit(rs, total, deadline, v, r, s);
        assertEq(token.nonces(buyer), 0);
    }

    // ---------------------------------------------------------------- cancel

    function test_cancel() public {
        uint256 id = createJob(3);
        uint256 escrow = 3 * (PAY + FEE);
        vm.expectEmit(address(market));
        emit IJobMarket.Credited(id, requester, escrow);
        vm.expectEmit(address(market));
        emit IJobMarket.JobClosed(id, IJobMarket.JobState.Expired, bytes32(0), 0, escrow, 0, 0);
        vm.prank(requester);
        market.cancel(id);
        assertState(id, IJobMarket.JobState.Expired);
        assertEq(market.credits(requester), escrow);
        uint256 before = token.balanceOf(requester);
        vm.prank(requester);
        assertEq(market.withdraw(), escrow);
        assertEq(token.balanceOf(requester), before + escrow);
        assertEq(token.balanceOf(address(market)), 0);
    }

    function test_cancel_revertsForNonRequester() public {
        uint256 id = createJob(1);
        vm.prank(keeper);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketNotRequester.selector, id, keeper));
        market.cancel(id);
    }

    function test_cancel_revertsUnknownJob() public {
        vm.prank(requester);
        vm.expectRevert(unexpected(7, IJobMarket.JobState.None, S_OPEN));
        market.cancel(7);
    }

    function test_cancel_revertsWhenAssigned() public {
        address p = newProvider("p", PRICE);
        uint256 id = assignedJob(p);
        vm.prank(requester);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Assigned, S_OPEN));
        market.cancel(id);
    }

    function test_cancel_twiceReverts() public {
        uint256 id = createJob(1);
        vm.prank(requester);
        market.cancel(id);
        vm.prank(requester);
        vm.expectRevert(unexpected(id, IJobMarket.JobState.Expired, S_OPEN));
        market.cancel(id);
        assertEq(market.credits(requester), ESCROW1, "credited once");
    }

    function test_cancel_afterAcceptDeadlineStillAllowed() public {
        uint256 id = createJob(1);
        skipTime(2 hours);
        vm.prank(requester);
        market.cancel(id);
        assertEq(market.credits(requester), ESCROW1);
    }
}
