/*
 * wic_tna module - Trusted Node Authentication for WebRTC IMS Client access
 *
 * A thin Kamailio shell over libwic_tna (include/wic_tna.h): the eP-CSCF
 * validates the OAuth 2.0 access token of a WIC REGISTER and gets the
 * Trusted Node Authentication header to forward to the S-CSCF; the S-CSCF
 * checks that header (integrity-protected=auth-done from a trusted node).
 *
 * Process model:
 *   - mod_init (main process, before the fork): routes the library's log to
 *     Kamailio's, creates the shared state object (an anonymous MAP_SHARED
 *     mapping, or the state_file) and test-loads the configuration so that a
 *     broken file stops the start with a clear error; registers the
 *     statistics of group wic_tna (one per reason, function-backed: read
 *     from the shared state when asked for, nothing per request).
 *   - child_init: each SIP worker and RPC process creates its own context
 *     over that shared state. RPC commands (wic_tna_rpc.c) change the shared
 *     state; the workers see it on their next call.
 *   - one extra process, "wic_tna refresher" (forked from the main process
 *     after the workers' set-up, like other modules' dispatchers), calls
 *     wic_tna_ctx_tick() every refresher_interval milliseconds: the only
 *     process that may wait on the network (remote key sets, fleet state);
 *     it publishes through the shared state and the workers never block.
 *     modparam refresher_interval = 0 starts no such process.
 *   - the result of the last check is kept per process and read through
 *     $wic_tna(name); each check frees the previous one.
 *   - wic_tna_metrics_reply() answers an xhttp request (Prometheus
 *     /metrics) with the library's text exposition, made when scraped.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../core/sr_module.h"
#include "../../core/dprint.h"
#include "../../core/mod_fix.h"
#include "../../core/pvar.h"
#include "../../core/kemi.h"
#include "../../core/mem/mem.h"
#include "../../core/ut.h"
#include "../../core/pt.h"
#include "../../core/timer.h"
#include "../../core/cfg/cfg_struct.h"
#include "../../core/counters.h"
#include "../xhttp/api.h"

#include "wic_tna_mod.h"

MODULE_VERSION

static int mod_init(void);
static int child_init(int rank);
static void mod_destroy(void);

static int w_wic_tna_verify(sip_msg_t *msg, char *pauth, char *pto);
static int w_wic_tna_verify_expires(
		sip_msg_t *msg, char *pauth, char *pto, char *pexpires);
static int w_wic_tna_verify_register(sip_msg_t *msg, char *pauth, char *pto);
static int w_wic_tna_verify_register_origin(
		sip_msg_t *msg, char *pauth, char *pto, char *porigin);
static int w_wic_tna_cap_expires(sip_msg_t *msg, char *p1, char *p2);
static int w_wic_tna_origin(sip_msg_t *msg, char *porigin, char *p2);
static int w_wic_tna_scscf_check(
		sip_msg_t *msg, char *pauth, char *psrcip, char *pentities);
static int w_wic_tna_metrics_reply(sip_msg_t *msg, char *p1, char *p2);

static int pv_get_wic_tna(sip_msg_t *msg, pv_param_t *param, pv_value_t *res);
static int pv_parse_wic_tna_name(pv_spec_t *sp, str *in);

/* modparams */
static str _wic_tna_config = STR_NULL;
static str _wic_tna_state_file = STR_NULL;
static int _wic_tna_refresher_interval = 250; /* ms; 0: no refresher process */
/* replay binding: a pv format evaluated per request ($conid, "$si:$sp") */
static str _wic_tna_replay_binding = STR_NULL;
static pv_elem_t *_wic_tna_replay_binding_model = NULL;

/* created in mod_init, inherited by every child */
static wic_tna_shared *_wic_tna_shared = NULL;

/* per process */
static wic_tna_ctx *_wic_tna_ctx = NULL;

