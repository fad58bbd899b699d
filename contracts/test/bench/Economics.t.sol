// SPDX-License-Identifier: MIT
pragma solidity ^0.8.28;

import {ComputeToken} from "../../src/ComputeToken.sol";
import {ProviderRegistry} from "../../src/ProviderRegistry.sol";
import {JobMarket} from "../../src/JobMarket.sol";
import {IJobMarket} from "../../src/interfaces/IJobMarket.sol";
import {IProviderRegistry} from "../../src/interfaces/IProviderRegistry.sol";

/// @notice The forge cheatcodes this bench uses (signatures as in forge 1.7).
interface BenchVm {
    function warp(uint256 newTimestamp) external;
    function roll(uint256 newHeight) external;
    function setBlockhash(uint256 blockNumber, bytes32 blockHash) external;
    function getBlockNumber() external view returns (uint256);
    function getBlockTimestamp() external view returns (uint256);
    function prank(address msgSender) external;
    function startPrank(address msgSender) external;
    function stopPrank() external;
    function store(address target, bytes32 slot, bytes32 value) external;
    function load(address target, bytes32 slot) external view returns (bytes32);
    function envOr(string calldata name, uint256 defaultValue) external view returns (uint256);
    function writeFile(string calldata path, string calldata data) external;
    function toString(uint256 value) external pure returns (string memory);
    function toString(int256 value) external pure returns (string memory);
}

