/*
 * wic_tna module for OpenSIPS - Trusted Node Authentication for WebRTC IMS
 * Client access
 *
 * A thin OpenSIPS shell over libwic_tna (include/wic_tna.h), the same
 * functions, parameters and $wic_tna(name) variable as the Kamailio module
 * (kamailio-example/module/): the eP-CSCF validates the OAuth 2.0 access
 * token of a WIC REGISTER and gets the Trusted Node Authentication header to
 * forward to the S-CSCF; the S-CSCF checks that header.
 *
 * Process model:
 *   - mod_init (attendant, before the fork): routes the library's log to
 *     OpenSIPS's, creates the shared state (an anonymous MAP_SHARED mapping,
 *     or the state_file) and test-loads the configuration so that a broken
 *     file stops the start with a clear error. No thread is started.
 *   - child_init: every process (SIP workers, the MI process, the
 *     refresher) creates its own context over that shared state. MI
 *     commands (wic_tna_mi.c) change the shared state; the workers see it
 *     on their next call.
 *   - one extra process, "wic_tna refresher" (the module's procs export),
 *     calls wic_tna_ctx_tick() every refresher_interval milliseconds: the
 *     only process that may wait on the network (key sets by URL, fleet
 *     state); the SIP workers never do. refresher_interval = 0 starts none.
 *   - the result of a check is kept per process with the id of the message
 *     it was made for, and read through $wic_tna(name) for that message
 *     only: any other message reads as an internal error (status 500),
 *     so that a check that did not run (a parameter OpenSIPS could not
 *     evaluate never reaches the module) never shows an earlier request's
 *     result.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../sr_module.h"
#include "../../dprint.h"
#include "../../mod_fix.h"
#include "../../pvar.h"
#include "../../mem/mem.h"
#include "../../ut.h"
#include "../../pt.h"
#include "../../statistics.h"

#include "wic_tna_mod.h"

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);
static void wic_tna_refresher_proc(int rank);

static int w_wic_tna_verify(struct sip_msg *msg, pv_spec_t *auth, str *to);
static int w_wic_tna_verify_expires(
		struct sip_msg *msg, pv_spec_t *auth, str *to, int *expires);
static int w_wic_tna_verify_register(
		struct sip_msg *msg, pv_spec_t *auth, str *to, str *origin);
static int w_wic_tna_cap_expires(struct sip_msg *msg);
static int w_wic_tna_origin(struct sip_msg *msg, str *origin);
static int w_wic_tna_scscf_check(
		struct sip_msg *msg, pv_spec_t *auth, str *srcip, str *entities);

static int pv_get_wic_tna(
		struct sip_msg *msg, pv_param_t *param, pv_value_t *res);
static int pv_parse_wic_tna_name(pv_spec_p sp, const str *in);

/* modparams */
static str _wic_tna_config = {NULL, 0};
static str _wic_tna_state_file = {NULL, 0};
static int _wic_tna_refresher_interval = 250; /* ms; 0: no refresher process */
/* replay binding: a pv format evaluated per request ("$si:$sp") */
static str _wic_tna_replay_binding = {NULL, 0};
static pv_elem_t *_wic_tna_replay_binding_model = NULL;

/* created in mod_init, inherited by every child */
static wic_tna_shared *_wic_tna_shared = NULL;

/* per process */
static wic_tna_ctx *_wic_tna_ctx = NULL;

/* the result of the last check of this process, for $wic_tna(...) */
typedef struct wic_tna_last {
	int set;			 /* a check ran in this process */
	unsigned int msg_id; /* ... on this message */
	wic_tna_result *res; /* NULL after an internal error or malformed */
	str impus;			 /* comma-separated IMPUs, pkg memory */
	int malformed;		 /* the REGISTER's Contact/Expires: 400 */
	int requested;		 /* expiry the REGISTER asked for (-1: none) */
	int capped;			 /* wic_tna_cap_expires() ran for this result */
} wic_tna_last_t;

static wic_tna_last_t _wic_tna_last = {0, 0, NULL, {NULL, 0}, 0, -1, 0};

/* clang-format off */
static const cmd_export_t cmds[] = {
	{"wic_tna_verify", (cmd_function)w_wic_tna_verify, {
		{CMD_PARAM_VAR, 0, 0},
		{CMD_PARAM_STR, 0, 0}, {0, 0, 0}},
		ALL_ROUTES},
	{"wic_tna_verify_expires", (cmd_function)w_wic_tna_verify_expires, {
		{CMD_PARAM_VAR, 0, 0},
		{CMD_PARAM_STR, 0, 0},
		{CMD_PARAM_INT, 0, 0}, {0, 0, 0}},
		ALL_ROUTES},
	{"wic_tna_verify_register", (cmd_function)w_wic_tna_verify_register, {
		{CMD_PARAM_VAR, 0, 0},
		{CMD_PARAM_STR, 0, 0},
		{CMD_PARAM_STR | CMD_PARAM_OPT, 0, 0}, {0, 0, 0}},
		REQUEST_ROUTE},
	{"wic_tna_cap_expires", (cmd_function)w_wic_tna_cap_expires, {
		{0, 0, 0}},
		REQUEST_ROUTE},
	{"wic_tna_origin", (cmd_function)w_wic_tna_origin, {
		{CMD_PARAM_STR, 0, 0}, {0, 0, 0}},
		ALL_ROUTES},
	{"wic_tna_scscf_check", (cmd_function)w_wic_tna_scscf_check, {
		{CMD_PARAM_VAR, 0, 0},
		{CMD_PARAM_STR, 0, 0},
		{CMD_PARAM_STR, 0, 0}, {0, 0, 0}},
		ALL_ROUTES},
	{0, 0, {{0, 0, 0}}, 0}
};

