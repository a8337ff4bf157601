// A few lines of SVG for the benchmark curves committed in docs/: line charts with
// markers, side by side, axes from 0, no dependency.

export interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

export interface Chart {
  title: string;
  xLabel: string;
  yLabel: string;
  series: Series[];
}

const W = 420;
const H = 300;
const M = { left: 60, right: 15, top: 30, bottom: 70 };

/** A "nice" axis maximum and step: 1, 2 or 5 times a power of ten. */
function niceScale(max: number, ticks = 5): { top: number; step: number } {
  const raw = Math.max(max, 1e-9) / ticks;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw)!;
  return { top: Math.ceil(max / step) * step, step };
}

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function chart(c: Chart, dx: number): string {
  const xs = c.series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = c.series.flatMap((s) => s.points.map((p) => p[1]));
  const xScale = niceScale(Math.max(...xs));
  const yScale = niceScale(Math.max(...ys));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const X = (x: number): number => +(dx + M.left + (x / xScale.top) * pw).toFixed(1);
  const Y = (y: number): number => +(M.top + ph - (y / yScale.top) * ph).toFixed(1);
  const out: string[] = [`<text x="${dx + W / 2}" y="18" text-anchor="middle" font-weight="bold">${esc(c.title)}</text>`];
  for (let y = 0; y <= yScale.top + 1e-9; y += yScale.step) {
    out.push(`<line x1="${X(0)}" x2="${X(xScale.top)}" y1="${Y(y)}" y2="${Y(y)}" stroke="#ddd"/>`);
    out.push(`<text x="${X(0) - 5}" y="${Y(y) + 4}" text-anchor="end">${+y.toPrecision(6)}</text>`);
  }
  for (const x of [...new Set(xs)]) out.push(`<text x="${X(x)}" y="${Y(0) + 15}" text-anchor="middle">${x}</text>`);
  out.push(`<line x1="${X(0)}" x2="${X(xScale.top)}" y1="${Y(0)}" y2="${Y(0)}" stroke="#333"/>`);
  out.push(`<line x1="${X(0)}" x2="${X(0)}" y1="${Y(0)}" y2="${Y(yScale.top)}" stroke="#333"/>`);
  out.push(`<text x="${X(xScale.top / 2)}" y="${Y(0) + 32}" text-anchor="middle">${esc(c.xLabel)}</text>`);
  out.push(`<text transform="translate(${dx + 14} ${Y(yScale.top / 2)}) rotate(-90)" text-anchor="middle">${esc(c.yLabel)}</text>`);
  for (const [i, s] of c.series.entries()) {
    out.push(`<polyline fill="none" stroke="${s.color}" stroke-width="2" points="${s.points.map(([x, y]) => `${X(x)},${Y(y)}`).join(' ')}"/>`);
    for (const [x, y] of s.points) out.push(`<circle cx="${X(x)}" cy="${Y(y)}" r="3" fill="${s.color}"/>`);
    // Legend: one row under the x label, an equal share of the width per series.
    const lx = dx + M.left + i * (pw / c.series.length);
    out.push(`<rect x="${lx}" y="${H - 31}" width="10" height="10" fill="${s.color}"/><text x="${lx + 14}" y="${H - 22}">${esc(s.name)}</text>`);
  }
  return out.join('\n');
}

/** The charts side by side in one SVG document. */
export function svg(charts: Chart[]): string {
  const width = W * charts.length;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${H}" fill="white"/>`,
    ...charts.map((c, i) => chart(c, i * W)),
    '</svg>',
    '',
  ].join('\n');
}
