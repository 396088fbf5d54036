// Generate Semaphore proofs with the real @semaphore-protocol/proof SDK.
// stdin: {"privateKey", "memberKeys": [...] | "members": [decimal...], "message", "scope",
//         "depth"?, "useMerkleProof"?}
// stdout: {"proof", "secretScalar", "commitment", "members", "circuitInputs", "publicSignals"}
import { Identity } from "@semaphore-protocol/identity"
import { Group } from "@semaphore-protocol/group"
import { generateProof, unpackGroth16Proof } from "@semaphore-protocol/proof"
import { keccak256 } from "ethers/crypto"
import { toBeHex, toBigInt } from "ethers/utils"
import { encodeBytes32String } from "ethers/abi"
import { artifacts, decodeValue, output, readInput } from "./proof_common.mjs"

function sdkBigInt(value) {
    try {
        return toBigInt(value)
    } catch {
        return toBigInt(encodeBytes32String(value))
    }
}

function sdkHash(value) {
    return BigInt(keccak256(toBeHex(value, 32))) >> 8n
}

async function one(req) {
    const identity = new Identity(req.privateKey)
    const members = req.members
        ? req.members.map(BigInt)
        : req.memberKeys.map((k) => new Identity(k).commitment)
    const group = new Group(members)
    const index = group.indexOf(identity.commitment)
    const merkleProof = group.generateMerkleProof(index)
    const message = decodeValue(req.message)
    const scope = decodeValue(req.scope)
    const depth = req.depth ?? undefined
    const effectiveDepth = depth ?? (merkleProof.siblings.length || 1)
    const siblings = [...merkleProof.siblings]
    while (siblings.length < effectiveDepth) siblings.push(0n)
    const circuitInputs = {
        secret: identity.secretScalar,
        merkleProofLength: merkleProof.siblings.length,
        merkleProofIndex: merkleProof.index,
        merkleProofSiblings: siblings,
        scope: sdkHash(sdkBigInt(scope)),
        message: sdkHash(sdkBigInt(message))
    }
    const proof = await generateProof(
        identity,
        req.useMerkleProof ? group.generateMerkleProof(index) : group,
        message,
        scope,
        depth,
        artifacts(effectiveDepth)
    )
    return {
        proof,
        snarkjsProof: unpackGroth16Proof(proof.points),
        secretScalar: identity.secretScalar,
        commitment: identity.commitment,
        members,
        index,
        circuitInputs,
        publicSignals: [proof.merkleTreeRoot, proof.nullifier, circuitInputs.message, circuitInputs.scope]
    }
}

const input = readInput()
const requests = Array.isArray(input) ? input : [input]
const results = []
for (const req of requests) results.push(await one(req))
output(Array.isArray(input) ? results : results[0])