static const param_export_t params[] = {
	{"config",             STR_PARAM, &_wic_tna_config.s},
	{"state_file",         STR_PARAM, &_wic_tna_state_file.s},
	{"refresher_interval", INT_PARAM, &_wic_tna_refresher_interval},
	{"replay_binding",     STR_PARAM, &_wic_tna_replay_binding.s},
	{0, 0, 0}
};

static const pv_export_t mod_pvs[] = {
	{str_const_init("wic_tna"), 1000, pv_get_wic_tna, 0,
		pv_parse_wic_tna_name, 0, 0, 0},
	{{0, 0}, 0, 0, 0, 0, 0, 0, 0}
};

/* not const: mod_init sets .no to 0 when refresher_interval is 0 */
static proc_export_t procs[] = {
	{"wic_tna refresher", 0, 0, wic_tna_refresher_proc, 1,
		PROC_FLAG_INITCHILD},
	{0, 0, 0, 0, 0, 0}
};

struct module_exports exports = {
	"wic_tna",
	MOD_TYPE_DEFAULT,
	MODULE_VERSION,
	DEFAULT_DLFLAGS,
	0,                /* load function */
	NULL,             /* dependencies */
	cmds,
	0,                /* async functions */
	params,
	0,                /* statistics */
	wic_tna_mi_cmds,  /* MI commands (wic_tna_mi.c) */
	mod_pvs,
	0,                /* transformations */
	procs,
	0,                /* pre-init */
	mod_init,
	0,                /* response function */
	mod_destroy,
	child_init,
	0                 /* reload confirm */
};
/* clang-format on */


/**
 * library log messages -> OpenSIPS's log, at the matching level
 */
static void wic_tna_log_cb(
		int32_t level, const char *msg, size_t msg_len, void *userdata)
{
	int len;

	if(msg == NULL)
		return;
	/* drop a trailing newline: LM_* adds its own */
	while(msg_len > 0 && (msg[msg_len - 1] == '\n' || msg[msg_len - 1] == '\r'))
		msg_len--;
	len = (msg_len > 0x7fffffff) ? 0x7fffffff : (int)msg_len;
	switch(level) {
		case 1:
			LM_ERR("%.*s\n", len, msg);
			break;
		case 2:
			LM_WARN("%.*s\n", len, msg);
			break;
		case 3:
			LM_INFO("%.*s\n", len, msg);
			break;
		default:
			LM_DBG("%.*s\n", len, msg);
			break;
	}
}

const char *wic_tna_mod_last_error(char *buf, size_t buf_len)
{
	size_t need = 0;
	wic_tna_status rc;

	if(buf == NULL || buf_len == 0)
		return "";
	buf[0] = '\0';
	rc = wic_tna_last_error(buf, buf_len, &need);
	if(rc == WIC_TNA_STATUS_BUFFER_TOO_SMALL) {
		/* fetch it whole, keep what fits */
		char *big = (char *)malloc(need + 1);
		size_t got = 0;
		if(big != NULL
				&& wic_tna_last_error(big, need + 1, &got)
						   == WIC_TNA_STATUS_OK) {
			snprintf(buf, buf_len, "%s", big);
		} else {
			snprintf(buf, buf_len, "(error message of %zu bytes)", need);
		}
		free(big);
	} else if(rc != WIC_TNA_STATUS_OK) {
		snprintf(buf, buf_len, "(no error message: status %d)", (int)rc);
	} else if(buf[0] == '\0') {
		snprintf(buf, buf_len, "(no error message)");
	}
	return buf;
}

static wic_tna_ctx *wic_tna_ctx_create(void)
{
	wic_tna_ctx *ctx = NULL;
	wic_tna_status rc;
	char ebuf[512];

	rc = wic_tna_ctx_new(_wic_tna_config.s, (size_t)_wic_tna_config.len,
			_wic_tna_shared, &ctx);
	if(rc != WIC_TNA_STATUS_OK || ctx == NULL) {
		LM_ERR("cannot load wic-tna configuration %.*s: %s (status %d)\n",
				_wic_tna_config.len, _wic_tna_config.s,
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)), (int)rc);
		return NULL;
	}
	return ctx;
}

wic_tna_ctx *wic_tna_mod_ctx(void)
{
	if(_wic_tna_ctx == NULL) {
		_wic_tna_ctx = wic_tna_ctx_create();
	}
	return _wic_tna_ctx;
}