/* the last result of this process, for $wic_tna(...) */
typedef struct wic_tna_last {
	int set;			 /* a check ran in this process */
	wic_tna_result *res; /* NULL after an internal error or malformed */
	str impus;			 /* comma-separated IMPUs, pkg memory */
	int malformed;		 /* the REGISTER's Contact/Expires: 400 */
	int requested;		 /* expiry the REGISTER asked for (-1: none) */
	int capped;			 /* wic_tna_cap_expires() ran for this result */
} wic_tna_last_t;

static wic_tna_last_t _wic_tna_last = {0, NULL, STR_NULL, 0, -1, 0};

/* clang-format off */
static cmd_export_t cmds[] = {
	{"wic_tna_verify", (cmd_function)w_wic_tna_verify, 2,
		fixup_spve_spve, fixup_free_spve_spve, ANY_ROUTE},
	{"wic_tna_verify_expires", (cmd_function)w_wic_tna_verify_expires, 3,
		fixup_spve_spve_igp, fixup_free_spve_spve_igp, ANY_ROUTE},
	{"wic_tna_verify_register", (cmd_function)w_wic_tna_verify_register, 2,
		fixup_spve_spve, fixup_free_spve_spve, REQUEST_ROUTE},
	{"wic_tna_verify_register", (cmd_function)w_wic_tna_verify_register_origin,
		3, fixup_spve_all, fixup_free_spve_all, REQUEST_ROUTE},
	{"wic_tna_cap_expires", (cmd_function)w_wic_tna_cap_expires, 0,
		0, 0, REQUEST_ROUTE},
	{"wic_tna_origin", (cmd_function)w_wic_tna_origin, 1,
		fixup_spve_null, fixup_free_spve_null, ANY_ROUTE},
	{"wic_tna_scscf_check", (cmd_function)w_wic_tna_scscf_check, 3,
		fixup_spve_all, fixup_free_spve_all, ANY_ROUTE},
	{"wic_tna_metrics_reply", (cmd_function)w_wic_tna_metrics_reply, 0,
		0, 0, REQUEST_ROUTE},
	{0, 0, 0, 0, 0, 0}
};

static param_export_t params[] = {
	{"config",     PARAM_STR, &_wic_tna_config},
	{"state_file", PARAM_STR, &_wic_tna_state_file},
	{"refresher_interval", PARAM_INT, &_wic_tna_refresher_interval},
	{"replay_binding", PARAM_STR, &_wic_tna_replay_binding},
	{0, 0, 0}
};

static pv_export_t mod_pvs[] = {
	{{"wic_tna", sizeof("wic_tna") - 1}, PVT_OTHER, pv_get_wic_tna, 0,
		pv_parse_wic_tna_name, 0, 0, 0},
	{{0, 0}, 0, 0, 0, 0, 0, 0, 0}
};

struct module_exports exports = {
	"wic_tna",        /* module name */
	DEFAULT_DLFLAGS,  /* dlopen flags */
	cmds,             /* cfg functions */
	params,           /* modparams */
	wic_tna_rpc_cmds, /* RPC commands (wic_tna_rpc.c) */
	mod_pvs,          /* pseudo-variables */
	0,                /* response handling function */
	mod_init,         /* module init function */
	child_init,       /* per-child init function */
	mod_destroy       /* module destroy function */
};
/* clang-format on */


/**
 * library log messages -> Kamailio's log
 */
static void wic_tna_log_cb(
		int level, const char *msg, size_t msg_len, void *userdata)
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

/**
 * Statistics (group wic_tna, `kamcmd stats.get_statistics wic_tna:`): one
 * per reason of the library (wic_tna_reason_name), each the number of
 * checks that ended with it, summed over every issuer and every process
 * sharing the state. Function-backed: the value is read from the shared
 * state when asked for (wic_tna_ctx_reason_total), so a check costs
 * nothing more than the library's own counter increment.
 */
static counter_val_t wic_tna_stat_read(counter_handle_t h, void *param)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();
	uint64_t total = 0;

	if(ctx == NULL
			|| wic_tna_ctx_reason_total(ctx, (size_t)(uintptr_t)param, &total)
					   != WIC_TNA_STATUS_OK) {
		return 0;
	}
	/* counter_val_t is a long: saturate */
	if(total > (uint64_t)0x7fffffffffffffffULL)
		total = (uint64_t)0x7fffffffffffffffULL;
	return (counter_val_t)total;
}

