// Live cross-check: reads {"inputs": [{type, value}, ...]} on stdin and prints, for each,
// what @semaphore-protocol/proof's toBigInt and hash return (or the error they throw).
import { evaluate } from "./hashing_ref.mjs"

let raw = ""
for await (const chunk of process.stdin) raw += chunk
const { inputs } = JSON.parse(raw)
process.stdout.write(JSON.stringify(inputs.map(evaluate)))
