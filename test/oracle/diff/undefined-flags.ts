// undefined-flags.ts - the RFLAGS bits (and the few register results) the Intel SDM leaves
// undefined, per instruction and operand form, with what each oracle actually produced for them
// on the differential corpus (corpus.ts). `flagEffect()` gives, for one instruction as the
// corpus generator describes it, which flags it reads, which it writes and which of those are
// undefined; the comparison (compare.ts) excludes exactly those bits, never a whole register.
//
// Observations ("kvm", "bochs") come from the corpus run recorded in
// test/oracle/recorded/kvm-corpus.json and from Bochs 2.7 live; `npx tsx
// test/oracle/diff/analyze-undefined.ts` reprints the evidence (per rule: how many corpus
// sequences, how often the oracles disagree, which simple rule KVM's bits follow).

/** RFLAGS bits. */
export const FLAG = {
  CF: 0x1, PF: 0x4, AF: 0x10, ZF: 0x40, SF: 0x80, TF: 0x100, IF: 0x200, DF: 0x400, OF: 0x800,
} as const;
export type FlagName = keyof typeof FLAG;

/** CF PF AF ZF SF OF: the six status flags. */
export const STATUS = 0x8d5;

/** Names of the set bits of a flag mask, e.g. "CF|OF". */
export function flagNames(mask: number): string {
  const names: string[] = (Object.keys(FLAG) as FlagName[]).filter((n) => mask & FLAG[n]);
  const rest = mask & ~Object.values(FLAG).reduce((a, b) => a | b, 0);
  if (rest) names.push(`0x${rest.toString(16)}`);
  return names.length ? names.join('|') : '-';
}

/** One instruction as the corpus generator describes it (enough to know its flag behaviour). */
export interface InsnInfo {
  /** mnemonic, lower case (jcc/setcc/cmovcc with their condition, e.g. "setnbe") */
  mn: string;
  /** operand size in bits; 0 when it has none that matters */
  width: 0 | 8 | 16 | 32 | 64;
  /** shifts/rotates: the count operand as executed (before masking) */
  count?: number;
  /** bsf/bsr: the source operand is zero */
  srcZero?: boolean;
  /** bsf/bsr with a zero source: the 64-bit register holding the destination */
  dstReg64?: string;
}

export interface FlagEffect {
  /** flags whose input value the instruction uses */
  reads: number;
  /** flags it may change (defined or not) */
  writes: number;
  /** subset of writes the SDM leaves undefined */
  undefined: number;
  /** 64-bit registers whose value is undefined afterwards (bsf/bsr with a zero source) */
  undefinedRegs: string[];
  /** id of the UNDEFINED_FLAGS rule that applies, if any */
  rule?: string;
}

/** One single-instruction corpus sample, as analyze-undefined.ts extracts it from a run. */
export interface UndefinedSample {
  mn: string;
  w: number;
  /** shifts/rotates: the count as executed */
  count?: number;
  /** the destination operand before (shifts, rotates, bsf/bsr) */
  orig?: bigint;
  /** the result: destination after; mul/imul one-operand: low half; div/idiv: quotient */
  res?: bigint;
  flagsIn: number;
  flagsOut: number;
}

/** One row of the table: a form with undefined results. */
export interface UndefinedFlagRule {
  id: string;
  mnemonics: string[];
  /** operand form or condition (count, source value) the row applies to */
  form: string;
  /** flags undefined per the SDM */
  mask: number;
  /** registers undefined per the SDM (the corpus masks the whole 64-bit register) */
  registers?: string;
  sdm: string;
  /** what real KVM (kvm-pvm on an Intel Xeon host) produced on the corpus */
  kvm: string;
  /** what Bochs 2.7 (corei7_icelake_u) produced on the corpus */
  bochs: string;
  /**
   * Bits of `mask` for which KVM followed `kvmModel` in every corpus sequence of this form: the
   * emulator computes these bits that way and is compared with KVM on them (compare.ts,
   * strictKvmUndefined); oracles.test.ts checks the model against the recording.
   */
  kvmDeterministic: number;
  /** KVM's values of the kvmDeterministic bits (other bits of the return value are ignored) */
  kvmModel?: (s: UndefinedSample) => number;
  /** the same in words, for the emulator's implementer */
  kvmRule?: Partial<Record<FlagName | 'dest', string>>;
  /** the undefined registers (`registers`) followed kvmRule.dest in every corpus sequence */
  kvmRegistersDeterministic?: boolean;
}

