// Benchmark peer of benchmarks/bench_proof.py: snarkjs groth16 fullProve and verify
// in one Node process (no start-up cost), on the pinned ceremony artifacts.
// stdin: {"depth", "inputs", "runs"}; stdout: JSON figures (seconds).
import { readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"
import { performance } from "node:perf_hooks"
import { groth16 } from "snarkjs"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const DIR = process.env.ZKID_ARTIFACTS_DIR || path.join(ROOT, "node_modules", "@zk-kit", "semaphore-artifacts")

let raw = ""
for await (const chunk of process.stdin) raw += chunk
const { depth, inputs, runs } = JSON.parse(raw)
const wasm = path.join(DIR, `semaphore-${depth}.wasm`)
const zkey = path.join(DIR, `semaphore-${depth}.zkey`)
const vkey = JSON.parse(readFileSync(path.join(DIR, `semaphore-${depth}.json`), "utf8"))

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const prove = []
const verify = []
let last
for (let i = 0; i < runs + 1; i += 1) {
    const t = performance.now()
    last = await groth16.fullProve(inputs, wasm, zkey)
    if (i > 0) prove.push((performance.now() - t) / 1000) // the first run warms up
}
let ok = true
for (let i = 0; i < runs + 1; i += 1) {
    const t = performance.now()
    ok = (await groth16.verify(vkey, last.publicSignals, last.proof)) && ok
    if (i > 0) verify.push((performance.now() - t) / 1000)
}
process.stdout.write(
    JSON.stringify({ fullprove_s: median(prove), verify_s: median(verify), all_verified: ok }),
    () => process.exit(0)
)
