// The loader: guest memory and every vCPU exactly in the start state of contracts/guest.md, the
// same state the reference executors (real KVM, Bochs) produce.

import { CR0_ET, CR0_PE, CR0_PG, CR0_WP, CR4_PAE, type Cpu, EFER_LMA, EFER_LME } from './cpu/cpu';
import type { PhysicalMemory } from './memory';

export const DEFAULT_LOAD_ADDRESS = 0x100000;
/** the image and its .bss end below 16 MiB */
export const IMAGE_LIMIT = 0x100_0000;
export const GDT_BASE = 0x1000;
export const GDT_LIMIT = 0x17;
export const PML4 = 0x2000;
export const PDPT = 0x3000;
export const PAGE_DIRECTORIES = 0x4000;
/** the loader's tables occupy 0x1000..0x7FFF */
export const TABLES_END = 0x8000;
export const STACK_TOP = 0x0300_0000;
export const STACK_STRIDE = 0x1_0000;
export const KERNEL_CS = 0x08;
export const KERNEL_DS = 0x10;

export class LoadError extends Error {}

/** Writes the GDT, the identity-mapping page tables and the image into guest RAM. */
export function loadImage(mem: PhysicalMemory, image: Uint8Array, loadAddress: number, end = loadAddress + image.length): void {
  if (loadAddress < TABLES_END) {
    throw new LoadError(`the image would start at 0x${loadAddress.toString(16)}, inside the loader's GDT and page tables (0x1000-0x7fff)`);
  }
  if (end > IMAGE_LIMIT) {
    throw new LoadError(`the image and its .bss end at 0x${end.toString(16)}; they must end below 0x${IMAGE_LIMIT.toString(16)} (16 MiB)`);
  }
  const v = mem.view;
  // GDT: null, 0x08 64-bit code, 0x10 flat data
  v.setBigUint64(GDT_BASE, 0n, true);
  v.setBigUint64(GDT_BASE + 8, 0x00af9a000000ffffn, true);
  v.setBigUint64(GDT_BASE + 16, 0x00cf92000000ffffn, true);
  // PML4[0] -> PDPT; PDPT[0..3] -> four page directories of 2 MiB pages: 0..4 GiB identity
  v.setBigUint64(PML4, BigInt(PDPT | 0x3), true);
  for (let i = 0; i < 4; i++) {
    v.setBigUint64(PDPT + i * 8, BigInt((PAGE_DIRECTORIES + i * 0x1000) | 0x3), true);
    for (let j = 0; j < 512; j++) {
      v.setBigUint64(PAGE_DIRECTORIES + i * 0x1000 + j * 8, (BigInt(i * 512 + j) << 21n) | 0x83n, true);
    }
  }
  mem.ram.set(image, loadAddress);
}

/** Registers and system state of vCPU `index` at the start of the run. */
export function resetCpu(cpu: Cpu, index: number, loadAddress: number): void {
  cpu.r.fill(0);
  cpu.r[2 * 7] = index; // RDI
  cpu.r[2 * 4] = STACK_TOP - index * STACK_STRIDE; // RSP
  cpu.rip = loadAddress;
  cpu.setRflags(0x2);
  cpu.cr0 = CR0_PG | CR0_WP | CR0_ET | CR0_PE;
  cpu.cr3 = PML4;
  cpu.cr4 = CR4_PAE;
  cpu.efer = EFER_LME | EFER_LMA;
  cpu.cs = KERNEL_CS;
  cpu.ss = cpu.ds = cpu.es = cpu.fs = cpu.gs = KERNEL_DS;
  cpu.gdtBase = GDT_BASE;
  cpu.gdtLimit = GDT_LIMIT;
  cpu.idtBase = 0;
  cpu.idtLimit = 0;
  cpu.cpl = 0;
  cpu.flushTlb();
}