const { CF, PF, AF, ZF, SF, OF } = FLAG;
const bit = (v: bigint | undefined, i: number): number => (v === undefined ? 0 : Number((v >> BigInt(i)) & 1n));
/** PF: 1 when the low byte has an even number of set bits. */
const parity = (v: bigint | undefined): number => {
  let p = 1;
  for (let i = 0; i < 8; i++) p ^= bit(v, i);
  return p;
};
const rotatePeriod = (w: number): number => (w === 8 ? 9 : w === 16 ? 17 : 0);

// SDM = Intel 64 and IA-32 Architectures Software Developer's Manual (Order 325462-084, June
// 2024): Vol. 1 Appendix A, Table A-2 "EFLAGS Cross-Reference", and each instruction's "Flags
// Affected" section in Vol. 2A/2B (quoted). Counts are corpus sequences with that form and one
// instruction (analyze-undefined.ts); "disagree" counts sequences where the two oracles differ.
export const UNDEFINED_FLAGS: readonly UndefinedFlagRule[] = [
  {
    id: 'logic', mnemonics: ['and', 'or', 'xor', 'test'], form: 'all forms', mask: AF,
    sdm: 'Vol. 2A AND, Vol. 2B OR/XOR/TEST: "The OF and CF flags are cleared; the SF, ZF, and PF flags are set according to the result. The state of the AF flag is undefined."',
    kvm: 'AF = 0 (16 single-instruction sequences, and every multi-instruction one)',
    bochs: 'AF = 0 (same sequences; no disagreement)',
    kvmDeterministic: AF, kvmModel: () => 0, kvmRule: { AF: '0' },
  },
  {
    id: 'mul', mnemonics: ['mul', 'imul'], form: 'all forms (one, two and three operands)', mask: SF | ZF | AF | PF,
    sdm: 'Vol. 2B MUL: "The OF and CF flags are set to 0 if the upper half of the result is 0; otherwise, they are set to 1. The SF, ZF, AF, and PF flags are undefined." IMUL: same for SF ZF AF PF.',
    kvm: 'SF = bit w-1 of the low half of the product (one-operand forms) or of the destination (two/three operands); ZF = 0 always, also for a zero result; AF = 0; PF = parity of the low byte of that value (47 sequences: mul 16, imul 31)',
    bochs: 'SF, AF and PF as KVM; ZF = (that value == 0): differs from KVM in the 8 sequences with a zero result',
    kvmDeterministic: SF | ZF | AF | PF,
    kvmModel: (s) => (bit(s.res, s.w - 1) ? SF : 0) | (parity(s.res) ? PF : 0),
    kvmRule: { SF: 'msb of the low half (1-op) / of the destination (2-op, 3-op)', ZF: '0', AF: '0', PF: 'parity of the low byte of that value' },
  },
  {
    id: 'div', mnemonics: ['div', 'idiv'], form: 'all widths, no #DE', mask: STATUS,
    sdm: 'Vol. 2A DIV, IDIV: "The CF, OF, SF, ZF, AF, and PF flags are undefined."',
    kvm: 'all six unchanged (32 sequences)',
    bochs: 'all six unchanged (no disagreement)',
    kvmDeterministic: STATUS, kvmModel: (s) => s.flagsIn & STATUS, kvmRule: { CF: 'unchanged', PF: 'unchanged', AF: 'unchanged', ZF: 'unchanged', SF: 'unchanged', OF: 'unchanged' },
  },
  {
    id: 'bsf-bsr', mnemonics: ['bsf', 'bsr'], form: 'source not zero', mask: CF | OF | SF | AF | PF,
    sdm: 'Vol. 2A BSF, BSR: "The ZF flag is set to 1 if the source operand is 0; otherwise, the ZF flag is cleared. The CF, OF, SF, AF, and PF flags are undefined."',
    kvm: 'CF = OF = SF = AF = 0, PF = parity of the result (the bit index) (18 sequences)',
    bochs: 'same as KVM (no disagreement)',
    kvmDeterministic: CF | OF | SF | AF | PF, kvmModel: (s) => (parity(s.res) ? PF : 0),
    kvmRule: { CF: '0', OF: '0', SF: '0', AF: '0', PF: 'parity of the result' },
  },
  {
    id: 'bsf-bsr-zero', mnemonics: ['bsf', 'bsr'], form: 'source zero', mask: CF | OF | SF | AF | PF,
    registers: 'destination',
    sdm: 'Vol. 2A BSF, BSR: as above, and Operation: "IF SRC = 0 THEN ZF := 1; DEST is undefined;"',
    kvm: 'ZF = 1, PF = 1, CF = OF = SF = AF = 0 (18 sequences). Destination: unchanged (all 64 bits, also for 16/32-bit forms) in 17; `bsf ecx, dword [esi]` (32-bit address size) cleared bits 63:32 and kept 31:0',
    bochs: 'ZF = 1, every other flag unchanged: disagrees with KVM on CF in 6, PF 10, AF 12, SF 11, OF 9 of the 18 sequences; destination unchanged, all 64 bits, in all 18',
    kvmDeterministic: CF | OF | SF | AF | PF, kvmModel: () => PF,
    kvmRule: { CF: '0', OF: '0', SF: '0', AF: '0', PF: '1', dest: 'unchanged (not deterministic: one 32-bit form cleared bits 63:32), compared masked' },
    kvmRegistersDeterministic: false,
  },
  {
    id: 'bt', mnemonics: ['bt', 'bts', 'btr', 'btc'], form: 'all forms', mask: OF | SF | AF | PF,
    sdm: 'Vol. 2A BT/BTC/BTR/BTS: "The CF flag contains the value of the selected bit. The ZF flag is unaffected. The OF, SF, AF, and PF flags are undefined."',
    kvm: 'OF, SF, AF, PF unchanged (48 sequences)',
    bochs: 'unchanged (no disagreement)',
    kvmDeterministic: OF | SF | AF | PF, kvmModel: (s) => s.flagsIn & (OF | SF | AF | PF),
    kvmRule: { OF: 'unchanged', SF: 'unchanged', AF: 'unchanged', PF: 'unchanged' },
  },
  {
    id: 'shift-1', mnemonics: ['shl', 'sal', 'shr', 'sar'], form: 'masked count 1', mask: AF,
    sdm: 'Vol. 2B SAL/SAR/SHL/SHR: "If the count is 0, the flags are not affected. For a non-zero count, the AF flag is undefined."',
    kvm: 'AF = 0 (39 sequences)', bochs: 'AF = 0 (no disagreement)',
    kvmDeterministic: AF, kvmModel: () => 0, kvmRule: { AF: '0' },
  },
  {
    id: 'shift-n', mnemonics: ['shl', 'sal', 'shr', 'sar'], form: 'masked count >= 2 (shl/shr: and < width)', mask: AF | OF,
    sdm: 'Vol. 2B SAL/SAR/SHL/SHR: "The OF flag is affected only for 1-bit shifts ...; otherwise, it is undefined. ... For a non-zero count, the AF flag is undefined."',
    kvm: 'AF = 0; OF as a 1-bit shift of the operand before would set it: shl/sal bit w-1 XOR bit w-2, shr bit w-1, sar 0 (53 sequences)',
    bochs: 'AF = 0; OF: shl/sal msb(result) XOR CF, shr 0, sar 0: differs from KVM in 11 of the 37 shl/sal/shr sequences',
    kvmDeterministic: AF | OF,
    kvmModel: (s) => (shiftOf(s) ? OF : 0),
    kvmRule: { AF: '0', OF: 'as for a 1-bit shift of the original operand: shl/sal msb XOR next bit, shr msb, sar 0' },
  },
  {
    id: 'shift-ge-width', mnemonics: ['shl', 'sal', 'shr'], form: '8/16-bit operand, masked count >= width', mask: CF | AF | OF,
    sdm: 'Vol. 2B SAL/SAR/SHL/SHR: "The CF flag contains the value of the last bit shifted out of the destination operand; it is undefined for SHL and SHR instructions where the count is greater than or equal to the size (in bits) of the destination operand." (plus OF and AF as above)',
    kvm: 'CF = the last bit shifted out of the operand zero-extended (shl: bit w-count, shr: bit count-1; 0 when count > width); AF = 0; OF as in shift-n (11 sequences)',
    bochs: 'CF and AF as KVM; OF = 0: differs from KVM in 3 of 11',
    kvmDeterministic: CF | AF | OF,
    kvmModel: (s) => (shiftOf(s) ? OF : 0) | (shiftCfWide(s) ? CF : 0),
    kvmRule: { CF: 'last bit shifted out with the operand zero-extended (0 when the count exceeds the width)', AF: '0', OF: 'as in shift-n' },
  },
  {
    id: 'rotate-n', mnemonics: ['rol', 'ror', 'rcl', 'rcr'], form: 'masked count >= 2', mask: OF,
    sdm: 'Vol. 2B RCL/RCR/ROL/ROR: "If the masked count is 0, the flags are not affected. If the masked count is 1, then the OF flag is affected, otherwise (masked count is greater than 1) the OF flag is undefined."',
    kvm: 'OF as a 1-bit rotate of the operand before would set it: rol bit w-1 XOR bit w-2, ror bit 0 XOR bit w-1, rcl bit w-1 XOR bit w-2, rcr bit w-1 XOR CF before; rcl/rcr of 8/16-bit operands by a multiple of 9/17 (no bit moves): OF (and CF) unchanged (96 sequences)',
    bochs: 'OF from the result: rol msb(result) XOR CF, ror msb(result) XOR bit w-2 of the result, rcl/rcr no simple rule found; unchanged for whole-period rcl/rcr like KVM. Disagrees with KVM in rol 11/25, ror 3/22, rcl 6/24, rcr 6/25',
    kvmDeterministic: OF,
    kvmModel: (s) => (rotateOf(s) ? OF : 0),
    kvmRule: { OF: 'as for a 1-bit rotate of the original operand (rcl/rcr by whole 9/17-bit periods: unchanged)' },
  },
];