static int wic_tna_register_stats(void)
{
	size_t i, n = wic_tna_reason_count();
	counter_handle_t h;
	wic_tna_str name;

	for(i = 0; i < n; i++) {
		name = wic_tna_reason_name(i);
		if(name.len == 0)
			continue;
		if(counter_register(&h, "wic_tna", name.ptr, CNT_F_NO_RESET,
				   wic_tna_stat_read, (void *)(uintptr_t)i,
				   "wic-tna checks that ended with this reason (ok: accepted), "
				   "all issuers, all processes",
				   0)
				< 0) {
			LM_ERR("cannot register the statistic wic_tna:%s\n", name.ptr);
			return -1;
		}
	}
	return 0;
}

/**
 * main process, before the fork
 */
static int mod_init(void)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	char ebuf[512];

	if(_wic_tna_config.s == NULL || _wic_tna_config.len <= 0) {
		LM_ERR("modparam \"config\" (path of the wic-tna TOML file) is "
			   "required\n");
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
		LM_ERR("modparam \"replay_binding\" is not a valid pv format: %.*s\n",
				_wic_tna_replay_binding.len, _wic_tna_replay_binding.s);
		return -1;
	}

	/* test load: a broken configuration stops the start here */
	ctx = wic_tna_ctx_create();
	if(ctx == NULL) {
		return -1;
	}
	wic_tna_ctx_free(ctx);

	if(_wic_tna_refresher_interval < 0 || _wic_tna_refresher_interval > 60000) {
		LM_ERR("modparam \"refresher_interval\" must be 0 (no refresher "
			   "process) or 1..60000 ms, not %d\n",
				_wic_tna_refresher_interval);
		return -1;
	}
	if(_wic_tna_refresher_interval > 0) {
		register_procs(1);
		cfg_register_child(1);
	}

	if(wic_tna_register_stats() < 0) {
		return -1;
	}

	LM_INFO("wic-tna %s, configuration %.*s loaded\n", wic_tna_version(),
			_wic_tna_config.len, _wic_tna_config.s);
	return 0;
}

/**
 * the refresher process: background work (fetches, fleet state) that the
 * SIP workers must never wait for. Never returns.
 */
static void wic_tna_refresher_loop(void)
{
	wic_tna_ctx *ctx = wic_tna_mod_ctx();

	if(ctx == NULL) {
		LM_CRIT("wic_tna refresher: no context; background work stopped\n");
	}
	for(;;) {
		cfg_update();
		if(ctx != NULL) {
			(void)wic_tna_ctx_tick(ctx); /* failures are logged by the library */
		}
		sleep_us((unsigned int)_wic_tna_refresher_interval * 1000u);
	}
}

/**
 * per process: SIP workers and RPC processes get their own context; the
 * main process forks the refresher
 */
static int child_init(int rank)
{
	int pid;

	if(rank == PROC_MAIN && _wic_tna_refresher_interval > 0) {
		pid = fork_process(PROC_NOCHLDINIT, "wic_tna refresher", 1);
		if(pid < 0) {
			LM_ERR("cannot fork the wic_tna refresher process\n");
			return -1;
		}
		if(pid == 0) {
			if(cfg_child_init()) {
				return -1;
			}
			wic_tna_refresher_loop();
		}
		return 0;
	}
	if(rank == PROC_INIT || rank == PROC_MAIN || rank == PROC_TCP_MAIN
			|| rank == PROC_POSTCHILDINIT) {
		return 0;
	}
	if(wic_tna_mod_ctx() == NULL) {
		return -1;
	}
	return 0;
}

