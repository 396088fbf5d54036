// Shared helpers for the proof_*.mjs scripts: read JSON from stdin, locate the
// pinned ceremony artifacts, and convert values the way @semaphore-protocol/proof does.
import { readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import path from "node:path"

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..")
export const ARTIFACTS = process.env.ZKID_ARTIFACTS_DIR || path.join(ROOT, "node_modules", "@zk-kit", "semaphore-artifacts")

export function artifacts(depth) {
    return {
        wasm: path.join(ARTIFACTS, `semaphore-${depth}.wasm`),
        zkey: path.join(ARTIFACTS, `semaphore-${depth}.zkey`),
        vkey: path.join(ARTIFACTS, `semaphore-${depth}.json`)
    }
}

export function readInput() {
    const text = readFileSync(0, "utf8")
    return text.trim() === "" ? null : JSON.parse(text)
}

// Big integers go out as decimal strings.
export function stringify(value) {
    return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v))
}

// Write the JSON result and exit once it is flushed (snarkjs keeps worker threads alive,
// and a pipe write is asynchronous, so exiting right away could truncate the output).
export function output(value) {
    process.stdout.write(stringify(value), () => process.exit(0))
}

// Values travel as {"bigint": "123"} when the SDK must see a bigint, else as-is (text).
export function decodeValue(v) {
    if (v !== null && typeof v === "object" && "bigint" in v) return BigInt(v.bigint)
    return v
}
