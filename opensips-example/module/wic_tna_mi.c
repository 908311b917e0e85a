/*
 * wic_tna module for OpenSIPS - MI commands
 *
 *   opensips-cli -x mi wic_tna_reload          re-read the configuration
 *   opensips-cli -x mi wic_tna_bar <issuer>    reject every token of it (403)
 *   opensips-cli -x mi wic_tna_unbar <issuer>  accept it again
 *   opensips-cli -x mi wic_tna_stats           checks per reason (total) and per issuer
 *
 * The commands run in the MI process (mi_fifo, mi_http, ...) and act on the
 * shared state created in mod_init; every SIP worker sees the change on its
 * next check. A reload validates the file first: a broken one is refused
 * with the library's message and the old configuration stays in force.
 * Errors are MI errors: 400 a bad file, 404 an unknown issuer, 500 else.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "../../dprint.h"
#include "../../mi/mi.h"

#include "wic_tna_mod.h"

static wic_tna_ctx *wic_tna_mi_ctx(mi_response_t **err)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();

	if(ctx == NULL)
		*err = init_mi_error(
				500, MI_SSTR("wic-tna configuration not loaded (see the log)"));
	return ctx;
}

static mi_response_t *mi_wic_tna_reload(
		const mi_params_t *params, struct mi_handler *async_hdl)
{
	wic_tna_ctx *ctx;
	mi_response_t *err = NULL;
	wic_tna_status rc;
	char ebuf[1024];
	char msg[1200];
	int len;

	if((ctx = wic_tna_mi_ctx(&err)) == NULL)
		return err;
	rc = wic_tna_ctx_reload(ctx);
	if(rc != WIC_TNA_STATUS_OK) {
		wic_tna_mod_last_error(ebuf, sizeof(ebuf));
		LM_ERR("reload refused, old configuration kept: %s\n", ebuf);
		len = snprintf(msg, sizeof(msg),
				"reload refused, old configuration kept: %s", ebuf);
		if(len < 0)
			len = 0;
		if(len >= (int)sizeof(msg))
			len = (int)sizeof(msg) - 1;
		return init_mi_error(
				(rc == WIC_TNA_STATUS_CONFIG_ERROR) ? 400 : 500, msg, len);
	}
	LM_NOTICE("configuration reloaded\n");
	return init_mi_result_ok();
}

static mi_response_t *wic_tna_mi_set_barred(
		const mi_params_t *params, int barred)
{
	wic_tna_ctx *ctx;
	mi_response_t *err = NULL;
	mi_response_t *resp;
	mi_item_t *obj;
	wic_tna_status rc;
	str iss = {NULL, 0};
	char ebuf[512];
	char msg[700];
	int len;

	if(get_mi_string_param(params, "issuer", &iss.s, &iss.len) < 0
			|| iss.s == NULL || iss.len <= 0)
		return init_mi_param_error();
	if((ctx = wic_tna_mi_ctx(&err)) == NULL)
		return err;
	rc = wic_tna_ctx_set_barred(ctx, iss.s, (size_t)iss.len, barred);
	if(rc == WIC_TNA_STATUS_NOT_FOUND) {
		len = snprintf(msg, sizeof(msg), "unknown issuer: %.*s",
				iss.len > 512 ? 512 : iss.len, iss.s);
		return init_mi_error(404, msg, len);
	}
	if(rc != WIC_TNA_STATUS_OK) {
		len = snprintf(msg, sizeof(msg), "%s failed: %s",
				barred ? "bar" : "unbar",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
		if(len < 0)
			len = 0;
		if(len >= (int)sizeof(msg))
			len = (int)sizeof(msg) - 1;
		return init_mi_error(500, msg, len);
	}
	LM_NOTICE("issuer %.*s %s\n", iss.len, iss.s,
			barred ? "barred" : "no longer barred");
	resp = init_mi_result_object(&obj);
	if(resp == NULL)
		return NULL;
	if(add_mi_string(obj, MI_SSTR("issuer"), iss.s, iss.len) < 0
			|| add_mi_bool(obj, MI_SSTR("barred"), barred) < 0) {
		free_mi_response(resp);
		return NULL;
	}
	return resp;
}

static mi_response_t *mi_wic_tna_bar(
		const mi_params_t *params, struct mi_handler *async_hdl)
{
	return wic_tna_mi_set_barred(params, 1);
}

static mi_response_t *mi_wic_tna_unbar(
		const mi_params_t *params, struct mi_handler *async_hdl)
{
	return wic_tna_mi_set_barred(params, 0);
}

/* {"<issuer>": {"<reason>": n, ...}, ...}: the counters of each issuer of
 * the configuration in force (so also one added by a reload, which gets
 * its wic_tna_issuer: statistics only at the next restart) and "-", the
 * reasons with a count of 0 left out */
