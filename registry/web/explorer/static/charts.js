// Draws each <figure data-chart> from the table inside it (an inline SVG above the table).
// The table stays: it is the chart without JavaScript, and for screen readers.
const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 220, PAD = 36;

function values(table, col) {
  return [...table.tBodies[0].rows].map((r) => {
    const cell = r.cells[col];
    const el = cell.querySelector("data, time");
    return Number(el ? (el.dataset.seconds ?? el.value) : cell.textContent);
  });
}

function el(name, attrs) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function draw(figure) {
  const table = figure.querySelector("table");
  if (!table || table.tBodies[0].rows.length === 0) return;
  const xs = values(table, Number(figure.dataset.x));
  const spec = figure.dataset.y;
  const cols = spec.endsWith("-") ? [...Array(table.tHead.rows[0].cells.length).keys()].slice(Number(spec.slice(0, -1))) : [Number(spec)];
  // Series that stay at zero are left out of the drawing (they remain in the table).
  const drawn = cols.map((c) => [c, values(table, c)]).filter(([, ys], i, all) => all.length === 1 || ys.some((y) => y > 0));
  const series = drawn.map(([, ys]) => ys);
  const names = drawn.map(([c]) => c);
  if (!series.length) return;
  const all = series.flat();
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)], [y0, y1] = [0, Math.max(1, ...all)];
  const sx = (x) => PAD + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (W - 2 * PAD);
  const sy = (y) => H - PAD - ((y - y0) / (y1 - y0)) * (H - 2 * PAD);
  const legend = cols.length > 1 ? 14 * series.length : 0;
  const svg = el("svg", { viewBox: `0 ${-legend} ${W} ${H + legend}`, role: "img", "aria-label": table.caption.textContent, class: "chart" });
  svg.append(el("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }), el("line", { x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis" }));
  const heads = [...table.tHead.rows[0].cells].map((c) => c.textContent);
  const label = (x, y, text, anchor = "start") => { const t = el("text", { x, y, class: "label", "text-anchor": anchor }); t.textContent = text; svg.append(t); return t; };
  label(2, PAD, String(y1));
  const isTime = table.tBodies[0].rows[0].cells[Number(figure.dataset.x)].querySelector("time");
  const fmt = (x) => (isTime ? new Date(x * 1000).toISOString().slice(11, 16) + " UTC" : String(x));
  label(PAD, H - PAD + 16, fmt(x0));
  label(W - PAD, H - PAD + 16, fmt(x1), "end");
  label(W / 2, H - 4, heads[Number(figure.dataset.x)], "middle");
  series.forEach((ys, i) => {
    if (figure.dataset.chart === "line" && xs.length > 1) {
      svg.append(el("polyline", { points: xs.map((x, j) => `${sx(x)},${sy(ys[j])}`).join(" "), class: `series s${i}` }));
    }
    xs.forEach((x, j) => svg.append(el("circle", { cx: sx(x), cy: sy(ys[j]), r: 3.5, class: `dot s${i}` })));
    if (cols.length > 1) label(PAD + 8, PAD - 14 - 14 * (series.length - 1 - i), `● ${heads[names[i]]}`).classList.add(`s${i}`);
  });
  figure.prepend(svg);
}

document.querySelectorAll("figure[data-chart]").forEach(draw);
document.documentElement.dataset.chartsReady = "true";
