// analyze-undefined.ts - evidence for undefined-flags.ts. `undefinedSamples()` extracts, from a
// run of a corpus guest, every single-instruction sequence that leaves flags undefined, with the
// operand before, the result and the flags before/after; `checkKvmModels()` says whether the KVM
// rules of undefined-flags.ts predict them (oracles.test.ts runs it on the recording). Run as a
// script, it prints per rule and mnemonic which simple rule each oracle's undefined flags follow
// and how often the oracles disagree.
// Usage: npx tsx test/oracle/diff/analyze-undefined.ts [--live-kvm] [--rows]

import { runOnBochs } from '../bochs/bochs';
import { runOnKvm } from '../kvm/kvm';
import { parseConsole, type ParsedSeq } from './compare';
import { type CorpusGuest, type CorpusSequence, corpusGuests, DUMP_FIELDS } from './corpus';
import { consoleText, loadRecording } from './recording';
import {
  FLAG, type FlagName, flagNames, maskedCount, UNDEFINED_FLAGS, type UndefinedSample, undefinedRule,
} from './undefined-flags';

const M64 = (1n << 64n) - 1n;
const mask = (w: number): bigint => (w === 64 ? M64 : (1n << BigInt(w)) - 1n);
const bit = (v: bigint, i: number): number => Number((v >> BigInt(i)) & 1n);
const parity = (v: bigint): number => { let p = 1; for (let i = 0; i < 8; i++) p ^= bit(v, i); return p; };

const HIGH: Record<string, string> = { ah: 'rax', bh: 'rbx', ch: 'rcx', dh: 'rdx' };
const R64 = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rbp', 'rsp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'];
const SUBNAMES: Record<string, [string, number]> = {
  al: ['rax', 8], bl: ['rbx', 8], cl: ['rcx', 8], dl: ['rdx', 8], sil: ['rsi', 8], dil: ['rdi', 8], bpl: ['rbp', 8],
};
for (const r of R64) {
  SUBNAMES[r] = [r, 64];
  if (/\d/.test(r)) { SUBNAMES[`${r}d`] = [r, 32]; SUBNAMES[`${r}w`] = [r, 16]; SUBNAMES[`${r}b`] = [r, 8]; } else {
    SUBNAMES[`e${r.slice(1)}`] = [r, 32]; SUBNAMES[r.slice(1)] = [r, 16];
  }
}

/** Value of an operand (register name, or memory: `mem`) of width w. */
function operandValue(op: string, w: number, regs: Record<string, bigint>, mem: bigint | undefined): bigint | undefined {
  op = op.trim();
  if (op.includes('[')) return mem === undefined ? undefined : mem & mask(w);
  if (op in HIGH) return (regs[HIGH[op]] >> 8n) & 0xffn;
  const s = SUBNAMES[op];
  return s ? regs[s[0]] & mask(s[1]) : undefined;
}

export interface Sample extends UndefinedSample {
  seq: CorpusSequence;
  rule: string;
  /** bsf/bsr with a zero source: the destination register before and after (64 bits) */
  destIn?: bigint;
  destOut?: bigint;
}

