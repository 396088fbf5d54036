// Shared helpers of the LeanIMT vector generator and live cross-check scripts: the real
// @zk-kit/lean-imt and @semaphore-protocol/group with poseidon-lite's Poseidon2.
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { LeanIMT } from "@zk-kit/lean-imt"
import { Group } from "@semaphore-protocol/group"
import { poseidon2 } from "poseidon-lite/poseidon2"

export { LeanIMT, Group }
export const hash = (a, b) => poseidon2([a, b])

function pkgVersion(specifier) {
    const entry = fileURLToPath(import.meta.resolve(specifier))
    let dir = entry
    for (;;) {
        dir = dir.slice(0, dir.lastIndexOf("/"))
        try {
            const pkg = JSON.parse(readFileSync(`${dir}/package.json`, "utf8"))
            if (pkg.name === specifier) return pkg.version
        } catch {}
    }
}

export const versions = {
    "@zk-kit/lean-imt": pkgVersion("@zk-kit/lean-imt"),
    "@semaphore-protocol/group": pkgVersion("@semaphore-protocol/group"),
    "poseidon-lite": pkgVersion("poseidon-lite")
}

export const proofJson = (p) => ({
    root: p.root.toString(),
    leaf: p.leaf.toString(),
    index: p.index,
    siblings: p.siblings.map(String)
})

export const proofFromJson = (p) => ({
    root: BigInt(p.root),
    leaf: BigInt(p.leaf),
    index: p.index,
    siblings: p.siblings.map(BigInt)
})

// State of a Semaphore group as Python sees it (Group.root is 0 for an empty tree).
export const state = (group) => ({ root: group.root.toString(), depth: group.depth, size: group.size })

export function errorText(f) {
    try {
        f()
    } catch (e) {
        return e instanceof Error ? e.message : String(e)
    }
    return null
}

// Applies one operation to a Group; ops are {op: insert|insert_many|update|remove, ...}.
export function apply(group, op) {
    switch (op.op) {
        case "insert":
            return group.addMember(BigInt(op.leaf))
        case "insert_many":
            return group.addMembers(op.leaves.map(BigInt))
        case "update":
            return group.updateMember(op.index, BigInt(op.leaf))
        case "remove":
            return group.removeMember(op.index)
        default:
            throw new Error(`unknown op ${op.op}`)
    }
}

export async function readStdinJson() {
    let raw = ""
    for await (const chunk of process.stdin) raw += chunk
    return JSON.parse(raw)
}
