// avic-kvm.c - the real-KVM reference executor ("oracle") for avic guest programs.
//
// Runs a flat guest image on /dev/kvm with the start state of the guest contract
// (the guest contract, contracts/guest.md of the design docs): full in-kernel irqchip, KVM_CAP_X2APIC_API, RAM at GPA 0,
// the contract's GDT and identity page tables, 64-bit long mode at CPL0 on every vCPU, every vCPU
// runnable (no INIT/SIPI), one host thread per vCPU. Ports: 0xE9 console, 0xF4 done, 0xF0 ignored,
// IN returns all-ones. Prints one JSON object (field names as in run-json.md) on stdout.
//
// Build:  gcc -O2 -Wall -Wextra -pthread -o avic-kvm avic-kvm.c
// Usage:  avic-kvm [--vcpus N] [--memory MIB] [--timeout-ms T] [--load-address A] [--dump-lapic] IMAGE.bin
// Exit:   0 status "done"; 2 "timeout" or "triple-fault"; 1 "error" (bad usage, no /dev/kvm, ioctl
//         failure, unexpected exit).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <time.h>
#include <unistd.h>

#define IMAGE_LIMIT 0x01000000ull /* image must end below 16 MiB */
#define GDT_ADDR 0x1000ull
#define PML4_ADDR 0x2000ull
#define PDPT_ADDR 0x3000ull
#define PD_ADDR 0x4000ull
#define TABLES_END 0x8000ull
#define STACK_TOP 0x03000000ull
#define STACK_STEP 0x10000ull
#define PORT_CONSOLE 0xE9
#define PORT_DONE 0xF4
#define PORT_TRIGGER 0xF0
#define MAX_VCPUS 512
#define TOPO_SUBLEAVES 8 /* CPUID 0xB/0x1F subleaves given the x2APIC ID in EDX */

enum vstate { V_RUNNING, V_DONE, V_TRIPLE };
static const char *vstate_name[] = {"running", "done", "triple-fault"};

struct vcpu {
  int index;
  int fd;
  struct kvm_run *run;
  pthread_t thread;
  int thread_started;
  atomic_int finished; /* thread left its loop */
  enum vstate state;
  int have_regs; /* regs recorded at the done exit */
  struct kvm_regs regs;
};

/* ---- global run state ---- */
static int g_kvm = -1, g_vm = -1;
static uint8_t *g_mem;
static size_t g_mem_size;
static int g_nvcpus = 1;
static struct vcpu *g_vcpus;
static int g_mmap_size;
static atomic_int g_stop;      /* set: every thread leaves KVM_RUN and stops */
static atomic_int g_triple;    /* some vCPU shut down */
static atomic_int g_rip_adv;   /* diagnostics: OUT exits seen with RIP already past the insn */
static atomic_int g_rip_at;    /* ... and with RIP at the insn */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_cond = PTHREAD_COND_INITIALIZER;
static int g_active; /* threads still running; protected by g_lock */
static char *g_console;
static size_t g_console_len, g_console_cap;
static char g_error[512]; /* first error message; protected by g_lock once threads run */
static pthread_barrier_t g_barrier;
static int g_debug; /* AVIC_KVM_DEBUG=1: diagnostics on stderr */

static char g_kernel[128] = "unknown";

/* ---- JSON output helpers ---- */
static void json_string(FILE *f, const unsigned char *s, size_t n) {
  fputc('"', f);
  for (size_t i = 0; i < n; i++) {
    unsigned c = s[i];
    if (c == '"') fputs("\\\"", f);
    else if (c == '\\') fputs("\\\\", f);
    else if (c < 0x20 || c >= 0x7f) fprintf(f, "\\u%04x", c); /* code point = byte value */
    else fputc((int)c, f);
  }
  fputc('"', f);
}

static double now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* Print {"status":"error",...} and exit 1. Used before the vCPU threads start. */
static void fail(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "avic-kvm: %s\n", msg);
  printf("{\"oracle\":\"kvm\",\"kernel\":");
  json_string(stdout, (const unsigned char *)g_kernel, strlen(g_kernel));
  printf(",\"status\":\"error\",\"error\":");
  json_string(stdout, (const unsigned char *)msg, strlen(msg));
  printf(",\"console\":\"\",\"vcpus\":[],\"elapsed_ms\":0}\n");
  exit(1);
}

static void fail_errno(const char *what) {
  int e = errno;
  fail("%s failed: %s (errno %d)", what, strerror(e), e);
}

