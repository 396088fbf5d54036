// Semaphore v4 proofs made by the official JS SDK (@semaphore-protocol/proof) with the pinned
// ceremony artifacts (@zk-kit/semaphore-artifacts), for the on-chain validateProof tests.
// stdin: {"memberKeys": [identity private keys...], "extraMembers": [decimal commitments]?,
//         "proofs": [{"signer": index in memberKeys, "message", "scope", "depth"?}]}
// Members are memberKeys' commitments then extraMembers, in that order (group order).
// stdout: {"commitments": [...], "root", "proofs": [SemaphoreProof JSON...]}
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
const commitments = identities.map((id) => id.commitment).concat((input.extraMembers ?? []).map(BigInt))
const group = new Group(commitments)
const proofs = []
for (const req of input.proofs) {
    const depth = req.depth ?? Math.max(1, group.depth)
    const artifacts = {
        wasm: path.join(ARTIFACTS, `semaphore-${depth}.wasm`),
        zkey: path.join(ARTIFACTS, `semaphore-${depth}.zkey`)
    }
    proofs.push(await generateProof(identities[req.signer], group, req.message, req.scope, depth, artifacts))
}
const text = JSON.stringify({ commitments, root: group.root, proofs }, (_, v) => (typeof v === "bigint" ? v.toString() : v))
process.stdout.write(text)
process.exit(0)
