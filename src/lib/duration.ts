// Go-style durations ("5s", "1m30s", "250ms", "1.5h") <-> milliseconds, plus protobuf JSON durations ("5s", "0.250s").

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, 'µs': 1e-3, 'μs': 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses a Go duration string. Throws an Error with a Go-like message on bad input. */
export function parseGoDuration(text: string): number {
  const orig = text;
  let s = text.trim();
  if (s === '') throw new Error(`invalid duration "${orig}"`);
  let sign = 1;
  if (s[0] === '-' || s[0] === '+') {
    if (s[0] === '-') sign = -1;
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') throw new Error(`invalid duration "${orig}"`);
  let total = 0;
  // \u00b5 (micro sign) and \u03bc (Greek mu) escaped: see scripts/bundle.mjs, the executable's source stays ASCII
  const re = /^(\d+(?:\.\d*)?|\.\d+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h)/;
  while (s.length) {
    const m = re.exec(s);
    if (!m) {
      if (/^(\d+(?:\.\d*)?|\.\d+)$/.test(s)) throw new Error(`missing unit in duration "${orig}"`);
      const unit = /^(?:\d+(?:\.\d*)?|\.\d+)(\D*)/.exec(s)?.[1];
      throw new Error(unit ? `unknown unit "${unit}" in duration "${orig}"` : `invalid duration "${orig}"`);
    }
    total += Number(m[1]) * UNIT_MS[m[2]!]!;
    s = s.slice(m[0].length);
  }
  return sign * total;
}

/** Formats milliseconds the way Go's time.Duration.String() does ("1m30s", "500ms", "0s"). */
export function formatGoDuration(ms: number): string {
  if (ms === 0) return '0s';
  const neg = ms < 0;
  let rest = Math.abs(ms);
  let out: string;
  if (rest < 1000) {
    out = rest >= 1 ? `${trimNum(rest)}ms` : rest >= 1e-3 ? `${trimNum(rest * 1e3)}µs` : `${trimNum(rest * 1e6)}ns`;
  } else {
    const h = Math.floor(rest / 3_600_000);
    rest -= h * 3_600_000;
    const m = Math.floor(rest / 60_000);
    rest -= m * 60_000;
    const s = rest / 1000;
    out = `${h ? `${h}h` : ''}${h || m ? `${m}m` : ''}${trimNum(s)}s`;
  }
  return neg ? `-${out}` : out;
}

function trimNum(n: number): string {
  return String(Number(n.toFixed(9)));
}

/** Protobuf JSON duration ("5s", "0.100s", "-1.5s") -> milliseconds. Also accepts Go durations, as Istio's YAML paths do. */
export function parseProtoDuration(text: string): number {
  const m = /^(-?\d+(?:\.\d{1,9})?)s$/.exec(text.trim());
  if (m) return Number(m[1]) * 1000;
  return parseGoDuration(text);
}

/** Milliseconds -> protobuf JSON duration ("5s", "0.100s"). */
export function formatProtoDuration(ms: number): string {
  const secs = ms / 1000;
  if (Number.isInteger(secs)) return `${secs}s`;
  const fixed = secs.toFixed(9).replace(/0+$/, '');
  // protobuf JSON uses 0, 3, 6 or 9 fractional digits
  const frac = fixed.split('.')[1] ?? '';
  const digits = frac.length <= 3 ? 3 : frac.length <= 6 ? 6 : 9;
  return `${secs.toFixed(digits)}s`;
}
