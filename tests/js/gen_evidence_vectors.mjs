// Writes tests/vectors/evidence.json: interop vectors for zk/evidence from the real JS
// libraries (see evidence_ref.mjs): EIP-712 record hashes and signatures (ethers),
// Ed25519 signed checkpoints (@noble/curves), EdDSA-Poseidon acknowledgements
// (@zk-kit/eddsa-poseidon). Inputs are fixed, so the file is reproducible.
import { writeFileSync, readFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { eddsaSign, noteSign, typedHash, typedSign } from "./evidence_ref.mjs"

const root = fileURLToPath(new URL("../../", import.meta.url))
const version = (pkg) => JSON.parse(readFileSync(`${root}node_modules/${pkg}/package.json`, "utf8")).version

const domainType = [
    { name: "name", type: "string" },
    { name: "version", type: "string" },
    { name: "chainId", type: "uint256" },
]
const recordType = [
    { name: "version", type: "uint16" },
    { name: "event", type: "string" },
    { name: "eventTime", type: "uint64" },
    { name: "issuer", type: "address" },
    { name: "blobDigest", type: "bytes32" },
    { name: "links", type: "bytes32[]" },
    { name: "reason", type: "string" },
    { name: "region", type: "string" },
]

const hex32 = (byte) => "0x" + byte.repeat(32)
const keys = ["0x" + "01".repeat(32), "0x" + "4c".repeat(32), "0x" + "a5".repeat(31) + "07"]
const cases = [
    { chainId: 1, event: "SubmissionAcceptance", eventTime: 0, blob: hex32("00"), links: [], reason: "", region: "eu" },
    { chainId: 31337, event: "RelayAcceptance", eventTime: 1700000000, blob: hex32("ab"), links: [hex32("11")], reason: "", region: "eu-west-1" },
    { chainId: 10, event: "SubmissionRejection", eventTime: 1700000123, blob: hex32("cd"), links: [], reason: "invalid_proof", region: "us-east" },
    { chainId: 8453, event: "ContentConsignment", eventTime: 9007199254740991, blob: hex32("ef"), links: [hex32("22"), hex32("33"), hex32("44")], reason: "", region: "a" },
    { chainId: 31337, event: "RelayFailure", eventTime: 1712345678, blob: hex32("01"), links: [hex32("55")], reason: "unreachable", region: "ap-south-2" },
    { chainId: 31337, event: "ContentAccessTracking", eventTime: 1712345999, blob: hex32("01"), links: [hex32("66")], reason: "", region: "0-0" },
]

const records = []
for (const [i, c] of cases.entries()) {
    const privateKey = keys[i % keys.length]
    const { address } = await typedSign(privateKey, { domain: { name: "x", version: "1", chainId: 1 }, types: { T: [{ name: "a", type: "uint8" }] }, message: { a: 1 } })
    const typed = {
        types: { EIP712Domain: domainType, EvidenceRecord: recordType },
        primaryType: "EvidenceRecord",
        domain: { name: "letro-zkid evidence", version: "1", chainId: c.chainId },
        message: {
            version: 1,
            event: c.event,
            eventTime: c.eventTime,
            issuer: address,
            blobDigest: c.blob,
            links: c.links,
            reason: c.reason,
            region: c.region,
        },
    }
    const { signature } = await typedSign(privateKey, typed)
    records.push({ privateKey, typedData: typed, recordHash: typedHash(typed), signature })
}

// Signed checkpoints (c2sp.org/tlog-checkpoint) under fixed Ed25519 seeds.
const notes = [
    { seed: "00".repeat(32), name: "example.com/log", text: "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n" },
    { seed: "7f".repeat(32), name: "letro.example/evidence/v1", text: "letro.example/evidence/v1\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n" },
    { seed: "c3".repeat(32), name: "log.example/é", text: "log.example/é\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nextension line\n" },
].map((n) => ({ ...n, ...noteSign(n.seed, n.name, n.text) }))

// EdDSA-Poseidon acknowledgements: message = BigInt(recordHash) >> 8.
const acks = records.slice(0, 3).map((r, i) => {
    const privateKey = ["alice", "bob-the-recipient", "0123456789abcdef"][i]
    const message = (BigInt(r.recordHash) >> 8n).toString()
    return { privateKey, recordHash: r.recordHash, message, ...eddsaSign(privateKey, message) }
})

const out = {
    generator: "tests/js/gen_evidence_vectors.mjs",
    libraries: {
        ethers: version("ethers"),
        "@noble/curves": version("@noble/curves"),
        "@zk-kit/eddsa-poseidon": version("@zk-kit/eddsa-poseidon"),
    },
    records,
    notes,
    acks,
}
writeFileSync(`${root}tests/vectors/evidence.json`, JSON.stringify(out, null, 1) + "\n")
console.log(`wrote ${records.length} records, ${notes.length} notes, ${acks.length} acks`)
