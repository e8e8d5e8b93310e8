// Guest frames for the debugger: a shadow stack per vCPU built from the calls and returns the
// CPU reports (CALL, interrupt and exception delivery; RET, IRET). A return pops every frame
// whose return address it matches or skips over, so a longjmp-style unwind does not leave stale
// frames. Frames are innermost first when read.

import type { CallObserver, Cpu } from '../machine/cpu/cpu';

export interface GuestCall {
  /** the address of the CALL (or where the interrupt arrived) */
  readonly from: number;
  /** the callee's entry */
  readonly to: number;
  /** where RET goes back to */
  readonly ret: number;
  /** RSP after the call pushed its frame */
  readonly rsp: bigint;
  readonly interrupt: boolean;
}

const MAX_DEPTH = 4096;

export class ShadowStack implements CallObserver {
  private readonly frames: GuestCall[] = [];
  /** after a return, with the new depth (a step over or out stops the burst there) */
  onReturn: ((cpu: Cpu, depth: number) => void) | null = null;

  call(cpu: Cpu, from: number, to: number, ret: number, interrupt: boolean): void {
    if (this.frames.length >= MAX_DEPTH) this.frames.shift(); // runaway recursion: keep the innermost
    this.frames.push({ from, to, ret, rsp: cpu.reg64(4), interrupt });
  }

  ret(cpu: Cpu, to: number): void {
    this.unwind(cpu.reg64(4), to);
    this.onReturn?.(cpu, this.frames.length);
  }

  /** drops the frame a return to `to` leaves: its return address, or everything pushed below `rsp` */
  private unwind(rsp: bigint, to: number): void {
    for (let i = this.frames.length - 1; i >= 0; i--) {
      const f = this.frames[i];
      if (f.ret === to || f.rsp < rsp) {
        this.frames.length = i;
        if (f.ret === to) return;
      } else return;
    }
  }

  /** calls, outermost first */
  get calls(): readonly GuestCall[] {
    return this.frames;
  }

  get depth(): number {
    return this.frames.length;
  }
}
