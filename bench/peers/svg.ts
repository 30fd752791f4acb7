// Two small chart kinds as standalone SVG, enough for the benchmark page: an HDR-style latency
// plot (percentile on a "nines" axis) and grouped bars. Written here rather than pulled in from a
// charting library: ~100 lines with no browser or canvas dependency, and the output is diffable.
const W = 720;
const H = 420;
const M = { left: 70, right: 20, top: 40, bottom: 90 };
const COLORS = ['#1b6ca8', '#d1495b', '#edae49', '#00798c', '#66a182', '#8d6a9f'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');

function frame(title: string, yLabel: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15">${esc(title)}</text>`,
    `<text transform="translate(16 ${(M.top + H - M.bottom) / 2}) rotate(-90)" text-anchor="middle">${esc(yLabel)}</text>`,
    ...body,
    '</svg>',
  ].join('\n');
}

function yAxis(max: number, fmt: (v: number) => string): { y: (v: number) => number; lines: string[] } {
  const h = H - M.top - M.bottom;
  const step = niceStep(max / 5);
  const top = Math.max(step, Math.ceil(max / step) * step);
  const y = (v: number) => M.top + h - (v / top) * h;
  const lines: string[] = [];
  for (let v = 0; v <= top + 1e-9; v += step) {
    lines.push(`<line x1="${M.left}" x2="${W - M.right}" y1="${y(v)}" y2="${y(v)}" stroke="#ddd"/>`);
    lines.push(`<text x="${M.left - 6}" y="${y(v) + 4}" text-anchor="end">${esc(fmt(v))}</text>`);
  }
  return { y, lines };
}

function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 2.5, 5, 10].map((m) => m * p).find((s) => s >= raw) ?? 10 * p;
}

/** A series' colour: its own `color` (the same system keeps its colour across plots), else by position. */
const colorOf = (s: { color?: number }, i: number) => COLORS[(s.color ?? i) % COLORS.length];

/** Up to four entries per row, two rows below the plot. */
function legend(series: Array<{ name: string; color?: number }>): string[] {
  return series.map(({ name: n }, i) => {
    const x = M.left + (i % 4) * 160;
    const y = H - 34 + Math.floor(i / 4) * 18;
    return `<rect x="${x}" y="${y - 10}" width="12" height="12" fill="${colorOf(series[i]!, i)}"/><text x="${x + 18}" y="${y}">${esc(n)}</text>`;
  });
}

/** Latency by percentile; x is log10(1 / (1 - p)) so 90 %, 99 %, 99.9 % are evenly spaced. */
export function latencyPlot(title: string, series: Array<{ name: string; cdf: Array<[number, number]>; color?: number }>): string {
  const nines = (p: number) => Math.log10(1 / (1 - Math.min(p, 99.99) / 100));
  const maxX = nines(99.99);
  const x = (p: number) => M.left + (nines(p) / maxX) * (W - M.left - M.right);
  const maxMs = Math.max(...series.flatMap((s) => s.cdf.map(([, us]) => us / 1000)));
  const { y, lines } = yAxis(maxMs, (v) => `${+v.toFixed(2)} ms`);
  const body = [...lines];
  for (const p of [0, 90, 99, 99.9, 99.99]) {
    body.push(`<line x1="${x(p)}" x2="${x(p)}" y1="${M.top}" y2="${H - M.bottom}" stroke="#eee"/>`);
    body.push(`<text x="${x(p)}" y="${H - M.bottom + 16}" text-anchor="middle">${p}%</text>`);
  }
  body.push(`<text x="${(M.left + W - M.right) / 2}" y="${H - M.bottom + 34}" text-anchor="middle">percentile</text>`);
  series.forEach((s, i) => {
    const pts = s.cdf.map(([p, us]) => `${x(p).toFixed(1)},${y(us / 1000).toFixed(1)}`).join(' ');
    body.push(`<polyline points="${pts}" fill="none" stroke="${colorOf(s, i)}" stroke-width="2"/>`);
  });
  return frame(title, 'latency', [...body, ...legend(series)]);
}

/** Grouped bars: one group per label, one bar per series. */
export function barChart(title: string, yLabel: string, groups: string[], series: Array<{ name: string; values: number[]; color?: number }>, fmt: (v: number) => string): string {
  const max = Math.max(...series.flatMap((s) => s.values));
  const { y, lines } = yAxis(max, fmt);
  const body = [...lines];
  const gw = (W - M.left - M.right) / groups.length;
  const bw = (gw * 0.8) / series.length;
  groups.forEach((g, gi) => {
    const gx = M.left + gi * gw + gw * 0.1;
    body.push(`<text x="${gx + (gw * 0.8) / 2}" y="${H - M.bottom + 16}" text-anchor="middle">${esc(g)}</text>`);
    series.forEach((s, si) => {
      const v = s.values[gi] ?? 0;
      body.push(`<rect x="${(gx + si * bw).toFixed(1)}" y="${y(v).toFixed(1)}" width="${(bw - 2).toFixed(1)}" height="${(y(0) - y(v)).toFixed(1)}" fill="${colorOf(s, si)}"><title>${esc(`${s.name}: ${fmt(v)}`)}</title></rect>`);
    });
  });
  return frame(title, yLabel, [...body, ...legend(series)]);
}