static void wic_tna_str_param(str *s)
{
	s->len = (s->s != NULL) ? (int)strlen(s->s) : 0;
}

/**
 * Statistics (group wic_tna, `opensips-cli -x mi get_statistics wic_tna:`):
 * one per reason of the library (wic_tna_reason_name: ok, expired,
 * bad_signature, ...), each the number of checks that ended with it,
 * summed over every issuer and every process sharing the state.
 * Function-backed (STAT_IS_FUNC): the value is read from the shared state
 * when asked for (wic_tna_ctx_reason_total), so a check costs nothing more.
 * Registered in mod_init, before the fork.
 */
static unsigned long wic_tna_stat_read(void *param)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();
	uint64_t total = 0;

	if(ctx == NULL
			|| wic_tna_ctx_reason_total(ctx, (size_t)(uintptr_t)param, &total)
					   != WIC_TNA_STATUS_OK)
		return 0;
	return (unsigned long)total;
}

static int wic_tna_register_stats(void)
{
	size_t i, n = wic_tna_reason_count();
	wic_tna_str name;
	char buf[128];

	for(i = 0; i < n; i++) {
		name = wic_tna_reason_name(i);
		if(name.len == 0 || name.len >= sizeof(buf))
			continue;
		memcpy(buf, name.ptr, name.len);
		buf[name.len] = '\0';
		if(register_stat2("wic_tna", buf, (stat_var **)wic_tna_stat_read,
				   STAT_IS_FUNC, (void *)(uintptr_t)i, 0)
				!= 0) {
			LM_ERR("cannot register the statistic wic_tna:%s\n", buf);
			return -1;
		}
	}
	return 0;
}

/**
 * Per-issuer statistics (group wic_tna_issuer,
 * `opensips-cli -x mi get_statistics wic_tna_issuer:`): one per issuer and
 * reason, named "<reason>/<issuer>", e.g.
 * "ok/https://wwsf.socialnet.example" (MI shows it as
 * "wic_tna_issuer:ok/https://wwsf.socialnet.example"), the issuers being
 * those of the configuration at start-up plus "-" (outcomes with no
 * configured issuer, e.g. missing_token). Why this name:
 *  - OpenSIPS does not check statistic names (statistics.c copies any
 *    bytes) and MI prints them as object keys, escaped by the MI encoder;
 *    a group name holds no ':', so "group:" up to the first ':' stays
 *    unambiguous although an issuer URL holds ':';
 *  - the reason first: reason names are [a-z_], never '/', so the name
 *    splits at its first '/' even when the issuer URL holds '/';
 *  - `get_statistics` finds one statistic by its bare name (statistics.c
 *    get_stat(), without the group), and this one is unique across
 *    modules, unlike "ok" of the group wic_tna;
 *  - the issuer itself, not an index: an operator reads and alerts on it
 *    with no mapping to keep in step with the configuration.
 * (Names are compared case-insensitively by OpenSIPS: two issuers that
 * differ only in case would share a lookup by bare name; the group
 * listing shows both.)
 * Function-backed (STAT_IS_FUNC), read when asked for through
 * wic_tna_ctx_issuer_reason_total, like the wic_tna group.
 * Registered in mod_init only: OpenSIPS registers function statistics in
 * groups without locking, which is safe only before the fork (after it,
 * only counters of the "dynamic" group can be added, under a lock). So an
 * issuer added by wic_tna_reload gets its statistics at the next restart
 * (MI wic_tna_stats shows it at once, under "issuers"); one removed by a
 * reload reads 0 (the library refuses an issuer not in force: fail
 * closed, never another issuer's number).
 */
typedef struct wic_tna_istat {
	const char *iss;
	size_t iss_len;
	size_t reason;
} wic_tna_istat_t;

static unsigned long wic_tna_istat_read(void *param)
{
	const wic_tna_istat_t *st = (const wic_tna_istat_t *)param;
	wic_tna_ctx *ctx = wic_tna_mod_ctx();
	uint64_t total = 0;

	if(ctx == NULL || st == NULL
			|| wic_tna_ctx_issuer_reason_total(
					   ctx, st->iss, st->iss_len, st->reason, &total)
					   != WIC_TNA_STATUS_OK)
		return 0;
	return (unsigned long)total;
}