/* Record an error from a vCPU thread and stop the run. */
static void thread_error(const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&g_lock);
  if (!g_error[0]) snprintf(g_error, sizeof g_error, "%s", msg);
  pthread_mutex_unlock(&g_lock);
  atomic_store(&g_stop, 1);
}

static void console_append(const uint8_t *p, size_t n) {
  pthread_mutex_lock(&g_lock);
  if (g_console_len + n > g_console_cap) {
    size_t cap = g_console_cap ? g_console_cap : 4096;
    while (cap < g_console_len + n) cap *= 2;
    char *nb = realloc(g_console, cap);
    if (nb) { g_console = nb; g_console_cap = cap; }
  }
  if (g_console_len + n <= g_console_cap) {
    memcpy(g_console + g_console_len, p, n);
    g_console_len += n;
  }
  pthread_mutex_unlock(&g_lock);
}

/* ---- guest memory layout (guest.md) ---- */
static void write_u64(uint64_t gpa, uint64_t v) { memcpy(g_mem + gpa, &v, 8); }

static void build_tables(void) {
  write_u64(GDT_ADDR + 0, 0);
  write_u64(GDT_ADDR + 8, 0x00af9a000000ffffull);  /* 0x08: 64-bit code */
  write_u64(GDT_ADDR + 16, 0x00cf92000000ffffull); /* 0x10: flat data */
  write_u64(PML4_ADDR, 0x3003);
  for (uint64_t i = 0; i < 4; i++) {
    write_u64(PDPT_ADDR + i * 8, 0x4003 + i * 0x1000);
    for (uint64_t j = 0; j < 512; j++)
      write_u64(PD_ADDR + i * 0x1000 + j * 8, ((i * 512 + j) << 21) | 0x83);
  }
}

/* ---- CPUID ---- */
static struct kvm_cpuid2 *g_cpuid; /* KVM_GET_SUPPORTED_CPUID */

static void get_supported_cpuid(void) {
  for (int nent = 128;; nent *= 2) {
    struct kvm_cpuid2 *c = calloc(1, sizeof *c + nent * sizeof(struct kvm_cpuid_entry2));
    if (!c) fail("out of memory");
    c->nent = nent;
    if (ioctl(g_kvm, KVM_GET_SUPPORTED_CPUID, c) == 0) { g_cpuid = c; return; }
    int e = errno;
    free(c);
    if (e != E2BIG || nent > 8192) { errno = e; fail_errno("KVM_GET_SUPPORTED_CPUID"); }
  }
}

static void set_cpuid(struct vcpu *v) {
  size_t sz = sizeof *g_cpuid + g_cpuid->nent * sizeof(struct kvm_cpuid_entry2);
  struct kvm_cpuid2 *c = malloc(sz + 2 * TOPO_SUBLEAVES * sizeof(struct kvm_cpuid_entry2));
  if (!c) fail("out of memory");
  memcpy(c, g_cpuid, sz);
  uint32_t id = (uint32_t)v->index;
  unsigned out = 0;
  for (unsigned i = 0; i < c->nent; i++) {
    struct kvm_cpuid_entry2 e = c->entries[i];
    if (e.function == 1) {
      e.ebx = (e.ebx & 0x00ffffffu) | ((id & 0xffu) << 24); /* initial APIC ID */
      e.ecx |= 1u << 21;                                     /* x2APIC */
      e.edx |= 1u << 9;                                      /* APIC */
    }
    /* x2APIC ID in every subleaf of 0xB (and of 0x1F, its successor, when present);
       KVM_GET_SUPPORTED_CPUID leaves a host value there. */
    if (e.function == 0xb || e.function == 0x1f) e.edx = id;
    if (e.function == 0x80000001) e.ecx &= ~(1u << 2); /* no SVM: nested is off */
    if (e.function == 0x8000000a) continue;            /* SVM leaf only with nested on */
    c->entries[out++] = e;
  }
  /* KVM only answers the subleaves its table has (here: leaf 0xB subleaf 0 only) and returns
     zeros for the others, while on hardware EDX carries the x2APIC ID in every subleaf of 0xB
     (and 0x1F). Add the missing subleaves 0..TOPO_SUBLEAVES-1 as "invalid level" entries
     (ECX[7:0] = subleaf, level type 0) with EDX = the x2APIC ID. */
  for (uint32_t fn = 0xb; fn <= 0x1f; fn += 0x1f - 0xb) {
    int present = 0;
    for (unsigned i = 0; i < out; i++) present |= c->entries[i].function == fn;
    if (!present) continue;
    for (uint32_t sub = 0; sub < TOPO_SUBLEAVES; sub++) {
      int have = 0;
      for (unsigned i = 0; i < out; i++) have |= c->entries[i].function == fn && c->entries[i].index == sub;
      if (have) continue;
      struct kvm_cpuid_entry2 e;
      memset(&e, 0, sizeof e);
      e.function = fn;
      e.index = sub;
      e.flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX;
      e.ecx = sub;
      e.edx = id;
      c->entries[out++] = e;
    }
  }
  c->nent = out;
  if (ioctl(v->fd, KVM_SET_CPUID2, c) < 0) fail_errno("KVM_SET_CPUID2");
  free(c);
}

