/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * Compiler glue shared by every emptcp BPF object.
 *
 * API:
 *   __emptcp_inline             force inlining: each bpf-to-bpf call costs ~9 ns
 *                               on the reference VM (docs/decisions), so helpers
 *                               on the per-packet path are always inlined.
 *   EMPTCP_BUILD_BUG_ON(cond)   fail the build, not the verifier.
 *   emptcp_likely / _unlikely   branch layout hints.
 *   EMPTCP_CTX_FENCE(p)         makes context pointer p opaque to the compiler
 *                               before its fields are read.
 */
#ifndef __EMPTCP_COMPILER_H
#define __EMPTCP_COMPILER_H

#define __emptcp_inline inline __attribute__((always_inline))

#define EMPTCP_BUILD_BUG_ON(cond) _Static_assert(!(cond), "build bug: " #cond)

#define emptcp_likely(x)   __builtin_expect(!!(x), 1)
#define emptcp_unlikely(x) __builtin_expect(!!(x), 0)

/*
 * clang 14 may compute the address of a context field (skb + 80: data_end)
 * once, spill it, and load through it at several call sites; the verifier
 * refuses loads through a context pointer with an offset ("dereference of
 * modified ctx ptr", kernel 6.18). Readers of data / data_end fence the
 * pointer first, so that each site computes its own field access.
 */
#define EMPTCP_CTX_FENCE(p) asm volatile("" : "+r"(p))

#endif /* __EMPTCP_COMPILER_H */
