// Lexer for one source line of the NASM-syntax subset: identifiers, numbers (every NASM radix
// form), strings and character constants, operators. Hand-written because no maintained
// library lexes NASM; it reports a bad token with its column instead of throwing.

export type Token =
  | { readonly kind: 'id'; readonly text: string; readonly col: number }
  | { readonly kind: 'num'; readonly text: string; readonly value: bigint; readonly col: number }
  | { readonly kind: 'str'; readonly text: string; readonly bytes: readonly number[]; readonly quote: string; readonly col: number }
  | { readonly kind: 'op'; readonly text: string; readonly col: number };

export interface LexResult {
  readonly tokens: Token[];
  /** text after ';' (without it), or undefined when the line has no comment */
  readonly comment: string | undefined;
  readonly error?: { readonly col: number; readonly message: string };
}

const OPERATORS = ['>>>', '<<<', '<=>', '//', '%%', '<<', '>>', '==', '!=', '<>', '<=', '>=', '&&', '||', '^^',
  '+', '-', '*', '/', '%', '&', '|', '^', '~', '!', '(', ')', '[', ']', ',', ':', '<', '>', '=', '{', '}'];

function isIdStart(c: string): boolean {
  return /[A-Za-z_.?@]/.test(c);
}

function isIdChar(c: string): boolean {
  return /[A-Za-z0-9_$#@~.?]/.test(c);
}

/** Parses a NASM numeric literal (without sign); undefined when it is not one. */
export function parseNumber(word: string): bigint | undefined {
  const w = word.toLowerCase();
  let digits: string;
  let radix: number;
  const prefixed = /^0([xhdqoby])(.+)$/.exec(w);
  if (prefixed) {
    radix = { x: 16, h: 16, d: 10, q: 8, o: 8, b: 2, y: 2 }[prefixed[1]]!;
    digits = prefixed[2];
    // "0b1h" style ambiguity: a prefix form must consist of valid digits only, else try suffix forms
    if (!validDigits(digits.replace(/_/g, ''), radix)) return parseSuffixed(w);
  } else if (w.startsWith('$') && /^\$[0-9]/.test(w)) {
    radix = 16;
    digits = w.slice(1);
  } else {
    return parseSuffixed(w);
  }
  return toBigInt(digits, radix);
}

function parseSuffixed(w: string): bigint | undefined {
  const m = /^([0-9][0-9a-f_]*?)([hxdqoby]?)$/.exec(w);
  if (!m) return undefined;
  const radix = m[2] === '' ? 10 : { h: 16, x: 16, d: 10, q: 8, o: 8, b: 2, y: 2 }[m[2]]!;
  return toBigInt(m[1], radix);
}

function validDigits(d: string, radix: number): boolean {
  if (d.length === 0) return false;
  const set = '0123456789abcdef'.slice(0, radix);
  for (const c of d) if (!set.includes(c)) return false;
  return true;
}

function toBigInt(digits: string, radix: number): bigint | undefined {
  const d = digits.replace(/_/g, '');
  if (!validDigits(d, radix)) return undefined;
  let v = 0n;
  const r = BigInt(radix);
  for (const c of d) v = v * r + BigInt(parseInt(c, 16));
  return v & 0xffff_ffff_ffff_ffffn;
}

const ESCAPES: Record<string, number> = {
  "'": 0x27, '"': 0x22, '`': 0x60, '\\': 0x5c, '?': 0x3f, a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, e: 27,
};

/** Decodes a backquoted string body (C-style escapes, as NASM does); error message on a bad escape. */
function unescape(body: string): { bytes: number[] } | { error: string } {
  const out: number[] = [];
  for (let i = 0; i < body.length; i++) {
    const c = body[i];
    if (c !== '\\') {
      pushUtf8(out, c);
      continue;
    }
    const n = body[++i];
    if (n === undefined) return { error: 'string ends in a lone backslash' };
    if (n in ESCAPES) out.push(ESCAPES[n]);
    else if (/[0-7]/.test(n)) {
      let oct = n;
      while (oct.length < 3 && /[0-7]/.test(body[i + 1] ?? '')) oct += body[++i];
      out.push(parseInt(oct, 8) & 0xff);
    } else if (n === 'x') {
      let hex = '';
      while (hex.length < 2 && /[0-9a-fA-F]/.test(body[i + 1] ?? '')) hex += body[++i];
      if (hex === '') return { error: "'\\x' needs hex digits" };
      out.push(parseInt(hex, 16));
    } else return { error: `unknown escape '\\${n}' in backquoted string` };
  }
  return { bytes: out };
}

function pushUtf8(out: number[], ch: string): void {
  const cp = ch.codePointAt(0)!;
  if (cp < 0x80) out.push(cp);
  else for (const b of new TextEncoder().encode(ch)) out.push(b);
}

export function lexLine(text: string): LexResult {
  const tokens: Token[] = [];
  let i = 0;
  const n = text.length;
  while (i < n) {
    const c = text[i];
    const col = i + 1;
    if (c === ' ' || c === '\t' || c === '\r' || c === '\f' || c === '\v') {
      i++;
      continue;
    }
    if (c === ';') return { tokens, comment: text.slice(i + 1) };
    if (c === "'" || c === '"' || c === '`') {
      const end = findClosingQuote(text, i);
      if (end < 0) return { tokens, comment: undefined, error: { col, message: `unterminated string` } };
      const body = text.slice(i + 1, end);
      let bytes: number[];
      if (c === '`') {
        const u = unescape(body);
        if ('error' in u) return { tokens, comment: undefined, error: { col, message: u.error } };
        bytes = u.bytes;
      } else {
        bytes = [];
        for (const ch of body) pushUtf8(bytes, ch);
      }
      tokens.push({ kind: 'str', text: text.slice(i, end + 1), bytes, quote: c, col });
      i = end + 1;
      continue;
    }
    if (/[0-9]/.test(c) || (c === '$' && /[0-9]/.test(text[i + 1] ?? ''))) {
      let j = i + 1;
      while (j < n && /[0-9A-Za-z_]/.test(text[j])) j++;
      const word = text.slice(i, j);
      if (text[j] === '.' && /^[0-9]+$/.test(word)) {
        return { tokens, comment: undefined, error: { col, message: `floating-point constants are not supported` } };
      }
      const value = parseNumber(word);
      if (value === undefined) return { tokens, comment: undefined, error: { col, message: `invalid number '${word}'` } };
      tokens.push({ kind: 'num', text: word, value, col });
      i = j;
      continue;
    }
    if (c === '$') {
      // '$$', '$', or '$name' (an identifier written with the escape prefix)
      if (text[i + 1] === '$') {
        tokens.push({ kind: 'op', text: '$$', col });
        i += 2;
      } else if (isIdStart(text[i + 1] ?? '')) {
        let j = i + 1;
        while (j < n && isIdChar(text[j])) j++;
        tokens.push({ kind: 'id', text: text.slice(i + 1, j), col });
        i = j;
      } else {
        tokens.push({ kind: 'op', text: '$', col });
        i++;
      }
      continue;
    }
    if (isIdStart(c)) {
      let j = i + 1;
      while (j < n && isIdChar(text[j])) j++;
      tokens.push({ kind: 'id', text: text.slice(i, j), col });
      i = j;
      continue;
    }
    const op = OPERATORS.find((o) => text.startsWith(o, i));
    if (op) {
      tokens.push({ kind: 'op', text: op, col });
      i += op.length;
      continue;
    }
    return { tokens, comment: undefined, error: { col, message: `unexpected character '${c}'` } };
  }
  return { tokens, comment: undefined };
}

function findClosingQuote(text: string, start: number): number {
  const q = text[start];
  for (let i = start + 1; i < text.length; i++) {
    if (q === '`' && text[i] === '\\') {
      i++;
      continue;
    }
    if (text[i] === q) return i;
  }
  return -1;
}

/** Character-constant value of a string token: bytes little-endian, as NASM evaluates 'ab'. */
export function stringValue(bytes: readonly number[]): bigint {
  let v = 0n;
  for (let i = Math.min(bytes.length, 8) - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}
