// Headless Chromium (@sparticuz/chromium, driven by puppeteer-core) for the explorer tests.
// Protocol: one JSON command per stdin line, one JSON answer per stdout line.
//   {"op": "goto", "url", "screenshot"?}      -> {"errors": [...], "title"}
//   {"op": "eval", "expr"}                    -> {"value"}
//   {"op": "press", "selector", "text", "key"} -> {"errors"} (types into a field, presses a key, waits for navigation)
//   {"op": "verify", "fields", "screenshot"?} -> {"verdict", "errors"}
//   {"op": "viewport", "width", "height"}, {"op": "javascript", "enabled"}, {"op": "tab_to", "id", "max"} -> {"tabs"}
//   {"op": "close"}
import chromium, { inflate } from "@sparticuz/chromium";
import puppeteer from "puppeteer-core";
import { execFileSync } from "node:child_process";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import readline from "node:readline";

// The package's Chromium needs only glibc plus NSS, NSPR and expat. On a machine without
// them (a fresh container), unpack the copies the package ships (al2023.tar.br) and point
// the browser at them; where the system has them, the system's are used.
async function browserEnv(executable) {
  let missing = true;
  try { missing = execFileSync("ldd", [executable], { encoding: "utf8" }).includes("not found"); } catch { missing = true; }
  if (!missing && !process.env.EXPLORER_BUNDLED_LIBS) return process.env;
  const bin = join(dirname(createRequire(import.meta.url).resolve("@sparticuz/chromium")), "..", "bin");
  const lib = join(await inflate(join(bin, "al2023.tar.br")), "lib");
  return { ...process.env, LD_LIBRARY_PATH: [lib, process.env.LD_LIBRARY_PATH].filter(Boolean).join(":") };
}

// Web security stays on (CORS is part of what is tested): drop the package's relaxing flags.
const RELAXED = new Set(["--disable-web-security", "--allow-running-insecure-content"]);
const executablePath = await chromium.executablePath();
const browser = await puppeteer.launch({
  executablePath,
  env: await browserEnv(executablePath),
  args: chromium.args.filter((a) => !RELAXED.has(a)),
  headless: true,
  defaultViewport: { width: 1100, height: 900 },
});
const page = await browser.newPage();
let errors = [];
page.on("console", (m) => { if (m.type() === "error") errors.push(`console: ${m.text()}`); });
page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
page.on("requestfailed", (r) => errors.push(`requestfailed: ${r.url()} ${r.failure()?.errorText}`));
page.on("response", (r) => { if (r.status() >= 400) errors.push(`http ${r.status()}: ${r.url()}`); });
const take = () => { const e = errors; errors = []; return e; };

async function run(cmd) {
  switch (cmd.op) {
    case "goto": {
      take();
      await page.goto(cmd.url, { waitUntil: "load" });
      if (cmd.screenshot) await page.screenshot({ path: cmd.screenshot, fullPage: true });
      return { errors: take(), title: await page.title() };
    }
    case "javascript":
      await page.setJavaScriptEnabled(cmd.enabled);
      return {};
    case "viewport":
      await page.setViewport({ width: cmd.width, height: cmd.height });
      return {};
    case "tab_to": {
      // Presses Tab from the top of the page until the element with id cmd.id has focus.
      await page.evaluate(() => document.activeElement?.blur());
      for (let n = 1; n <= cmd.max; n++) {
        await page.keyboard.press("Tab");
        if (await page.evaluate((id) => document.activeElement?.id === id, cmd.id)) return { tabs: n };
      }
      return { tabs: null };
    }
    case "eval":
      return { value: await page.evaluate(cmd.expr) };
    case "press": {
      await page.focus(cmd.selector);
      await page.keyboard.type(cmd.text);
      await Promise.all([page.waitForNavigation({ waitUntil: "load" }), page.keyboard.press(cmd.key)]);
      return { errors: take() };
    }
    case "verify": {
      for (const [id, value] of Object.entries(cmd.fields)) {
        await page.$eval(`#${id}`, (el, v) => { el.value = v; }, value);
      }
      await page.$eval("#verdict", (el) => { el.dataset.state = "idle"; });
      await page.click("#verify-form button[type=submit]");
      await page.waitForFunction(() => ["done", "error"].includes(document.getElementById("verdict").dataset.state), { timeout: 30000 });
      if (cmd.screenshot) await page.screenshot({ path: cmd.screenshot, fullPage: true });
      const verdict = await page.evaluate(() => {
        const v = document.getElementById("verdict");
        return { state: v.dataset.state, text: v.textContent, valid: v.dataset.valid === "true",
          firstFailure: v.dataset.firstFailure || null,
          checks: [...document.querySelectorAll("#checks tbody tr")].map((r) => ({ name: r.dataset.check, status: r.dataset.status, detail: r.cells[2].textContent })),
          timeline: [...document.querySelectorAll("#timeline tbody tr")].map((r) => r.dataset.event) };
      });
      return { verdict, errors: take() };
    }
    case "close":
      await browser.close();
      return { closed: true };
    default:
      throw new Error(`unknown op ${cmd.op}`);
  }
}

const version = await browser.version();
// No await between creating the interface and iterating it (lines would be lost).
const lines = readline.createInterface({ input: process.stdin });
console.log(JSON.stringify({ ready: true, version }));
for await (const line of lines) {
  const cmd = JSON.parse(line);
  let answer;
  try { answer = await run(cmd); } catch (e) { answer = { exception: `${e.name}: ${e.message}` }; }
  console.log(JSON.stringify(answer));
  if (cmd.op === "close") break;
}
process.exit(0);
