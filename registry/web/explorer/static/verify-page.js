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

function trust() {
  const chainId = Number($("chain-id").value.trim());
  const contract = $("anchor-contract").value.trim();
  const relays = $("relay-keys").value.split(/[\s,]+/).filter(Boolean);
  return { logKey: $("log-key").value.trim(), relayKeys: relays.length ? relays : null,
    anchor: contract && chainId > 0 ? { chainId, contract } : null, rpcUrl: $("rpc-url").value.trim() || null };
}

function show(verdict) {
  const out = $("verdict");
  out.dataset.state = "done";
  out.dataset.valid = String(verdict.valid);
  out.dataset.firstFailure = verdict.firstFailure ?? "";
  out.textContent = verdict.firstFailure ? `INVALID: the first failed check is ${verdict.firstFailure}`
    : verdict.valid ? "VALID: every check passed against your trusted values" : "NOT VERIFIED: some checks did not run (a trusted value is missing)";
  out.className = verdict.firstFailure ? "bad" : verdict.valid ? "good" : "warn";
  const checks = $("checks").tBodies[0], events = $("timeline").tBodies[0];
  checks.replaceChildren(...verdict.checks.map((c) => row([c.name, c.status, c.detail], { check: c.name, status: c.status })));
  events.replaceChildren(...verdict.timeline.map((e) => row(
    [new Date(e.time * 1000).toISOString().replace(".000Z", "Z"), `${e.label} (${LABELS[e.label] ?? e.label})`, e.reference], { event: e.label })));
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