static int wic_tna_register_issuer_stats(wic_tna_ctx *ctx)
{
	size_t ni = 0, nr = wic_tna_reason_count(), i, r, len;
	wic_tna_istat_t *st;
	wic_tna_str rname;
	char *iss, *name;
	char ebuf[512];

	if(wic_tna_ctx_issuer_count(ctx, &ni) != WIC_TNA_STATUS_OK) {
		LM_ERR("cannot list the issuers: %s\n",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
		return -1;
	}
	for(i = 0; i < ni; i++) {
		len = 0;
		if(wic_tna_ctx_issuer_name(ctx, i, NULL, 0, &len)
				!= WIC_TNA_STATUS_BUFFER_TOO_SMALL) {
			LM_ERR("cannot read issuer %zu: %s\n", i,
					wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
			return -1;
		}
		/* kept for the life of the process (the statistics point at it);
		 * pkg memory of the attendant is inherited by every child */
		iss = (char *)pkg_malloc(len + 1);
		st = (wic_tna_istat_t *)pkg_malloc(nr * sizeof(*st));
		name = (char *)pkg_malloc(len + 130);
		if(iss == NULL || st == NULL || name == NULL) {
			LM_ERR("no more pkg memory\n");
			return -1;
		}
		if(wic_tna_ctx_issuer_name(ctx, i, iss, len + 1, &len)
				!= WIC_TNA_STATUS_OK) {
			LM_ERR("cannot read issuer %zu: %s\n", i,
					wic_tna_mod_last_error(ebuf, sizeof(ebuf)));
			return -1;
		}
		for(r = 0; r < nr; r++) {
			rname = wic_tna_reason_name(r);
			if(rname.len == 0 || rname.len > 128)
				continue;
			st[r].iss = iss;
			st[r].iss_len = len;
			st[r].reason = r;
			memcpy(name, rname.ptr, rname.len);
			name[rname.len] = '/';
			memcpy(name + rname.len + 1, iss, len);
			name[rname.len + 1 + len] = '\0';
			/* register_stat2 copies the name */
			if(register_stat2("wic_tna_issuer", name,
					   (stat_var **)wic_tna_istat_read, STAT_IS_FUNC, &st[r], 0)
					!= 0) {
				LM_ERR("cannot register the statistic wic_tna_issuer:%s\n",
						name);
				return -1;
			}
		}
		pkg_free(name);
	}
	return 0;
}

/**
 * attendant process, before the fork
 */
static int mod_init(void)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	char ebuf[512];

	wic_tna_str_param(&_wic_tna_config);
	wic_tna_str_param(&_wic_tna_state_file);
	wic_tna_str_param(&_wic_tna_replay_binding);

	if(_wic_tna_config.s == NULL || _wic_tna_config.len <= 0) {
		LM_ERR("modparam \"config\" (path of the wic-tna TOML file) is "
			   "required\n");
		return -1;
	}
	if(_wic_tna_refresher_interval < 0 || _wic_tna_refresher_interval > 60000) {
		LM_ERR("modparam \"refresher_interval\" must be 0 (no refresher "
			   "process) or 1..60000 ms, not %d\n",
				_wic_tna_refresher_interval);
		return -1;
	}

	wic_tna_set_log_callback(wic_tna_log_cb, NULL);

	if(_wic_tna_state_file.s != NULL && _wic_tna_state_file.len > 0) {
		rc = wic_tna_shared_open(_wic_tna_state_file.s,
				(size_t)_wic_tna_state_file.len, &_wic_tna_shared);
	} else {
		rc = wic_tna_shared_new_anonymous(&_wic_tna_shared);
	}
	if(rc != WIC_TNA_STATUS_OK || _wic_tna_shared == NULL) {
		LM_ERR("cannot create the wic-tna shared state%s%.*s: %s (status "
			   "%d)\n",
				(_wic_tna_state_file.len > 0) ? " in " : "",
				_wic_tna_state_file.len,
				_wic_tna_state_file.s ? _wic_tna_state_file.s : "",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)), (int)rc);
		_wic_tna_shared = NULL;
		return -1;
	}

	if(_wic_tna_replay_binding.s != NULL && _wic_tna_replay_binding.len > 0
			&& pv_parse_format(&_wic_tna_replay_binding,
					   &_wic_tna_replay_binding_model)
					   < 0) {
		LM_ERR("modparam \"replay_binding\" is not a valid format: %.*s\n",
				_wic_tna_replay_binding.len, _wic_tna_replay_binding.s);
		return -1;
	}

	/* test load: a broken configuration stops the start here */
	ctx = wic_tna_ctx_create();
	if(ctx == NULL) {
		return -1;
	}
	if(wic_tna_register_issuer_stats(ctx) < 0) {
		wic_tna_ctx_free(ctx);
		return -1;
	}
	wic_tna_ctx_free(ctx);

	if(_wic_tna_refresher_interval == 0) {
		procs[0].no = 0;
	}

	if(wic_tna_register_stats() < 0) {
		return -1;
	}

	LM_INFO("wic-tna %s, configuration %.*s loaded\n", wic_tna_version(),
			_wic_tna_config.len, _wic_tna_config.s);
	return 0;
}

/**
 * the refresher process: background work (key sets by URL, fleet state)
 * that the SIP workers must never wait for. Never returns.
 */
static void wic_tna_refresher_proc(int rank)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();

	if(ctx == NULL) {
		LM_CRIT("wic_tna refresher: no context; background work stopped\n");
	}
	LM_INFO("wic_tna refresher: every %d ms\n", _wic_tna_refresher_interval);
	for(;;) {
		if(ctx != NULL) {
			(void)wic_tna_ctx_tick(ctx); /* failures are logged by the library */
		}
		sleep_us((unsigned int)_wic_tna_refresher_interval * 1000u);
	}
}

/**
 * per process: every process that runs script or MI gets its own context
 */
