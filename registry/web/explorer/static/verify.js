// In-browser evidence bundle verifier: the checks of zk/evidence/bundle.py verify_bundle
// (what `zkid evidence verify --rpc-url` runs), in the same order, against the
// verifier's own trusted values; the anchor is read from the ledger through the RPC URL
// given, never from the registry that served this page.
//
// Specifications: EIP-712 (records), EIP-2/secp256k1 recovery (signatures), RFC 9162
// §2.1.3.2 and §2.1.4.2 (inclusion and consistency), C2SP signed-note with Ed25519 and
// tlog-checkpoint / tlog-proof (the checkpoint), EvidenceAnchor.getAnchor (the ledger).
// Primitives: @noble/hashes and @noble/curves 2.x, installed as the npm aliases noble-hashes
// and noble-curves (pinned in package-lock.json; the 1.x copies belong to ethers).
//
// Not checked here: acknowledgements (a Semaphore proof or an EdDSA-Poseidon signature);
// a bundle carrying one gets "acknowledgement" not_checked, so it is never "valid" in the
// browser: use `zkid evidence verify` for it.

import { sha256 } from "noble-hashes/sha2.js";
import { keccak_256 } from "noble-hashes/sha3.js";
import { secp256k1 } from "noble-curves/secp256k1.js";
import { ed25519 } from "noble-curves/ed25519.js";

export const CHECK_NAMES = ["record_signature", "record_issuer", "acknowledgement", "inclusion_proof",
  "checkpoint_signature", "consistency_with_anchor", "anchor_contract", "anchor_on_ledger"];
const N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141n;
const MAX_JSON_INT = 2 ** 53 - 1;
const EVENTS = ["SubmissionAcceptance", "SubmissionRejection", "RelayAcceptance", "RelayRejection", "RelayFailure",
  "ContentConsignment", "ContentConsignmentFailure", "ContentHandover", "ContentAccessTracking"];
const NEGATIVE = new Set(["SubmissionRejection", "RelayRejection", "RelayFailure", "ContentConsignmentFailure"]);
const REASONS = ["invalid_proof", "unknown_root", "rate_limited", "nullifier_reused", "message_mismatch",
  "scope_mismatch", "too_large", "expired", "unreachable", "storage_full", "internal_error"];
const utf8 = (s) => new TextEncoder().encode(s);

class Failed extends Error {}
class Untrusted extends Error {}
class FormatError extends Error {}

// --- bytes ------------------------------------------------------------------------------
function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}
const hex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
function fromHex(h) {
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}
const equal = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
function word(n) { const out = new Uint8Array(32); let v = BigInt(n); for (let i = 31; v > 0n; i--) { out[i] = Number(v & 255n); v >>= 8n; } return out; }
function b64decode(text, what) {
  // RFC 4648 §4 with padding, canonical only (note.py b64decode_strict).
  if (typeof text !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4) throw new FormatError(`bad_base64: ${what} is not base64`);
  let raw;
  try { raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0)); } catch { throw new FormatError(`bad_base64: ${what} is not base64`); }
  if (b64encode(raw) !== text) throw new FormatError(`bad_base64: ${what} is not canonical base64`);
  return raw;
}
// Not String.fromCharCode(...raw): a long hostile value would overflow the call stack.
const b64encode = (raw) => btoa(Array.from(raw, (x) => String.fromCharCode(x)).join(""));

// --- addresses (EIP-55) ----------------------------------------------------------------
export function checksum(address) {
  const lower = address.slice(2).toLowerCase();
  const digest = hex(keccak_256(utf8(lower)));
  return "0x" + [...lower].map((c, i) => (parseInt(digest[i], 16) >= 8 ? c.toUpperCase() : c)).join("");
}
const isChecksummed = (a) => typeof a === "string" && /^0x[0-9a-fA-F]{40}$/.test(a) && checksum(a) === a;

