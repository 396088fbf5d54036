// Verify proofs with the real JS tools.
// stdin: {"semaphore": [SemaphoreProof JSON...], "snarkjs": [{"depth", "proof", "publicSignals"}...]}
// stdout: {"semaphore": [true|false|"error: ..."], "snarkjs": [...]}
// semaphore: @semaphore-protocol/proof verifyProof (its bundled keys);
// snarkjs: groth16.verify with the ceremony verification key semaphore-D.json.
import { readFileSync } from "node:fs"
import { verifyProof } from "@semaphore-protocol/proof"
import { groth16 } from "snarkjs"
import { artifacts, output, readInput } from "./proof_common.mjs"

async function guard(fn) {
    try {
        return await fn()
    } catch (error) {
        return `error: ${error && error.message ? error.message : String(error)}`
    }
}

const input = readInput()
const semaphore = []
for (const proof of input.semaphore ?? []) semaphore.push(await guard(() => verifyProof(proof)))
const snarkjs = []
for (const item of input.snarkjs ?? []) {
    snarkjs.push(
        await guard(() => {
            const vkey = JSON.parse(readFileSync(artifacts(item.depth).vkey, "utf8"))
            return groth16.verify(vkey, item.publicSignals, item.proof)
        })
    )
}
output({ semaphore, snarkjs })