/** Samples of every single-instruction sequence with undefined flags in one run of a guest. */
export function undefinedSamples(guest: CorpusGuest, consoleOut: string): Map<number, Sample> {
  const out = new Map<number, Sample>();
  const parsed = parseConsole(consoleOut);
  for (const s of guest.sequences) {
    if (s.insns.length !== 1 || s.undefinedRules.length !== 1) continue;
    const p: ParsedSeq | undefined = parsed.seqs.get(s.id);
    if (!p?.regs) continue;
    const i = s.insns[0];
    const ops = s.body[0].replace(/^(lock )?\w+\s*/, '').split(',');
    const inRegs: Record<string, bigint> = {};
    for (const r of R64) inRegs[r] = (s.regsIn as Record<string, bigint>)[r] ?? 0n;
    const regs: Record<string, bigint> = {};
    DUMP_FIELDS.forEach((f, k) => { regs[f] = p.regs![k]; });
    const w = i.width;
    let res: bigint | undefined;
    let orig: bigint | undefined;
    if (i.mn === 'mul' || i.mn === 'div' || i.mn === 'idiv' || (i.mn === 'imul' && ops.length === 1)) res = regs.rax & mask(w);
    else if (!i.mn.startsWith('bt')) {
      res = operandValue(ops[0], w, regs, p.mem[0]?.qwords[0]);
      orig = operandValue(ops[0], w, inRegs, s.memIn[0]?.value);
    }
    const sample: Sample = {
      seq: s, rule: s.undefinedRules[0], mn: i.mn, w, flagsIn: s.rflagsIn, flagsOut: Number(regs.rflags),
      ...(i.count !== undefined ? { count: i.count } : {}), ...(res !== undefined ? { res } : {}), ...(orig !== undefined ? { orig } : {}),
    };
    if (i.srcZero && i.dstReg64) { sample.destIn = inRegs[i.dstReg64]; sample.destOut = regs[i.dstReg64]; }
    out.set(s.id, sample);
  }
  return out;
}

/** Samples whose undefined flags the rule's kvmModel does not predict (bits it claims). */
export function checkKvmModels(samples: Iterable<Sample>): { sample: Sample; predicted: number; got: number; bits: number }[] {
  const bad: { sample: Sample; predicted: number; got: number; bits: number }[] = [];
  for (const s of samples) {
    const r = undefinedRule(s.rule);
    if (!r.kvmModel) continue;
    const bits = r.kvmDeterministic & s.seq.undefinedFlags;
    const predicted = r.kvmModel(s) & bits;
    const got = s.flagsOut & bits;
    if (predicted !== got) bad.push({ sample: s, predicted, got, bits });
  }
  return bad;
}

type Pred = (r: Sample, f: FlagName) => number | undefined;
const PREDICTORS: Record<string, Pred> = {
  '0': () => 0,
  '1': () => 1,
  unchanged: (r, f) => (r.flagsIn & FLAG[f] ? 1 : 0),
  'msb(result)': (r) => (r.res === undefined ? undefined : bit(r.res, r.w - 1)),
  'result==0': (r) => (r.res === undefined ? undefined : r.res === 0n ? 1 : 0),
  'parity(result)': (r) => (r.res === undefined ? undefined : parity(r.res)),
  'msb(result)^CF': (r) => (r.res === undefined ? undefined : bit(r.res, r.w - 1) ^ (r.flagsOut & 1)),
  'msb(result)^bit(w-2,result)': (r) => (r.res === undefined ? undefined : bit(r.res, r.w - 1) ^ bit(r.res, r.w - 2)),
  'msb(before)': (r) => (r.orig === undefined ? undefined : bit(r.orig, r.w - 1)),
  'msb(before)^msb(result)': (r) => (r.orig === undefined || r.res === undefined ? undefined : bit(r.orig, r.w - 1) ^ bit(r.res, r.w - 1)),
  'msb(before)^bit(w-2,before)': (r) => (r.orig === undefined ? undefined : bit(r.orig, r.w - 1) ^ bit(r.orig, r.w - 2)),
  'lsb(before)^msb(before)': (r) => (r.orig === undefined ? undefined : bit(r.orig, 0) ^ bit(r.orig, r.w - 1)),
  'msb(before)^CF(before)': (r) => (r.orig === undefined ? undefined : bit(r.orig, r.w - 1) ^ (r.flagsIn & 1)),
};

