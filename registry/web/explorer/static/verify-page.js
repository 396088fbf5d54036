// The bundle verification page: reads the form, runs verify.js in this browser, shows
// each check's pass/fail, the first failure and the delivery timeline.
import { verifyBundle } from "./verify.js";

const $ = (id) => document.getElementById(id);
const LABELS = { SubmissionAcceptance: "accepted (submission)", RelayAcceptance: "accepted by the relay",
  ContentConsignment: "consigned", ContentHandover: "picked up", ContentAccessTracking: "acknowledged / accessed",
  Anchored: "anchored on the ledger" };

function row(cells, attrs = {}) {
  const tr = document.createElement("tr");
  for (const [k, v] of Object.entries(attrs)) tr.dataset[k] = v;
  for (const c of cells) { const td = document.createElement("td"); td.textContent = c; tr.append(td); }
  return tr;
}

// The trusted values are prefilled with what the registry says about itself. Until the
// visitor types or pastes over a field, it counts as the registry's word, and a verdict
// resting on it is never shown as plain "VALID": a registry vouching for its own evidence
// proves nothing (a lying registry can sign, log and anchor a forged bundle itself).
// (Not the genesis hash: a wrong one can only make the ledger check fail.)
const TRUSTED = ["log-key", "chain-id", "anchor-contract", "relay-keys"];
const fromRegistry = new Set(TRUSTED.filter((id) => $(id).defaultValue !== ""));
for (const id of TRUSTED) $(id).addEventListener("input", () => fromRegistry.delete(id));
const stillRegistrys = () => TRUSTED.filter((id) => fromRegistry.has(id) && $(id).value.trim() === $(id).defaultValue.trim());

// A bundle's times are integers below 2^53; past year 275760 a Date is invalid and
// toISOString throws, which would hide the verdict: show the seconds instead.
function isoTime(seconds) {
  const moment = new Date(seconds * 1000);
  return Number.isNaN(moment.getTime()) ? `${seconds} s after the epoch` : moment.toISOString().replace(".000Z", "Z");
}

function trust() {
  const chainId = Number($("chain-id").value.trim());
  const contract = $("anchor-contract").value.trim();
  const relays = $("relay-keys").value.split(/[\s,]+/).filter(Boolean);
  return { logKey: $("log-key").value.trim(), relayKeys: relays.length ? relays : null,
    anchor: contract && chainId > 0 ? { chainId, contract, genesisHash: $("genesis-hash").value.trim() || null } : null,
    rpcUrl: $("rpc-url").value.trim() || null };
}

function show(verdict) {
  const out = $("verdict");
  out.dataset.state = "done";
  out.dataset.valid = String(verdict.valid);
  out.dataset.firstFailure = verdict.firstFailure ?? "";
  const registrys = stillRegistrys();
  out.dataset.trust = registrys.length ? "registry" : "visitor";
  const caveat = registrys.length ? `; but ${registrys.map((id) => $(id).labels[0].textContent).join(", ")} `
    + "still hold what this registry says about itself, so this proves nothing to a third party: replace them with values you trust" : "";
  out.textContent = verdict.firstFailure ? `INVALID: the first failed check is ${verdict.firstFailure}`
    : verdict.valid && registrys.length ? `VALID ONLY AGAINST THE REGISTRY'S OWN VALUES: every check passed${caveat}`
    : verdict.valid ? "VALID: every check passed against your trusted values" : "NOT VERIFIED: some checks did not run (a trusted value is missing)";
  out.className = verdict.firstFailure ? "bad" : verdict.valid && !registrys.length ? "good" : "warn";
  // The timeline is the bundle's claim; only a valid verdict makes it more.
  $("timeline").caption.textContent = verdict.valid ? "Delivery timeline"
    : "Delivery timeline, as the bundle claims it (not verified)";
  const checks = $("checks").tBodies[0], events = $("timeline").tBodies[0];
  checks.replaceChildren(...verdict.checks.map((c) => row([c.name, c.status, c.detail], { check: c.name, status: c.status })));
  events.replaceChildren(...verdict.timeline.map((e) => row(
    [isoTime(e.time), `${e.label} (${LABELS[e.label] ?? e.label})`, e.reference], { event: e.label })));
}

$("bundle-file").addEventListener("change", async (ev) => {
  const file = ev.target.files[0];
  if (file) $("bundle").value = await file.text();
});

$("verify-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = $("verdict");
  out.dataset.state = "running";
  out.textContent = "Checking…";
  try {
    show(await verifyBundle($("bundle").value, trust()));
  } catch (e) {
    out.dataset.state = "error";
    out.className = "bad";
    out.textContent = `Cannot run the checks: ${e.message}`;
  }
});
document.documentElement.dataset.verifierReady = "true";
