// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {Vm} from "../utils/Test.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";

/// @notice Regression tests: behaviour the NatSpec promises that an earlier JobMarket lacked — the
/// audit view in the commit block, audits at block numbers that are multiples of 2^32, and the
/// JobClosed totals of transactions that also slash.
contract RegressionsTest is UnitBase {
    uint256 internal constant COMP = COLLATERAL * 5000 / BPS;
    uint256 internal constant REWARD = COLLATERAL * 3000 / BPS;
    uint256 internal constant BURN = COLLATERAL - COMP - REWARD;

    bytes32 internal constant CREDITED = keccak256("Credited(uint256,address,uint256)");
    bytes32 internal constant CLOSED = keccak256("JobClosed(uint256,uint8,bytes32,uint256,uint256,uint256,uint256)");

    address internal exec;

    function setUp() public override {
        super.setUp();
        exec = newProvider("exec", PRICE);
    }

    // ---------------------------------------------------------------- auditSelected in the commit block

    /// IJobMarket.auditSelected: "Whether the audit draw for a Committed job selects it (reverts
    /// before the next block)". In the commit block blockhash(commitBlock) is 0, and the view has no
    /// same-block check (drawAudit and finalize do), so it answers `true` instead of reverting.
    function test_regression_auditSelected_doesNotRevertInCommitBlock() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        vm.expectRevert(abi.encodeWithSelector(IJobMarket.JobMarketAuditNotDrawable.selector, id, block.number));
        market.auditSelected(id);
    }

    /// The consequence: with a 0% audit rate a keeper asking in the commit block (eth_call on the
    /// latest block) is told the job is selected, and the draw in the next block says the opposite.
    function test_regression_auditSelected_commitBlockAnswerContradictsDraw() public {
        setAuditBps(0);
        uint256 id = committedJob(exec);
        bool told;
        try market.auditSelected(id) returns (bool selected) {
            told = selected;
        } catch {
            return; // reverting is the documented behaviour
        }
        nextBlock();
        assertEq(market.drawAudit(id), told, "auditSelected answered differently from the draw");
    }

    // ---------------------------------------------------------------- commitBlock 0 sentinel

    /// `Participant.commitBlock` stores uint32(block.number) and 0 means "drawn already". A commit
    /// in a block whose number is a multiple of 2^32 stores 0, so drawAudit returns false without a
    /// draw and finalize settles without drawing: the executor escapes the audit even at a 100%
    /// audit rate (and the aged-hash rule cannot force one). _randomness is wraparound-safe, so
    /// block numbers past 2^32 are in scope.
    function test_regression_commitAtBlockMultipleOf2pow32_escapesAudit() public {
        setAuditBps(10_000);
        uint256 id = assignedJob(exec);
        vm.roll(uint256(type(uint32).max) + 1);
        commitAs(exec, id, BAD);
        nextBlock();
        assertTrue(market.drawAudit(id), "a 100% audit rate must select the job");
    }

    function test_regression_commitAtBlockMultipleOf2pow32_finalizeSettlesUnaudited() public {
        setAuditBps(10_000);
        uint256 id = assignedJob(exec);
        vm.roll(uint256(type(uint32).max) + 1);
        commitAs(exec, id, BAD);
        skipTime(10 minutes + 1);
        market.finalize(id);
        assertState(id, IJobMarket.JobState.Auditing);
    }

    // ---------------------------------------------------------------- JobClosed totals

    /// v2 replacement: drawn verifiers that miss their commit deadline are slashed (no requester
    /// share: a requester must not profit from anyone's no-show), their reward share funds the
    /// audit pool, and every token is accounted for in the events of that transaction.
    function test_regression_verifierNoShowSlashesAccounted() public {
        setAuditBps(0);
        stakeVerifiers(3);
        uint256 id = committedJob(exec);
        vm.prank(requester);
        market.challenge(id);
        address[] memory vs = staffRound(id);
        skipTime(30 minutes + 1); // the verifier exec window
        uint256 supply = token.totalSupply();
        uint256 pool = market.auditPool();
        uint256 credited = market.credits(requester);
        vm.recordLogs();
        market.finalize(id);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertState(id, IJobMarket.JobState.Revealing);
        assertEq(supply - token.totalSupply(), 3 * (COLLATERAL - REWARD), "burned: all but the reward share");
        assertEq(market.auditPool() - pool, 3 * REWARD, "reward shares fund the pool");
        assertEq(market.credits(requester), credited, "the requester gains nothing from no-shows");
        assertEq(creditedTo(logs, id, requester), 0);
        for (uint256 i; i < 3; ++i) {
            assertEq(registry.provider(vs[i]).stake, PROVIDER_STAKE - COLLATERAL, "no-show verifier slashed");
        }
    }

    /// Same omission on the second no-show: expire slashes the executor (compensation credited,
    /// burn share burned) and closes the job as Expired in one transaction; the compensation is
    /// reported but the burn is not (and the reward share sent to the audit pool is not in `fees`,
    /// unlike the no-majority path where _distributeReward counts it).
    function test_regression_jobClosed_omitsBurnOfSecondNoShow() public {
        address second = newProvider("second", PRICE);
        uint256 id = assignedJob(exec);
        skipTime(1 hours + 1);
        market.expire(id);
        assignJob(id, one(second));
        skipTime(1 hours + 1);
        uint256 supply = token.totalSupply();
        uint256 pool = market.auditPool();
        vm.recordLogs();
        market.expire(id);
        Vm.Log[] memory logs = vm.getRecordedLogs();
        assertEq(supply - token.totalSupply(), COLLATERAL - REWARD, "burned in this transaction (no compensation)");
        assertEq(market.auditPool() - pool, REWARD);
        (uint256 refunded, uint256 burned) = closedTotals(logs, id);
        assertEq(refunded, ESCROW1, "the escrow, and no compensation for a no-show");
        assertEq(burned, COLLATERAL - REWARD, "JobClosed.burned vs tokens burned");
    }

    function closedTotals(Vm.Log[] memory logs, uint256 id) internal view returns (uint256 refunded, uint256 burned) {
        bool found;
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.emitter != address(market) || l.topics[0] != CLOSED || uint256(l.topics[1]) != id) continue;
            (,,, refunded,, burned) = abi.decode(l.data, (uint8, bytes32, uint256, uint256, uint256, uint256));
            found = true;
        }
        assertTrue(found, "JobClosed emitted");
    }

    function creditedTo(Vm.Log[] memory logs, uint256 id, address account) internal view returns (uint256 sum) {
        for (uint256 i; i < logs.length; ++i) {
            Vm.Log memory l = logs[i];
            if (l.emitter != address(market) || l.topics[0] != CREDITED) continue;
            if (uint256(l.topics[1]) != id || address(uint160(uint256(l.topics[2]))) != account) continue;
            sum += abi.decode(l.data, (uint256));
        }
    }
}
