// Writes tests/vectors/identity.json from @semaphore-protocol/identity 4.14.3: for each
// private key, the export string, secret scalar, public key, commitment and a signature;
// plus Identity.import of exported strings.
// Usage: node tests/js/gen_identity_vectors.mjs
import { writeFileSync } from "node:fs";
import { Identity, decodeKey, pointToJson } from "./eddsa_common.mjs";
import { KEYS, MESSAGES } from "./eddsa_cases.mjs";

const identities = KEYS.map((key) => {
  const id = new Identity(decodeKey(key));
  const exported = id.export();
  const again = Identity.import(exported);
  if (again.commitment !== id.commitment) throw new Error("import(export()) changed the identity");
  const message = MESSAGES[2];
  const sig = id.signMessage(message);
  return {
    key,
    export: exported,
    secretScalar: id.secretScalar.toString(),
    publicKey: pointToJson(id.publicKey),
    commitment: id.commitment.toString(),
    signature: { message: message.toString(), R8: pointToJson(sig.R8), S: sig.S.toString() },
  };
});
// Exported strings made elsewhere (e.g. by the Python side) import to these commitments.
const imports = ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "c2VjcmV0", "AQID", ""].map((s) => ({
  export: s,
  commitment: Identity.import(s).commitment.toString(),
}));
writeFileSync(
  new URL("../vectors/identity.json", import.meta.url),
  JSON.stringify(
    { source: "@semaphore-protocol/identity@4.14.3", generator: "tests/js/gen_identity_vectors.mjs", identities, imports },
    null,
    1,
  ) + "\n",
);
console.log(`wrote ${identities.length} identities, ${imports.length} imports`);