/** KVM's OF for a multi-bit shift: the 1-bit rule applied to the operand before. */
function shiftOf(s: UndefinedSample): number {
  if (s.mn === 'sar') return 0;
  if (s.mn === 'shr') return bit(s.orig, s.w - 1);
  return bit(s.orig, s.w - 1) ^ bit(s.orig, s.w - 2);
}

/** KVM's CF for an 8/16-bit shl/shr whose masked count is >= the width. */
function shiftCfWide(s: UndefinedSample): number {
  const c = maskedCount(s.w, s.count ?? 0);
  if (c > s.w) return 0;
  return s.mn === 'shr' ? bit(s.orig, c - 1) : bit(s.orig, s.w - c);
}

/** KVM's OF for a rotate with a masked count >= 2. */
function rotateOf(s: UndefinedSample): number {
  const c = maskedCount(s.w, s.count ?? 0);
  const p = rotatePeriod(s.w);
  if ((s.mn === 'rcl' || s.mn === 'rcr') && p && c % p === 0) return s.flagsIn & OF ? 1 : 0;
  if (s.mn === 'ror') return bit(s.orig, 0) ^ bit(s.orig, s.w - 1);
  if (s.mn === 'rcr') return bit(s.orig, s.w - 1) ^ (s.flagsIn & CF);
  return bit(s.orig, s.w - 1) ^ bit(s.orig, s.w - 2);
}

