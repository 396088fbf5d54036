// Compute a witness with circom_runtime (the calculator snarkjs uses) and optionally
// prove it with snarkjs. stdin: {"depth", "inputs", "prove"?: bool}
// stdout: {"wtns": base64 of calculateWTNSBin, "proof"?, "publicSignals"?} or {"error": msg}
import { readFileSync } from "node:fs"
import { WitnessCalculatorBuilder } from "circom_runtime"
import { groth16 } from "snarkjs"
import { artifacts, output, readInput } from "./proof_common.mjs"

const input = readInput()
const paths = artifacts(input.depth)
const inputs = {}
for (const [k, v] of Object.entries(input.inputs)) inputs[k] = Array.isArray(v) ? v.map(BigInt) : BigInt(v)
// Silence circom_runtime's console.error on failed assertions; the error is returned.
console.error = () => {}
console.log = () => {}
try {
    const wc = await WitnessCalculatorBuilder(readFileSync(paths.wasm))
    const wtns = await wc.calculateWTNSBin(inputs, true)
    const result = { wtns: Buffer.from(wtns).toString("base64") }
    if (input.prove) {
        const { proof, publicSignals } = await groth16.prove(paths.zkey, { type: "mem", data: wtns })
        result.proof = proof
        result.publicSignals = publicSignals
    }
    output(result)
} catch (error) {
    output({ error: String(error && error.message ? error.message : error) })
}
