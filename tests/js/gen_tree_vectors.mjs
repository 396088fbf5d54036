// Writes tests/vectors/tree.json: roots, depths, proofs and exports of LeanIMT trees
// built by @zk-kit/lean-imt 2.2.5 / @semaphore-protocol/group 4.14.3 (Poseidon2 from
// poseidon-lite), after sequential inserts, bulk inserts, updates and removals, plus the
// errors the JS libraries raise.
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { LeanIMT, Group, hash, versions, proofJson, state, errorText, apply } from "./tree_common.mjs"

const root = fileURLToPath(new URL("../../", import.meta.url))
const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n

// Deterministic leaves: a 64-bit LCG stitched into 4 words, reduced below r; a few
// small and extreme values mixed in.
let seed = 0x2545f4914f6cdd1dn
function next64() {
    seed = (seed * 6364136223846793005n + 1442695040888963407n) & ((1n << 64n) - 1n)
    return seed
}
function leafValue(i) {
    if (i % 11 === 3) return BigInt(i + 1)
    if (i === 7) return R - 1n
    let v = 0n
    for (let k = 0; k < 4; k += 1) v = (v << 64n) | next64()
    return (v % (R - 1n)) + 1n
}
const LEAVES = Array.from({ length: 600 }, (_, i) => leafValue(i))
const L = (n, from = 0) => LEAVES.slice(from, from + n)

const allProofs = (tree) => Array.from({ length: tree.size }, (_, i) => proofJson(tree.generateProof(i)))

// 1. One insert at a time: state and proofs at each size.
const sequential = { steps: [] }
{
    const tree = new LeanIMT(hash)
    const group = new Group()
    sequential.empty = {
        lean_imt_root: tree.root === undefined ? null : tree.root.toString(),
        group: state(group),
        export: tree.export(),
        group_export: group.export()
    }
    for (const leaf of L(40)) {
        tree.insert(leaf)
        group.addMember(leaf)
        if (tree.root !== group.root) throw new Error("LeanIMT and Group disagree")
        // Every proof up to 17 leaves, then the corners and the middle.
        const n = tree.size
        const indices = n <= 17 ? [...Array(n).keys()] : [0, 1, n >> 1, n - 2, n - 1]
        sequential.steps.push({ ...state(group), proofs: indices.map((i) => ({ i, proof: proofJson(tree.generateProof(i)) })) })
    }
}

// 2. Whole trees at once (constructor = insertMany).
const EXPORT_SIZES = new Set([0, 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 32, 33, 40, 100])
const bulk = []
for (const n of [...Array(41).keys(), 63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 300, 511, 512, 513, 600]) {
    const group = new Group(L(n))
    const item = { size: n, ...state(group) }
    if (EXPORT_SIZES.has(n)) item.export = group.export()
    if (n > 0) {
        const sample = [...new Set([0, 1, n >> 1, n - 2, n - 1].filter((i) => i >= 0 && i < n))]
        item.proofs = sample.map((i) => ({ i, proof: proofJson(group.generateMerkleProof(i)) }))
    }
    bulk.push(item)
}

// 3. insertMany onto non-empty trees: every start size x batch size, root only.
const appendGrid = []
for (const before of [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33]) {
    for (const batch of [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33]) {
        const tree = new LeanIMT(hash, L(before))
        tree.insertMany(L(batch, before))
        appendGrid.push({ before, batch, root: tree.root.toString(), depth: tree.depth })
    }
}

