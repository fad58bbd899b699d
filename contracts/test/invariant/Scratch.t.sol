// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;
import {Test} from "../utils/Test.sol";
contract ScratchTest is Test {
    function test_bh() public {
        vm.roll(100);
        vm.roll(105);
        emit log(uint256(blockhash(104)), uint256(blockhash(100)), uint256(blockhash(5)));
        vm.roll(1000);
        emit log(uint256(blockhash(999)), uint256(blockhash(600)), uint256(blockhash(745)));
    }
    event log(uint256,uint256,uint256);
}
