// Times poseidon-lite's poseidon2 on {"count": N} pseudo-random field elements (stdin);
// prints {"count": N, "seconds": s, "hashes_per_second": h}.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const { poseidon2 } = require("poseidon-lite");

let raw = "";
for await (const chunk of process.stdin) raw += chunk;
const { count } = JSON.parse(raw);
const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
let acc = 123456789n;
for (let i = 0; i < 200; i++) acc = poseidon2([acc, BigInt(i)]); // warm-up
const start = process.hrtime.bigint();
for (let i = 0; i < count; i++) acc = poseidon2([acc, (acc * 7n + BigInt(i)) % R]);
const seconds = Number(process.hrtime.bigint() - start) / 1e9;
process.stdout.write(JSON.stringify({ count, seconds, hashes_per_second: count / seconds }));
