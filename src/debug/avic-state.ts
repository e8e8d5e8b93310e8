// The body of the custom request `avic/state` (contracts/dap.md, "Custom request and event"):
// the one definition the adapter fills (inspect.ts, avicState) and the extension's views read.
// Field names and nesting follow `avic run --json` (run-json.md) for the same facts.

export interface AvicInhibitRow {
  /** the enum name without APICV_INHIBIT_REASON_ */
  readonly reason: string;
  readonly bit: number;
  readonly set: boolean;
  /** the last kvm_apicv_inhibit_changed call that changed the bit, or null */
  readonly lastChange: { readonly seq: number; readonly vcpu: number | null; readonly hostStack: readonly string[] } | null;
}

export interface AvicVcpuState {
  readonly id: number;
  readonly threadId: number;
  /** run-json.md's vCPU states: running, halted, done, ... */
  readonly state: string;
  /** vcpu->mode */
  readonly mode: string;
  readonly apic: { readonly mode: string; readonly apicvActive: boolean };
  /** per-vCPU inhibits (NESTED) */
  readonly inhibits: readonly string[];
  /** pending KVM_REQ_* requests */
  readonly requests: readonly string[];
  readonly srcuDepth: number;
  readonly srcuReaders: number;
  /** what the kernel expects at this point of the vCPU's task (kvm-model.md, "Tasks and SRCU") */
  readonly expectedSrcuDepth: number;
  /** innermost first */
  readonly hostStack: readonly string[];
}

export interface AvicState {
  readonly seq: number;
  readonly vm: {
    readonly kernel: string;
    readonly design: string;
    readonly avic: boolean;
    readonly x2avic: boolean;
    readonly nested: boolean;
    readonly apicvActivated: boolean;
    readonly apicvInhibits: readonly string[];
    readonly inhibitTable: readonly AvicInhibitRow[];
    readonly apicAccessMemslot: { readonly enabled: boolean; readonly inhibited: boolean };
    readonly memslots: readonly { readonly id: number; readonly gpa: string; readonly size: number; readonly private: boolean }[];
  };
  readonly vcpus: readonly AvicVcpuState[];
}