// --- parsing (the structure checks of EvidenceBundle.from_json) --------------------------
function keys(obj, wanted, what) {
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) throw new FormatError(`${what} has exactly the keys ${[...wanted].sort().join(", ")}`);
  const got = Object.keys(obj);
  if (got.length !== wanted.length || !wanted.every((k) => k in obj)) throw new FormatError(`${what} has exactly the keys ${[...wanted].sort().join(", ")}`);
  return obj;
}
function int(value, key, low = 0) {
  if (!Number.isSafeInteger(value) || value < low || value > MAX_JSON_INT) throw new FormatError(`${key} must be an integer in [${low}, 2^53)`);
  return value;
}
function hex32(value, name) {
  if (typeof value !== "string" || !/^0x[0-9a-f]{64}$/.test(value)) throw new FormatError(`${name} must be 0x followed by 64 lower-case hex digits`);
  return fromHex(value.slice(2));
}
function parseRecord(r) {
  keys(r, ["version", "chainId", "event", "eventTime", "issuer", "blobDigest", "links", "reason", "region"], "a record");
  if (r.version !== 1) throw new FormatError(`unsupported record version ${r.version}`);
  int(r.chainId, "chainId", 1); int(r.eventTime, "eventTime");
  if (!EVENTS.includes(r.event)) throw new FormatError(`unknown event ${JSON.stringify(r.event)}`);
  if (r.reason !== null && !REASONS.includes(r.reason)) throw new FormatError(`unknown reason code ${JSON.stringify(r.reason)}`);
  if (NEGATIVE.has(r.event) !== (r.reason !== null)) throw new FormatError(`${r.event}: reason code required for (only) rejection/failure events`);
  if (!isChecksummed(r.issuer) || /^0x0{40}$/.test(r.issuer)) throw new FormatError("issuer must be a non-zero EIP-55 checksummed address");
  if (!Array.isArray(r.links) || r.links.length > 16) throw new FormatError("links must be a list of at most 16 record hashes");
  const links = r.links.map((l) => hex32(l, "link"));
  if (new Set(r.links).size !== r.links.length) throw new FormatError("links must be distinct");
  if (typeof r.region !== "string" || !/^[a-z0-9][a-z0-9-]{0,31}$/.test(r.region)) throw new FormatError("region must match [a-z0-9][a-z0-9-]{0,31}");
  return { ...r, blob: hex32(r.blobDigest, "blobDigest"), linkBytes: links };
}
function parseSignature(sig) {
  if (typeof sig !== "string" || !/^0x[0-9a-f]{130}$/.test(sig)) throw new FormatError("signature must be 0x followed by 130 lower-case hex digits");
  const raw = fromHex(sig.slice(2));
  const r = BigInt("0x" + hex(raw.slice(0, 32))), s = BigInt("0x" + hex(raw.slice(32, 64))), v = raw[64];
  if (v !== 27 && v !== 28) throw new FormatError("signature v must be 27 or 28");
  if (!(r >= 1n && r < N) || !(s >= 1n && s <= N / 2n)) throw new FormatError("signature r/s out of range or high s (EIP-2)");
  return raw;
}
function validKeyName(name) { return typeof name === "string" && name.length > 0 && !name.includes("+") && !/[\s\u0000-\u001f\u007f-\u009f\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]/u.test(name); }
const MAX_NOTE_BYTES = 1 << 20; // note.py MAX_NOTE_BYTES
export function parseNote(msg) {
  if (!msg.isWellFormed()) throw new FormatError("malformed_note: note is not valid UTF-8");
  if (utf8(msg).length > MAX_NOTE_BYTES) throw new FormatError("malformed_note: note too large");
  if (!msg.endsWith("\n")) throw new FormatError("malformed_note: note text must end with a newline");
  if (/[\u0000-\u0009\u000b-\u001f]/.test(msg)) throw new FormatError("malformed_note: control character in note");
  const split = msg.lastIndexOf("\n\n");
  if (split < 0) throw new FormatError("malformed_note: no blank line before the signatures");
  const text = msg.slice(0, split + 1), block = msg.slice(split + 2);
  if (!block) throw new FormatError("malformed_note: no signature lines");
  const lines = block.slice(0, -1).split("\n");
  if (lines.length > 100) throw new FormatError("malformed_note: more than 100 signatures");
  const signatures = lines.map((line) => {
    if (!line.startsWith("\u2014 ")) throw new FormatError("malformed_note: signature line must start with an em dash and a space");
    const fields = line.slice(2).split(" ");
    if (fields.length !== 2 || !validKeyName(fields[0])) throw new FormatError("malformed_note: signature line must be '— name base64'");
    const raw = b64decode(fields[1], "signature");
    if (raw.length < 5) throw new FormatError("malformed_note: signature too short");
    return { name: fields[0], keyId: new DataView(raw.buffer).getUint32(0), sig: raw.slice(4) };
  });
  return { text, signatures };
}
function canonicalUint(text, what) {
  if (!/^(0|[1-9][0-9]{0,18})$/.test(text) || BigInt(text) > 2n ** 63n - 1n) throw new FormatError(`bad_number: ${what} is not a canonical decimal`);
  return Number(text);
}
export function parseCheckpoint(text) {
  if (!text.endsWith("\n")) throw new FormatError("malformed_checkpoint: checkpoint text must end with a newline");
  const lines = text.slice(0, -1).split("\n");
  if (lines.length < 3) throw new FormatError("malformed_checkpoint: checkpoint needs origin, size and root lines");
  const [origin, size, root, ...ext] = lines;
  if ([origin, ...ext].some((l) => !l)) throw new FormatError("malformed_checkpoint: origin and extension lines must be non-empty lines");
  const rootHash = b64decode(root, "root hash");
  if (rootHash.length !== 32) throw new FormatError("malformed_checkpoint: root hash must be 32 bytes");
  return { origin, size: canonicalUint(size, "tree size"), rootHash };
}
function parseTlogProof(text) {
  if (typeof text !== "string") throw new FormatError("tlogProof must be a string");
  const at = text.indexOf("\n\n");
  if (at < 0) throw new FormatError("malformed_proof: no empty line before the checkpoint");
  const lines = text.slice(0, at).split("\n"), checkpoint = text.slice(at + 2);
  if (lines[0] !== "c2sp.org/tlog-proof@v1") throw new FormatError("malformed_proof: bad header");
  let pos = 1;
  if (pos < lines.length && lines[pos].startsWith("extra ")) { b64decode(lines[pos].slice(6), "extra data"); pos++; }
  if (pos >= lines.length || !lines[pos].startsWith("index ")) throw new FormatError("malformed_proof: missing 'index N' line");
  const index = canonicalUint(lines[pos].slice(6), "index");
  const hashes = lines.slice(pos + 1).map((l) => b64decode(l, "proof hash"));
  if (hashes.length > 64 || hashes.some((h) => h.length !== 32)) throw new FormatError("malformed_proof: proof hashes must be at most 64 of 32 bytes");
  const body = parseCheckpoint(parseNote(checkpoint).text);
  return { index, hashes, checkpoint, body };
}
export function parseVkey(vkey) {
  const parts = typeof vkey === "string" ? vkey.split("+") : [];
  if (parts.length < 3) throw new FormatError("bad_key: verifier key must have three '+'-separated parts");
  const [name, id] = parts, material = b64decode(parts.slice(2).join("+"), "key material");
  if (!/^[0-9a-f]{8}$/.test(id) || material.length !== 33 || material[0] !== 1 || !validKeyName(name)) throw new FormatError("bad_key: not an Ed25519 verifier key");
  const keyId = parseInt(id, 16), publicKey = material.slice(1);
  const derived = new DataView(sha256(concat(utf8(name), Uint8Array.of(10), material)).buffer).getUint32(0);
  if (derived !== keyId) throw new FormatError("bad_key: key ID does not match the name and public key");
  return { name, keyId, publicKey, vkey };
}
// What JSON.parse lets through and zk/strict_json.py loads(floats=False) refuses: a
// repeated key (JSON.parse keeps the last one), a fractional or exponent number (1.0 would
// pass as 1), nesting deeper than 64. Run on text JSON.parse accepted, so it is valid JSON.
const MAX_DEPTH = 64;
function strictJson(text) {
  const open = [];
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      let k = j + 1;
      while (/\s/.test(text[k] ?? "")) k++;
      if (text[k] === ":") {
        const key = JSON.parse(text.slice(i, j + 1)), seen = open[open.length - 1];
        if (seen.has(key)) throw new FormatError("duplicate key in a JSON object");
        seen.add(key);
      }
      i = j;
    } else if (c === "{" || c === "[") {
      open.push(new Set());
      if (open.length > MAX_DEPTH) throw new FormatError(`JSON nested deeper than ${MAX_DEPTH} levels`);
    } else if (c === "}" || c === "]") open.pop();
    else if (c === "-" || (c >= "0" && c <= "9")) {
      const number = /^-?[0-9]+([.eE][-+0-9.eE]*)?/.exec(text.slice(i, i + 400))[0];
      if (/[.eE]/.test(number)) throw new FormatError("fractional numbers are not allowed here");
      i += number.length - 1;
    }
  }
}
const ACKNOWLEDGEMENTS = ["eddsa-poseidon", "semaphore"]; // zk/evidence/ack.py KIND_*
export function parseBundle(text) {
  let d;
  try { d = JSON.parse(text); } catch (e) { throw new FormatError(`not JSON: ${e.message}`); }
  strictJson(text);
  const ack = d?.acknowledgement;
  if (ack != null && (typeof ack !== "object" || Array.isArray(ack) || !ACKNOWLEDGEMENTS.includes(ack.type))) {
    throw new FormatError("an acknowledgement is a JSON object of a known type");
  }
  keys(d, ["version", "logKey", "entries", "acknowledgement", "anchor", "consistency"], "bundle");
  if (d.version !== 1) throw new FormatError(`unsupported bundle version ${d.version}`);
  if (!Array.isArray(d.entries) || typeof d.logKey !== "string") throw new FormatError("entries must be a list and logKey a string");
  parseVkey(d.logKey);
  if (d.entries.length < 1 || d.entries.length > 16) throw new FormatError("a bundle has 1 to 16 entries");
  const entries = d.entries.map((e) => {
    keys(e, ["record", "signature", "tlogProof"], "bundle entry");
    return { record: parseRecord(e.record), signature: parseSignature(e.signature), proof: parseTlogProof(e.tlogProof) };
  });
  if (new Set(entries.map((e) => e.proof.checkpoint)).size !== 1) throw new FormatError("all entries must be proven against the same checkpoint");
  const a = keys(d.anchor, ["chainId", "contract", "txHash", "blockNumber", "blockTime", "treeSize", "rootHash"], "anchor");
  const anchor = { chainId: int(a.chainId, "chainId", 1), contract: a.contract, txHash: hex32(a.txHash, "txHash"),
    blockNumber: int(a.blockNumber, "blockNumber"), blockTime: int(a.blockTime, "blockTime"),
    treeSize: int(a.treeSize, "treeSize", 1), rootHash: hex32(a.rootHash, "rootHash") };
  if (!isChecksummed(anchor.contract)) throw new FormatError("anchor contract must be an EIP-55 checksummed address");
  const c = keys(d.consistency, ["fromSize", "toSize", "proof"], "consistency");
  if (!Array.isArray(c.proof) || c.proof.length > 64) throw new FormatError("consistency proof must be a list of at most 64 hashes");
  const consistency = { fromSize: int(c.fromSize, "fromSize", 1), toSize: int(c.toSize, "toSize", 1), hashes: c.proof.map((h) => b64decode(h, "consistency hash")) };
  if (consistency.fromSize > consistency.toSize || consistency.hashes.some((h) => h.length !== 32)) throw new FormatError("consistency sizes must satisfy 1 <= fromSize <= toSize, hashes 32 bytes");
  return { logKey: d.logKey, entries, anchor, consistency, acknowledgement: d.acknowledgement };
}

