// Writes tests/vectors/hashing.json: how @semaphore-protocol/proof 4.14.3 turns a
// message or scope into the circuit's public input (toBigInt, then keccak256(32-byte
// big-endian value) >> 8), for ordinary values, edge cases and the inputs it rejects.
// A few values also go through the real generateProof + Groth16 verification, so the
// recorded hashes are checked against what the circuit actually received.
import { writeFileSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { Identity } from "@semaphore-protocol/identity"
import { Group } from "@semaphore-protocol/group"
import { generateProof, unpackGroth16Proof } from "@semaphore-protocol/proof"
import * as snarkjs from "snarkjs"
import { evaluate, decodeInput, semaphoreHash, semaphoreToBigInt, proofPackageVersion, ethersVersion } from "./hashing_ref.mjs"

const root = fileURLToPath(new URL("../../", import.meta.url))
const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n
const TWO256 = 1n << 256n

const s = (value) => ({ type: "string", value })
const b = (value) => ({ type: "bigint", value: value.toString() })
const n = (value) => ({ type: "number", value: String(value) })
const bytes = (hex) => ({ type: "bytes", value: hex })

// Every whitespace character JS's StringToBigInt trims, plus look-alikes it does not.
const jsSpaces = ["\t", "\n", "\v", "\f", "\r", " ", "\u00a0", "\u1680", "\u2000", "\u2005", "\u200a",
    "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff"]
const notSpaces = ["\u0085", "\u001c", "\u001f", "\u180e", "\u200b", "\u2060"]

const inputs = [
    // Text: UTF-8, right-padded to 32 bytes, at most 31 bytes.
    s("hello"), s("Hello, World!"), s("a"), s("A"), s("abc def"), s("héllo"), s("日本語"), s("😀"),
    s("a".repeat(30)), s("a".repeat(31)), s("a".repeat(32)), s("a".repeat(100)),
    s("é".repeat(15) + "a"), s("é".repeat(16)), s("😀".repeat(7) + "abc"), s("😀".repeat(8)),
    s("\u0000"), s("\u0000\u0000x"), s("x\u0000"), s("null"), s("undefined"), s("NaN"), s("Infinity"), s("true"),
    s("\ud800"), s("\udc00"), s("a\udfffb"), s("\ud83d\ude00"), s("\ude00\ud83d"), s("\ud800" + "a".repeat(40)),
    s("a".repeat(40) + "\ud800"), s("\udc00".repeat(10)), s("\udc00".repeat(11)),
    // Strings JS reads as integers (BigInt() grammar after ethers' "-" handling).
    s(""), s(" "), s("  \t\n "), s("0"), s("00"), s("007"), s("1"), s("42"), s("+42"), s("-42"), s("-0"),
    s("-"), s("--5"), s("-+5"), s("- 5"), s("- -5"), s(" -5"), s(" - 5"), s("+-5"), s("++5"), s("-- "),
    s(" 42 "), s("\u00a042\u3000"), s("\ufeff1"), s("1 2"), s("1_000"), s("1e3"), s("1.0"), s("1."), s(".5"),
    s("0x"), s("0x0"), s("0x00"), s("0x1f"), s("0X1F"), s("0xABCDEF"), s("0xabcdefABCDEF0123456789"),
    s("0x 1"), s(" 0x10 "), s("-0x10"), s("- 0x10"), s("+0x10"), s("0x-1"), s("0xg"), s("x10"), s("0 x10"),
    s("0b101"), s("0B11"), s("0b"), s("0b2"), s("-0b11"), s("0o17"), s("0O7"), s("0o8"), s("0o"), s("017"), s("08"),
    s("0x" + "f".repeat(64)), s("0x1" + "0".repeat(64)), s("0x" + "0".repeat(100) + "1"), s("0x" + "f".repeat(63)),
    s((TWO256 - 1n).toString()), s(TWO256.toString()), s((R - 1n).toString()), s(R.toString()), s((R + 1n).toString()),
    s("0".repeat(200) + "5"), s("9".repeat(100)), s("-" + (TWO256 - 1n).toString()),
    s("１２"), s("٣"), s("²"), s("Ⅻ"),
    ...jsSpaces.map((c) => s(`${c}7${c}`)),
    ...notSpaces.map((c) => s(`${c}7`)),
    ...jsSpaces.map((c) => s(c)),
    // bigints
    b(0n), b(1n), b(42n), b(255n), b(256n), b(R - 1n), b(R), b(R + 1n), b(TWO256 - 1n), b(TWO256), b(TWO256 + 1n),
    b(-1n), b(-R), b(1n << 255n), b((1n << 248n) - 1n), b(1n << 248n), b(123456789012345678901234567890n),
    // numbers (JS only: Python ints have no 2^53 limit and floats are rejected)
    n(0), n(1), n(42), n(2 ** 53 - 1), n(-(2 ** 53 - 1)), n(-1), n(1.5), n(2 ** 53), n(1e21), n(0.1), n("NaN"), n("Infinity"),
    // bytes (Uint8Array): big-endian, any length
    bytes(""), bytes("00"), bytes("01"), bytes("0102"), bytes("ff".repeat(32)), bytes("01" + "00".repeat(32)),
    bytes("00".repeat(40) + "07"), bytes("68656c6c6f"), bytes("00".repeat(32)),
]

const cases = inputs.map(evaluate)

// A few values go through the real generateProof; the proof must verify against the
// ceremony key with the public signals built from the lifted hash.
const art = (ext) => `${root}node_modules/@zk-kit/semaphore-artifacts/semaphore-1.${ext}`
const vk = JSON.parse(readFileSync(art("json"), "utf8"))
const identity = new Identity("letro-zkid hashing vectors")
const group = new Group([identity.commitment])
const proofChecks = []
const pairs = [
    [s("hello"), s("scope-A")],
    [b(42n), s("0x1f")],
    [s(" -0 "), bytes("0102")],
    [b(TWO256 - 1n), s("😀".repeat(7) + "abc")],
]
for (const [m, sc] of pairs) {
    const proof = await generateProof(identity, group, decodeInput(m), decodeInput(sc), undefined, {
        wasm: art("wasm"),
        zkey: art("zkey")
    })
    const publicSignals = [proof.merkleTreeRoot, proof.nullifier, semaphoreHash(semaphoreToBigInt(decodeInput(m))),
        semaphoreHash(semaphoreToBigInt(decodeInput(sc)))]
    const ok = await snarkjs.groth16.verify(vk, publicSignals, unpackGroth16Proof(proof.points))
    if (!ok) throw new Error(`lifted hash disagrees with generateProof for ${JSON.stringify([m, sc])}`)
    if (proof.message !== semaphoreToBigInt(decodeInput(m)).toString()) throw new Error("message mismatch")
    if (proof.scope !== semaphoreToBigInt(decodeInput(sc)).toString()) throw new Error("scope mismatch")
    proofChecks.push({ message: m, scope: sc, proof_message: proof.message, proof_scope: proof.scope,
        message_hash: publicSignals[2], scope_hash: publicSignals[3] })
}

const out = {
    description: "Semaphore v4 message/scope conversion (toBigInt) and hash (keccak256 of 32-byte big-endian >> 8), from @semaphore-protocol/proof",
    generator: "tests/js/gen_hashing_vectors.mjs",
    versions: { "@semaphore-protocol/proof": proofPackageVersion, ethers: ethersVersion },
    cases,
    proof_checks: proofChecks
}
writeFileSync(`${root}tests/vectors/hashing.json`, JSON.stringify(out, null, 1) + "\n")
console.log(`wrote ${cases.length} cases, ${proofChecks.length} proof checks`)
process.exit(0)
