// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

/// @title SortitionTree
/// @notice A K-ary sum tree over account weights: O(log n) updates and stake-weighted draws, with
/// no loop over accounts anywhere. Draws read the weights as they stood at the start of the
/// current epoch, so nobody can shape a draw by changing stake once its seed is known.
/// @dev `nodes[0]` is the root; the children of node i are K*i+1 .. K*i+K. Leaves are appended
/// left to right; appending the first child of a node that is still a leaf moves that leaf down
/// one level so every account stays at a leaf. Emptied leaves are reused before the tree grows,
/// but never in the epoch they were emptied (their epoch-start weight still belongs to the old
/// owner's snapshot). Each node packs [current:112][epochStart:112][epoch:32]: the first change
/// in an epoch copies `current` into `epochStart`.
library SortitionTree {
    uint256 internal constant K = 4;
    /// @dev Epochs are runs of this many blocks.
    uint256 internal constant EPOCH_BLOCKS = 64;
    uint256 private constant MASK_112 = (1 << 112) - 1;

    struct Tree {
        uint256[] nodes;
        uint256[] vacant; // [index:224][epoch emptied:32]
        mapping(address account => uint256 index) leafOf; // 0: no leaf (the root is never a leaf)
        mapping(uint256 index => address account) ownerOf;
        mapping(uint256 index => uint256 position) vacantAt; // 1 + position in `vacant`; 0: not vacant
    }

    /// @notice The current epoch: block number / EPOCH_BLOCKS (over the low 32 bits).
    function epoch() internal view returns (uint32) {
        return uint32(uint32(block.number) / EPOCH_BLOCKS);
    }

    /// @notice Total weight in the tree now.
    function total(Tree storage t) internal view returns (uint256) {
        return t.nodes.length == 0 ? 0 : t.nodes[0] >> 144;
    }

    /// @notice Total weight at the start of the current epoch (what draws use).
    function totalAtEpochStart(Tree storage t) internal view returns (uint256) {
        return t.nodes.length == 0 ? 0 : _atStart(t.nodes[0], epoch());
    }

    /// @notice Weight of `account` now (0 when absent).
    function weightOf(Tree storage t, address account) internal view returns (uint256) {
        uint256 i = t.leafOf[account];
        return i == 0 ? 0 : t.nodes[i] >> 144;
    }

    /// @notice Sets `account`'s weight; zero removes its leaf.
    function set(Tree storage t, address account, uint256 weight) internal {
        uint32 e = epoch();
        uint256 i = t.leafOf[account];
        if (i == 0) {
            if (weight == 0) return;
            if (t.nodes.length == 0) t.nodes.push(uint256(e));
            i = _newLeaf(t, e);
            t.leafOf[account] = i;
            t.ownerOf[i] = account;
            _add(t, i, weight, true, e);
            return;
        }
        uint256 old = t.nodes[i] >> 144;
        if (weight == 0) {
            delete t.leafOf[account];
            delete t.ownerOf[i];
            t.vacant.push(i << 32 | e);
            t.vacantAt[i] = t.vacant.length;
        }
        if (weight > old) _add(t, i, weight - old, true, e);
        else if (old > weight) _add(t, i, old - weight, false, e);
    }

    /// @notice The account whose epoch-start weight interval contains `r` (requires r below
    /// `totalAtEpochStart`); zero when that weight belonged to a leaf emptied this epoch.
    function draw(Tree storage t, uint256 r) internal view returns (address) {
        uint32 e = epoch();
        uint256 n = t.nodes.length;
        uint256 i;
        while (K * i + 1 < n) {
            uint256 first = K * i + 1;
            uint256 end = first + K < n ? first + K : n;
            for (uint256 c = first; c < end; ++c) {
                uint256 w = _atStart(t.nodes[c], e);
                if (r < w) {
                    i = c;
                    break;
                }
                r -= w;
            }
        }
        return t.ownerOf[i];
    }

    function _atStart(uint256 node, uint32 e) private pure returns (uint256) {
        // slither-disable-next-line incorrect-equality -- epoch numbers are exact integers: the snapshot belongs to this epoch only when they match
        return uint32(node) == e ? (node >> 32) & MASK_112 : node >> 144;
    }

    function _newLeaf(Tree storage t, uint32 e) private returns (uint256 i) {
        uint256 free = t.vacant.length;
        if (free != 0 && uint32(t.vacant[free - 1]) != e) {
            i = t.vacant[free - 1] >> 32;
            t.vacant.pop();
            delete t.vacantAt[i];
            return i;
        }
        i = t.nodes.length;
        if (i != 1 && (i - 1) % K == 0) {
            // The parent is a leaf: move it (both weights) down to its first child; the new leaf
            // goes beside it, and the parent's sums stay what they were.
            uint256 parent = (i - 1) / K;
            address moved = t.ownerOf[parent];
            t.nodes.push(t.nodes[parent]);
            t.ownerOf[i] = moved;
            delete t.ownerOf[parent];
            if (moved != address(0)) {
                t.leafOf[moved] = i;
            } else {
                // A leaf emptied this epoch moves down; its place in the vacant list follows it.
                uint256 pos = t.vacantAt[parent];
                t.vacant[pos - 1] = i << 32 | uint32(t.vacant[pos - 1]);
                t.vacantAt[i] = pos;
                delete t.vacantAt[parent];
            }
            ++i;
        }
        t.nodes.push(uint256(e));
    }

    function _add(Tree storage t, uint256 i, uint256 delta, bool up, uint32 e) private {
        while (true) {
            uint256 node = t.nodes[i];
            uint256 current = node >> 144;
            // slither-disable-next-line incorrect-equality -- epoch numbers are exact integers: the snapshot belongs to this epoch only when they match
            uint256 start = uint32(node) == e ? (node >> 32) & MASK_112 : current;
            current = up ? current + delta : current - delta;
            t.nodes[i] = current << 144 | start << 32 | e;
            if (i == 0) return;
            i = (i - 1) / K;
        }
    }
}