// --- EIP-712 record hash (record.py record_hash) -------------------------------------------
const TYPEHASH_DOMAIN = keccak_256(utf8("EIP712Domain(string name,string version,uint256 chainId)"));
const TYPEHASH_RECORD = keccak_256(utf8("EvidenceRecord(uint16 version,string event,uint64 eventTime,address issuer,bytes32 blobDigest,bytes32[] links,string reason,string region)"));
export function recordHash(r) {
  const domain = keccak_256(concat(TYPEHASH_DOMAIN, keccak_256(utf8("letro-zkid evidence")), keccak_256(utf8("1")), word(r.chainId)));
  const struct = keccak_256(concat(TYPEHASH_RECORD, word(r.version), keccak_256(utf8(r.event)), word(r.eventTime),
    new Uint8Array(12), fromHex(r.issuer.slice(2)), r.blob, keccak_256(concat(...r.linkBytes)),
    keccak_256(utf8(r.reason ?? "")), keccak_256(utf8(r.region))));
  return keccak_256(concat(Uint8Array.of(0x19, 0x01), domain, struct));
}
function recover(hash, signature) {
  const sig = secp256k1.Signature.fromBytes(signature.slice(0, 64), "compact").addRecoveryBit(signature[64] - 27);
  const pub = sig.recoverPublicKey(hash).toBytes(false);
  return checksum("0x" + hex(keccak_256(pub.slice(1)).slice(12)));
}