static int child_init(int rank)
{
	if(wic_tna_mod_ctx() == NULL) {
		return -1;
	}
	return 0;
}

/**
 * Drops the result of the previous check of this process and marks the
 * check as made for msg. The first statement of every function that sets
 * $wic_tna(...): whatever happens next (no context, a check that fails
 * inside the library), $wic_tna(...) never shows an earlier result. Until
 * a check fills it in, the result reads as an internal error (status 500).
 * wic_tna_cap_expires() reads the result and does not reset it.
 */
static void wic_tna_last_reset(struct sip_msg *msg)
{
	if(_wic_tna_last.res != NULL) {
		wic_tna_result_free(_wic_tna_last.res);
		_wic_tna_last.res = NULL;
	}
	if(_wic_tna_last.impus.s != NULL) {
		pkg_free(_wic_tna_last.impus.s);
	}
	_wic_tna_last.impus.s = NULL;
	_wic_tna_last.impus.len = 0;
	_wic_tna_last.malformed = 0;
	_wic_tna_last.requested = -1;
	_wic_tna_last.capped = 0;
	_wic_tna_last.set = (msg != NULL);
	_wic_tna_last.msg_id = (msg != NULL) ? msg->id : 0;
}

/* whether $wic_tna(...) has a check of this very message */
static int wic_tna_last_is_for(struct sip_msg *msg)
{
	return _wic_tna_last.set && msg != NULL && msg->id == _wic_tna_last.msg_id;
}

static void mod_destroy(void)
{
	wic_tna_last_reset(NULL);
	if(_wic_tna_ctx != NULL) {
		wic_tna_ctx_free(_wic_tna_ctx);
		_wic_tna_ctx = NULL;
	}
	if(_wic_tna_shared != NULL) {
		wic_tna_shared_free(_wic_tna_shared);
		_wic_tna_shared = NULL;
	}
}

/* keep the result as the last one; build the comma-separated IMPU list */
static void wic_tna_last_keep(wic_tna_result *res)
{
	size_t i, n, total = 0;
	wic_tna_str u;
	char *p;

	_wic_tna_last.res = res;
	n = wic_tna_result_impu_count(res);
	for(i = 0; i < n; i++) {
		u = wic_tna_result_impu(res, i);
		total += u.len + 1;
	}
	if(total == 0 || total > 0x7fffffff)
		return;
	p = (char *)pkg_malloc(total);
	if(p == NULL) {
		LM_ERR("no more pkg memory\n");
		return;
	}
	_wic_tna_last.impus.s = p;
	for(i = 0; i < n; i++) {
		u = wic_tna_result_impu(res, i);
		if(i > 0)
			*p++ = ',';
		memcpy(p, u.ptr, u.len);
		p += u.len;
	}
	*p = '\0';
	_wic_tna_last.impus.len = (int)(p - _wic_tna_last.impus.s);
}

/* a str from the script as (pointer, length) for the library: never NULL */
#define WIC_TNA_PTR(sp) (((sp) != NULL && (sp)->s != NULL) ? (sp)->s : "")
#define WIC_TNA_LEN(sp) \
	(((sp) != NULL && (sp)->s != NULL && (sp)->len > 0) ? (size_t)(sp)->len : 0)

static int wic_tna_result_ret(
		const char *what, wic_tna_status rc, wic_tna_result *res)
{
	char ebuf[512];

	if(rc != WIC_TNA_STATUS_OK || res == NULL) {
		LM_ERR("%s failed: %s (status %d)\n", what,
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)), (int)rc);
		return -2;
	}
	wic_tna_last_keep(res);
	if(wic_tna_result_accepted(res)) {
		return 1;
	}
	LM_DBG("%s: rejected, %u %.*s\n", what,
			(unsigned)wic_tna_result_sip_status(res),
			(int)wic_tna_result_reason(res).len,
			wic_tna_result_reason(res).ptr);
	return -1;
}

/**
 * The value of the Authorization parameter, a variable read directly (a
 * large header is never printed into a buffer). A variable without a value
 * ($hdr(Authorization) of a request without one) is absent: auth->s NULL.
 * Returns 0, or -1 when the variable cannot be read.
 */
static int wic_tna_auth_value(struct sip_msg *msg, pv_spec_t *sp, str *auth)
{
	pv_value_t val;

	auth->s = NULL;
	auth->len = 0;
	if(sp == NULL)
		return -1;
	memset(&val, 0, sizeof(val));
	if(pv_get_spec_value(msg, sp, &val) != 0) {
		LM_ERR("cannot read the authorization variable\n");
		return -1;
	}
	if(val.flags & PV_VAL_NULL)
		return 0;
	if(!(val.flags & PV_VAL_STR)) {
		LM_ERR("the authorization variable is not a string\n");
		return -1;
	}
	*auth = val.rs;
	if(auth->s == NULL)
		auth->len = 0;
	/* present but empty: an empty value, not an absent header */
	if(auth->s == NULL || auth->len == 0) {
		auth->s = "";
		auth->len = 0;
	}
	return 0;
}

