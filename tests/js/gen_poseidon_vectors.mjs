// Writes tests/vectors/poseidon.json: Poseidon hashes from poseidon-lite 0.3.0 (circomlib
// parameters) for every arity 1..16, including the edge values 0 and r - 1.
// Usage: node tests/js/gen_poseidon_vectors.mjs
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const poseidonLite = require("poseidon-lite");

const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;

// Deterministic pseudo-random field elements, so the file is reproducible.
const fieldElement = (label) =>
  BigInt("0x" + createHash("sha256").update(label).digest("hex")) % R;

const cases = [];
for (let n = 1; n <= 16; n++) {
  const hash = poseidonLite[`poseidon${n}`];
  const inputSets = [
    Array(n).fill(0n),
    Array(n).fill(R - 1n),
    Array.from({ length: n }, (_, i) => BigInt(i + 1)),
    Array.from({ length: n }, (_, i) => (i % 2 === 0 ? 0n : R - 1n)),
    ...[0, 1, 2].map((k) => Array.from({ length: n }, (_, i) => fieldElement(`poseidon/${n}/${k}/${i}`))),
  ];
  for (const inputs of inputSets) {
    cases.push({ inputs: inputs.map(String), hash: hash(inputs).toString() });
  }
}

const out = {
  source: "poseidon-lite@0.3.0 (poseidon1..poseidon16)",
  generator: "tests/js/gen_poseidon_vectors.mjs",
  cases,
};
writeFileSync(new URL("../vectors/poseidon.json", import.meta.url), JSON.stringify(out, null, 1) + "\n");
console.log(`wrote ${cases.length} cases`);
