// Writes tests/vectors/proofs.json: Semaphore proofs made by the real JS SDK
// (@semaphore-protocol/identity, group and proof 4.14.3, snarkjs 0.7.6) on the pinned
// ceremony artifacts, with the identities and groups behind them.
// Run: node tests/js/gen_proof_vectors.mjs
import { writeFileSync } from "node:fs"
import path from "node:path"
import { spawnSync } from "node:child_process"
import { ROOT } from "./proof_common.mjs"

const big = (v) => ({ bigint: v })
const keys = (n, prefix) => Array.from({ length: n }, (_, i) => `${prefix}-${i}`)

const cases = [
    { name: "one member, default depth 1", privateKey: "solo", memberKeys: ["solo"], message: "hello", scope: "room-1" },
    { name: "two members, default depth 1", privateKey: "pair-1", memberKeys: keys(2, "pair"), message: big("0"), scope: big("1") },
    { name: "four members, default depth 2", privateKey: "quad-2", memberKeys: keys(4, "quad"), message: "12345", scope: "vote #7" },
    {
        name: "five members, depth 10, extreme message",
        privateKey: "five-4",
        memberKeys: keys(5, "five"),
        message: big((2n ** 256n - 1n).toString()),
        scope: big("0"),
        depth: 10
    },
    { name: "seven members, depth 20, Merkle proof", privateKey: "seven-6", memberKeys: keys(7, "seven"), message: "0x2a", scope: "letro", depth: 20, useMerkleProof: true },
    { name: "nine members, depth 32", privateKey: "nine-8", memberKeys: keys(9, "nine"), message: big("21888242871839275222246405745257275088548364400416034343698204186575808495617"), scope: "last", depth: 32 }
]

// proof_generate.mjs does the work (one node process, one request list).
const run = spawnSync("node", [path.join(ROOT, "tests", "js", "proof_generate.mjs")], {
    input: JSON.stringify(cases),
    encoding: "utf8",
    maxBuffer: 64 * 1024 * 1024
})
if (run.status !== 0) {
    process.stderr.write(run.stderr)
    process.exit(1)
}
const results = JSON.parse(run.stdout)
const vectors = cases.map((c, i) => ({ ...c, ...results[i] }))
const out = {
    generator: "tests/js/gen_proof_vectors.mjs",
    libraries: { "@semaphore-protocol/proof": "4.14.3", "@zk-kit/semaphore-artifacts": "4.13.0", snarkjs: "0.7.6" },
    vectors
}
writeFileSync(path.join(ROOT, "tests", "vectors", "proofs.json"), JSON.stringify(out, null, 2) + "\n")
console.log(`wrote ${vectors.length} proof vectors`)