function main(): void {
  const liveKvm = process.argv.includes('--live-kvm');
  const showRows = process.argv.includes('--rows');
  const rec = liveKvm ? undefined : loadRecording();
  if (!liveKvm && !rec) throw new Error('no recording: run npx tsx scripts/oracle-record.ts first, or pass --live-kvm');
  const rows: Record<string, { kvm: Sample; bochs: Sample }[]> = {};
  const kvmAll: Sample[] = [];
  for (const g of corpusGuests()) {
    if (!g.sequences.some((s) => s.undefinedRules.length)) continue;
    const kc = liveKvm ? runOnKvm(g.image, { timeoutMs: 60000 }).console : consoleText(rec!.guests.find((x) => x.name === g.name)!);
    const bc = runOnBochs(g.image, { doneSites: g.doneSites }).console;
    const ks = undefinedSamples(g, kc);
    const bs = undefinedSamples(g, bc);
    for (const [id, k] of ks) {
      kvmAll.push(k);
      const b = bs.get(id);
      if (b) (rows[`${k.rule} ${k.mn}`] ??= []).push({ kvm: k, bochs: b });
    }
  }
  for (const rule of UNDEFINED_FLAGS) {
    const keys = Object.keys(rows).filter((k) => k.split(' ')[0] === rule.id).sort();
    console.log(`\n== ${rule.id} (${rule.mnemonics.join(' ')}; ${rule.form}): undefined ${flagNames(rule.mask)}`);
    if (!keys.length) console.log('  no single-instruction sequences');
    for (const k of keys) {
      const rs = rows[k];
      console.log(`${k.split(' ')[1]} (${rs.length} sequences)`);
      for (const f of Object.keys(FLAG) as FlagName[]) {
        if (!(rule.mask & FLAG[f])) continue;
        const rel = rs.filter((x) => x.kvm.seq.undefinedFlags & FLAG[f]);
        if (!rel.length) continue;
        const val = (x: Sample): number => (x.flagsOut & FLAG[f] ? 1 : 0);
        const fits = (side: 'kvm' | 'bochs'): string => {
          const ok = Object.entries(PREDICTORS).filter(([, p]) => rel.every((x) => p(x[side], f) === val(x[side]))).map(([n]) => n);
          return ok.length ? ok.join(' = ') : `no simple rule (set in ${rel.filter((x) => val(x[side])).length}/${rel.length})`;
        };
        const disagree = rel.filter((x) => val(x.kvm) !== val(x.bochs)).length;
        console.log(`  ${f}: n=${rel.length}, oracles disagree in ${disagree}\n     kvm:   ${fits('kvm')}\n     bochs: ${fits('bochs')}`);
      }
      for (const x of rs.filter((y) => y.kvm.destIn !== undefined)) {
        console.log(`  destination, zero source, ${x.kvm.seq.body[0]}: before 0x${x.kvm.destIn!.toString(16)}, kvm 0x${x.kvm.destOut!.toString(16)}, bochs 0x${x.bochs.destOut!.toString(16)}`);
      }
      if (showRows) {
        for (const x of rs) {
          const c = x.kvm.count;
          console.log(`    ${x.kvm.seq.body[0].padEnd(30)} w=${x.kvm.w}${c !== undefined ? ` count=${c}(masked ${maskedCount(x.kvm.w, c)})` : ''} in=${flagNames(x.kvm.flagsIn & rule.mask)} before=${x.kvm.orig?.toString(16)} result=${x.kvm.res?.toString(16)} kvm=${flagNames(x.kvm.flagsOut & rule.mask)} bochs=${flagNames(x.bochs.flagsOut & rule.mask)}`);
        }
      }
    }
  }
  const bad = checkKvmModels(kvmAll);
  console.log(`\nKVM models of undefined-flags.ts: ${kvmAll.length} samples, ${bad.length} not predicted`);
  for (const b of bad.slice(0, 20)) {
    console.log(`  ${b.sample.seq.body[0]} (${b.sample.rule}): predicted ${flagNames(b.predicted)} got ${flagNames(b.got)} of ${flagNames(b.bits)}`);
  }
}

if (require.main === module) main();
