// Guest physical memory: RAM at physical 0, shared by every vCPU, and per-page records of which
// pages hold decoded code (a write there invalidates the decoded blocks) and which the debugger
// watches (a write there is reported).

export const PAGE_SHIFT = 12;
export const PAGE_SIZE = 1 << PAGE_SHIFT;

export class PhysicalMemory {
  readonly ram: Uint8Array;
  readonly view: DataView;
  /** pages that hold code some vCPU has decoded (a write there must invalidate it) */
  readonly codePages: Uint8Array;
  /** pages with a debugger write watch (data breakpoints): writes there take the slow path */
  readonly watchPages: Uint8Array;

  constructor(readonly size: number) {
    this.ram = new Uint8Array(size);
    this.view = new DataView(this.ram.buffer);
    this.codePages = new Uint8Array(Math.ceil(size / PAGE_SIZE));
    this.watchPages = new Uint8Array(Math.ceil(size / PAGE_SIZE));
  }

  /** Is this physical range entirely RAM? */
  isRam(phys: number, length: number): boolean {
    return phys >= 0 && phys + length <= this.size;
  }

  read64(phys: number): bigint {
    return this.view.getBigUint64(phys, true);
  }

  write64(phys: number, v: bigint): void {
    this.view.setBigUint64(phys, v, true);
  }
}
