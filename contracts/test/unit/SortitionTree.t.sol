// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {Test} from "../utils/Test.sol";
import {SortitionTree} from "../../src/libraries/SortitionTree.sol";

/// @dev Exposes the internal library on its own storage.
contract TreeHarness {
    using SortitionTree for SortitionTree.Tree;

    SortitionTree.Tree internal tree;

    function set(address a, uint256 w) external {
        tree.set(a, w);
    }

    function total() external view returns (uint256) {
        return tree.total();
    }

    function weightOf(address a) external view returns (uint256) {
        return tree.weightOf(a);
    }

    function draw(uint256 r) external view returns (address) {
        return tree.draw(r);
    }
}

/// @notice The per-profile sortition sum tree: totals stay the sum of weights through any
/// sequence of sets and removals, and draws land on accounts in proportion to their weights
/// (draws read the weights as they stood at the start of the current 64-block epoch).
contract SortitionTreeTest is Test {
    TreeHarness internal h;
    address[] internal accounts;
    mapping(address => uint256) internal weights;

    function setUp() public {
        h = new TreeHarness();
        for (uint256 i; i < 23; ++i) accounts.push(address(uint160(0x1000 + i)));
    }

    function nextEpoch() internal {
        vm.roll((block.number / 64 + 1) * 64);
    }

    function sum() internal view returns (uint256 s) {
        for (uint256 i; i < accounts.length; ++i) s += weights[accounts[i]];
    }

    function test_emptyTree() public view {
        assertEq(h.total(), 0);
        assertEq(h.weightOf(accounts[0]), 0);
    }

    function test_setUpdateRemove() public {
        h.set(accounts[0], 5);
        h.set(accounts[1], 7);
        assertEq(h.total(), 12);
        h.set(accounts[0], 2);
        assertEq(h.total(), 9);
        h.set(accounts[1], 0);
        assertEq(h.total(), 2);
        assertEq(h.weightOf(accounts[1]), 0);
        nextEpoch();
        assertEq(h.draw(0), accounts[0]);
        assertEq(h.draw(1), accounts[0]);
        h.set(accounts[2], 3);
        nextEpoch();
        assertEq(h.draw(2), accounts[2]);
        assertEq(h.total(), 5);
    }

    /// @notice Any sequence of sets (zero removes) keeps total == sum of weights and every
    /// account's weight readable.
    function testFuzz_setRemoveKeepsTotal(uint256[40] memory ops) public {
        for (uint256 k; k < ops.length; ++k) {
            address a = accounts[ops[k] % accounts.length];
            uint256 w = (ops[k] >> 8) % 4 == 0 ? 0 : (ops[k] >> 16) % 1e24;
            h.set(a, w);
            weights[a] = w;
            assertEq(h.total(), sum(), "total == sum of weights");
        }
        for (uint256 i; i < accounts.length; ++i) assertEq(h.weightOf(accounts[i]), weights[accounts[i]]);
    }

    /// @notice Every r in [0, total) lands on the account whose interval holds it: draw
    /// frequencies over all of [0, total) equal the weights exactly (small weights), and random
    /// draws follow the weights (large weights).
    function testFuzz_drawFrequenciesFollowWeights(uint256 seed) public {
        uint256 n = 9;
        for (uint256 i; i < n; ++i) {
            uint256 w = uint256(keccak256(abi.encode(seed, i))) % 20;
            h.set(accounts[i], w);
            weights[accounts[i]] = w;
        }
        uint256 total = h.total();
        assertEq(total, sum());
        vm.assume(total > 0);
        nextEpoch();
        for (uint256 r; r < total; ++r) {
            address a = h.draw(r);
            assertTrue(weights[a] > 0, "never a zero-weight account");
            ++counts[a];
        }
        for (uint256 i; i < n; ++i) assertEq(counts[accounts[i]], weights[accounts[i]], "exact interval sizes");
    }

    mapping(address => uint256) internal counts;

    function test_randomDrawsFollowStake() public {
        // Weights 1:2:3:4 (x 1e18); 4000 keccak draws; each share within 3 points of its weight.
        for (uint256 i; i < 4; ++i) {
            h.set(accounts[i], (i + 1) * 1e18);
            weights[accounts[i]] = (i + 1) * 1e18;
        }
        uint256 total = h.total();
        nextEpoch();
        uint256 n = 4000;
        for (uint256 k; k < n; ++k) ++counts[h.draw(uint256(keccak256(abi.encode(k))) % total)];
        for (uint256 i; i < 4; ++i) {
            uint256 expected = n * (i + 1) / 10;
            assertApproxEqAbs(counts[accounts[i]], expected, n * 3 / 100, "share follows stake");
        }
    }
}
