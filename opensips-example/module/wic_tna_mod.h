/*
 * wic_tna module for OpenSIPS - declarations shared by its files.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#ifndef _WIC_TNA_MOD_H_
#define _WIC_TNA_MOD_H_

#include <stddef.h>

#include "../../parser/msg_parser.h"
#include "../../mi/mi.h"

#include <wic_tna.h>

/* MI commands, defined in wic_tna_mi.c */
extern const mi_export_t wic_tna_mi_cmds[];

/* The context of this process, created on first use (child_init creates it
 * in every process). NULL when the configuration cannot be loaded; the
 * error has then been logged. */
wic_tna_ctx *wic_tna_mod_ctx(void);

/* Copies the library's last error message of this thread into buf
 * (NUL-terminated, truncated if needed) and returns buf. */
const char *wic_tna_mod_last_error(char *buf, size_t buf_len);

/* The registration expiry of a REGISTER (wic_tna_register.c): checks
 * every Contact and the Expires header with OpenSIPS's parsers, sets
 * *requested (-1: a contact asks for no expiry, 0: a de-registration,
 * else the largest asked for) and, when cap >= 0, rewrites every expiry
 * above cap to cap (adding Expires: cap where a contact relies on the
 * registrar's default). Returns 0, or -1 for a malformed request (400). */
int wic_tna_register_expiry(struct sip_msg *msg, int cap, int *requested);

#endif
