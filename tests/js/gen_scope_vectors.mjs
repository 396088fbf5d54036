// Known answers of the version-2 scope layouts (docs/authorization.md, LZE2; docs/admission.md,
// LZA2), computed independently of zk/scope_layout.py: the registry tag with ethers'
// Solidity-style solidityPackedKeccak256(["uint256", "address"], [chainId, registry]) (what a
// contract computes as keccak256(abi.encodePacked(block.chainid, address(this)))), the scope
// with BigInt shifts, and the circuit's scope input with the `hash` of
// @semaphore-protocol/proof itself (lifted from its bundle by hashing_ref.mjs).
//
//   node tests/js/gen_scope_vectors.mjs          writes tests/vectors/scopes.json
//   node tests/js/gen_scope_vectors.mjs --print  prints the same JSON (the live test)
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { solidityPackedKeccak256, getAddress } from "ethers"
import { semaphoreHash, proofPackageVersion, ethersVersion } from "./hashing_ref.mjs"

const root = fileURLToPath(new URL("../../", import.meta.url))
const TWO256 = 1n << 256n
const magic = (text) => BigInt("0x" + Buffer.from(text, "ascii").toString("hex"))

function tag(chainId, registry) {
    // getAddress accepts any case of a 40-hex-digit address (and checks a mixed-case checksum).
    const digest = solidityPackedKeccak256(["uint256", "address"], [chainId, getAddress(registry.toLowerCase())])
    return BigInt(digest.slice(0, 2 + 24)) // the first 12 bytes
}

function fits(value, bytes) {
    if (value < 0n || value >= 1n << BigInt(8 * bytes)) throw new Error(`value out of range for ${bytes} bytes`)
    return value
}

// LZE2: magic (4) | tag (12) | group uint56 (7) | epoch uint40 (5) | slot uint32 (4)
function relayScope(t, group, epoch, slot) {
    return (magic("LZE2") << 224n) | (fits(t, 12) << 128n) | (fits(group, 7) << 72n) | (fits(epoch, 5) << 32n) | fits(slot, 4)
}

// LZA2: magic (4) | tag (12) | group uint64 (8) | round uint64 (8)
function admissionScope(t, group, round) {
    return (magic("LZA2") << 224n) | (fits(t, 12) << 128n) | (fits(group, 8) << 64n) | fits(round, 8)
}

const hex32 = (v) => "0x" + v.toString(16).padStart(64, "0")

const deployments = [
    [31337n, "0x5fbdb2315678afecb367f032d93f642f64180aa3"], // Anvil's first deployment
    [31338n, "0x5fbdb2315678afecb367f032d93f642f64180aa3"], // same address, another chain
    [1n, "0x0000000000000000000000000000000000000000"],
    [8453n, "0xffffffffffffffffffffffffffffffffffffffff"],
    [11155111n, "0xCf7Ed3AccA5a467e9e704C703E8D87F634fB0Fc9"], // mixed case (EIP-55) in, lower case out
    [TWO256 - 1n, "0x00000000000000000000000000000000000000ff"], // the largest uint256 chain id
]

const registryTags = deployments.map(([chainId, registry]) => ({
    chain_id: chainId.toString(),
    registry: registry,
    tag: "0x" + tag(chainId, registry).toString(16).padStart(24, "0"),
}))

const relayCases = [
    [0, 0n, 0n, 0n],
    [0, 7n, 0x0102030405n, 3n],
    [1, 7n, 0x0102030405n, 3n],
    [2, (1n << 53n) - 1n, 2999999n, 99n],
    [3, (1n << 56n) - 1n, (1n << 40n) - 1n, (1n << 32n) - 1n],
    [4, 2n, 1n, 0n],
]
const relayScopes = relayCases.map(([d, group, epoch, slot]) => {
    const [chainId, registry] = deployments[d]
    const scope = relayScope(tag(chainId, registry), group, epoch, slot)
    return {
        chain_id: chainId.toString(), registry, group_id: group.toString(), epoch: epoch.toString(), slot: slot.toString(),
        scope_hex: hex32(scope), scope: scope.toString(), circuit_scope: semaphoreHash(scope).toString(),
    }
})

const admissionCases = [
    [0, 7n, 0x0102030405060708n],
    [1, 7n, 0x0102030405060708n],
    [3, (1n << 64n) - 1n, (1n << 64n) - 1n],
    [5, 0n, 0n],
]
const admissionScopes = admissionCases.map(([d, group, round]) => {
    const [chainId, registry] = deployments[d]
    const scope = admissionScope(tag(chainId, registry), group, round)
    return {
        chain_id: chainId.toString(), registry, group_id: group.toString(), round: round.toString(),
        scope_hex: hex32(scope), scope: scope.toString(), circuit_scope: semaphoreHash(scope).toString(),
    }
})

// What Semaphore's own hash does with values outside [0, 2^256): it throws (toBeHex), so
// a scope is never reduced; the Python side refuses the same values.
const refusedBySemaphore = [TWO256, TWO256 + 1n, -1n].map((v) => {
    try {
        semaphoreHash(v)
        return { value: v.toString(), refused: false }
    } catch {
        return { value: v.toString(), refused: true }
    }
})

const out = {
    about: "tests/js/gen_scope_vectors.mjs: registry tags and LZE2/LZA2 scopes (docs/authorization.md)",
    versions: { "@semaphore-protocol/proof": proofPackageVersion, ethers: ethersVersion },
    registry_tags: registryTags,
    relay_scopes: relayScopes,
    admission_scopes: admissionScopes,
    refused_by_semaphore_hash: refusedBySemaphore,
}
const text = JSON.stringify(out, null, 2) + "\n"
if (process.argv.includes("--print")) process.stdout.write(text)
else writeFileSync(root + "tests/vectors/scopes.json", text)