// --- RFC 9162 Merkle proofs (merkle.py) -----------------------------------------------------
const leafHash = (data) => sha256(concat(Uint8Array.of(0), data));
const nodeHash = (l, r) => sha256(concat(Uint8Array.of(1), l, r));
function rootFromInclusion(leaf, index, size, path) {
  if (index >= size) throw new Failed(`index_out_of_range: index ${index} >= tree size ${size}`);
  let fn = BigInt(index), sn = BigInt(size - 1), r = leaf;
  for (const p of path) {
    if (sn === 0n) throw new Failed("wrong_proof_length: proof has too many hashes");
    if ((fn & 1n) || fn === sn) {
      r = nodeHash(p, r);
      while (fn && !(fn & 1n)) { fn >>= 1n; sn >>= 1n; }
    } else r = nodeHash(r, p);
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Failed("wrong_proof_length: proof has too few hashes");
  return r;
}
function checkConsistency(size1, size2, root1, root2, proof) {
  if (size1 === size2) {
    if (proof.length) throw new Failed("wrong_proof_length: equal sizes need an empty proof");
    if (!equal(root1, root2)) throw new Failed("root_mismatch: equal sizes but different roots");
    return;
  }
  if (!proof.length) throw new Failed("wrong_proof_length: empty consistency proof");
  let path = proof;
  if ((size1 & (size1 - 1)) === 0) path = [root1, ...proof];
  let fn = BigInt(size1 - 1), sn = BigInt(size2 - 1);
  while (fn & 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0], sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new Failed("wrong_proof_length: proof has too many hashes");
    if ((fn & 1n) || fn === sn) {
      fr = nodeHash(c, fr); sr = nodeHash(c, sr);
      while (fn && !(fn & 1n)) { fn >>= 1n; sn >>= 1n; }
    } else sr = nodeHash(sr, c);
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new Failed("wrong_proof_length: proof has too few hashes");
  if (!equal(fr, root1)) throw new Failed("root_mismatch: proof does not lead to root1");
  if (!equal(sr, root2)) throw new Failed("root_mismatch: proof does not lead to root2");
}

// --- the checks, in verify_bundle's order ---------------------------------------------------
function checkRecords(b) {
  b.entries.forEach((e, i) => {
    let ok = false;
    try { ok = recover(e.hash, e.signature) === e.record.issuer; } catch { ok = false; }
    if (!ok) throw new Failed(`entry ${i}: signature does not recover to the issuer`);
  });
  if (new Set(b.entries.map((e) => e.record.blobDigest)).size !== 1) throw new Failed("records concern different blobs");
  if (new Set(b.entries.map((e) => e.record.chainId)).size !== 1) throw new Failed("records are signed for different chains");
  if (new Set(b.entries.map((e) => hex(e.hash))).size !== b.entries.length) throw new Failed("duplicate record");
  return `${b.entries.length} record(s) signed by their issuers`;
}
function checkIssuers(b, trusted) {
  const issuers = [...new Set(b.entries.map((e) => e.record.issuer))].sort();
  if (!trusted) throw new Untrusted(`issuer(s) ${issuers.join(", ")} not checked: no trusted relay keys given`);
  const set = new Set(trusted.map((a) => a.toLowerCase()));
  b.entries.forEach((e, i) => { if (!set.has(e.record.issuer.toLowerCase())) throw new Failed(`entry ${i}: issuer ${e.record.issuer} is not a trusted relay key`); });
  return `issuer(s) ${issuers.join(", ")} are trusted relay keys`;
}
function checkInclusion(b, cp) {
  b.entries.forEach((e, i) => {
    if (!equal(rootFromInclusion(leafHash(e.hash), e.proof.index, cp.size, e.proof.hashes), cp.rootHash)) {
      throw new Failed(`entry ${i}: root_mismatch: inclusion proof does not lead to the root`);
    }
  });
  return `${b.entries.length} entr(y/ies) in the tree of size ${cp.size}`;
}
function checkCheckpoint(b, trusted) {
  if (b.logKey !== trusted.vkey) throw new Failed("the bundle's log key is not the trusted log key");
  const note = parseNote(b.entries[0].proof.checkpoint);
  let verified = 0;
  for (const s of note.signatures) {
    if (s.name !== trusted.name || s.keyId !== trusted.keyId) continue;
    let ok = false;
    try { ok = s.sig.length === 64 && ed25519.verify(s.sig, utf8(note.text), trusted.publicKey, { zip215: false }); } catch { ok = false; }
    if (!ok) throw new Failed(`invalid_signature: bad signature from ${trusted.name}+${trusted.keyId.toString(16).padStart(8, "0")}`);
    verified++;
  }
  if (!verified) throw new Failed("no_known_signature: note has no signature from a known key");
  const cp = parseCheckpoint(note.text);
  if (cp.origin !== trusted.name) throw new Failed(`wrong_origin: checkpoint origin ${cp.origin} is not ${trusted.name}`);
  return `signed by ${trusted.name}+${trusted.keyId.toString(16).padStart(8, "0")}`;
}
function checkAnchorConsistency(b, cp) {
  const { anchor, consistency: link } = b;
  if (anchor.chainId !== b.entries[0].record.chainId) throw new Failed("anchor chain differs from the records' EIP-712 chain id");
  const last = Math.max(...b.entries.map((e) => e.proof.index));
  if (anchor.treeSize <= last) throw new Failed(`anchored tree (size ${anchor.treeSize}) does not cover entry ${last}`);
  const [small, large] = cp.size <= anchor.treeSize
    ? [[cp.size, cp.rootHash], [anchor.treeSize, anchor.rootHash]] : [[anchor.treeSize, anchor.rootHash], [cp.size, cp.rootHash]];
  if (link.fromSize !== small[0] || link.toSize !== large[0]) throw new Failed(`consistency proof is for ${link.fromSize}->${link.toSize}, need ${small[0]}->${large[0]}`);
  checkConsistency(small[0], large[0], small[1], large[1], link.hashes);
  return `checkpoint size ${cp.size} consistent with anchored size ${anchor.treeSize}`;
}
function checkAnchorContract(b, trusted) {
  const a = b.anchor;
  if (!trusted) throw new Untrusted(`the bundle names contract ${a.contract} on chain ${a.chainId}; no trusted anchor contract given`);
  if (a.chainId !== trusted.chainId || a.contract.toLowerCase() !== trusted.contract.toLowerCase()) {
    throw new Failed(`the bundle names contract ${a.contract} on chain ${a.chainId}, the trusted anchor is ${trusted.contract} on chain ${trusted.chainId}`);
  }
  return `the trusted contract ${trusted.contract} on chain ${trusted.chainId}`;
}
async function checkLedger(b, cp, lookup) {
  if (!lookup) throw new Untrusted("no ledger lookup given");
  let found;
  try { found = await lookup(cp.origin, b.anchor.treeSize); } catch (e) { throw new Failed(`ledger lookup error: ${e.name}: ${e.message}`); }
  if (found === null) throw new Failed(`no anchor for ${cp.origin} at size ${b.anchor.treeSize} on the ledger`);
  if (!equal(found.root, b.anchor.rootHash)) throw new Failed("the ledger's root differs from the bundle's anchor");
  if (found.time !== b.anchor.blockTime) throw new Failed("the ledger's block time differs from the bundle's anchor");
  return `anchored on chain ${b.anchor.chainId} at block ${b.anchor.blockNumber}`;
}

// --- the ledger, through the user's RPC URL (evidence_commands.py ledger_checks) -------------
async function rpc(url, method, params) {
  const r = await fetch(url, { method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }) });
  const body = await r.json();
  if (body.error) { const e = new Error(body.error.message || "rpc error"); e.rpc = body.error; throw e; }
  return body.result;
}
export function logId(origin, publicKey) {
  // keccak256(abi.encode(string origin, bytes32 logKey)) (EvidenceAnchor.logIdOf)
  const data = utf8(origin), padded = new Uint8Array(Math.ceil(data.length / 32) * 32);
  padded.set(data);
  return keccak_256(concat(word(64), publicKey, word(data.length), padded));
}
export function anchorLookup(rpcUrl, trustedChainId, contract, publicKey, genesisHash = null) {
  let onChain = false;
  const selector = keccak_256(utf8("getAnchor(bytes32,uint64)")).slice(0, 4);
  return async (origin, treeSize) => {
    if (!onChain) {
      const chain = Number(BigInt(await rpc(rpcUrl, "eth_chainId", [])));
      if (chain !== trustedChainId) throw new Error(`the node is on chain ${chain}, the trusted chain is ${trustedChainId}`);
      if (genesisHash) { // as the CLI does when its manifest gives the genesis hash
        const genesis = await rpc(rpcUrl, "eth_getBlockByNumber", ["0x0", false]);
        if (String(genesis?.hash).toLowerCase() !== genesisHash.toLowerCase()) throw new Error("the node's genesis block is not the trusted chain's");
      }
      onChain = true;
    }
    const data = "0x" + hex(concat(selector, logId(origin, publicKey), word(treeSize)));
    let out;
    try { out = await rpc(rpcUrl, "eth_call", [{ to: contract, data }, "latest"]); } catch (e) {
      if (e.rpc && /revert/i.test(e.rpc.message || "")) return null; // AnchorNotFound
      throw e;
    }
    const raw = fromHex(out.slice(2));
    if (raw.length < 128) throw new Error("getAnchor returned too little data");
    return { root: raw.slice(0, 32), time: Number(BigInt("0x" + hex(raw.slice(32, 64)))) };
  };
}