const BY_ID = new Map(UNDEFINED_FLAGS.map((r) => [r.id, r]));

/** The table row with this id (throws for an unknown id: a typo in flagEffect). */
export function undefinedRule(id: string): UndefinedFlagRule {
  const r = BY_ID.get(id);
  if (!r) throw new Error(`undefined-flags.ts: no rule '${id}'`);
  return r;
}

const CONDITION_FLAGS: Record<string, number> = {
  o: OF, no: OF, b: CF, c: CF, nae: CF, ae: CF, nb: CF, nc: CF, e: ZF, z: ZF, ne: ZF, nz: ZF,
  be: CF | ZF, na: CF | ZF, a: CF | ZF, nbe: CF | ZF, s: SF, ns: SF, p: PF, pe: PF, np: PF, po: PF,
  l: SF | OF, nge: SF | OF, ge: SF | OF, nl: SF | OF, le: ZF | SF | OF, ng: ZF | SF | OF,
  g: ZF | SF | OF, nle: ZF | SF | OF,
};

/** Flags a condition code (o, nbe, ...) tests. */
export function conditionFlags(cc: string): number {
  const f = CONDITION_FLAGS[cc];
  if (f === undefined) throw new Error(`unknown condition code '${cc}'`);
  return f;
}

const NONE: FlagEffect = { reads: 0, writes: 0, undefined: 0, undefinedRegs: [] };
const eff = (reads: number, writes: number, undef = 0, rule?: string, undefinedRegs: string[] = []): FlagEffect =>
  ({ reads, writes, undefined: undef, undefinedRegs, ...(rule ? { rule } : {}) });

/** Count mask of shifts and rotates: 5 bits, 6 with a 64-bit operand. */
export function maskedCount(width: number, count: number): number {
  return count & (width === 64 ? 63 : 31);
}

