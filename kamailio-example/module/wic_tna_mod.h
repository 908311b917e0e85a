/*
 * wic_tna module - Trusted Node Authentication for WebRTC IMS Client access
 *
 * Declarations shared by wic_tna_mod.c and wic_tna_rpc.c.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#ifndef _WIC_TNA_MOD_H_
#define _WIC_TNA_MOD_H_

#include <stddef.h>

#include "../../core/rpc.h"

#include <wic_tna.h>

/* RPC commands, defined in wic_tna_rpc.c */
extern rpc_export_t wic_tna_rpc_cmds[];

/* The context of this process, created on first use (child_init creates it
 * for the SIP workers and the RPC processes). NULL when the configuration
 * cannot be loaded; the error has then been logged. */
wic_tna_ctx *wic_tna_mod_ctx(void);

/* Copies the library's last error message of this thread into buf
 * (NUL-terminated, truncated if needed) and returns buf. */
const char *wic_tna_mod_last_error(char *buf, size_t buf_len);

#endif