/**
 * eP-CSCF: verify the Authorization value of a REGISTER; auth->s NULL
 * means the request has no Authorization header (401, challenge); an empty
 * value is malformed (400). expires < 0: no expiry requested. An empty to
 * skips the To check. origin: the WebSocket handshake's Origin of the
 * request's connection; NULL or empty: none, not checked.
 * Returns 1 accepted, -1 rejected, -2 internal error. Called by the entry
 * points after wic_tna_last_reset().
 */
static int wic_tna_check(struct sip_msg *msg, str *auth, str *to,
		int expires, str *origin)
{
	wic_tna_ctx *ctx;
	wic_tna_result *res = NULL;
	wic_tna_status rc;
	int has_to;
	str binding;
	wic_tna_request req;

	ctx = wic_tna_mod_ctx();
	if(ctx == NULL) {
		return -2;
	}
	has_to = (to != NULL && to->s != NULL && to->len > 0);
	/* the replay binding (modparam replay_binding), evaluated for this
	 * request; none when unset or when it evaluates to nothing (the
	 * library then fails closed if [replay] is enabled) */
	binding.s = NULL;
	binding.len = 0;
	if(_wic_tna_replay_binding_model != NULL && msg != NULL
			&& pv_printf_s(msg, _wic_tna_replay_binding_model, &binding) != 0) {
		LM_ERR("cannot evaluate modparam replay_binding\n");
		binding.s = NULL;
		binding.len = 0;
	}
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	if(auth != NULL && auth->s != NULL) {
		/* present: the library tells empty (400) from absent (401) */
		req.authorization = auth->s;
		req.authorization_len = WIC_TNA_LEN(auth);
	}
	req.to_uri = has_to ? to->s : NULL;
	req.to_uri_len = has_to ? (size_t)to->len : 0;
	req.requested_expires = (int64_t)expires;
	req.binding = (binding.s != NULL && binding.len > 0) ? binding.s : NULL;
	req.binding_len =
			(binding.s != NULL && binding.len > 0) ? (size_t)binding.len : 0;
	req.origin = WIC_TNA_LEN(origin) > 0 ? origin->s : NULL;
	req.origin_len = WIC_TNA_LEN(origin);
	req.now_unix = 0;
	rc = wic_tna_verify_request(ctx, &req, &res);
	return wic_tna_result_ret("token verification", rc, res);
}

static int w_wic_tna_verify(struct sip_msg *msg, pv_spec_t *pauth, str *to)
{
	str auth;

	wic_tna_last_reset(msg);
	if(wic_tna_auth_value(msg, pauth, &auth) < 0)
		return -2;
	return wic_tna_check(msg, &auth, to, -1, NULL);
}

static int w_wic_tna_verify_expires(
		struct sip_msg *msg, pv_spec_t *pauth, str *to, int *expires)
{
	str auth;

	wic_tna_last_reset(msg);
	if(wic_tna_auth_value(msg, pauth, &auth) < 0)
		return -2;
	return wic_tna_check(
			msg, &auth, to, (expires != NULL) ? *expires : -1, NULL);
}

/**
 * eP-CSCF: verify the token of a REGISTER, with the expiry it asks for
 * read from the request itself (every Contact, the Expires header; see
 * wic_tna_register.c). A Contact or Expires that does not parse is
 * $wic_tna(status) 400, reason malformed_request, no challenge.
 * $wic_tna(requested) gives the expiry asked for (-1 none, 0 a
 * de-registration). Returns 1 accepted, -1 rejected, -2 internal error.
 */
static int w_wic_tna_verify_register(
		struct sip_msg *msg, pv_spec_t *pauth, str *to, str *origin)
{
	str auth;
	int requested = -1;
	int rc;

	wic_tna_last_reset(msg);
	if(wic_tna_auth_value(msg, pauth, &auth) < 0)
		return -2;
	if(wic_tna_register_expiry(msg, -1, &requested) < 0) {
		_wic_tna_last.malformed = 1;
		return -1;
	}
	rc = wic_tna_check(msg, &auth, to, requested, origin);
	_wic_tna_last.requested = requested;
	return rc;
}

/**
 * eP-CSCF, after an accepted wic_tna_verify_register() (or _verify*) of
 * this request: rewrite the Expires header and the expires of every
 * contact in every Contact header to at most $wic_tna(expires). Once per
 * check. Returns 1, -1 when this request has no accepted check or is
 * malformed.
 */
static int w_wic_tna_cap_expires(struct sip_msg *msg)
{
	int64_t granted;

	if(!wic_tna_last_is_for(msg) || _wic_tna_last.res == NULL
			|| !wic_tna_result_accepted(_wic_tna_last.res)) {
		LM_ERR("wic_tna_cap_expires() without an accepted check of this "
			   "request before it\n");
		return -1;
	}
	if(_wic_tna_last.capped) {
		return 1;
	}
	granted = wic_tna_result_granted_expires(_wic_tna_last.res);
	if(granted < 0)
		granted = 0;
	if(granted > 0x7fffffff)
		granted = 0x7fffffff;
	if(wic_tna_register_expiry(msg, (int)granted, NULL) < 0) {
		return -1;
	}
	_wic_tna_last.capped = 1;
	return 1;
}

