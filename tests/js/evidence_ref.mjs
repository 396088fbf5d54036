// Reference operations for the evidence log, done by the real npm libraries:
// - EIP-712 typed data: ethers 6 (TypedDataEncoder.hash, Wallet.signTypedData,
//   verifyTypedData);
// - Ed25519 signed notes (c2sp.org/signed-note): @noble/curves ed25519 and Node's
//   crypto SHA-256 for key IDs; the note text is assembled here, the signature and
//   key ID come from the libraries;
// - EdDSA-Poseidon acknowledgements: @zk-kit/eddsa-poseidon (BLAKE-1 engine, as used by
//   @semaphore-protocol/identity).
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { TypedDataEncoder, Wallet, verifyTypedData } from "ethers"
import { ed25519 } from "@noble/curves/ed25519"
import { createRequire } from "node:module"

// The CommonJS build: the ESM build of eddsa-poseidon 1.1.0 cannot load blakejs under Node.
const { signMessage, verifySignature, derivePublicKey } = createRequire(import.meta.url)("@zk-kit/eddsa-poseidon")

export function readInput() {
    const text = readFileSync(0, "utf8")
    return text.trim() ? JSON.parse(text) : {}
}

export function output(value) {
    process.stdout.write(JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v)))
}

function withoutDomainType(types) {
    const { EIP712Domain, ...rest } = types
    return rest
}

export function typedHash(typed) {
    return TypedDataEncoder.hash(typed.domain, withoutDomainType(typed.types), typed.message)
}

export async function typedSign(privateKey, typed) {
    const wallet = new Wallet(privateKey)
    const signature = await wallet.signTypedData(typed.domain, withoutDomainType(typed.types), typed.message)
    return { address: wallet.address, signature }
}

export function typedRecover(typed, signature) {
    try {
        return verifyTypedData(typed.domain, withoutDomainType(typed.types), typed.message, signature)
    } catch (e) {
        return `error: ${e.message}`
    }
}

const b64 = (bytes) => Buffer.from(bytes).toString("base64")

// signed-note key ID: SHA-256(name || 0x0A || 0x01 || public key)[:4].
export function noteKeyId(name, publicKey) {
    const h = createHash("sha256")
    h.update(Buffer.from(name, "utf8"))
    h.update(Buffer.from([0x0a, 0x01]))
    h.update(Buffer.from(publicKey))
    return h.digest().subarray(0, 4)
}

export function noteSign(seedHex, name, text) {
    const seed = Buffer.from(seedHex, "hex")
    const publicKey = ed25519.getPublicKey(seed)
    const id = noteKeyId(name, publicKey)
    const sig = ed25519.sign(Buffer.from(text, "utf8"), seed)
    const vkey = `${name}+${id.toString("hex")}+${b64(Buffer.concat([Buffer.from([1]), publicKey]))}`
    return {
        vkey,
        note: `${text}\n\u2014 ${name} ${b64(Buffer.concat([id, Buffer.from(sig)]))}\n`,
    }
}

export function noteVerify(publicKeyB64, text, signatureB64) {
    try {
        return ed25519.verify(Buffer.from(signatureB64, "base64"), Buffer.from(text, "utf8"), Buffer.from(publicKeyB64, "base64"))
    } catch (e) {
        return false
    }
}

export function eddsaSign(privateKey, message) {
    const signature = signMessage(privateKey, BigInt(message))
    const publicKey = derivePublicKey(privateKey)
    return {
        publicKey: publicKey.map((c) => c.toString()),
        signature: { R8: signature.R8.map((c) => c.toString()), S: signature.S.toString() },
    }
}

export function eddsaVerify(message, signature, publicKey) {
    try {
        return verifySignature(
            BigInt(message),
            { R8: signature.R8.map(BigInt), S: BigInt(signature.S) },
            publicKey.map(BigInt)
        )
    } catch (e) {
        return false
    }
}
