// Shared helpers for the eddsa_/identity_ scripts: the real @zk-kit/eddsa-poseidon 1.1.0,
// its internal BLAKE-512 class, and JSON (de)serialisation of keys, points and signatures.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import vm from "node:vm";
import { Buffer } from "node:buffer";

const require = createRequire(import.meta.url);
// The CommonJS builds: the ESM build of eddsa-poseidon 1.1.0 cannot load blakejs under Node.
export const eddsa = require("@zk-kit/eddsa-poseidon");
export const { Identity } = require("@semaphore-protocol/identity");

// The library does not export its BLAKE-512 class; run the class's own code from the
// installed bundle (from `const zo` up to the Blake2b wrapper) in a sandbox.
export function loadBlake512() {
  const path = require.resolve("@zk-kit/eddsa-poseidon");
  const source = readFileSync(path, "utf8");
  const start = source.indexOf("const zo = ");
  const end = source.indexOf("class Blake2b");
  if (start < 0 || end < 0) throw new Error("BLAKE-512 class not found in the bundle");
  const code = source.slice(start, end) + "\n;Blake512";
  const Blake512 = vm.runInNewContext(code, { buffer: { Buffer } });
  return (bytes) => new Blake512().update(Buffer.from(bytes)).digest();
}

// Keys travel as {"text": "..."} or {"hex": "..."}.
export const decodeKey = (k) => ("text" in k ? k.text : Buffer.from(k.hex, "hex"));
export const pointToJson = (p) => [p[0].toString(), p[1].toString()];
export const pointFromJson = (p) => [BigInt(p[0]), BigInt(p[1])];
export const sigToJson = (s) => ({ R8: pointToJson(s.R8), S: s.S.toString() });
export const sigFromJson = (s) => ({ R8: pointFromJson(s.R8), S: BigInt(s.S) });

export async function readStdinJson() {
  let raw = "";
  for await (const chunk of process.stdin) raw += chunk;
  return raw ? JSON.parse(raw) : null;
}
