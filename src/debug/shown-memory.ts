// The guest memory a client shows: the ranges its `readMemory` requests asked for, with the bytes
// it was given. After the machine ran (a stop) or the debugger changed it (a console command, a
// write), `changed` re-reads each range without side effects and names those whose bytes differ,
// so the session can send DAP `memory` events for them and nothing else. Bounded: the most
// recently read ranges are kept, each at most MAX_RANGE bytes.

const MAX_RANGES = 32;
const MAX_RANGE = 64 * 1024;

/** a range as the client named it: its memory reference, an offset from it, a length */
export interface MemoryRange {
  readonly reference: string;
  readonly offset: number;
  readonly count: number;
}

export type ReadLinear = (address: number, count: number) => Uint8Array;

export class ShownMemory {
  private ranges: (MemoryRange & { address: number; bytes: Uint8Array })[] = [];

  /** a `readMemory` of `range` (at `address`) answered with `bytes`, the readable prefix */
  remember(range: MemoryRange, address: number, bytes: Uint8Array): void {
    if (range.count <= 0 || range.count > MAX_RANGE) return;
    this.ranges = this.ranges.filter((r) => r.reference !== range.reference || r.offset !== range.offset || r.count !== range.count);
    this.ranges.push({ ...range, address, bytes: bytes.slice() });
    if (this.ranges.length > MAX_RANGES) this.ranges.shift();
  }

  /** the shown ranges whose bytes are not what the client was given (remembered anew) */
  changed(read: ReadLinear): MemoryRange[] {
    const out: MemoryRange[] = [];
    for (const r of this.ranges) {
      const now = read(r.address, r.count);
      if (equal(now, r.bytes)) continue;
      r.bytes = now.slice();
      out.push({ reference: r.reference, offset: r.offset, count: r.count });
    }
    return out;
  }
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
