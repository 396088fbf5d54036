// Live cross-check of zk.tree: applies {ops} to a @semaphore-protocol/group Group (from
// an optional `initial` export), and prints the state after each op, the proofs at
// `proof_indices`, the final export, and LeanIMT.verifyProof of each `verify` proof.
import { LeanIMT, Group, hash, proofJson, proofFromJson, state, apply, readStdinJson } from "./tree_common.mjs"

const { initial, ops = [], proof_indices: proofIndices = [], verify = [] } = await readStdinJson()
const group = initial ? Group.import(initial) : new Group()
const states = ops.map((op) => {
    apply(group, op)
    return state(group)
})
process.stdout.write(
    JSON.stringify({
        states,
        proofs: proofIndices.map((i) => proofJson(group.generateMerkleProof(i))),
        export: group.export(),
        verified: verify.map((p) => LeanIMT.verifyProof(proofFromJson(p), hash))
    })
)
