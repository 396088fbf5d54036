// Writes tests/vectors/eddsa.json (@zk-kit/eddsa-poseidon 1.1.0: secret scalars, public
// keys, packed keys, signatures and packed signatures) and tests/vectors/blake512.json
// (the library's internal BLAKE-512 on messages around the block/padding boundaries).
// Usage: node tests/js/gen_eddsa_vectors.mjs
import { writeFileSync } from "node:fs";
import { eddsa, loadBlake512, decodeKey, pointToJson } from "./eddsa_common.mjs";
import { KEYS, MESSAGES, BLAKE_LENGTHS, blakeInput } from "./eddsa_cases.mjs";

const keys = KEYS.map((key) => {
  const k = decodeKey(key);
  const publicKey = eddsa.derivePublicKey(k);
  return {
    key,
    secretScalar: eddsa.deriveSecretScalar(k).toString(),
    publicKey: pointToJson(publicKey),
    packedPublicKey: eddsa.packPublicKey(publicKey).toString(),
    signatures: MESSAGES.map((message) => {
      const sig = eddsa.signMessage(k, message);
      if (!eddsa.verifySignature(message, sig, publicKey)) throw new Error("JS signature does not verify");
      return {
        message: message.toString(),
        R8: pointToJson(sig.R8),
        S: sig.S.toString(),
        packed: eddsa.packSignature(sig).toString("hex"),
      };
    }),
  };
});
writeFileSync(
  new URL("../vectors/eddsa.json", import.meta.url),
  JSON.stringify({ source: "@zk-kit/eddsa-poseidon@1.1.0", generator: "tests/js/gen_eddsa_vectors.mjs", keys }, null, 1) + "\n",
);

const blake512 = loadBlake512();
const blake = BLAKE_LENGTHS.map((n) => {
  const input = blakeInput(n);
  return { input: input.toString("hex"), digest: blake512(input).toString("hex") };
});
writeFileSync(
  new URL("../vectors/blake512.json", import.meta.url),
  JSON.stringify(
    {
      source: "@zk-kit/eddsa-poseidon@1.1.0 internal Blake512 class (src/blake.ts)",
      generator: "tests/js/gen_eddsa_vectors.mjs",
      cases: blake,
    },
    null,
    1,
  ) + "\n",
);
console.log(`wrote ${keys.length} keys, ${blake.length} blake512 cases`);
