// Debugger access to guest memory without side effects: the 4-level page walk of
// `Cpu.translate`, read-only (no accessed/dirty bits, no TLB fill), and reads and writes that go
// to RAM only, never through the MMIO/AVIC path (contracts/dap.md, "Side effects").
// The debugger sees memory as the kernel would: supervisor access, and (for writes) a kernel
// poke that ignores the R/W bit and CR0.WP.

import type { Cpu } from './cpu';
import { PAGE_SIZE } from '../memory';

const TWO32 = 4294967296;
const LEVEL_NAMES = ['', 'PTE', 'PDE', 'PDPTE', 'PML4E'];

/** A successful walk: the physical address and what the mapping allows the guest. */
export interface PeekMapping {
  readonly phys: number;
  /** every level has R/W set (what a supervisor write with CR0.WP set needs) */
  readonly writable: boolean;
  /** every level has U/S set */
  readonly user: boolean;
  /** no level has XD set (or EFER.NXE is clear) */
  readonly executable: boolean;
  /** 4096, 2 MiB or 1 GiB */
  readonly pageSize: number;
}

export type PeekTranslation = PeekMapping | { readonly fault: string };

/**
 * Linear -> physical as `Cpu.translate` computes it (same canonical check, present bits, large
 * pages, reserved-bit checks, XD without EFER.NXE), with a supervisor access, reading the
 * entries straight from RAM and writing nothing. A table outside RAM has nothing present in it.
 * `write` says what the caller means to do; it does not change the walk: the debugger writes
 * as a kernel poke that ignores R/W and CR0.WP (the result's `writable` tells what the guest
 * itself could do). Fetch permission (XD) is not checked either: `executable` reports it.
 */
export function peekTranslate(cpu: Cpu, linear: bigint, write = false): PeekTranslation {
  void write;
  const v = BigInt.asUintN(64, linear);
  const top = v >> 47n;
  if (top !== 0n && top !== 0x1ffffn) return { fault: 'non-canonical' };
  const mem = cpu.bus.mem;
  const view = mem.view;
  const nxe = (cpu.efer & 0x800) !== 0; // EFER.NXE
  const hi = Number((v >> 32n) & 0xffffffffn);
  const lo = Number(v & 0xffffffffn);
  // linear address bits: 47:39 PML4, 38:30 PDPT, 29:21 PD, 20:12 PT
  const indices = [(hi >>> 7) & 0x1ff, ((hi & 0x7f) << 2) | (lo >>> 30), (lo >>> 21) & 0x1ff, (lo >>> 12) & 0x1ff];
  let table = (cpu.cr3 & ~0xfff) >>> 0;
  let writable = true;
  let user = true;
  let nx = false;
  for (let level = 4; level >= 1; level--) {
    const name = LEVEL_NAMES[level];
    const ea = table + indices[4 - level] * 8;
    if (ea + 8 > mem.size) return { fault: `not present at ${name} (its table at 0x${table.toString(16)} is outside RAM)` };
    const elo = view.getInt32(ea, true);
    const ehi = view.getInt32(ea + 4, true);
    if (!(elo & 1)) return { fault: `not present at ${name}` };
    if (ehi < 0 && !nxe) return { fault: `reserved bit set at ${name} (XD without EFER.NXE)` };
    writable &&= (elo & 2) !== 0;
    user &&= (elo & 4) !== 0;
    nx ||= ehi < 0;
    const large = (level === 3 || level === 2) && (elo & 0x80) !== 0;
    if (!large && level > 1) {
      table = (ehi & 0xfffff) * TWO32 + ((elo & ~0xfff) >>> 0);
      continue;
    }
    const spanMask = level === 3 ? 0x3fffffff : level === 2 ? 0x1fffff : 0xfff;
    // a large page's address bits below its size, except PAT (bit 12), are reserved
    if (large && (elo & spanMask & ~0x1fff) !== 0) return { fault: `reserved bits set at ${name} (large page address)` };
    const frame = (ehi & 0xfffff) * TWO32 + ((elo & ~spanMask) >>> 0);
    return { phys: frame + (lo & spanMask), writable, user, executable: !nx, pageSize: spanMask + 1 };
  }
  return { fault: 'not present' };
}

/** The RAM offset of one linear address, or undefined (no mapping, or not RAM). */
function ramAddress(cpu: Cpu, linear: bigint, write: boolean): number | undefined {
  const t = peekTranslate(cpu, linear, write);
  if ('fault' in t) return undefined;
  return cpu.bus.mem.isRam(t.phys, 1) ? t.phys : undefined;
}

/**
 * Reads up to `length` bytes at a linear address, stopping at the first byte that cannot be
 * read: unmapped, or outside RAM (the APIC page and other MMIO are never read: a device read
 * could have effects). `bytes` holds the `readable` bytes read.
 */
export function peekLinear(cpu: Cpu, linear: bigint, length: number): { bytes: Uint8Array; readable: number } {
  const ram = cpu.bus.mem.ram;
  const out = new Uint8Array(Math.max(0, length));
  let done = 0;
  while (done < out.length) {
    const addr = BigInt.asUintN(64, linear + BigInt(done));
    const phys = ramAddress(cpu, addr, false);
    if (phys === undefined) break;
    // translation is uniform within a 4 KiB page, and RAM ends on a page boundary
    const n = Math.min(out.length - done, PAGE_SIZE - Number(addr & 0xfffn));
    out.set(ram.subarray(phys, phys + n), done);
    done += n;
  }
  return { bytes: out.subarray(0, done), readable: done };
}

/**
 * Writes bytes at a linear address into RAM (DAP `writeMemory`), stopping at the first byte that
 * cannot be written (unmapped or not RAM; read-only pages are written: a kernel poke). Decoded
 * code made of the bytes written is dropped, as for the guest's self-modifying code. Sets no
 * accessed/dirty bit. Returns the number of bytes written.
 */
export function pokeLinear(cpu: Cpu, linear: bigint, data: Uint8Array): number {
  const mem = cpu.bus.mem;
  let done = 0;
  while (done < data.length) {
    const addr = BigInt.asUintN(64, linear + BigInt(done));
    const phys = ramAddress(cpu, addr, true);
    if (phys === undefined) break;
    const n = Math.min(data.length - done, PAGE_SIZE - Number(addr & 0xfffn));
    // decoded code made of these bytes is dropped, as for the guest's own stores
    if (mem.codePages[Math.floor(phys / PAGE_SIZE)] !== 0) cpu.bus.blocks.invalidateRange(phys, n);
    mem.ram.set(data.subarray(done, done + n), phys);
    done += n;
  }
  return done;
}
