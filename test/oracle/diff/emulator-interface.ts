// emulator-interface.ts - the function the emulator side (src/machine) will provide so that the
// differential corpus can run on it: a type only, no implementation. compare.ts's
// `compareEmulatorWithOracles(runGuest)` takes a function of this type.

/**
 * Runs a flat guest image (loaded at 0x100000, contracts/guest.md start state) to its end.
 *
 * - `status`: as in contracts/run-json.md (`done`, `step-limit`, `halted`, `triple-fault`, ...).
 * - `console`: bytes written to port 0xE9, one character per byte (code point = byte value).
 * - `vcpus[].regs`: "0x" + 16 lower-case hex digits for rax, rbx, rcx, rdx, rsi, rdi, rbp, rsp,
 *   r8..r15, rip and rflags (run-json.md); for a `done` vCPU, at its `out 0xf4` with RIP at the
 *   `out`.
 */
export type RunGuest = (
  image: Uint8Array,
  opts: { vcpus: number; memoryMiB?: number; maxSteps?: number },
) => {
  status: string;
  console: string;
  vcpus: { id: number; state: string; regs: Record<string, string> }[];
};