/* ---- segments / registers ---- */
static struct kvm_segment mkseg(uint16_t sel, uint8_t type, int s, int db, int l) {
  struct kvm_segment g;
  memset(&g, 0, sizeof g);
  g.selector = sel;
  g.base = 0;
  g.limit = 0xffffffff; /* byte limit (g=1 with a 0xfffff descriptor limit) */
  g.type = type;
  g.present = 1;
  g.dpl = 0;
  g.db = (uint8_t)db;
  g.s = (uint8_t)s;
  g.l = (uint8_t)l;
  g.g = 1;
  return g;
}

static void set_start_state(struct vcpu *v, uint64_t load) {
  struct kvm_sregs s;
  if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) fail_errno("KVM_GET_SREGS");
  s.cs = mkseg(0x08, 0xb, 1, 0, 1);
  struct kvm_segment d = mkseg(0x10, 0x3, 1, 1, 0);
  s.ds = s.es = s.fs = s.gs = s.ss = d;
  /* The contract loads no TSS; KVM's sregs always carry a TR. Use what a CPU shows before any
     LTR in long mode would be unusable, but SVM/KVM want a present busy 64-bit TSS: selector 0,
     base 0, limit 0x67, type 0xb (busy 64-bit TSS), s=0. The guest cannot tell unless it
     executes STR (reads 0) or takes an interrupt that uses the IST/RSP0 (it cannot, CPL0, no IST
     in an IDT the guest did not write). */
  memset(&s.tr, 0, sizeof s.tr);
  s.tr.selector = 0;
  s.tr.base = 0;
  s.tr.limit = 0x67;
  s.tr.type = 0xb;
  s.tr.present = 1;
  memset(&s.ldt, 0, sizeof s.ldt);
  s.ldt.type = 0x2;
  s.ldt.unusable = 1;
  s.gdt.base = GDT_ADDR;
  s.gdt.limit = 0x17;
  s.idt.base = 0;
  s.idt.limit = 0;
  s.cr0 = 0x80010011ull;
  s.cr2 = 0;
  s.cr3 = PML4_ADDR;
  s.cr4 = 0x20;
  s.cr8 = 0;
  s.efer = 0x500;
  s.apic_base = v->index == 0 ? 0xfee00900ull : 0xfee00800ull;
  memset(s.interrupt_bitmap, 0, sizeof s.interrupt_bitmap);
  if (ioctl(v->fd, KVM_SET_SREGS, &s) < 0) fail_errno("KVM_SET_SREGS");

  struct kvm_regs r;
  memset(&r, 0, sizeof r);
  r.rip = load;
  r.rflags = 0x2;
  r.rdi = (uint64_t)v->index;
  r.rsp = STACK_TOP - (uint64_t)v->index * STACK_STEP;
  if (ioctl(v->fd, KVM_SET_REGS, &r) < 0) fail_errno("KVM_SET_REGS");

  struct kvm_mp_state mp = {.mp_state = KVM_MP_STATE_RUNNABLE};
  if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) fail_errno("KVM_SET_MP_STATE");
}

/* ---- LAPIC ---- */
static uint32_t lapic_reg(const struct kvm_lapic_state *l, unsigned off) {
  uint32_t v;
  memcpy(&v, l->regs + off, 4);
  return v;
}

