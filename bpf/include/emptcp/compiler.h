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
 */
#ifndef __EMPTCP_COMPILER_H
#define __EMPTCP_COMPILER_H

#define __emptcp_inline inline __attribute__((always_inline))

#define EMPTCP_BUILD_BUG_ON(cond) _Static_assert(!(cond), "build bug: " #cond)

#define emptcp_likely(x)   __builtin_expect(!!(x), 1)
#define emptcp_unlikely(x) __builtin_expect(!!(x), 0)

#endif /* __EMPTCP_COMPILER_H */
