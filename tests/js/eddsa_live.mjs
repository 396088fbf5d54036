// Live cross-checks against @zk-kit/eddsa-poseidon 1.1.0. stdin: {"op": ..., "items": [...]};
// stdout: {"results": [...]}. Ops: derive (keys), sign ({key, message}), verify
// ({message, signature, publicKey}), unpackPublicKey (decimal), unpackSignature (hex),
// blake512 (hex).
import { eddsa, loadBlake512, decodeKey, pointToJson, pointFromJson, sigToJson, sigFromJson, readStdinJson } from "./eddsa_common.mjs";

const { op, items } = await readStdinJson();
const guard = (fn) => {
  try {
    return fn();
  } catch (e) {
    return { error: String(e.message || e) };
  }
};
const ops = {
  derive: (key) => {
    const k = decodeKey(key);
    const pk = eddsa.derivePublicKey(k);
    return { secretScalar: eddsa.deriveSecretScalar(k).toString(), publicKey: pointToJson(pk), packedPublicKey: eddsa.packPublicKey(pk).toString() };
  },
  sign: ({ key, message }) => {
    const sig = eddsa.signMessage(decodeKey(key), BigInt(message));
    return { ...sigToJson(sig), packed: eddsa.packSignature(sig).toString("hex") };
  },
  verify: ({ message, signature, publicKey }) =>
    eddsa.verifySignature(BigInt(message), sigFromJson(signature), pointFromJson(publicKey)),
  unpackPublicKey: (packed) => guard(() => pointToJson(eddsa.unpackPublicKey(BigInt(packed)))),
  unpackSignature: (hex) => guard(() => sigToJson(eddsa.unpackSignature(Buffer.from(hex, "hex")))),
  blake512: (() => {
    const blake = loadBlake512();
    return (hex) => blake(Buffer.from(hex, "hex")).toString("hex");
  })(),
};
if (!(op in ops)) throw new Error(`unknown op ${op}`);
process.stdout.write(JSON.stringify({ results: items.map(ops[op]) }));
