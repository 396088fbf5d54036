// One Semaphore v4 proof from the official JS SDK, for the validateProof gas benchmark.
// stdin: {"memberKeys": [...], "signer": i, "message", "scope"}
// stdout: {"commitments": [...], "root", "proof": SemaphoreProof JSON}
import { Identity } from "@semaphore-protocol/identity"
import { Group } from "@semaphore-protocol/group"
import { generateProof } from "@semaphore-protocol/proof"
import { readFileSync } from "node:fs"
import path from "node:path"
import { fileURLToPath } from "node:url"

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
const ARTIFACTS = path.join(ROOT, "node_modules", "@zk-kit", "semaphore-artifacts")

const input = JSON.parse(readFileSync(0, "utf8"))
const identities = input.memberKeys.map((k) => new Identity(k))
const group = new Group(identities.map((id) => id.commitment))
const depth = Math.max(1, group.depth)
const proof = await generateProof(identities[input.signer], group, input.message, input.scope, depth, {
    wasm: path.join(ARTIFACTS, `semaphore-${depth}.wasm`),
    zkey: path.join(ARTIFACTS, `semaphore-${depth}.zkey`)
})
const out = { commitments: group.members, root: group.root, proof }
process.stdout.write(JSON.stringify(out, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
process.exit(0)
