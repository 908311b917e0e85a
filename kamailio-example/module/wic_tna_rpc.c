/*
 * wic_tna module - RPC commands
 *
 *   kamcmd wic_tna.reload          re-read the configuration in every worker
 *   kamcmd wic_tna.stats           counters (JSON)
 *   kamcmd wic_tna.bar <iss>       reject every token of this issuer (403)
 *   kamcmd wic_tna.unbar <iss>     accept it again
 *   kamcmd wic_tna.version         library version
 *
 * The commands run in the RPC process and act on the shared state created in
 * mod_init; every SIP worker sees the change on its next check (within a
 * second). A reload validates the file first: a broken one is refused with
 * the library's message and the old configuration stays in force.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/str.h"
#include "../../core/dprint.h"
#include "../../core/rpc.h"
#include "../../core/mem/mem.h"

#include "wic_tna_mod.h"

static const char *wic_tna_rpc_reload_doc[2] = {
		"Reload the wic-tna configuration (all workers; a broken file is "
		"refused and the old one stays)",
		NULL};
static const char *wic_tna_rpc_stats_doc[2] = {
		"wic-tna counters as JSON", NULL};
static const char *wic_tna_rpc_bar_doc[2] = {
		"Bar an issuer (authorization entity): its tokens get 403", NULL};
static const char *wic_tna_rpc_unbar_doc[2] = {
		"Remove an issuer from the barred list", NULL};
static const char *wic_tna_rpc_version_doc[2] = {
		"Version of libwic_tna", NULL};

static wic_tna_ctx *wic_tna_rpc_ctx(rpc_t *rpc, void *c)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();

	if(ctx == NULL) {
		rpc->fault(c, 500, "wic-tna configuration not loaded (see the log)");
	}
	return ctx;
}

static void wic_tna_rpc_reload(rpc_t *rpc, void *c)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	char ebuf[1024];

	if((ctx = wic_tna_rpc_ctx(rpc, c)) == NULL)
		return;
	rc = wic_tna_ctx_reload(ctx);
	if(rc != WIC_TNA_STATUS_OK) {
		wic_tna_mod_last_error(ebuf, sizeof(ebuf));
		LM_ERR("reload refused, old configuration kept: %s\n", ebuf);
		rpc->fault(c, (rc == WIC_TNA_STATUS_CONFIG_ERROR) ? 400 : 500,
				"reload refused, old configuration kept: %s", ebuf);
		return;
	}
	LM_NOTICE("configuration reloaded\n");
	rpc->rpl_printf(c, "ok");
}

static void wic_tna_rpc_stats(rpc_t *rpc, void *c)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	char sbuf[4096];
	char *buf = sbuf;
	size_t len = 0;
	char ebuf[512];

	if((ctx = wic_tna_rpc_ctx(rpc, c)) == NULL)
		return;
	rc = wic_tna_ctx_stats_json(ctx, buf, sizeof(sbuf), &len);
	if(rc == WIC_TNA_STATUS_BUFFER_TOO_SMALL) {
		buf = (char *)pkg_malloc(len + 1);
		if(buf == NULL) {
			PKG_MEM_ERROR;
			rpc->fault(c, 500, "out of memory");
			return;
		}
		rc = wic_tna_ctx_stats_json(ctx, buf, len + 1, &len);
	}
	if(rc != WIC_TNA_STATUS_OK) {
		rpc->fault(c, 500, "stats failed: %s",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
	} else {
		rpc->rpl_printf(c, "%.*s", (int)len, buf);
	}
	if(buf != sbuf)
		pkg_free(buf);
}

static void wic_tna_rpc_set_barred(rpc_t *rpc, void *c, bool barred)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	str iss = STR_NULL;
	char ebuf[512];

	if(rpc->scan(c, "S", &iss) < 1 || iss.s == NULL || iss.len <= 0) {
		rpc->fault(c, 400, "issuer expected");
		return;
	}
	if((ctx = wic_tna_rpc_ctx(rpc, c)) == NULL)
		return;
	rc = wic_tna_ctx_set_barred(ctx, iss.s, (size_t)iss.len, barred);
	if(rc == WIC_TNA_STATUS_NOT_FOUND) {
		rpc->fault(c, 404, "unknown issuer: %.*s", iss.len, iss.s);
		return;
	}
	if(rc != WIC_TNA_STATUS_OK) {
		rpc->fault(c, 500, "%s failed: %s", barred ? "bar" : "unbar",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
		return;
	}
	LM_NOTICE("issuer %.*s %s\n", iss.len, iss.s,
			barred ? "barred" : "no longer barred");
	rpc->rpl_printf(c, "%s %.*s", barred ? "barred" : "unbarred", iss.len,
			iss.s);
}

static void wic_tna_rpc_bar(rpc_t *rpc, void *c)
{
	wic_tna_rpc_set_barred(rpc, c, true);
}

static void wic_tna_rpc_unbar(rpc_t *rpc, void *c)
{
	wic_tna_rpc_set_barred(rpc, c, false);
}

static void wic_tna_rpc_version(rpc_t *rpc, void *c)
{
	rpc->rpl_printf(c, "%s", wic_tna_version());
}

/* clang-format off */
rpc_export_t wic_tna_rpc_cmds[] = {
	{"wic_tna.reload",  wic_tna_rpc_reload,  wic_tna_rpc_reload_doc,  0},
	{"wic_tna.stats",   wic_tna_rpc_stats,   wic_tna_rpc_stats_doc,   0},
	{"wic_tna.bar",     wic_tna_rpc_bar,     wic_tna_rpc_bar_doc,     0},
	{"wic_tna.unbar",   wic_tna_rpc_unbar,   wic_tna_rpc_unbar_doc,   0},
	{"wic_tna.version", wic_tna_rpc_version, wic_tna_rpc_version_doc, 0},
	{0, 0, 0, 0}
};
/* clang-format on */