// 4. Scenarios of Semaphore group operations; state after each op, all proofs at the end.
const lf = (i) => LEAVES[i].toString()
const many = (from, n) => L(n, from).map(String)
const scenarios = {
    grow_update_remove: [
        { op: "insert_many", leaves: many(0, 5) },
        { op: "insert_many", leaves: many(5, 7) },
        { op: "insert", leaf: lf(12) },
        { op: "update", index: 3, leaf: lf(400) },
        { op: "remove", index: 0 },
        { op: "remove", index: 12 },
        { op: "update", index: 11, leaf: lf(401) },
        { op: "insert_many", leaves: many(13, 20) },
        { op: "remove", index: 32 },
        { op: "insert", leaf: lf(33) },
        { op: "update", index: 33, leaf: lf(402) },
        { op: "remove", index: 1 },
        { op: "remove", index: 2 },
        { op: "remove", index: 3 }
    ],
    single_leaf_removed: [
        { op: "insert", leaf: lf(0) },
        { op: "remove", index: 0 },
        { op: "insert", leaf: lf(1) },
        { op: "remove", index: 1 }
    ],
    carried_last_leaf: [
        { op: "insert_many", leaves: many(0, 9) },
        { op: "update", index: 8, leaf: lf(410) },
        { op: "remove", index: 8 },
        { op: "insert", leaf: lf(9) },
        { op: "update", index: 7, leaf: lf(411) }
    ],
    readd_removed_value: [
        { op: "insert_many", leaves: many(0, 4) },
        { op: "remove", index: 1 },
        { op: "insert", leaf: lf(1) },
        { op: "update", index: 0, leaf: lf(0 + 420) },
        { op: "insert", leaf: lf(0) }
    ],
    remove_everything: [
        { op: "insert_many", leaves: many(0, 6) },
        ...[5, 0, 3, 1, 4, 2].map((index) => ({ op: "remove", index })),
        { op: "insert_many", leaves: many(6, 3) }
    ]
}
const scenarioOut = {}
for (const [name, ops] of Object.entries(scenarios)) {
    const group = new Group()
    const states = ops.map((op) => {
        apply(group, op)
        return state(group)
    })
    scenarioOut[name] = { ops, states, proofs: allProofs(group.leanIMT), export: group.export() }
}

// 5. Duplicates: the JS Group accepts them (LeanIMT.sol does not); indexOf is the first.
const dupLeaves = [lf(0), lf(1), lf(0), lf(2), lf(1), lf(0)]
const dupGroup = new Group(dupLeaves)
const duplicates = {
    leaves: dupLeaves,
    ...state(dupGroup),
    index_of: Object.fromEntries([lf(0), lf(1), lf(2)].map((v) => [v, dupGroup.indexOf(BigInt(v))])),
    export: dupGroup.export()
}
dupGroup.updateMember(0, LEAVES[430])
duplicates.after_update_0 = { ...state(dupGroup), index_of_leaf0: dupGroup.indexOf(LEAVES[0]) }

// 6. Errors of the JS libraries, for the record (Python raises TreeError on each).
const g3 = new Group(L(3))
g3.removeMember(1)
const errors = {
    insert_many_empty: errorText(() => new LeanIMT(hash).insertMany([])),
    add_member_zero: errorText(() => new Group().addMember(0n)),
    add_members_zero: errorText(() => new Group().addMembers([1n, 0n])),
    proof_negative_index: errorText(() => g3.generateMerkleProof(-1)),
    proof_index_size: errorText(() => g3.generateMerkleProof(3)),
    update_removed: errorText(() => g3.updateMember(1, 5n)),
    remove_removed: errorText(() => g3.removeMember(1))
}

// 7. A JS import of a JS export gives the same tree.
const big = new Group(L(100))
const reimported = Group.import(big.export())
if (reimported.root !== big.root || reimported.export() !== big.export()) throw new Error("import mismatch")

const out = {
    description: "LeanIMT (Poseidon2) roots, proofs and exports from the reference JS libraries",
    generator: "tests/js/gen_tree_vectors.mjs",
    versions,
    leaves: LEAVES.map(String),
    sequential,
    bulk,
    append_grid: appendGrid,
    scenarios: scenarioOut,
    duplicates,
    errors
}
writeFileSync(`${root}tests/vectors/tree.json`, JSON.stringify(out) + "\n")
console.log(`tree vectors written (${sequential.steps.length} steps, ${bulk.length} bulk, ${appendGrid.length} appends)`)
