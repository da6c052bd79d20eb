/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * The generation's configuration (abi.h, struct emptcp_config), written by
 * the control plane before load and never changed afterwards: the verifier
 * sees every field as a constant. Its own header so that actors can read
 * their generation's number (set_backup's quota) as well as the engine.
 */
#ifndef __EMPTCP_LIB_CONFIG_H
#define __EMPTCP_LIB_CONFIG_H

#include <emptcp/abi.h>

const volatile struct emptcp_config emptcp_cfg = { .abi_version = EMPTCP_ABI_VERSION };

#endif /* __EMPTCP_LIB_CONFIG_H */
