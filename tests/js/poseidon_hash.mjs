// Live cross-check: reads {"inputs": [[decimal, ...], ...]} on stdin and prints
// {"hashes": [decimal, ...]} computed by poseidon-lite 0.3.0.
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const poseidonLite = require("poseidon-lite");

let raw = "";
for await (const chunk of process.stdin) raw += chunk;
const { inputs } = JSON.parse(raw);
const hashes = inputs.map((xs) => poseidonLite[`poseidon${xs.length}`](xs.map(BigInt)).toString());
process.stdout.write(JSON.stringify({ hashes }));
