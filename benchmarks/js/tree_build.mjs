// Benchmark peer of benchmarks/bench_tree.py: builds the same LeanIMT with
// @zk-kit/lean-imt 2.2.5 + poseidon-lite, times the build and generateProof.
// stdin: {"size": N, "proofs": K}; stdout: JSON figures.
import { performance } from "node:perf_hooks"
import { LeanIMT } from "@zk-kit/lean-imt"
import { poseidon2 } from "poseidon-lite/poseidon2"

let raw = ""
for await (const chunk of process.stdin) raw += chunk
const { size, proofs } = JSON.parse(raw)

const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n
// Same leaves as bench_tree.py: (i + 1) * C mod r, all distinct and non-zero.
const C = 0x9e3779b97f4a7c15f39cc0605cedc8341082276bf3a27251n
const leaves = Array.from({ length: size }, (_, i) => (BigInt(i + 1) * C) % R)

const hash = (a, b) => poseidon2([a, b])
let t = performance.now()
const tree = new LeanIMT(hash, leaves)
const buildSeconds = (performance.now() - t) / 1000

// Deterministic spread of indices (no Math.random, so runs are comparable).
const samples = []
let x = 12345
for (let k = 0; k < proofs; k += 1) {
    x = (x * 1103515245 + 12345) % 2147483648
    const i = x % size
    t = performance.now()
    tree.generateProof(i)
    samples.push((performance.now() - t) * 1000)
}
samples.sort((a, b) => a - b)

process.stdout.write(
    JSON.stringify({
        size,
        root: tree.root.toString(),
        depth: tree.depth,
        build_seconds: buildSeconds,
        generate_proof_median_us: samples[samples.length >> 1],
        generate_proof_p99_us: samples[Math.floor(samples.length * 0.99)]
    })
)