static int wic_tna_mi_issuers(wic_tna_ctx *ctx, mi_item_t *obj)
{
	mi_item_t *issuers, *one;
	size_t ni = 0, nr = wic_tna_reason_count(), i, r, len;
	wic_tna_str name;
	uint64_t v;
	char iss[1024];
	char ebuf[512];

	issuers = add_mi_object(obj, MI_SSTR("issuers"));
	if(issuers == NULL)
		return -1;
	if(wic_tna_ctx_issuer_count(ctx, &ni) != WIC_TNA_STATUS_OK)
		goto lib_error;
	for(i = 0; i < ni; i++) {
		if(wic_tna_ctx_issuer_name(ctx, i, iss, sizeof(iss), &len)
				!= WIC_TNA_STATUS_OK)
			goto lib_error; /* also a reload between count and name */
		one = add_mi_object(issuers, iss, (int)len);
		if(one == NULL)
			return -1;
		for(r = 0; r < nr; r++) {
			name = wic_tna_reason_name(r);
			if(name.len == 0 || name.len > 0x7fffffff)
				continue;
			if(wic_tna_ctx_issuer_reason_total(ctx, iss, len, r, &v)
					!= WIC_TNA_STATUS_OK)
				goto lib_error;
			if(v != 0
					&& add_mi_number(one, (char *)name.ptr, (int)name.len,
							   (double)v)
							   < 0)
				return -1;
		}
	}
	return 0;
lib_error:
	LM_ERR("stats: %s\n", wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
	return -1;
}

/* {"checks": {"<reason>": n, ...}, "total": n, "issuers": {...},
 * "version": "..."}: the counters of every reason (wic_tna_reason_name)
 * summed over every issuer and process sharing the state, the same
 * numbers as the wic_tna: statistics; per issuer, as wic_tna_mi_issuers */
static mi_response_t *mi_wic_tna_stats(
		const mi_params_t *params, struct mi_handler *async_hdl)
{
	wic_tna_ctx *ctx;
	mi_response_t *err = NULL;
	mi_response_t *resp;
	mi_item_t *obj, *checks;
	size_t i, n;
	uint64_t v, total = 0;
	wic_tna_str name;
	char ebuf[512];

	if((ctx = wic_tna_mi_ctx(&err)) == NULL)
		return err;
	resp = init_mi_result_object(&obj);
	if(resp == NULL)
		return NULL;
	checks = add_mi_object(obj, MI_SSTR("checks"));
	if(checks == NULL)
		goto error;
	n = wic_tna_reason_count();
	for(i = 0; i < n; i++) {
		name = wic_tna_reason_name(i);
		if(name.len == 0 || name.len > 0x7fffffff)
			continue;
		if(wic_tna_ctx_reason_total(ctx, i, &v) != WIC_TNA_STATUS_OK) {
			LM_ERR("stats: %s\n", wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
			goto error;
		}
		total += v;
		if(add_mi_number(checks, (char *)name.ptr, (int)name.len, (double)v)
				< 0)
			goto error;
	}
	if(add_mi_number(obj, MI_SSTR("total"), (double)total) < 0
			|| wic_tna_mi_issuers(ctx, obj) < 0
			|| add_mi_string(obj, MI_SSTR("version"), (char *)wic_tna_version(),
					   (int)strlen(wic_tna_version()))
					   < 0)
		goto error;
	return resp;
error:
	free_mi_response(resp);
	return init_mi_error(500, MI_SSTR("stats: cannot build the reply"));
}

/* clang-format off */
const mi_export_t wic_tna_mi_cmds[] = {
	{"wic_tna_reload", "re-read the wic-tna configuration in every process "
		"(a broken file is refused, the old one stays)", 0, 0, {
		{mi_wic_tna_reload, {0}},
		{EMPTY_MI_RECIPE}}
	},
	{"wic_tna_bar", "bar an issuer (authorization entity): its tokens get "
		"403 issuer_barred", 0, 0, {
		{mi_wic_tna_bar, {"issuer", 0}},
		{EMPTY_MI_RECIPE}}
	},
	{"wic_tna_unbar", "remove an issuer from the barred list", 0, 0, {
		{mi_wic_tna_unbar, {"issuer", 0}},
		{EMPTY_MI_RECIPE}}
	},
	{"wic_tna_stats", "wic-tna counters: checks per reason (ok: accepted) "
		"over every issuer and process, their total", 0, 0, {
		{mi_wic_tna_stats, {0}},
		{EMPTY_MI_RECIPE}}
	},
	{EMPTY_MI_EXPORT}
};
/* clang-format on */