/**
 * Drops the result of the previous check of this process. The first
 * statement of every entry point that sets $wic_tna(...), cfg function
 * (w_*) and KEMI function (ki_*) alike, and called nowhere else: whatever
 * happens next (a parameter that cannot be read, no context, a check that
 * fails inside the library), $wic_tna(...) never shows the previous
 * request's result. Until a check fills it in, the result reads as an
 * internal error (status 500). wic_tna_cap_expires() reads the result and
 * does not reset it.
 */
static void wic_tna_last_reset(void)
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
	_wic_tna_last.set = 1;
}

static void mod_destroy(void)
{
	if(_wic_tna_last.res != NULL || _wic_tna_last.impus.s != NULL) {
		wic_tna_last_reset();
	}
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
		PKG_MEM_ERROR;
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

/* a str from the cfg as (pointer, length) for the library: never NULL */
#define WIC_TNA_PTR(sp) (((sp) != NULL && (sp)->s != NULL) ? (sp)->s : "")
#define WIC_TNA_LEN(sp) \
	(((sp) != NULL && (sp)->s != NULL && (sp)->len > 0) ? (size_t)(sp)->len : 0)

static int wic_tna_result_ret(const char *what, wic_tna_status rc,
		wic_tna_result *res)
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
 * eP-CSCF: verify the Authorization value of a REGISTER; an empty value
 * means the request has no Authorization header (401, challenge).
 * expires < 0: no expiry requested. An empty to_uri skips the To check.
 * origin: the WebSocket handshake's Origin of the request's connection;
 * NULL or empty: none (not a WebSocket request), not checked.
 * Returns 1 accepted, -1 rejected, -2 internal error. Called by the entry
 * points after wic_tna_last_reset().
 */
static int wic_tna_check(
		sip_msg_t *msg, str *auth, str *to, int expires, str *origin)
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
	/* No value: the request has no Authorization header. The library
	 * answers NULL with length 0 as such (401 missing_token, challenge
	 * without error code: doc/protocol.md, "Failure responses"). */
	/* The replay binding (modparam replay_binding), evaluated for this
	 * request; none when unset or when it evaluates to nothing (the
	 * library then fails closed if [replay] is enabled). */
	binding.s = NULL;
	binding.len = 0;
	if(_wic_tna_replay_binding_model != NULL && msg != NULL
			&& pv_printf_s(msg, _wic_tna_replay_binding_model, &binding) < 0) {
		LM_ERR("cannot evaluate modparam replay_binding\n");
		binding.s = NULL;
		binding.len = 0;
	}
	memset(&req, 0, sizeof(req));
	req.struct_size = sizeof(req);
	req.authorization = WIC_TNA_LEN(auth) == 0 ? NULL : WIC_TNA_PTR(auth);
	req.authorization_len = WIC_TNA_LEN(auth);
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

/**
 * eP-CSCF: verify the token of a REGISTER, with the expiry it asks for
 * read from the request itself (every Contact, the Expires header; see
 * wic_tna_register.c). A Contact or Expires that does not parse is
 * $wic_tna(status) 400, reason malformed_request, no challenge.
 * $wic_tna(requested) gives the expiry asked for (-1 none, 0 a
 * de-registration). Returns 1 accepted, -1 rejected, -2 internal error.
 * Called by the entry points after wic_tna_last_reset().
 */
static int wic_tna_register_check(
		sip_msg_t *msg, str *auth, str *to, str *origin)
{
	int requested = -1;
	int rc;

	if(wic_tna_register_expiry(msg, -1, &requested) < 0) {
		_wic_tna_last.malformed = 1;
		return -1;
	}
	rc = wic_tna_check(msg, auth, to, requested, origin);
	_wic_tna_last.requested = requested;
	return rc;
}

/**
 * WebSocket handshake: is this Origin allowed? 1 yes, -1 no, -2 error.
 * Called by the entry points after wic_tna_last_reset().
 */
static int wic_tna_origin_check(sip_msg_t *msg, str *origin)
{
	wic_tna_ctx *ctx;
	wic_tna_status rc;
	bool allowed = false;
	char ebuf[512];

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
 * S-CSCF: accept a TNA Authorization value from a trusted node.
 * An empty entities list means the configuration's [scscf] list.
 * Returns 1 accepted, -1 rejected, -2 internal error. Called by the entry
 * points after wic_tna_last_reset().
 */
static int wic_tna_scscf(sip_msg_t *msg, str *auth, str *srcip, str *entities)
{
	wic_tna_ctx *ctx;
	wic_tna_result *res = NULL;
	wic_tna_status rc;
	int has_list;

	ctx = wic_tna_mod_ctx();
	if(ctx == NULL) {
		return -2;
	}
	has_list = (entities != NULL && entities->s != NULL && entities->len > 0);
	rc = wic_tna_scscf_check(ctx, WIC_TNA_PTR(auth), WIC_TNA_LEN(auth),
			WIC_TNA_PTR(srcip), WIC_TNA_LEN(srcip),
			has_list ? entities->s : NULL,
			has_list ? (size_t)entities->len : 0, &res);
	return wic_tna_result_ret("S-CSCF check", rc, res);
}

/**
 * KEMI functions (KSR.wic_tna.<cfg function name>): each one that sets
 * $wic_tna(...) resets the last result first, as its cfg function does.
 */
static int ki_wic_tna_verify(sip_msg_t *msg, str *auth, str *to)
{
	wic_tna_last_reset();
	return wic_tna_check(msg, auth, to, -1, NULL);
}

static int ki_wic_tna_verify_expires(
		sip_msg_t *msg, str *auth, str *to, int expires)
{
	wic_tna_last_reset();
	return wic_tna_check(msg, auth, to, expires, NULL);
}

static int ki_wic_tna_verify_register_origin(
		sip_msg_t *msg, str *auth, str *to, str *origin)
{
	wic_tna_last_reset();
	return wic_tna_register_check(msg, auth, to, origin);
}

static int ki_wic_tna_verify_register(sip_msg_t *msg, str *auth, str *to)
{
	wic_tna_last_reset();
	return wic_tna_register_check(msg, auth, to, NULL);
}

static int ki_wic_tna_origin(sip_msg_t *msg, str *origin)
{
	wic_tna_last_reset();
	return wic_tna_origin_check(msg, origin);
}

static int ki_wic_tna_scscf_check(
		sip_msg_t *msg, str *auth, str *srcip, str *entities)
{
	wic_tna_last_reset();
	return wic_tna_scscf(msg, auth, srcip, entities);
}

/**
 * eP-CSCF, after an accepted wic_tna_verify_register() (or _verify*):
 * rewrite the Expires header and the expires of every contact in every
 * Contact header to at most $wic_tna(expires). Once per check. Returns 1,
 * -1 when the last check was not accepted or the request is malformed.
 */
static int ki_wic_tna_cap_expires(sip_msg_t *msg)
{
	int64_t granted;

	if(!_wic_tna_last.set || _wic_tna_last.res == NULL
			|| !wic_tna_result_accepted(_wic_tna_last.res)) {
		LM_ERR("wic_tna_cap_expires() without an accepted check before "
			   "it\n");
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
 * The string value of a function parameter. A parameter that is one
 * variable alone ("$var(x)", "$hdr(Authorization)") is read directly:
 * fixup_get_svalue() prints it into the pv buffer (pv_buffer_size, 8192
 * bytes by default), which a large Authorization header does not fit, and
 * the token-size rule (401 token_too_large) belongs to the library. Any
 * other parameter goes through fixup_get_svalue().
 */
static int wic_tna_param_str(sip_msg_t *msg, gparam_t *gp, str *out)
{
	pv_value_t val;
	pv_elem_t *e;

	if(gp != NULL && gp->type == FPARAM_PVE && gp->v.pve != NULL) {
		e = gp->v.pve;
		if(e->next == NULL && e->text.len == 0 && e->spec != NULL
				&& e->spec->getf != NULL) {
			memset(&val, 0, sizeof(val));
			if(pv_get_spec_value(msg, e->spec, &val) == 0
					&& (val.flags & (PV_VAL_NULL | PV_VAL_STR))
							   == PV_VAL_STR) {
				*out = val.rs;
				return 0;
			}
		}
	}
	return fixup_get_svalue(msg, gp, out);
}

static int w_wic_tna_verify(sip_msg_t *msg, char *pauth, char *pto)
{
	str auth = STR_NULL;
	str to = STR_NULL;

	wic_tna_last_reset();

	if(wic_tna_param_str(msg, (gparam_t *)pauth, &auth) < 0) {
		LM_ERR("cannot get the authorization value\n");
		return -2;
	}
	if(fixup_get_svalue(msg, (gparam_t *)pto, &to) < 0) {
		LM_ERR("cannot get the To URI\n");
		return -2;
	}
	return wic_tna_check(msg, &auth, &to, -1, NULL);
}

static int w_wic_tna_verify_expires(
		sip_msg_t *msg, char *pauth, char *pto, char *pexpires)
{
	str auth = STR_NULL;
	str to = STR_NULL;
	int expires = -1;

	wic_tna_last_reset();

	if(wic_tna_param_str(msg, (gparam_t *)pauth, &auth) < 0) {
		LM_ERR("cannot get the authorization value\n");
		return -2;
	}
	if(fixup_get_svalue(msg, (gparam_t *)pto, &to) < 0) {
		LM_ERR("cannot get the To URI\n");
		return -2;
	}
	if(fixup_get_ivalue(msg, (gparam_t *)pexpires, &expires) < 0) {
		/* e.g. $hdr(Expires) when there is none: no expiry requested */
		LM_DBG("no requested expiry\n");
		expires = -1;
	}
	return wic_tna_check(msg, &auth, &to, expires, NULL);
}

/* porigin NULL: the two-parameter form (no Origin) */
static int w_wic_tna_verify_register_origin(
		sip_msg_t *msg, char *pauth, char *pto, char *porigin)
{
	str auth = STR_NULL;
	str to = STR_NULL;
	str origin = STR_NULL;

	wic_tna_last_reset();

	if(wic_tna_param_str(msg, (gparam_t *)pauth, &auth) < 0) {
		LM_ERR("cannot get the authorization value\n");
		return -2;
	}
	if(fixup_get_svalue(msg, (gparam_t *)pto, &to) < 0) {
		LM_ERR("cannot get the To URI\n");
		return -2;
	}
	if(porigin != NULL
			&& fixup_get_svalue(msg, (gparam_t *)porigin, &origin) < 0) {
		LM_ERR("cannot get the Origin\n");
		return -2;
	}
	return wic_tna_register_check(msg, &auth, &to, &origin);
}

static int w_wic_tna_verify_register(sip_msg_t *msg, char *pauth, char *pto)
{
	return w_wic_tna_verify_register_origin(msg, pauth, pto, NULL);
}

static int w_wic_tna_cap_expires(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_wic_tna_cap_expires(msg);
}

static int w_wic_tna_origin(sip_msg_t *msg, char *porigin, char *p2)
{
	str origin = STR_NULL;

	wic_tna_last_reset();

	if(fixup_get_svalue(msg, (gparam_t *)porigin, &origin) < 0) {
		LM_ERR("cannot get the origin\n");
		return -2;
	}
	return wic_tna_origin_check(msg, &origin);
}

static int w_wic_tna_scscf_check(
		sip_msg_t *msg, char *pauth, char *psrcip, char *pentities)
{
	str auth = STR_NULL;
	str srcip = STR_NULL;
	str entities = STR_NULL;

	wic_tna_last_reset();

	if(wic_tna_param_str(msg, (gparam_t *)pauth, &auth) < 0) {
		LM_ERR("cannot get the authorization value\n");
		return -2;
	}
	if(fixup_get_svalue(msg, (gparam_t *)psrcip, &srcip) < 0) {
		LM_ERR("cannot get the source address\n");
		return -2;
	}
	if(fixup_get_svalue(msg, (gparam_t *)pentities, &entities) < 0) {
		LM_ERR("cannot get the allowed entities\n");
		return -2;
	}
	return wic_tna_scscf(msg, &auth, &srcip, &entities);
}

/**
 * Prometheus /metrics on Kamailio's own HTTP server (event_route[xhttp:request]):
 * the library's text exposition (wic_tna_ctx_metrics_text) sent as the
 * reply, 200 with Content-Type text/plain; version=0.0.4, through the
 * xhttp module's API (a reply body through $var and xhttp_reply() would
 * be cut at pv_buffer_size). Returns 1 when the reply was sent, -1 when
 * not (no xhttp module, no context, out of memory: logged; the route then
 * answers itself).
 */
static xhttp_api_t _wic_tna_xhttp;
static int _wic_tna_xhttp_bound = 0; /* per process: 1 bound, -1 no xhttp */

static int ki_wic_tna_metrics_reply(sip_msg_t *msg)
{
	static str ok = str_init("OK");
	static str ctype = str_init("text/plain; version=0.0.4; charset=utf-8");
	wic_tna_ctx *ctx;
	wic_tna_status rc = WIC_TNA_STATUS_BUFFER_TOO_SMALL;
	size_t cap = 16384, need = 0;
	char *buf = NULL;
	char ebuf[512];
	str body;
	int tries, ret = -1;

	if(_wic_tna_xhttp_bound == 0) {
		_wic_tna_xhttp_bound = (xhttp_load_api(&_wic_tna_xhttp) == 0) ? 1 : -1;
	}
	if(_wic_tna_xhttp_bound < 0) {
		LM_ERR("wic_tna_metrics_reply() needs the module xhttp loaded\n");
		return -1;
	}
	if((ctx = wic_tna_mod_ctx()) == NULL) {
		return -1;
	}
	/* the text may grow between the two calls (a reload): a few tries */
	for(tries = 0; tries < 4 && rc == WIC_TNA_STATUS_BUFFER_TOO_SMALL;
			tries++) {
		if(buf != NULL)
			pkg_free(buf);
		if(cap > 0x7ffffffe) {
			LM_ERR("metrics: %zu bytes is too large for a reply\n", cap);
			return -1;
		}
		buf = (char *)pkg_malloc(cap);
		if(buf == NULL) {
			PKG_MEM_ERROR;
			return -1;
		}
		rc = wic_tna_ctx_metrics_text(ctx, buf, cap, &need);
		cap = need + 4096;
	}
	if(rc != WIC_TNA_STATUS_OK) {
		LM_ERR("metrics failed: %s (status %d)\n",
				wic_tna_mod_last_error(ebuf, sizeof(ebuf)), (int)rc);
		goto done;
	}
	body.s = buf;
	body.len = (int)need;
	if(_wic_tna_xhttp.reply(msg, 200, &ok, &ctype, &body) < 0) {
		LM_ERR("metrics: cannot send the reply\n");
		goto done;
	}
	ret = 1;
done:
	pkg_free(buf);
	return ret;
}

static int w_wic_tna_metrics_reply(sip_msg_t *msg, char *p1, char *p2)
{
	return ki_wic_tna_metrics_reply(msg);
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

static int pv_parse_wic_tna_name(pv_spec_t *sp, str *in)
{
	int i;

	if(sp == NULL || in == NULL || in->len <= 0)
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

static int pv_get_wic_tna_str(
		sip_msg_t *msg, pv_param_t *param, pv_value_t *res, wic_tna_str v)
{
	str s;

	if(v.ptr == NULL || v.len == 0 || v.len > 0x7fffffff)
		return pv_get_strempty(msg, param, res);
	s.s = (char *)v.ptr;
	s.len = (int)v.len;
	return pv_get_strval(msg, param, res, &s);
}

static int pv_get_wic_tna_int64(
		sip_msg_t *msg, pv_param_t *param, pv_value_t *res, int64_t v)
{
	if(v > 0x7fffffff)
		v = 0x7fffffff;
	if(v < -0x7fffffff)
		v = -0x7fffffff;
	return pv_get_sintval(msg, param, res, (int)v);
}

static int pv_get_wic_tna(sip_msg_t *msg, pv_param_t *param, pv_value_t *res)
{
	static str internal_error = str_init("internal_error");
	static str malformed = str_init("malformed_request");
	wic_tna_result *r = _wic_tna_last.res;
	int key = param->pvn.u.isname.name.n;

	if(!_wic_tna_last.set) {
		return pv_get_null(msg, param, res);
	}
	if(key == WIC_TNA_PV_REQUESTED) {
		return pv_get_sintval(msg, param, res, _wic_tna_last.requested);
	}
	if(_wic_tna_last.malformed) {
		/* the REGISTER's Contact or Expires: 400, no challenge */
		switch(key) {
			case WIC_TNA_PV_STATUS:
				return pv_get_uintval(msg, param, res, 400);
			case WIC_TNA_PV_REASON:
				return pv_get_strval(msg, param, res, &malformed);
			case WIC_TNA_PV_ACCEPTED:
			case WIC_TNA_PV_EXPIRES:
			case WIC_TNA_PV_EXPIRES_AT:
			case WIC_TNA_PV_SECONDS_LEFT:
				return pv_get_sintval(msg, param, res, 0);
			default:
				return pv_get_strempty(msg, param, res);
		}
	}
	if(r == NULL) {
		/* the last check failed inside the library: 500, no header */
		switch(key) {
			case WIC_TNA_PV_STATUS:
				return pv_get_uintval(msg, param, res, 500);
			case WIC_TNA_PV_REASON:
				return pv_get_strval(msg, param, res, &internal_error);
			case WIC_TNA_PV_ACCEPTED:
			case WIC_TNA_PV_EXPIRES:
			case WIC_TNA_PV_EXPIRES_AT:
			case WIC_TNA_PV_SECONDS_LEFT:
				return pv_get_sintval(msg, param, res, 0);
			default:
				return pv_get_strempty(msg, param, res);
		}
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
				return pv_get_strempty(msg, param, res);
			return pv_get_wic_tna_str(
					msg, param, res, wic_tna_result_impu(r, 0));
		case WIC_TNA_PV_IMPUS:
			if(_wic_tna_last.impus.s == NULL)
				return pv_get_strempty(msg, param, res);
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

/**
 * KEMI exports: KSR.wic_tna.<cfg function name>(...), as Kamailio's own
 * modules name them (KSR.sl.sl_send_reply). wic_tna_verify_register has
 * two cfg forms; its three-parameter one is
 * KSR.wic_tna.wic_tna_verify_register_origin.
 */
/* clang-format off */
static sr_kemi_t sr_kemi_wic_tna_exports[] = {
	{ str_init("wic_tna"), str_init("wic_tna_verify"),
		SR_KEMIP_INT, ki_wic_tna_verify,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_verify_expires"),
		SR_KEMIP_INT, ki_wic_tna_verify_expires,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_INT,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_origin"),
		SR_KEMIP_INT, ki_wic_tna_origin,
		{ SR_KEMIP_STR, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_verify_register"),
		SR_KEMIP_INT, ki_wic_tna_verify_register,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_verify_register_origin"),
		SR_KEMIP_INT, ki_wic_tna_verify_register_origin,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_STR,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_cap_expires"),
		SR_KEMIP_INT, ki_wic_tna_cap_expires,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_scscf_check"),
		SR_KEMIP_INT, ki_wic_tna_scscf_check,
		{ SR_KEMIP_STR, SR_KEMIP_STR, SR_KEMIP_STR,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},
	{ str_init("wic_tna"), str_init("wic_tna_metrics_reply"),
		SR_KEMIP_INT, ki_wic_tna_metrics_reply,
		{ SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE,
			SR_KEMIP_NONE, SR_KEMIP_NONE, SR_KEMIP_NONE }
	},

	{ {0, 0}, {0, 0}, 0, NULL, { 0, 0, 0, 0, 0, 0 } }
};
/* clang-format on */

int mod_register(char *path, int *dlflags, void *p1, void *p2)
{
	sr_kemi_modules_add(sr_kemi_wic_tna_exports);
	return 0;
}
