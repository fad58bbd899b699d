// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Burnable} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Burnable.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// @title ComputeToken
/// @notice Pays for jobs and is what providers stake. ERC-20 with ERC-2612 permit and burn (slashed
/// stake is partly burned); the owner mints (the devnet faucet, or an issuance policy on a real chain).
contract ComputeToken is ERC20, ERC20Burnable, ERC20Permit, Ownable {
    constructor(address initialOwner)
        ERC20("depin Compute Token", "DCT")
        ERC20Permit("depin Compute Token")
        Ownable(initialOwner)
    {}

    /// @notice Mints `amount` to `to`.
    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }
}
