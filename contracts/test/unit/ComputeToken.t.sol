// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {UnitBase} from "./UnitBase.sol";
import {ComputeToken} from "../../src/ComputeToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Errors} from "@openzeppelin/contracts/interfaces/draft-IERC6093.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract ComputeTokenTest is UnitBase {
    bytes32 internal constant PERMIT_TYPEHASH =
        keccak256("Permit(address owner,address spender,uint256 value,uint256 nonce,uint256 deadline)");

    address internal alice;
    uint256 internal aliceKey;
    address internal bob = makeAddr("bob");

    function setUp() public override {
        super.setUp();
        (alice, aliceKey) = makeAddrAndKey("alice");
    }

    function permitDigest(address holder, address spender, uint256 value, uint256 nonce, uint256 deadline)
        internal
        view
        returns (bytes32)
    {
        bytes32 structHash = keccak256(abi.encode(PERMIT_TYPEHASH, holder, spender, value, nonce, deadline));
        return keccak256(abi.encodePacked("\x19\x01", token.DOMAIN_SEPARATOR(), structHash));
    }

    // ---------------------------------------------------------------- metadata

    function test_metadata() public view {
        assertEq(token.name(), "depin Compute Token");
        assertEq(token.symbol(), "DCT");
        assertEq(uint256(token.decimals()), 18);
        assertEq(token.owner(), owner);
        assertEq(token.totalSupply(), 1_000_000e18, "only the requester's faucet mint");
    }

    function test_domainSeparator() public view {
        bytes32 expected = keccak256(
            abi.encode(
                keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"),
                keccak256(bytes("depin Compute Token")),
                keccak256(bytes("1")),
                block.chainid,
                address(token)
            )
        );
        assertEq(token.DOMAIN_SEPARATOR(), expected);
    }

    // ---------------------------------------------------------------- mint

    function test_mint() public {
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(token));
        emit IERC20.Transfer(address(0), alice, 5e18);
        vm.prank(owner);
        token.mint(alice, 5e18);
        assertEq(token.balanceOf(alice), 5e18);
        assertEq(token.totalSupply(), supply + 5e18);
    }

    function test_mint_revertsForNonOwner() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        token.mint(alice, 1);
    }

    function test_mint_revertsToZeroAddress() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InvalidReceiver.selector, address(0)));
        token.mint(address(0), 1);
    }

    function testFuzz_mint(address to, uint256 amount) public {
        vm.assume(to != address(0) && to != requester);
        amount = bound(amount, 0, type(uint256).max - token.totalSupply());
        uint256 supply = token.totalSupply();
        vm.prank(owner);
        token.mint(to, amount);
        assertEq(token.balanceOf(to), amount);
        assertEq(token.totalSupply(), supply + amount);
    }

    // ---------------------------------------------------------------- burn

    function test_burn() public {
        vm.prank(owner);
        token.mint(alice, 10e18);
        uint256 supply = token.totalSupply();
        vm.expectEmit(address(token));
        emit IERC20.Transfer(alice, address(0), 4e18);
        vm.prank(alice);
        token.burn(4e18);
        assertEq(token.balanceOf(alice), 6e18);
        assertEq(token.totalSupply(), supply - 4e18);
    }

    function test_burn_revertsAboveBalance() public {
        vm.prank(owner);
        token.mint(alice, 1e18);
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, alice, 1e18, 1e18 + 1));
        token.burn(1e18 + 1);
    }

    function test_burnFrom() public {
        vm.prank(owner);
        token.mint(alice, 10e18);
        vm.prank(alice);
        token.approve(bob, 3e18);
        vm.prank(bob);
        token.burnFrom(alice, 2e18);
        assertEq(token.balanceOf(alice), 8e18);
        assertEq(token.allowance(alice, bob), 1e18, "allowance spent");
    }

    function test_burnFrom_revertsWithoutAllowance() public {
        vm.prank(owner);
        token.mint(alice, 10e18);
        vm.prank(alice);
        token.approve(bob, 1e18);
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, bob, 1e18, 2e18));
        token.burnFrom(alice, 2e18);
    }

    function testFuzz_burn(uint256 minted, uint256 burned) public {
        minted = bound(minted, 0, 1e30);
        burned = bound(burned, 0, minted);
        vm.prank(owner);
        token.mint(alice, minted);
        uint256 supply = token.totalSupply();
        vm.prank(alice);
        token.burn(burned);
        assertEq(token.balanceOf(alice), minted - burned);
        assertEq(token.totalSupply(), supply - burned);
    }

    // ---------------------------------------------------------------- transfer

    function test_transfer() public {
        vm.expectEmit(address(token));
        emit IERC20.Transfer(requester, alice, 7);
        vm.prank(requester);
        assertTrue(token.transfer(alice, 7));
        assertEq(token.balanceOf(alice), 7);
        assertEq(token.balanceOf(requester), 1_000_000e18 - 7);
    }

    function test_transfer_revertsToZero() public {
        vm.prank(requester);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InvalidReceiver.selector, address(0)));
        token.transfer(address(0), 1);
    }

    function test_transfer_revertsAboveBalance() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(IERC20Errors.ERC20InsufficientBalance.selector, alice, 0, 1));
        token.transfer(bob, 1);
    }

    function testFuzz_transferFrom(uint256 allowance, uint256 amount) public {
        allowance = bound(allowance, 0, 1_000_000e18);
        amount = bound(amount, 0, 1_000_000e18);
        vm.prank(requester);
        token.approve(bob, allowance);
        vm.prank(bob);
        if (amount > allowance) {
            vm.expectRevert(
                abi.encodeWithSelector(IERC20Errors.ERC20InsufficientAllowance.selector, bob, allowance, amount)
            );
            token.transferFrom(requester, alice, amount);
            return;
        }
        token.transferFrom(requester, alice, amount);
        assertEq(token.balanceOf(alice), amount);
        assertEq(token.allowance(requester, bob), allowance - amount);
    }

    // ---------------------------------------------------------------- permit

    function test_permit() public {
        uint256 deadline = block.timestamp + 1 hours;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, permitDigest(alice, bob, 123e18, 0, deadline));
        vm.expectEmit(address(token));
        emit IERC20.Approval(alice, bob, 123e18);
        vm.prank(keeper); // anyone may submit the permit
        token.permit(alice, bob, 123e18, deadline, v, r, s);
        assertEq(token.allowance(alice, bob), 123e18);
        assertEq(token.nonces(alice), 1);
    }

    function test_permit_atDeadline() public {
        uint256 deadline = block.timestamp;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, permitDigest(alice, bob, 1, 0, deadline));
        token.permit(alice, bob, 1, deadline, v, r, s);
        assertEq(token.allowance(alice, bob), 1);
    }

    function test_permit_revertsExpired() public {
        uint256 deadline = block.timestamp - 1;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, permitDigest(alice, bob, 1, 0, deadline));
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612ExpiredSignature.selector, deadline));
        token.permit(alice, bob, 1, deadline, v, r, s);
    }

    function test_permit_revertsWrongSigner() public {
        (address mallory, uint256 malloryKey) = makeAddrAndKey("mallory");
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(malloryKey, permitDigest(alice, bob, 1, 0, deadline));
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612InvalidSigner.selector, mallory, alice));
        token.permit(alice, bob, 1, deadline, v, r, s);
    }

    function test_permit_revertsOnReplay() public {
        uint256 deadline = block.timestamp + 1;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, permitDigest(alice, bob, 1, 0, deadline));
        token.permit(alice, bob, 1, deadline, v, r, s);
        // The nonce moved on: the same signature now recovers to an unrelated address.
        address recovered = ecrecover(permitDigest(alice, bob, 1, 1, deadline), v, r, s);
        vm.expectRevert(abi.encodeWithSelector(ERC20Permit.ERC2612InvalidSigner.selector, recovered, alice));
        token.permit(alice, bob, 1, deadline, v, r, s);
    }

    function testFuzz_permit(uint256 value, uint256 ttl) public {
        ttl = bound(ttl, 0, 365 days);
        uint256 deadline = block.timestamp + ttl;
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(aliceKey, permitDigest(alice, bob, value, 0, deadline));
        token.permit(alice, bob, value, deadline, v, r, s);
        assertEq(token.allowance(alice, bob), value);
        assertEq(token.nonces(alice), 1);
    }

    // ---------------------------------------------------------------- ownership

    function test_transferOwnership() public {
        vm.expectEmit(address(token));
        emit Ownable.OwnershipTransferred(owner, alice);
        vm.prank(owner);
        token.transferOwnership(alice);
        assertEq(token.owner(), alice);
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, owner));
        token.mint(owner, 1);
    }

    function test_transferOwnership_revertsForNonOwner() public {
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        token.transferOwnership(alice);
    }

    function test_transferOwnership_revertsToZero() public {
        vm.prank(owner);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableInvalidOwner.selector, address(0)));
        token.transferOwnership(address(0));
    }
}
