// The message/scope conversion and hashing of @semaphore-protocol/proof 4.14.3, taken
// from the installed package itself rather than re-typed here: the package does not
// export `hash` and `toBigInt`, so we lift their source text out of its node bundle and
// evaluate it against the same ethers build the bundle imports. The generator also runs
// the real `generateProof` on a few values to confirm the lifted code matches it.
import { readFileSync } from "node:fs"
import { createRequire } from "node:module"
import { fileURLToPath } from "node:url"
import { keccak256 } from "ethers/crypto"
import { toBeHex, toBigInt as ethersToBigInt } from "ethers/utils"
import { encodeBytes32String } from "ethers/abi"

// The exact file Node loads for `import "@semaphore-protocol/proof"`.
const bundlePath = fileURLToPath(import.meta.resolve("@semaphore-protocol/proof"))
const bundle = readFileSync(bundlePath, "utf8")
const proofPkgDir = bundlePath.replace(/dist\/[^/]*$/, "")
// The lifted code must run against the ethers build the proof package itself resolves.
const fromHere = createRequire(import.meta.url).resolve("ethers")
const fromProof = createRequire(bundlePath).resolve("ethers")
if (fromHere !== fromProof) throw new Error(`ethers mismatch: ${fromHere} vs ${fromProof}`)

function liftFunction(name) {
    const start = bundle.indexOf(`function ${name}(`)
    if (start < 0) throw new Error(`function ${name} not found in the proof bundle`)
    const end = bundle.indexOf("\n}\n", start)
    if (end < 0) throw new Error(`end of function ${name} not found`)
    return bundle.slice(start, end + 2)
}

const src = `${liftFunction("hash")}\n${liftFunction("toBigInt")}\nreturn { hash, toBigInt };`
// The bundle names its imports `keccak256`, `toBeHex`, `toBigInt$1`, `encodeBytes32String`.
const lifted = new Function("keccak256", "toBeHex", "toBigInt$1", "encodeBytes32String", src)(
    keccak256,
    toBeHex,
    ethersToBigInt,
    encodeBytes32String
)

export const semaphoreHash = lifted.hash
export const semaphoreToBigInt = lifted.toBigInt
export const proofPackageVersion = JSON.parse(readFileSync(proofPkgDir + "package.json", "utf8")).version
export const ethersVersion = JSON.parse(
    readFileSync(fromProof.replace(/lib\.commonjs\/index\.js$/, "package.json"), "utf8")
).version

// Inputs travel as {type, value}: "string" -> JS string, "bigint" -> BigInt(decimal),
// "number" -> Number, "bytes" -> Uint8Array from hex.
export function decodeInput(input) {
    switch (input.type) {
        case "string":
            return input.value
        case "bigint":
            return BigInt(input.value)
        case "number":
            return Number(input.value)
        case "bytes":
            return Uint8Array.from(Buffer.from(input.value, "hex"))
        default:
            throw new Error(`unknown input type ${input.type}`)
    }
}

function errorText(e) {
    return e instanceof Error ? `${e.name}: ${e.message}` : String(e)
}

// What generateProof does with a message or scope: convert, then hash the result.
export function evaluate(input) {
    const out = { input }
    let value
    try {
        value = semaphoreToBigInt(decodeInput(input))
        out.bigint = value.toString()
    } catch (e) {
        out.to_bigint_error = errorText(e)
        return out
    }
    try {
        out.hash = semaphoreHash(value)
    } catch (e) {
        out.hash_error = errorText(e)
    }
    return out
}