function timeline(b) {
  const events = b.entries.map((e) => ({ time: e.record.eventTime, label: e.record.event, reference: hex(e.hash) }));
  events.push({ time: b.anchor.blockTime, label: "Anchored", reference: "0x" + hex(b.anchor.txHash) });
  return events.sort((x, y) => x.time - y.time);
}

/** Verify bundle ``text`` against ``trust`` = {logKey, relayKeys|null, anchor: {chainId, contract, genesisHash?}|null,
 *  rpcUrl|null}; returns {valid, complete, firstFailure, checks, timeline} like `zkid evidence verify --json`. */
export async function verifyBundle(text, trust) {
  const trusted = parseVkey(trust.logKey);
  let b;
  try { b = parseBundle(text); } catch (e) {
    if (!(e instanceof FormatError)) throw e;
    return { valid: false, complete: false, firstFailure: "format", checks: [{ name: "format", status: "failed", detail: e.message }], timeline: [] };
  }
  b.entries.forEach((e) => { e.hash = recordHash(e.record); });
  const cp = b.entries[0].proof.body;
  const lookup = trust.anchor && trust.rpcUrl ? anchorLookup(trust.rpcUrl, trust.anchor.chainId, trust.anchor.contract, trusted.publicKey, trust.anchor.genesisHash ?? null) : null;
  const steps = [
    ["record_signature", () => checkRecords(b)],
    ["record_issuer", () => checkIssuers(b, trust.relayKeys)],
    ["acknowledgement", b.acknowledgement == null ? null : () => { throw new Untrusted("acknowledgements are not checked in the browser: use zkid evidence verify"); }],
    ["inclusion_proof", () => checkInclusion(b, cp)],
    ["checkpoint_signature", () => checkCheckpoint(b, trusted)],
    ["consistency_with_anchor", () => checkAnchorConsistency(b, cp)],
    ["anchor_contract", () => checkAnchorContract(b, trust.anchor)],
    ["anchor_on_ledger", () => checkLedger(b, cp, lookup)],
  ];
  const checks = [];
  for (const [name, run] of steps) {
    if (run === null) { checks.push({ name, status: "not_checked", detail: "no acknowledgement in the bundle", missingTrust: false }); continue; }
    try { checks.push({ name, status: "ok", detail: await run(), missingTrust: false }); } catch (e) {
      if (e instanceof Untrusted) checks.push({ name, status: "not_checked", detail: e.message, missingTrust: true });
      else if (e instanceof Failed || e instanceof FormatError) checks.push({ name, status: "failed", detail: e.message, missingTrust: false });
      else checks.push({ name, status: "failed", detail: `${e.name}: ${e.message}`, missingTrust: false });
    }
  }
  const first = checks.find((c) => c.status === "failed");
  return { valid: !first && !checks.some((c) => c.missingTrust), complete: checks.every((c) => c.status === "ok"),
    firstFailure: first ? first.name : null, checks, timeline: timeline(b) };
}
