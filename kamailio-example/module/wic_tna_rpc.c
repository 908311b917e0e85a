/*
 * wic_tna module - RPC commands
 *
 *   kamcmd wic_tna.reload          re-read the configuration in every worker
 *   kamcmd wic_tna.stats           counters and state (a structure)
 *   kamcmd wic_tna.bar <iss>       reject every token of this issuer (403)
 *   kamcmd wic_tna.unbar <iss>     accept it again
 *   kamcmd wic_tna.version         library version
 *
 * The commands run in the RPC process and act on the shared state created in
 * mod_init; every SIP worker sees the change on its next check (within a
 * second). A reload validates the file first: a broken one is refused with
 * the library's message and the old configuration stays in force.
 *
 * wic_tna.stats gives the library's stats (wic_tna_ctx_stats_json) as an
 * RPC structure, the same tree with the same names: kamcmd prints it and a
 * JSON-RPC client (module jsonrpcs, kamcli, kamctl rpc) gets the JSON
 * object back. The library's JSON is read with Kamailio's own parser
 * (core/utils/srjson).
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
#include "../../core/utils/srjson.h"

#include "wic_tna_mod.h"

static const char *wic_tna_rpc_reload_doc[2] = {
		"Reload the wic-tna configuration (all workers; a broken file is "
		"refused and the old one stays)",
		NULL};
static const char *wic_tna_rpc_stats_doc[2] = {
		"wic-tna counters and state as a structure: counters per issuer and "
		"reason (outcomes), barred issuers, reload generation, remote trust "
		"(remote), replay table (replay), fleet state (fleet)",
		NULL};
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

/* The deepest nesting the reply follows (the stats are three levels
 * deep: remote -> issuer -> counter); an object or array nested deeper is
 * given as its JSON text. */
#define WIC_TNA_RPC_MAX_DEPTH 8

/* add v as the member name of the structure h, or, name NULL, as an
 * element of the array h */
#define WIC_TNA_RPC_ADD(rpc, h, name, fmt, val)                    \
	((name) != NULL ? (rpc)->struct_add((h), (fmt), (name), (val)) \
					: (rpc)->array_add((h), (fmt), (val)))

static int wic_tna_rpc_add_json(rpc_t *rpc, srjson_doc_t *doc, void *h,
		const char *name, srjson_t *v, int depth);

/* the members of an object (in) or the elements of an array (in) into the
 * structure or array h */
static int wic_tna_rpc_add_children(rpc_t *rpc, srjson_doc_t *doc, void *h,
		srjson_t *in, int is_object, int depth)
{
	srjson_t *it;

	for(it = in->child; it != NULL; it = it->next) {
		if(wic_tna_rpc_add_json(rpc, doc, h,
				   is_object ? (it->string ? it->string : "") : NULL, it, depth)
				< 0)
			return -1;
	}
	return 0;
}

static int wic_tna_rpc_add_json(rpc_t *rpc, srjson_doc_t *doc, void *h,
		const char *name, srjson_t *v, int depth)
{
	void *sub = NULL;
	double d;
	long long ll;
	char *text;
	int rc;

	switch(v->type & 255) {
		case srjson_False:
		case srjson_True:
			return WIC_TNA_RPC_ADD(
					rpc, h, name, "b", ((v->type & 255) == srjson_True));
		case srjson_NULL:
			/* JSON-RPC: null; kamcmd: <null string> */
			return WIC_TNA_RPC_ADD(rpc, h, name, "s", (char *)NULL);
		case srjson_Number:
			d = v->valuedouble;
			if(d >= -9.0e18 && d <= 9.0e18) {
				ll = (long long)d;
				if((double)ll == d) {
					if(ll >= -0x7fffffffLL - 1 && ll <= 0x7fffffffLL)
						return WIC_TNA_RPC_ADD(rpc, h, name, "d", (int)ll);
					/* binrpc has no 64-bit integer: a double there */
					return WIC_TNA_RPC_ADD(rpc, h, name, "L", ll);
				}
			}
			return WIC_TNA_RPC_ADD(rpc, h, name, "f", d);
		case srjson_String:
			return WIC_TNA_RPC_ADD(
					rpc, h, name, "s", v->valuestring ? v->valuestring : "");
		case srjson_Object:
		case srjson_Array:
			if(depth >= WIC_TNA_RPC_MAX_DEPTH) {
				text = srjson_PrintUnformatted(doc, v);
				if(text == NULL)
					return -1;
				rc = WIC_TNA_RPC_ADD(rpc, h, name, "s", text);
				doc->free_fn(text);
				return rc;
			}
			if((v->type & 255) == srjson_Object) {
				if(WIC_TNA_RPC_ADD(rpc, h, name, "{", &sub) < 0 || sub == NULL)
					return -1;
				return wic_tna_rpc_add_children(rpc, doc, sub, v, 1, depth + 1);
			}
			if(WIC_TNA_RPC_ADD(rpc, h, name, "[", &sub) < 0 || sub == NULL)
				return -1;
			return wic_tna_rpc_add_children(rpc, doc, sub, v, 0, depth + 1);
	}
	LM_ERR("stats: JSON value of unknown type %d\n", v->type);
	return -1;
}

static void wic_tna_rpc_stats(rpc_t *rpc, void *c)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	char sbuf[4096];
	char *buf = sbuf;
	size_t len = 0;
	char ebuf[512];
	srjson_doc_t doc;
	void *h = NULL;

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
		goto done;
	}
	srjson_InitDoc(&doc, NULL);
	doc.root = srjson_Parse(&doc, buf);
	if(doc.root == NULL || (doc.root->type & 255) != srjson_Object) {
		LM_ERR("stats: the library's JSON is not an object: %.*s\n",
				(int)(len > 256 ? 256 : len), buf);
		rpc->fault(c, 500, "stats: unexpected reply from the library");
	} else if(rpc->add(c, "{", &h) < 0 || h == NULL
			  || wic_tna_rpc_add_children(rpc, &doc, h, doc.root, 1, 1) < 0) {
		rpc->fault(c, 500, "stats: cannot build the reply");
	}
	srjson_DestroyDoc(&doc);
done:
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