/* Compare the vCPU's LAPIC with kvm_lapic_reset's state (guest.md); warn on stderr. */
static void verify_lapic(struct vcpu *v) {
  struct kvm_lapic_state l;
  if (ioctl(v->fd, KVM_GET_LAPIC, &l) < 0) fail_errno("KVM_GET_LAPIC");
  struct { const char *name; unsigned off; uint32_t want; } chk[] = {
      {"ID", 0x20, ((uint32_t)v->index & 0xffu) << 24},
      {"LVR", 0x30, 0x00050014},
      {"TPR", 0x80, 0},
      {"LDR", 0xd0, 0},
      {"DFR", 0xe0, 0xffffffff},
      {"SVR", 0xf0, 0xff},
      {"LVTT", 0x320, 0x10000},
      {"LVTTHMR", 0x330, 0x10000},
      {"LVTPC", 0x340, 0x10000},
      {"LVT0", 0x350, v->index == 0 ? 0x700u : 0x10000u},
      {"LVT1", 0x360, 0x10000},
      {"LVTERR", 0x370, 0x10000},
  };
  for (size_t i = 0; i < sizeof chk / sizeof chk[0]; i++) {
    uint32_t got = lapic_reg(&l, chk[i].off);
    if (got != chk[i].want)
      fprintf(stderr, "avic-kvm: warning: vCPU %d LAPIC %s = 0x%08x after setup, contract expects 0x%08x\n",
              v->index, chk[i].name, got, chk[i].want);
  }
  struct kvm_sregs s;
  if (ioctl(v->fd, KVM_GET_SREGS, &s) < 0) fail_errno("KVM_GET_SREGS");
  uint64_t want_base = v->index == 0 ? 0xfee00900ull : 0xfee00800ull;
  if (s.apic_base != want_base)
    fprintf(stderr, "avic-kvm: warning: vCPU %d APIC_BASE = 0x%llx after setup, contract expects 0x%llx\n",
            v->index, (unsigned long long)s.apic_base, (unsigned long long)want_base);
}

/* ---- RIP at an OUT exit ----
   The contract reports a done vCPU's RIP at its `out` instruction. Upstream KVM's fast PIO path
   (SVM/VMX intercepts) exits to userspace with RIP still at the OUT and advances it in
   complete_fast_pio_out on the next KVM_RUN; KVM's emulator path (x86_emulate_instruction)
   writes RIP back before a userspace OUT completes, so RIP is already past it. Measured on this
   machine's kvm-pvm (Linux 6.18.44-fc-v657): every OUT exit reports RIP AFTER the instruction,
   at CPL0 (emulated) and at CPL3 (native) alike (README.md, "RIP convention").
   Rather than hard-code either, decode the guest bytes: if an OUT to this port with this size
   ends exactly at RIP and none starts at RIP, RIP was advanced and we subtract that
   instruction's length; if one starts at RIP and none ends there, RIP is at the OUT. If both
   match (e.g. two identical `out` in a row) we follow the majority of the unambiguous OUT exits
   seen so far in this run (console writes count too), defaulting to "advanced", which is what
   this kernel does. OUTS (string output) is not decoded: RIP is reported as KVM gives it. */
static const uint8_t *guest_ptr(uint64_t gva, size_t n) {
  /* identity map below 4 GiB; only RAM is readable */
  if (gva >= g_mem_size || n > g_mem_size - gva) return NULL;
  return g_mem + gva;
}

/* Length of an OUT instruction at gva that writes `size` bytes to `port`, or 0. */
static int out_insn_len(uint64_t gva, unsigned port, unsigned size, uint16_t dx) {
  const uint8_t *p = guest_ptr(gva, 8); /* prefixes (<= 4) + opcode + imm8 */
  if (!p) return 0;
  int i = 0, opsize16 = 0, rex = 0;
  for (; i < 3; i++) { /* legacy prefixes we accept: 66 (operand size); then an optional REX */
    if (p[i] == 0x66) opsize16 = 1;
    else break;
  }
  if ((p[i] & 0xf0) == 0x40) { rex = p[i]; i++; }
  (void)rex; /* OUT ignores REX.W: the operand is AL or AX/EAX */
  uint8_t op = p[i];
  unsigned wide = opsize16 ? 2 : 4;
  if (op == 0xe6 && size == 1 && p[i + 1] == port) return i + 2;
  if (op == 0xe7 && size == wide && p[i + 1] == port) return i + 2;
  if (op == 0xee && size == 1 && dx == port) return i + 1;
  if (op == 0xef && size == wide && dx == port) return i + 1;
  return 0;
}