/**
 * Is this Origin allowed for any non-barred issuer? 1 yes, -1 no, -2 error.
 */
static int w_wic_tna_origin(struct sip_msg *msg, str *origin)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	bool allowed = false;
	char ebuf[512];

	wic_tna_last_reset(msg);
	ctx = wic_tna_mod_ctx();
	if(ctx == NULL) {
		return -2;
	}
	rc = wic_tna_origin_allowed(
			ctx, WIC_TNA_PTR(origin), WIC_TNA_LEN(origin), &allowed);
	if(rc != WIC_TNA_STATUS_OK) {
		LM_ERR("origin check failed: %s (status %d)\n",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)), (int)rc);
		return -2;
	}
	if(!allowed) {
		LM_DBG("origin not allowed: %.*s\n", (int)WIC_TNA_LEN(origin),
				WIC_TNA_PTR(origin));
		return -1;
	}
	return 1;
}

/**
 * S-CSCF: accept a TNA Authorization value from a trusted node. An empty
 * entities list means the configuration's [scscf] list.
 * Returns 1 accepted, -1 rejected, -2 internal error.
 */
static int w_wic_tna_scscf_check(
		struct sip_msg *msg, pv_spec_t *pauth, str *srcip, str *entities)
{
	wic_tna_ctx *ctx;
	wic_tna_result *res = NULL;
	wic_tna_status rc;
	int has_list;
	str auth;

	wic_tna_last_reset(msg);
	if(wic_tna_auth_value(msg, pauth, &auth) < 0)
		return -2;
	ctx = wic_tna_mod_ctx();
	if(ctx == NULL) {
		return -2;
	}
	has_list = (entities != NULL && entities->s != NULL && entities->len > 0);
	rc = wic_tna_scscf_check(ctx, WIC_TNA_PTR(&auth), WIC_TNA_LEN(&auth),
			WIC_TNA_PTR(srcip), WIC_TNA_LEN(srcip),
			has_list ? entities->s : NULL,
			has_list ? (size_t)entities->len : 0, &res);
	return wic_tna_result_ret("S-CSCF check", rc, res);
}

/**
 * $wic_tna(name)
 */
enum wic_tna_pv_key
{
	WIC_TNA_PV_STATUS = 0,
	WIC_TNA_PV_REASON,
	WIC_TNA_PV_ACCEPTED,
	WIC_TNA_PV_IMPI,
	WIC_TNA_PV_IMPU,
	WIC_TNA_PV_IMPUS,
	WIC_TNA_PV_ISSUER,
	WIC_TNA_PV_SUBJECT,
	WIC_TNA_PV_SCOPE,
	WIC_TNA_PV_EXPIRES,
	WIC_TNA_PV_EXPIRES_AT,
	WIC_TNA_PV_SECONDS_LEFT,
	WIC_TNA_PV_TNA,
	WIC_TNA_PV_CHALLENGE,
	WIC_TNA_PV_DESCRIPTION,
	WIC_TNA_PV_REQUESTED
};

/* clang-format off */
static const struct {
	const char *name;
	int key;
} _wic_tna_pv_names[] = {
	{"status",            WIC_TNA_PV_STATUS},
	{"reason",            WIC_TNA_PV_REASON},
	{"accepted",          WIC_TNA_PV_ACCEPTED},
	{"impi",              WIC_TNA_PV_IMPI},
	{"impu",              WIC_TNA_PV_IMPU},
	{"impus",             WIC_TNA_PV_IMPUS},
	{"issuer",            WIC_TNA_PV_ISSUER},
	{"subject",           WIC_TNA_PV_SUBJECT},
	{"scope",             WIC_TNA_PV_SCOPE},
	{"expires",           WIC_TNA_PV_EXPIRES},
	{"expires_at",        WIC_TNA_PV_EXPIRES_AT},
	{"seconds_left",      WIC_TNA_PV_SECONDS_LEFT},
	{"tna",               WIC_TNA_PV_TNA},
	{"challenge",         WIC_TNA_PV_CHALLENGE},
	{"error_description", WIC_TNA_PV_DESCRIPTION},
	{"requested",         WIC_TNA_PV_REQUESTED},
	{NULL, 0}
};
/* clang-format on */

static int pv_parse_wic_tna_name(pv_spec_p sp, const str *in)
{
	int i;

	if(sp == NULL || in == NULL || in->s == NULL || in->len <= 0)
		return -1;
	for(i = 0; _wic_tna_pv_names[i].name != NULL; i++) {
		if(strlen(_wic_tna_pv_names[i].name) == (size_t)in->len
				&& strncmp(_wic_tna_pv_names[i].name, in->s, in->len) == 0) {
			sp->pvp.pvn.type = PV_NAME_INTSTR;
			sp->pvp.pvn.u.isname.type = 0;
			sp->pvp.pvn.u.isname.name.n = _wic_tna_pv_names[i].key;
			return 0;
		}
	}
	LM_ERR("unknown $wic_tna key: %.*s\n", in->len, in->s);
	return -1;
}

