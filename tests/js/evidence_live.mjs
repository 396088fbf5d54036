// Live cross-checks of Python-made evidence objects with the real JS libraries.
// stdin: {"typed": [{"typedData", "signature"}], "notes": [{"publicKey" (base64),
//         "text", "signature" (base64, without key ID)}], "acks": [{"message",
//         "signature", "publicKey"}], "sign": [{"privateKey", "typedData"}]}
// stdout: {"typed": [{"hash", "recovered"}], "notes": [bool], "acks": [bool],
//          "sign": [signature]}
import { eddsaVerify, noteVerify, output, readInput, typedHash, typedRecover, typedSign } from "./evidence_ref.mjs"

const input = readInput()
const out = { typed: [], notes: [], acks: [], sign: [] }
for (const t of input.typed ?? []) {
    out.typed.push({ hash: typedHash(t.typedData), recovered: typedRecover(t.typedData, t.signature) })
}
for (const n of input.notes ?? []) out.notes.push(noteVerify(n.publicKey, n.text, n.signature))
for (const a of input.acks ?? []) out.acks.push(eddsaVerify(a.message, a.signature, a.publicKey))
for (const s of input.sign ?? []) out.sign.push((await typedSign(s.privateKey, s.typedData)).signature)
output(out)