/// @title EconomicsBench
/// @notice Plays each provider and requester strategy over many jobs against the real contracts at
/// the default parameters and records every actor group's exact token P&L (stake + credits +
/// wallet), per job. `bench/economics.py` sets ECON_JOBS / ECON_AUDITED, reads
/// snapshots/economics.json and prints profit per job against the honest provider's.
/// @dev Own setup (no test utils): a fresh token, registry and market per strategy. Randomness:
/// every commit block and every audit seed block gets a fresh pseudo-random hash (vm.setBlockhash).
/// Replicas = 1 strategies also run ECON_AUDITED jobs whose commit-block hash is re-drawn until the
/// audit draw selects the job (rejection sampling: the same distribution as a naturally audited
/// job), so the audited stratum is measured on many jobs; the Python side weighs the strata by the
/// exact audit probability. Without ECON_JOBS the test runs 2 jobs per strategy and writes nothing.
contract EconomicsBench {
    BenchVm internal constant vm = BenchVm(address(uint160(uint256(keccak256("hevm cheat code")))));

    enum B {
        None,
        Honest,
        Lazy, //    commits (and reveals) a digest it made up, computes nothing
        Copycat, // copies another participant's published resultHash and seal, computes nothing
        NoShow, //  never commits
        Collude //  votes the coalition's made-up digest, computes nothing
    }

    /// @dev Groups whose P&L is tracked: the strategy's player (coalition), the honest provider
    /// pool, the requester when it is not the player, the executor when it is not the player.
    uint256 internal constant G_SUBJECT = 0;
    uint256 internal constant G_HONEST = 1;
    uint256 internal constant G_REQUESTER = 2;
    uint256 internal constant G_EXECUTOR = 3;
    uint256 internal constant GROUPS = 4;

    uint32 internal constant UNITS = 100;
    uint80 internal constant PRICE = 1e16;
    uint256 internal constant PAY = uint256(UNITS) * PRICE; // 1e18: profits are printed in these
    uint256 internal constant STAKE = 100 * PAY;
    uint256 internal constant HONEST_POOL = 12;
    uint32 internal constant PROVIDER_MIN_EXEC = 600;
    uint256 internal constant POOL_PREFUND = 1_000_000 * PAY;

    struct Config {
        string name;
        string role; //          "executor r1", "executor r3", "coalition", "requester"
        uint8 replicas;
        B exec; //               the executor's behaviour
        B coalition; //          behaviour of the coalition's verifier identities
        uint16 coalitionBps; //  coalition share of the drawable profile stake
        bool requesterIsSubject;
        bool challenge; //       the requester challenges every job
        uint16 priceMultiple; // executor ask and job max price, x PRICE
        uint32 execWindow;
        bool tinyWindow; //      attack 2: the requester asks for the protocol's floor window
        bool stratified; //      replicas = 1 random audit: measure the audited stratum separately
    }

    /// @dev Per bucket (0 natural jobs not audited, 1 natural jobs audited, 2 forced-audit jobs).
    struct Bucket {
        uint256 jobs;
        int256[4] pnl;
        uint256[4] computes;
    }

    ComputeToken internal token;
    ProviderRegistry internal registry;
    JobMarket internal market;
    address internal requester;
    address internal executor;
    address[] internal honest;
    address[] internal tracked;
    mapping(address => B) internal behaviour;
    mapping(address => uint256) internal groupOf;
    mapping(address => uint256) internal baseStake;
    uint256[4] internal computes;
    Bucket[3] internal buckets;
    uint256 internal nonce;
    uint256 internal epoch;
    uint256 internal sealBlocked;
    uint256 internal rejectedAssign;
    uint256 internal rejectedCreate;
    uint256 internal honestSlashed;
    uint256 internal verdictsForLie;
    uint256 internal seatsTotal;
    uint256 internal seatsCoalition;
    int256 internal poolDelta;
    string internal out;

    function test_EconomicsBench() public {
        uint256 natural = vm.envOr("ECON_JOBS", uint256(2));
        uint256 forced = vm.envOr("ECON_AUDITED", uint256(1));
        bool write = vm.envOr("ECON_JOBS", uint256(0)) != 0;
        Config[] memory cs = _configs();
        out = "{\"strategies\": [";
        for (uint256 i; i < cs.length; ++i) {
            _strategy(i, cs[i], natural, cs[i].stratified ? forced : 0);
            if (i + 1 < cs.length) out = string.concat(out, ",");
        }
        out = string.concat(
            out,
            "], \"pay\": ",
            vm.toString(PAY),
            ", \"units\": ",
            vm.toString(uint256(UNITS)),
            ", \"stake\": ",
            vm.toString(STAKE),
            ", \"honest_pool\": ",
            vm.toString(HONEST_POOL),
            ", \"natural_jobs\": ",
            vm.toString(natural),
            ", \"forced_audit_jobs\": ",
            vm.toString(forced),
            ", \"params\": ",
            _paramsJson(),
            "}"
        );
        if (write) vm.writeFile("snapshots/economics.json", out);
    }

    function test_StakeDeltaCannotGrindTheDraw() public {
        Config memory c = _cfg("grind", "requester", 1, B.Honest, false);
        c.requesterIsSubject = true;
        c.coalition = B.Collude;
        c.coalitionBps = 1000;
        _deploy();
        _populate(c);
        uint256 id = _create(c);
        address[] memory ex = new address[](1);
        ex[0] = executor;
        market.assign(id, ex);
        _commitAs(executor, id, _truth(id));
        vm.prank(requester);
        market.challenge(id);
        uint256 seedBlock = market.job(id).seedBlock;
        vm.roll(seedBlock + 1);
        vm.setBlockhash(seedBlock, _rand());
        address sybil = _addr("sybil", 0);
        // Once the seed is known, no amount of stake added in the same epoch moves the draw: the
        // registry weighs the stake as it stood when the epoch began.
        (uint256 baseline, uint256 filled) = _seatsAfter(id, sybil, 0);
        require(filled == 3, "the round was not staffed in the seed's epoch");
        for (uint256 delta = 1; delta < 300; ++delta) {
            (uint256 seats,) = _seatsAfter(id, sybil, delta * 7919);
            require(seats == baseline, "a stake delta moved the draw");
        }
    }

    function _seatsAfter(uint256 id, address sybil, uint256 delta) internal returns (uint256, uint256) {
        try this.simulateStaff(id, sybil, delta) {}
        catch (bytes memory r) {
            if (r.length == 64) return abi.decode(r, (uint256, uint256));
        }
        revert("simulateStaff did not report");
    }

    /// @notice Stakes `delta` more for `sybil`, staffs, and reverts with the sybils' seat count and
    /// the seats filled.
    function simulateStaff(uint256 id, address sybil, uint256 delta) external {
        if (delta != 0) {
            token.mint(sybil, delta);
            vm.prank(sybil);
            registry.stake(uint96(delta));
        }
        uint256 filled = market.staffAudit(id);
        uint256 seats = _sybilSeats(id);
        assembly ("memory-safe") {
            mstore(0, seats)
            mstore(32, filled)
            revert(0, 64)
        }
    }

    function _sybilSeats(uint256 id) internal view returns (uint256 n) {
        IJobMarket.Job memory j = market.job(id);
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i = j.verifiersFrom; i < j.participants; ++i) {
            if (groupOf[ps[i].provider] == G_SUBJECT) ++n;
        }
    }

    // ================================================================ strategies

    function _configs() internal pure returns (Config[] memory cs) {
        cs = new Config[](16);
        cs[0] = _cfg("honest", "executor r1", 1, B.Honest, true);
        cs[1] = _cfg("lazy", "executor r1", 1, B.Lazy, true);
        cs[2] = _cfg("no-show", "executor r1", 1, B.NoShow, false);
        cs[3] = _cfg("honest r3", "executor r3", 3, B.Honest, false);
        cs[4] = _cfg("copycat r3", "executor r3", 3, B.Copycat, false);
        cs[5] = _cfg("lazy r3", "executor r3", 3, B.Lazy, false);
        // 50 %: a stake majority, outside the threat model; shows where the defence ends.
        uint16[5] memory fs = [uint16(500), 1000, 2000, 3300, 5000];
        for (uint256 i; i < 5; ++i) {
            Config memory c = _cfg("", "coalition", 1, B.Lazy, true);
            c.name = string.concat("lazy + colluding verifiers ", vm.toString(uint256(fs[i]) / 100), "%");
            c.coalition = B.Collude;
            c.coalitionBps = fs[i];
            cs[6 + i] = c;
        }
        Config memory a2 = _cfg("A2 tiny exec window", "requester", 1, B.Honest, false);
        a2.requesterIsSubject = true;
        a2.tinyWindow = true;
        a2.execWindow = 60;
        cs[11] = a2;
        Config memory a3 = _cfg("A3 huge maxPrice pool drain", "requester", 1, B.Collude, true);
        a3.requesterIsSubject = true;
        a3.coalition = B.Collude;
        a3.priceMultiple = 100;
        cs[12] = a3;
        uint16[3] memory sy = [uint16(1000), 3300, 5000];
        for (uint256 i; i < 3; ++i) {
            Config memory a4 = _cfg("", "requester", 1, B.Honest, false);
            a4.name = string.concat("A4 sybil verifiers ", vm.toString(uint256(sy[i]) / 100), "% + self-challenge");
            a4.requesterIsSubject = true;
            a4.challenge = true;
            a4.coalition = B.Collude;
            a4.coalitionBps = sy[i];
            cs[13 + i] = a4;
        }
    }

    function _cfg(string memory name, string memory role, uint8 replicas, B exec, bool stratified)
        internal
        pure
        returns (Config memory c)
    {
        c.name = name;
        c.role = role;
        c.replicas = replicas;
        c.exec = exec;
        c.priceMultiple = 1;
        c.execWindow = 3600;
        c.stratified = stratified;
    }

    function _strategy(uint256 index, Config memory c, uint256 natural, uint256 forced) internal {
        _deploy();
        _populate(c);
        for (uint256 i; i < natural + forced; ++i) {
            // A call frame per job: Solidity never frees memory, and thousands of jobs in one frame
            // run out of it.
            this.benchJob(index, i >= natural);
        }
        _record(c);
    }

    /// @notice One job of strategy `index` (self-call only; not a test).
    function benchJob(uint256 index, bool forceAudit) external {
        require(msg.sender == address(this), "self only");
        _job(_configs()[index], forceAudit);
    }

    // ================================================================ setup

    function _defaults() internal pure returns (IJobMarket.Params memory) {
        return IJobMarket.Params({
            feeBps: 250,
            auditShareBps: 5000,
            auditBps: 1000,
            requesterShareBps: 5000,
            rewardShareBps: 3000,
            verifiers: 3,
            collateralMultiple: 10,
            challengeWindow: 600,
            verifierAssignWindow: 600,
            verifierExecWindow: 1800,
            revealWindow: 600,
            minExecWindow: 60,
            maxAcceptWindow: 86400,
            maxExecWindow: 86400,
            reassignWindow: 1800,
            minFee: 1e14
        });
    }

    function _deploy() internal {
        ++epoch;
        token = new ComputeToken(address(this));
        registry = new ProviderRegistry(token, address(this), 30 days);
        market = new JobMarket(token, registry, address(this), address(0xfee), _defaults());
        registry.setMarket(address(market));
        registry.addProfile(keccak256("bench-profile"));
        market.setMatcher(address(this), true);
        // Steady state: the audit pool holds what other jobs' premiums paid in, so no audit here is
        // capped by an empty pool (slot 4: _auditPool in the low 128 bits, _protocolFees above).
        token.mint(address(market), POOL_PREFUND);
        vm.store(address(market), bytes32(uint256(4)), bytes32(POOL_PREFUND));
        require(market.auditPool() == POOL_PREFUND, "pool slot moved");
        delete tracked;
        delete honest;
        delete computes;
        delete buckets;
        sealBlocked = 0;
        rejectedAssign = 0;
        rejectedCreate = 0;
        honestSlashed = 0;
        verdictsForLie = 0;
        seatsTotal = 0;
        seatsCoalition = 0;
        poolDelta = 0;
        vm.warp(1_700_000_000 + epoch * 10_000_000);
        vm.roll(1_000_000 * epoch);
    }

    function _addr(string memory tag, uint256 i) internal view returns (address) {
        return address(uint160(uint256(keccak256(abi.encode(tag, i, epoch)))));
    }

    function _provider(address a, B b, uint256 group, uint256 amount, uint80 price) internal {
        behaviour[a] = b;
        groupOf[a] = group;
        baseStake[a] = amount;
        tracked.push(a);
        token.mint(a, amount);
        vm.startPrank(a);
        registry.register(
            IProviderRegistry.Terms({
                profileMask: 1,
                gpuModel: bytes32("bench"),
                vramGiB: 80,
                pricePerUnit: price,
                endpoint: "",
                minExecWindow: PROVIDER_MIN_EXEC,
                maxUnits: 1_000_000
            })
        );
        token.approve(address(registry), type(uint256).max);
        registry.stake(uint96(amount));
        vm.stopPrank();
    }

    function _populate(Config memory c) internal {
        for (uint256 i; i < HONEST_POOL; ++i) {
            address h = _addr("honest", i);
            honest.push(h);
            _provider(h, B.Honest, G_HONEST, STAKE, PRICE);
        }
        uint256 execGroup = c.requesterIsSubject ? G_EXECUTOR : G_SUBJECT;
        uint80 price = uint80(uint256(PRICE) * c.priceMultiple);
        executor = _addr("executor", 0);
        if (c.priceMultiple > 1) execGroup = G_SUBJECT; // A3: the requester's own executor
        _provider(executor, c.exec, execGroup, STAKE * 2 * c.priceMultiple, price);
        if (c.priceMultiple > 1) {
            // A3: sybil verifiers rich enough for collateral at the inflated price; the honest pool
            // (STAKE each) cannot lock 10 x units x the inflated price, so it is skipped by the draw.
            for (uint256 i; i < 3; ++i) {
                _provider(_addr("sybil", i), c.coalition, G_SUBJECT, STAKE * 3 * c.priceMultiple, price);
            }
        } else if (c.coalitionBps != 0) {
            // Coalition stake C with C / (C + honest pool) = coalitionBps, split over 3 identities.
            uint256 total = HONEST_POOL * STAKE * c.coalitionBps / (10_000 - c.coalitionBps);
            for (uint256 i; i < 3; ++i) {
                _provider(_addr("sybil", i), c.coalition, G_SUBJECT, total / 3, PRICE);
            }
        }
        requester = _addr("requester", 0);
        groupOf[requester] = c.requesterIsSubject ? G_SUBJECT : G_REQUESTER;
        tracked.push(requester);
        token.mint(requester, 1e30);
        vm.prank(requester);
        token.approve(address(market), type(uint256).max);
        // Draws weigh stake as it stood when the current 64-block epoch began.
        vm.roll((vm.getBlockNumber() / 64 + 1) * 64);
    }

    // ================================================================ one job

    function _values() internal view returns (int256[4] memory v) {
        uint256 n = tracked.length;
        for (uint256 i; i < n; ++i) {
            address a = tracked[i];
            uint256 value = token.balanceOf(a) + market.credits(a) + registry.provider(a).stake;
            v[groupOf[a]] += int256(value);
        }
    }

    function _job(Config memory c, bool forceAudit) internal {
        int256[4] memory before = _values();
        uint256[4] memory computesBefore = computes;
        int256 poolBefore = int256(market.auditPool());
        bool audited = _play(c, forceAudit);
        int256[4] memory afterV = _values();
        Bucket storage bk = buckets[forceAudit ? 2 : (audited ? 1 : 0)];
        bk.jobs += 1;
        for (uint256 g; g < GROUPS; ++g) {
            bk.pnl[g] += afterV[g] - before[g];
            bk.computes[g] += computes[g] - computesBefore[g];
        }
        poolDelta += int256(market.auditPool()) - poolBefore;
        _topUp();
    }

    /// @dev Restores every slashed stake (new capital, outside the measured P&L) so the stake
    /// shares of the groups stay what the strategy names.
    function _topUp() internal {
        uint256 n = tracked.length;
        for (uint256 i; i < n; ++i) {
            address a = tracked[i];
            uint256 base = baseStake[a];
            if (base == 0) continue;
            uint256 s = registry.provider(a).stake;
            if (s >= base) continue;
            if (groupOf[a] != G_SUBJECT) ++honestSlashed;
            token.mint(a, base - s);
            vm.prank(a);
            registry.stake(uint96(base - s));
        }
    }

    function _play(Config memory c, bool forceAudit) internal returns (bool audited) {
        uint256 id = _create(c);
        if (id == 0) return false;
        address[] memory ex = new address[](c.replicas);
        ex[0] = executor;
        for (uint256 i = 1; i < c.replicas; ++i) {
            ex[i] = honest[i - 1];
        }
        try market.assign(id, ex) {}
        catch {
            ++rejectedAssign;
        }
        return _drive(id, c, forceAudit);
    }

    function _create(Config memory c) internal returns (uint256 id) {
        uint80 maxPrice = uint80(uint256(PRICE) * c.priceMultiple);
        IJobMarket.JobRequest memory r = IJobMarket.JobRequest({
            specHash: keccak256(abi.encode(nonce)),
            units: UNITS,
            maxPricePerUnit: maxPrice,
            profile: 0,
            replicas: c.replicas,
            minVramGiB: 0,
            acceptWindow: 600,
            execWindow: c.execWindow
        });
        if (c.tinyWindow) {
            // v1 allowed 1 s; v2 rejects anything under the protocol floor.
            r.execWindow = 1;
            vm.prank(requester);
            try market.createJob(r) returns (uint256) {}
            catch {
                ++rejectedCreate;
            }
            r.execWindow = c.execWindow;
        }
        vm.prank(requester);
        id = market.createJob(r);
    }

    function _drive(uint256 id, Config memory c, bool forceAudit) internal returns (bool audited) {
        for (uint256 step; step < 40; ++step) {
            IJobMarket.Job memory j = market.job(id);
            IJobMarket.JobState s = j.state;
            if (uint8(s) >= uint8(IJobMarket.JobState.Settled)) {
                _noteVerdict(id, j);
                return audited;
            }
            if (s == IJobMarket.JobState.Open) {
                _warpPast(j.deadline);
                market.expire(id);
            } else if (s == IJobMarket.JobState.Assigned) {
                _commitRange(id, 0, j.participants);
                if (market.state(id) == IJobMarket.JobState.Assigned) {
                    _warpPast(j.deadline);
                    market.expire(id);
                }
            } else if (s == IJobMarket.JobState.Committed) {
                if (c.challenge) {
                    vm.prank(requester);
                    market.challenge(id);
                } else if (!_draw(id, forceAudit)) {
                    _warpPast(j.deadline);
                    market.finalize(id);
                }
            } else if (s == IJobMarket.JobState.Auditing) {
                audited = true;
                if (j.participants - j.verifiersFrom < j.seats) {
                    _staff(id, j);
                } else {
                    _commitRange(id, j.verifiersFrom, j.participants);
                    if (market.state(id) == IJobMarket.JobState.Auditing) {
                        _warpPast(j.deadline);
                        market.finalize(id);
                    }
                }
            } else {
                _revealAll(id, j);
                if (market.job(id).revealMask != j.commitMask) _warpPast(j.deadline);
                market.finalize(id);
            }
        }
        revert("job did not close");
    }

    function _noteVerdict(uint256 id, IJobMarket.Job memory j) internal {
        if (j.round == 0) return;
        uint256 to = j.participants;
        for (uint256 i = j.verifiersFrom; i < to; ++i) {
            if (market.revealedDigest(id, i) == _lie(id)) {
                // Count rounds where the made-up digest held a strict majority of the seats.
                uint256 votes;
                for (uint256 k = j.verifiersFrom; k < to; ++k) {
                    if (market.revealedDigest(id, k) == _lie(id)) ++votes;
                }
                if (votes * 2 > j.seats) ++verdictsForLie;
                return;
            }
        }
    }

    function _rand() internal returns (bytes32) {
        return keccak256(abi.encode("bench-randomness", epoch, ++nonce));
    }

    function _warpPast(uint256 deadline) internal {
        uint256 t = vm.getBlockTimestamp();
        if (t <= deadline) vm.warp(deadline + 1);
        vm.roll(vm.getBlockNumber() + 1);
    }

    /// @dev The audit draw of a Committed replicas = 1 job from a random commit-block hash; a
    /// forced job re-draws the hash until the draw selects it.
    function _draw(uint256 id, bool forceAudit) internal returns (bool) {
        uint256 commitBlock = market.participants(id)[0].commitBlock;
        vm.roll(vm.getBlockNumber() + 1);
        for (uint256 tries; tries < 10_000; ++tries) {
            vm.setBlockhash(commitBlock, _rand());
            if (!forceAudit || market.auditSelected(id)) break;
        }
        return market.drawAudit(id);
    }

    /// @dev Staffs the current round from a random seed-block hash, as any keeper would.
    function _staff(uint256 id, IJobMarket.Job memory j) internal {
        uint256 seedBlock = j.seedBlock;
        if (vm.getBlockNumber() <= seedBlock) vm.roll(seedBlock + 1);
        vm.setBlockhash(seedBlock, _rand());
        for (uint256 tries; tries < 8; ++tries) {
            market.staffAudit(id);
            IJobMarket.Job memory k = market.job(id);
            if (k.participants - k.verifiersFrom == k.seats) break;
            if (k.seedBlock != seedBlock) {
                // Re-seeded (the seed lay in an earlier draw epoch): draw from the new seed next block.
                seedBlock = k.seedBlock;
                vm.roll(seedBlock + 1);
                vm.setBlockhash(seedBlock, _rand());
            }
        }
        IJobMarket.Job memory after_ = market.job(id);
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i = after_.verifiersFrom; i < after_.participants; ++i) {
            ++seatsTotal;
            if (groupOf[ps[i].provider] == G_SUBJECT) ++seatsCoalition;
        }
        if (after_.participants - after_.verifiersFrom < after_.seats) {
            // Could not staff: the round times out without a verdict.
            _warpPast(after_.deadline);
            market.finalize(id);
        }
    }

    function _truth(uint256 id) internal pure returns (bytes32) {
        return keccak256(abi.encode("truth", id));
    }

    function _lie(uint256 id) internal pure returns (bytes32) {
        return keccak256(abi.encode("made up", id));
    }

    function _commitAs(address p, uint256 id, bytes32 digest) internal {
        vm.prank(p);
        market.commit(id, keccak256(abi.encode(id, digest)), keccak256(abi.encode(p, id, digest)));
    }

    function _commitRange(uint256 id, uint256 from, uint256 to) internal {
        IJobMarket.Participant[] memory ps = market.participants(id);
        address published; // first honest committer: what a copycat sees in ResultCommitted
        for (uint256 i = from; i < to; ++i) {
            address p = ps[i].provider;
            if (ps[i].commitment != 0) continue;
            B b = behaviour[p];
            if (b == B.Honest) {
                _commitAs(p, id, _truth(id));
                computes[groupOf[p]] += 1;
                if (published == address(0)) published = p;
            } else if (b == B.Lazy || b == B.Collude) {
                _commitAs(p, id, _lie(id));
            }
        }
        for (uint256 i = from; i < to; ++i) {
            address p = ps[i].provider;
            if (behaviour[p] != B.Copycat || ps[i].commitment != 0) continue;
            if (published == address(0)) published = ps[0].provider;
            bytes32 d = _truth(id);
            vm.prank(p);
            market.commit(id, keccak256(abi.encode(id, d)), keccak256(abi.encode(published, id, d)));
        }
    }

    function _revealAll(uint256 id, IJobMarket.Job memory j) internal {
        IJobMarket.Participant[] memory ps = market.participants(id);
        for (uint256 i; i < j.participants; ++i) {
            if (j.commitMask & (1 << i) == 0 || j.revealMask & (1 << i) != 0) continue;
            address p = ps[i].provider;
            B b = behaviour[p];
            bytes32 d = (b == B.Lazy || b == B.Collude) ? _lie(id) : _truth(id);
            vm.prank(p);
            try market.reveal(id, d) {}
            catch {
                if (b == B.Copycat) ++sealBlocked;
            }
        }
    }

    // ================================================================ output

    function _record(Config memory c) internal {
        string memory s = string.concat(
            "{\"name\": \"",
            c.name,
            "\", \"role\": \"",
            c.role,
            "\", \"replicas\": ",
            vm.toString(uint256(c.replicas)),
            ", \"stratified\": ",
            c.stratified ? "true" : "false",
            ", \"coalition_bps\": ",
            vm.toString(uint256(c.coalitionBps)),
            ", \"price_multiple\": ",
            vm.toString(uint256(c.priceMultiple))
        );
        s = string.concat(
            s,
            ", \"seal_blocked_reveals\": ",
            vm.toString(sealBlocked),
            ", \"rejected_assignments\": ",
            vm.toString(rejectedAssign),
            ", \"rejected_creates\": ",
            vm.toString(rejectedCreate),
            ", \"honest_slashes\": ",
            vm.toString(honestSlashed),
            ", \"verdicts_for_made_up_digest\": ",
            vm.toString(verdictsForLie),
            ", \"verifier_seats\": ",
            vm.toString(seatsTotal),
            ", \"coalition_seats\": ",
            vm.toString(seatsCoalition),
            ", \"audit_pool_delta\": ",
            vm.toString(poolDelta)
        );
        s = string.concat(s, ", \"buckets\": [", _bucket(0), ",", _bucket(1), ",", _bucket(2), "]}");
        out = string.concat(out, s);
    }

    function _bucket(uint256 b) internal view returns (string memory s) {
        Bucket storage bk = buckets[b];
        s = string.concat("{\"jobs\": ", vm.toString(bk.jobs), ", \"pnl\": [");
        for (uint256 g; g < GROUPS; ++g) {
            s = string.concat(s, "\"", vm.toString(bk.pnl[g]), g + 1 < GROUPS ? "\", " : "\"");
        }
        s = string.concat(s, "], \"computes\": [");
        for (uint256 g; g < GROUPS; ++g) {
            s = string.concat(s, vm.toString(bk.computes[g]), g + 1 < GROUPS ? ", " : "");
        }
        s = string.concat(s, "]}");
    }

    function _paramsJson() internal view returns (string memory) {
        IJobMarket.Params memory p = market.params();
        return string.concat(
            "{\"feeBps\": ",
            vm.toString(uint256(p.feeBps)),
            ", \"auditShareBps\": ",
            vm.toString(uint256(p.auditShareBps)),
            ", \"auditBps\": ",
            vm.toString(uint256(p.auditBps)),
            ", \"requesterShareBps\": ",
            vm.toString(uint256(p.requesterShareBps)),
            ", \"rewardShareBps\": ",
            vm.toString(uint256(p.rewardShareBps)),
            ", \"verifiers\": ",
            vm.toString(uint256(p.verifiers)),
            ", \"collateralMultiple\": ",
            vm.toString(uint256(p.collateralMultiple)),
            ", \"minFee\": ",
            vm.toString(uint256(p.minFee)),
            "}"
        );
    }
}