static uint64_t out_rip(const struct kvm_regs *r, unsigned port, unsigned size) {
  uint16_t dx = (uint16_t)r->rdx;
  int at = out_insn_len(r->rip, port, size, dx) != 0;
  int before = 0;
  for (int k = 1; k <= 6 && (uint64_t)k <= r->rip; k++)
    if (out_insn_len(r->rip - (uint64_t)k, port, size, dx) == k) { before = k; break; }
  if (before && !at) { atomic_fetch_add(&g_rip_adv, 1); return r->rip - (uint64_t)before; }
  if (at && !before) { atomic_fetch_add(&g_rip_at, 1); return r->rip; }
  if (at && before) {
    int adv = atomic_load(&g_rip_adv), not_adv = atomic_load(&g_rip_at);
    return adv >= not_adv ? r->rip - (uint64_t)before : r->rip;
  }
  if (g_debug) fprintf(stderr, "avic-kvm: OUT exit at RIP 0x%llx: no OUT instruction found around it\n",
                       (unsigned long long)r->rip);
  return r->rip;
}

/* ---- vCPU threads ---- */
static void on_kick(int sig) { (void)sig; }

static void thread_end(struct vcpu *v) {
  atomic_store(&v->finished, 1);
  pthread_mutex_lock(&g_lock);
  g_active--;
  pthread_cond_broadcast(&g_cond);
  pthread_mutex_unlock(&g_lock);
}

static void *vcpu_thread(void *arg) {
  struct vcpu *v = arg;
  struct kvm_run *run = v->run;
  pthread_barrier_wait(&g_barrier);
  while (!atomic_load(&g_stop)) {
    int r = ioctl(v->fd, KVM_RUN, 0);
    if (r < 0) {
      if (errno == EINTR || errno == EAGAIN) continue; /* kicked: the loop condition decides */
      thread_error("vCPU %d: KVM_RUN failed: %s (errno %d)", v->index, strerror(errno), errno);
      break;
    }
    switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint8_t *data = (uint8_t *)run + run->io.data_offset;
      size_t n = (size_t)run->io.size * run->io.count;
      if (run->io.direction == KVM_EXIT_IO_IN) {
        memset(data, 0xff, n);
        break;
      }
      struct kvm_regs regs;
      int need_regs = g_debug || run->io.port == PORT_DONE;
      if (need_regs && ioctl(v->fd, KVM_GET_REGS, &regs) < 0) {
        thread_error("vCPU %d: KVM_GET_REGS failed: %s", v->index, strerror(errno));
        break;
      }
      if (need_regs) {
        uint64_t rip = out_rip(&regs, run->io.port, run->io.size);
        if (g_debug)
          fprintf(stderr, "avic-kvm: vCPU %d OUT port 0x%x size %u: KVM RIP 0x%llx, out at 0x%llx\n", v->index,
                  run->io.port, run->io.size, (unsigned long long)regs.rip, (unsigned long long)rip);
        regs.rip = rip;
      } else {
        /* still learn the RIP convention from console writes */
        struct kvm_regs tmp;
        if (ioctl(v->fd, KVM_GET_REGS, &tmp) == 0) (void)out_rip(&tmp, run->io.port, run->io.size);
      }
      if (run->io.port == PORT_CONSOLE) {
        console_append(data, n); /* every byte written, whatever the access size */
      } else if (run->io.port == PORT_DONE) {
        v->regs = regs;
        v->have_regs = 1;
        v->state = V_DONE;
        thread_end(v);
        return NULL;
      }
      /* PORT_TRIGGER and every other port: ignored */
      break;
    }
    case KVM_EXIT_MMIO:
      if (!run->mmio.is_write) memset(run->mmio.data, 0xff, sizeof run->mmio.data);
      break;
    case KVM_EXIT_SHUTDOWN:
      v->state = V_TRIPLE;
      atomic_store(&g_triple, 1);
      atomic_store(&g_stop, 1);
      thread_end(v);
      return NULL;
    case KVM_EXIT_INTR:
      break;
    case KVM_EXIT_HLT:
      thread_error("vCPU %d: unexpected KVM_EXIT_HLT (hlt should block in the in-kernel irqchip)", v->index);
      break;
    case KVM_EXIT_FAIL_ENTRY:
      thread_error("vCPU %d: KVM_EXIT_FAIL_ENTRY, hardware_entry_failure_reason 0x%llx", v->index,
                   (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
      break;
    case KVM_EXIT_INTERNAL_ERROR: {
      char buf[256];
      int o = snprintf(buf, sizeof buf, "vCPU %d: KVM_EXIT_INTERNAL_ERROR suberror %u", v->index,
                       run->internal.suberror);
      for (unsigned j = 0; j < run->internal.ndata && j < 8 && o < (int)sizeof buf - 24; j++)
        o += snprintf(buf + o, sizeof buf - (size_t)o, " 0x%llx", (unsigned long long)run->internal.data[j]);
      thread_error("%s", buf);
      break;
    }
    case KVM_EXIT_SYSTEM_EVENT:
      thread_error("vCPU %d: unexpected KVM_EXIT_SYSTEM_EVENT type %u", v->index, run->system_event.type);
      break;
    default:
      thread_error("vCPU %d: unexpected KVM exit reason %u", v->index, run->exit_reason);
      break;
    }
  }
  /* Stopped from outside (timeout, another vCPU's triple fault or an error): one more KVM_RUN
     with immediate_exit set lets KVM finish a pending IN/MMIO read (complete_userspace_io)
     and return EINTR without running the guest, so the regs read at the end are consistent. */
  run->immediate_exit = 1;
  (void)ioctl(v->fd, KVM_RUN, 0);
  thread_end(v);
  return NULL;
}

