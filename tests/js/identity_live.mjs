// Live cross-checks against @semaphore-protocol/identity 4.14.3. stdin: {"op": ..., "items": [...]};
// stdout: {"results": [...]}. Ops: create (keys: {"text"} / {"hex"}), import (exported
// base64 strings), sign ({export, message}), verify ({message, signature, publicKey}).
import { Identity, decodeKey, pointToJson, pointFromJson, sigToJson, sigFromJson, readStdinJson } from "./eddsa_common.mjs";

const { op, items } = await readStdinJson();
const describe = (id) => ({ export: id.export(), publicKey: pointToJson(id.publicKey), commitment: id.commitment.toString() });
const ops = {
  create: (key) => describe(new Identity(decodeKey(key))),
  import: (exported) => describe(Identity.import(exported)),
  sign: ({ export: exported, message }) => sigToJson(Identity.import(exported).signMessage(BigInt(message))),
  verify: ({ message, signature, publicKey }) =>
    Identity.verifySignature(BigInt(message), sigFromJson(signature), pointFromJson(publicKey)),
};
if (!(op in ops)) throw new Error(`unknown op ${op}`);
process.stdout.write(JSON.stringify({ results: items.map(ops[op]) }));
