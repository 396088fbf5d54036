// Reference LeanIMT for the ledger tests: the real @zk-kit/lean-imt with poseidon-lite's
// Poseidon2 (the hash Semaphore v4 groups use).
// stdin: {"ops": [{"op": "add", "leaf"} | {"op": "addMany", "leaves": [...]} |
//                 {"op": "update", "old", "new"} | {"op": "remove", "leaf"}]}
// stdout: one entry per op: {"root", "size", "depth", "siblings"?}; update/remove carry the
// siblings of the changed leaf's proof taken BEFORE the op (what the contract needs).
// Big integers travel as decimal strings.
import { LeanIMT } from "@zk-kit/lean-imt"
import { poseidon2 } from "poseidon-lite"
import { readFileSync } from "node:fs"

const input = JSON.parse(readFileSync(0, "utf8"))
const tree = new LeanIMT((a, b) => poseidon2([a, b]))
const out = []
for (const op of input.ops) {
    let siblings
    switch (op.op) {
        case "add":
            tree.insert(BigInt(op.leaf))
            break
        case "addMany":
            tree.insertMany(op.leaves.map(BigInt))
            break
        case "update": {
            const index = tree.indexOf(BigInt(op.old))
            siblings = tree.generateProof(index).siblings
            tree.update(index, BigInt(op.new))
            break
        }
        case "remove": {
            const index = tree.indexOf(BigInt(op.leaf))
            siblings = tree.generateProof(index).siblings
            tree.update(index, 0n)
            break
        }
        default:
            throw new Error(`unknown op ${op.op}`)
    }
    const entry = { root: (tree.size ? tree.root : 0n).toString(), size: tree.size, depth: tree.depth }
    if (siblings) entry.siblings = siblings.map(String)
    out.push(entry)
}
process.stdout.write(JSON.stringify(out))