/** Flag behaviour of one instruction (SDM rules; see UNDEFINED_FLAGS for the undefined bits). */
export function flagEffect(i: InsnInfo): FlagEffect {
  const mn = i.mn;
  switch (mn) {
    case 'add': case 'sub': case 'cmp': case 'neg': case 'xadd': case 'cmpxchg':
    case 'cmpsb': case 'cmpsw': case 'cmpsd': case 'cmpsq': case 'scasb': case 'scasw': case 'scasd': case 'scasq':
      return eff(0, STATUS);
    case 'adc': case 'sbb':
      return eff(CF, STATUS);
    case 'inc': case 'dec':
      return eff(0, STATUS & ~CF);
    case 'and': case 'or': case 'xor': case 'test':
      return eff(0, STATUS, AF, 'logic');
    case 'not': case 'mov': case 'movzx': case 'movsx': case 'movsxd': case 'lea': case 'xchg': case 'nop':
    case 'cbw': case 'cwde': case 'cdqe': case 'cwd': case 'cdq': case 'cqo': case 'push': case 'pop':
    case 'movsb': case 'movsw': case 'movsd': case 'movsq': case 'stosb': case 'stosw': case 'stosd': case 'stosq':
    case 'lodsb': case 'lodsw': case 'lodsd': case 'lodsq': case 'jmp': case 'loop': case 'jrcxz': case 'jecxz':
    case 'out': case 'outsb': case 'rep-outsb':
      return NONE;
    case 'loope': case 'loopz': case 'loopne': case 'loopnz':
      return eff(ZF, 0);
    case 'rep-cmps': case 'rep-scas':
      return eff(0, STATUS);
    case 'clc': case 'stc': return eff(0, CF);
    case 'cmc': return eff(CF, CF);
    case 'cld': case 'std': return eff(0, FLAG.DF);
    case 'lahf': return eff(CF | PF | AF | ZF | SF, 0);
    case 'sahf': return eff(0, CF | PF | AF | ZF | SF);
    case 'pushfq': return eff(0xffffffff, 0);
    case 'popfq': return eff(0, 0xffffffff);
    case 'mul': case 'imul':
      return eff(0, STATUS, SF | ZF | AF | PF, 'mul');
    case 'div': case 'idiv':
      return eff(0, STATUS, STATUS, 'div');
    case 'bsf': case 'bsr':
      if (i.srcZero) return eff(0, STATUS, CF | OF | SF | AF | PF, 'bsf-bsr-zero', i.dstReg64 ? [i.dstReg64] : []);
      return eff(0, STATUS, CF | OF | SF | AF | PF, 'bsf-bsr');
    case 'bt': case 'bts': case 'btr': case 'btc':
      return eff(0, STATUS & ~ZF, OF | SF | AF | PF, 'bt');
    case 'shl': case 'sal': case 'shr': case 'sar': {
      const c = maskedCount(i.width, requireCount(i));
      if (c === 0) return eff(0, 0);
      if (c === 1) return eff(0, STATUS, AF, 'shift-1');
      if (mn !== 'sar' && c >= i.width) return eff(0, STATUS, AF | OF | CF, 'shift-ge-width');
      return eff(0, STATUS, AF | OF, 'shift-n');
    }
    case 'rol': case 'ror': {
      const c = maskedCount(i.width, requireCount(i));
      if (c === 0) return eff(0, 0);
      if (c === 1) return eff(0, CF | OF);
      return eff(0, CF | OF, OF, 'rotate-n');
    }
    case 'rcl': case 'rcr': {
      const c = maskedCount(i.width, requireCount(i));
      if (c === 0) return eff(CF, 0);
      if (c === 1) return eff(CF, CF | OF);
      return eff(CF, CF | OF, OF, 'rotate-n');
    }
    default: {
      const m = /^(set|cmov|j)(.+)$/.exec(mn);
      if (m && m[2] in CONDITION_FLAGS) return eff(CONDITION_FLAGS[m[2]], 0);
      throw new Error(`flagEffect: no flag rule for '${mn}'`);
    }
  }
}

function requireCount(i: InsnInfo): number {
  if (i.count === undefined) throw new Error(`flagEffect: '${i.mn}' needs its count`);
  return i.count;
}

/**
 * Flags left undefined after a run of instructions, in order (a later instruction that defines
 * a flag clears it). Throws when an instruction reads a flag an earlier one left undefined: the
 * generator must not build such sequences (their results would be undefined as a whole).
 */
export function sequenceUndefined(insns: readonly InsnInfo[]): { flags: number; regs: string[]; rules: string[] } {
  let flags = 0;
  const regs = new Set<string>();
  const rules = new Set<string>();
  for (const i of insns) {
    const e = flagEffect(i);
    if (e.reads & flags) {
      throw new Error(`'${i.mn}' reads ${flagNames(e.reads & flags)}, left undefined by an earlier instruction`);
    }
    flags = (flags & ~e.writes) | e.undefined;
    for (const r of e.undefinedRegs) regs.add(r);
    if (e.rule && e.undefined) rules.add(e.rule);
  }
  return { flags, regs: [...regs], rules: [...rules] };
}