/* Make every thread that is still in its loop leave KVM_RUN. immediate_exit covers the window
   between the thread's g_stop check and its KVM_RUN; the signal interrupts a running KVM_RUN. */
static void kick_all(void) {
  for (int i = 0; i < g_nvcpus; i++) {
    struct vcpu *v = &g_vcpus[i];
    if (!v->thread_started || atomic_load(&v->finished)) continue;
    v->run->immediate_exit = 1;
    pthread_kill(v->thread, SIGUSR1);
  }
}

/* ---- command line ---- */
static void usage_fail(const char *msg) {
  fprintf(stderr,
          "usage: avic-kvm [--vcpus N] [--memory MIB] [--timeout-ms T] [--load-address A] [--dump-lapic] IMAGE.bin\n");
  fail("%s", msg);
}

static unsigned long long parse_num(const char *opt, const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || !*s || *end || s[0] == '-') {
    char m[160];
    snprintf(m, sizeof m, "bad value for %s: '%s'", opt, s);
    usage_fail(m);
  }
  return v;
}

int main(int argc, char **argv) {
  struct utsname u;
  if (uname(&u) == 0) snprintf(g_kernel, sizeof g_kernel, "%s", u.release);
  const char *dbg = getenv("AVIC_KVM_DEBUG");
  g_debug = dbg && *dbg && strcmp(dbg, "0") != 0;

  unsigned long long memory_mib = 64, timeout_ms = 10000, load = 0x100000;
  int dump_lapic = 0;
  const char *image = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--dump-lapic")) { dump_lapic = 1; continue; }
    if (!strcmp(a, "--vcpus") || !strcmp(a, "--memory") || !strcmp(a, "--timeout-ms") ||
        !strcmp(a, "--load-address")) {
      if (i + 1 >= argc) { char m[96]; snprintf(m, sizeof m, "%s needs a value", a); usage_fail(m); }
      unsigned long long v = parse_num(a, argv[++i]);
      if (!strcmp(a, "--vcpus")) {
        if (v < 1 || v > MAX_VCPUS) usage_fail("--vcpus must be 1..512");
        g_nvcpus = (int)v;
      } else if (!strcmp(a, "--memory")) {
        if (v < 64 || v > 3072) usage_fail("--memory must be 64..3072 (MiB)");
        memory_mib = v;
      } else if (!strcmp(a, "--timeout-ms")) {
        if (v < 1 || v > 3600000) usage_fail("--timeout-ms must be 1..3600000");
        timeout_ms = v;
      } else {
        load = v;
      }
      continue;
    }
    if (a[0] == '-' && a[1]) { char m[160]; snprintf(m, sizeof m, "unknown option '%s'", a); usage_fail(m); }
    if (image) usage_fail("more than one IMAGE given");
    image = a;
  }
  if (!image) usage_fail("no IMAGE given");
  g_mem_size = (size_t)memory_mib << 20;

  /* ---- image ---- */
  FILE *f = fopen(image, "rb");
  if (!f) fail("cannot open image '%s': %s", image, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) < 0) fail("cannot stat image '%s': %s", image, strerror(errno));
  unsigned long long isize = (unsigned long long)st.st_size;
  if (load < TABLES_END)
    fail("load address 0x%llx overlaps the GDT/page tables at 0x1000..0x7fff (use 0x8000 or above)", load);
  if (load >= IMAGE_LIMIT || isize > IMAGE_LIMIT - load)
    fail("image '%s' (%llu bytes at 0x%llx) does not end below 16 MiB (0x1000000)", image, isize, load);

  /* ---- VM ---- */
  g_kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (g_kvm < 0) fail("cannot open /dev/kvm: %s", strerror(errno));
  int api = ioctl(g_kvm, KVM_GET_API_VERSION, 0);
  if (api != KVM_API_VERSION) fail("KVM_GET_API_VERSION is %d, expected %d", api, KVM_API_VERSION);
  int max_vcpus = ioctl(g_kvm, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
  if (max_vcpus > 0 && g_nvcpus > max_vcpus) fail("--vcpus %d exceeds KVM_CAP_MAX_VCPUS %d", g_nvcpus, max_vcpus);
  if (ioctl(g_kvm, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0) fail("KVM lacks KVM_CAP_IMMEDIATE_EXIT");
  g_mmap_size = ioctl(g_kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (g_mmap_size < 0) fail_errno("KVM_GET_VCPU_MMAP_SIZE");
  get_supported_cpuid();

  g_vm = ioctl(g_kvm, KVM_CREATE_VM, 0);
  if (g_vm < 0) fail_errno("KVM_CREATE_VM");
  if (ioctl(g_vm, KVM_CREATE_IRQCHIP, 0) < 0) fail_errno("KVM_CREATE_IRQCHIP");
  struct kvm_enable_cap cap;
  memset(&cap, 0, sizeof cap);
  cap.cap = KVM_CAP_X2APIC_API;
  cap.args[0] = KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK;
  if (ioctl(g_vm, KVM_ENABLE_CAP, &cap) < 0) fail_errno("KVM_ENABLE_CAP(KVM_CAP_X2APIC_API)");

  g_mem = mmap(NULL, g_mem_size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (g_mem == MAP_FAILED) fail_errno("mmap of guest RAM");
  build_tables();
  size_t got = fread(g_mem + load, 1, (size_t)isize, f);
  if (got != isize) fail("short read of image '%s' (%zu of %llu bytes)", image, got, isize);
  fclose(f);
  struct kvm_userspace_memory_region region = {
      .slot = 0, .flags = 0, .guest_phys_addr = 0, .memory_size = g_mem_size, .userspace_addr = (uint64_t)(uintptr_t)g_mem};
  if (ioctl(g_vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) fail_errno("KVM_SET_USER_MEMORY_REGION");

  g_vcpus = calloc((size_t)g_nvcpus, sizeof *g_vcpus);
  if (!g_vcpus) fail("out of memory");
  for (int i = 0; i < g_nvcpus; i++) {
    struct vcpu *v = &g_vcpus[i];
    v->index = i;
    v->fd = ioctl(g_vm, KVM_CREATE_VCPU, (unsigned long)i);
    if (v->fd < 0) { char w[64]; snprintf(w, sizeof w, "KVM_CREATE_VCPU(%d)", i); fail_errno(w); }
    v->run = mmap(NULL, (size_t)g_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
    if (v->run == MAP_FAILED) fail_errno("mmap of kvm_run");
  }
  for (int i = 0; i < g_nvcpus; i++) {
    set_cpuid(&g_vcpus[i]);
    set_start_state(&g_vcpus[i], load);
    verify_lapic(&g_vcpus[i]);
  }

  /* ---- run ---- */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_kick; /* no SA_RESTART: KVM_RUN returns EINTR */
  sigemptyset(&sa.sa_mask);
  if (sigaction(SIGUSR1, &sa, NULL) < 0) fail_errno("sigaction");
  if (pthread_barrier_init(&g_barrier, NULL, (unsigned)g_nvcpus + 1)) fail("pthread_barrier_init failed");
  g_active = g_nvcpus;
  for (int i = 0; i < g_nvcpus; i++) {
    int e = pthread_create(&g_vcpus[i].thread, NULL, vcpu_thread, &g_vcpus[i]);
    if (e) {
      /* cannot release the barrier safely: report and exit */
      errno = e;
      fail_errno("pthread_create");
    }
    g_vcpus[i].thread_started = 1;
  }
  pthread_barrier_wait(&g_barrier);
  double t0 = now_ms();
  struct timespec deadline;
  clock_gettime(CLOCK_REALTIME, &deadline);
  deadline.tv_sec += (time_t)(timeout_ms / 1000);
  deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline.tv_nsec >= 1000000000L) { deadline.tv_sec++; deadline.tv_nsec -= 1000000000L; }

  int timed_out = 0;
  pthread_mutex_lock(&g_lock);
  while (g_active > 0 && !atomic_load(&g_stop)) {
    int e = pthread_cond_timedwait(&g_cond, &g_lock, &deadline);
    if (e == ETIMEDOUT) { timed_out = g_active > 0 && !atomic_load(&g_stop); break; }
  }
  pthread_mutex_unlock(&g_lock);
  double t1 = now_ms();
  atomic_store(&g_stop, 1);
  /* kick until every thread has left its loop */
  for (;;) {
    pthread_mutex_lock(&g_lock);
    int active = g_active;
    pthread_mutex_unlock(&g_lock);
    if (active == 0) break;
    kick_all();
    usleep(1000);
  }
  for (int i = 0; i < g_nvcpus; i++) pthread_join(g_vcpus[i].thread, NULL);

  /* ---- report ---- */
  const char *status;
  if (g_error[0]) status = "error";
  else if (atomic_load(&g_triple)) status = "triple-fault";
  else if (timed_out) status = "timeout";
  else status = "done";
  /* a run stopped by another vCPU's triple fault or error is not "done" even if no timeout */

  printf("{\"oracle\":\"kvm\",\"kernel\":");
  json_string(stdout, (const unsigned char *)g_kernel, strlen(g_kernel));
  printf(",\"status\":\"%s\"", status);
  if (g_error[0]) {
    printf(",\"error\":");
    json_string(stdout, (const unsigned char *)g_error, strlen(g_error));
  }
  printf(",\"console\":");
  json_string(stdout, (const unsigned char *)(g_console ? g_console : ""), g_console_len);
  printf(",\"vcpus\":[");
  for (int i = 0; i < g_nvcpus; i++) {
    struct vcpu *v = &g_vcpus[i];
    struct kvm_regs r;
    if (v->have_regs) r = v->regs;
    else if (ioctl(v->fd, KVM_GET_REGS, &r) < 0) memset(&r, 0, sizeof r);
    printf("%s{\"id\":%d,\"state\":\"%s\",\"regs\":{", i ? "," : "", i, vstate_name[v->state]);
    const struct { const char *n; unsigned long long v; } rr[] = {
        {"rax", r.rax}, {"rbx", r.rbx}, {"rcx", r.rcx}, {"rdx", r.rdx}, {"rsi", r.rsi}, {"rdi", r.rdi},
        {"rbp", r.rbp}, {"rsp", r.rsp}, {"r8", r.r8},   {"r9", r.r9},   {"r10", r.r10}, {"r11", r.r11},
        {"r12", r.r12}, {"r13", r.r13}, {"r14", r.r14}, {"r15", r.r15}, {"rip", r.rip}, {"rflags", r.rflags}};
    for (size_t k = 0; k < sizeof rr / sizeof rr[0]; k++)
      printf("%s\"%s\":\"0x%016llx\"", k ? "," : "", rr[k].n, rr[k].v);
    printf("}");
    if (dump_lapic) {
      struct kvm_lapic_state l;
      struct kvm_sregs s;
      if (ioctl(v->fd, KVM_GET_LAPIC, &l) == 0 && ioctl(v->fd, KVM_GET_SREGS, &s) == 0) {
        printf(",\"lapic\":{\"apicBase\":\"0x%016llx\"", (unsigned long long)s.apic_base);
        const struct { const char *n; unsigned off; } lr[] = {
            {"id", 0x20},   {"lvr", 0x30},  {"tpr", 0x80},   {"ppr", 0xa0},  {"ldr", 0xd0},   {"dfr", 0xe0},
            {"svr", 0xf0},  {"icr", 0x300}, {"icr2", 0x310}, {"lvtt", 0x320}, {"lvt0", 0x350}, {"lvt1", 0x360},
            {"lvterr", 0x370}};
        for (size_t k = 0; k < sizeof lr / sizeof lr[0]; k++)
          printf(",\"%s\":\"0x%08x\"", lr[k].n, lapic_reg(&l, lr[k].off));
        printf("}");
      }
    }
    printf("}");
  }
  printf("],\"elapsed_ms\":%.0f}\n", t1 - t0);
  if (g_debug)
    fprintf(stderr, "avic-kvm: OUT exits with RIP past the insn: %d, at the insn: %d\n", atomic_load(&g_rip_adv),
            atomic_load(&g_rip_at));
  fflush(stdout);
  if (!strcmp(status, "error")) return 1;
  return strcmp(status, "done") ? 2 : 0;
}