static str _wic_tna_empty = {"", 0};

static int pv_get_wic_tna_str(struct sip_msg *msg, pv_param_t *param,
		pv_value_t *res, wic_tna_str v)
{
	str s;

	if(v.ptr == NULL || v.len == 0 || v.len > 0x7fffffff)
		return pv_get_strval(msg, param, res, &_wic_tna_empty);
	s.s = (char *)v.ptr;
	s.len = (int)v.len;
	return pv_get_strval(msg, param, res, &s);
}

static int pv_get_wic_tna_int64(
		struct sip_msg *msg, pv_param_t *param, pv_value_t *res, int64_t v)
{
	if(v > 0x7fffffff)
		v = 0x7fffffff;
	if(v < -0x7fffffff)
		v = -0x7fffffff;
	return pv_get_sintval(msg, param, res, (int)v);
}

/* what a failed or absent check reads as: code, reason, nothing else */
static int pv_get_wic_tna_failed(struct sip_msg *msg, pv_param_t *param,
		pv_value_t *res, int key, int code, str *reason)
{
	switch(key) {
		case WIC_TNA_PV_STATUS:
			return pv_get_uintval(msg, param, res, (unsigned)code);
		case WIC_TNA_PV_REASON:
			return pv_get_strval(msg, param, res, reason);
		case WIC_TNA_PV_ACCEPTED:
		case WIC_TNA_PV_EXPIRES:
		case WIC_TNA_PV_EXPIRES_AT:
		case WIC_TNA_PV_SECONDS_LEFT:
			return pv_get_sintval(msg, param, res, 0);
		default:
			return pv_get_strval(msg, param, res, &_wic_tna_empty);
	}
}

static int pv_get_wic_tna(
		struct sip_msg *msg, pv_param_t *param, pv_value_t *res)
{
	static str internal_error = str_init("internal_error");
	static str malformed = str_init("malformed_request");
	wic_tna_result *r = _wic_tna_last.res;
	int key;

	if(param == NULL)
		return -1;
	key = param->pvn.u.isname.name.n;
	if(!wic_tna_last_is_for(msg)) {
		/* no check of this request: fail closed */
		if(key == WIC_TNA_PV_REQUESTED)
			return pv_get_sintval(msg, param, res, -1);
		return pv_get_wic_tna_failed(
				msg, param, res, key, 500, &internal_error);
	}
	if(key == WIC_TNA_PV_REQUESTED) {
		return pv_get_sintval(msg, param, res, _wic_tna_last.requested);
	}
	if(_wic_tna_last.malformed) {
		/* the REGISTER's Contact or Expires: 400, no challenge */
		return pv_get_wic_tna_failed(msg, param, res, key, 400, &malformed);
	}
	if(r == NULL) {
		/* the last check failed inside the library: 500, no header */
		return pv_get_wic_tna_failed(
				msg, param, res, key, 500, &internal_error);
	}

	switch(key) {
		case WIC_TNA_PV_STATUS:
			return pv_get_uintval(
					msg, param, res, (unsigned)wic_tna_result_sip_status(r));
		case WIC_TNA_PV_REASON:
			return pv_get_wic_tna_str(msg, param, res, wic_tna_result_reason(r));
		case WIC_TNA_PV_ACCEPTED:
			return pv_get_sintval(
					msg, param, res, wic_tna_result_accepted(r) ? 1 : 0);
		case WIC_TNA_PV_IMPI:
			return pv_get_wic_tna_str(msg, param, res, wic_tna_result_impi(r));
		case WIC_TNA_PV_IMPU:
			if(wic_tna_result_impu_count(r) == 0)
				return pv_get_strval(msg, param, res, &_wic_tna_empty);
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_impu(r, 0));
		case WIC_TNA_PV_IMPUS:
			if(_wic_tna_last.impus.s == NULL)
				return pv_get_strval(msg, param, res, &_wic_tna_empty);
			return pv_get_strval(msg, param, res, &_wic_tna_last.impus);
		case WIC_TNA_PV_ISSUER:
			return pv_get_wic_tna_str(msg, param, res, wic_tna_result_issuer(r));
		case WIC_TNA_PV_SUBJECT:
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_subject(r));
		case WIC_TNA_PV_SCOPE:
			return pv_get_wic_tna_str(msg, param, res, wic_tna_result_scope(r));
		case WIC_TNA_PV_EXPIRES:
			return pv_get_wic_tna_int64(
					msg, param, res, wic_tna_result_granted_expires(r));
		case WIC_TNA_PV_EXPIRES_AT:
			return pv_get_wic_tna_int64(
					msg, param, res, wic_tna_result_expires_at(r));
		case WIC_TNA_PV_SECONDS_LEFT:
			return pv_get_wic_tna_int64(
					msg, param, res, wic_tna_result_seconds_left(r));
		case WIC_TNA_PV_TNA:
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_tna_header(r));
		case WIC_TNA_PV_CHALLENGE:
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_www_authenticate(r));
		case WIC_TNA_PV_DESCRIPTION:
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_error_description(r));
	}
	return pv_get_null(msg, param, res);
}
