// The private keys and messages used by the eddsa and identity vector generators.
import { createHash } from "node:crypto";

export const R = 21888242871839275222246405745257275088548364400416034343698204186575808495617n;
const sha = (label, n = 32) => {
  let out = Buffer.alloc(0);
  for (let i = 0; out.length < n; i++) out = Buffer.concat([out, createHash("sha256").update(`${label}/${i}`).digest()]);
  return out.subarray(0, n);
};

export const KEYS = [
  { text: "secret" },
  { text: "" },
  { text: "héllo wörld" },
  { text: "🔑 clé ключ 鍵" },
  { text: "0x1234" },
  { text: "123" },
  { text: "a".repeat(1000) },
  { hex: "" },
  { hex: "00" },
  { hex: sha("key32").toString("hex") },
  { hex: sha("key64", 64).toString("hex") },
  { hex: sha("key111", 111).toString("hex") },
  { hex: sha("key112", 112).toString("hex") },
  { hex: sha("key128", 128).toString("hex") },
  { hex: sha("key300", 300).toString("hex") },
];

export const MESSAGES = [
  0n,
  1n,
  42n,
  R - 1n,
  (1n << 128n) + 1n,
  BigInt("0x" + sha("message").toString("hex")) % R,
];

export const BLAKE_LENGTHS = [0, 1, 2, 31, 32, 55, 63, 64, 110, 111, 112, 113, 127, 128, 129, 200, 239, 240, 241, 255, 256, 257, 1000];
export const blakeInput = (n) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) & 0xff));
