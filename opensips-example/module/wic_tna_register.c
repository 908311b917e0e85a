/*
 * wic_tna module for OpenSIPS - the registration expiry of a REGISTER
 *
 * What a WIC asks for and what the S-CSCF is allowed to see: every
 * `expires` parameter of every contact in every Contact header, and the
 * Expires header, read with OpenSIPS's own parsers (parse_contact(), the
 * generic parameter parser) and rewritten through lumps. The cfg used to
 * cap only the first contact with a regular expression; `;expires =N`,
 * `; expires=N`, a quoted value, a second contact or a second Contact
 * header walked past it.
 *
 * Rules (fail closed):
 *   - a Contact header that does not parse, an `expires` parameter without
 *     a value, with a quoted value or with anything but digits, a contact
 *     with two `expires` parameters, two Expires headers, an Expires that is
 *     not a number, or `Contact: *` with an Expires other than 0: malformed
 *     (the cfg answers 400);
 *   - a number of any size is a number: values past 2^31 saturate (and are
 *     capped like any other);
 *   - the requested expiry is the largest expiry any contact asks for
 *     (its parameter, else the Expires header); -1 when some contact asks
 *     for none (the registrar's default applies); 0 for a de-registration
 *     (every contact 0, or `*` with Expires: 0);
 *   - the cap rewrites every `expires` parameter above it and the Expires
 *     header above it, and adds `Expires: <cap>` when a contact has no
 *     parameter and there is no Expires header, so that no registrar
 *     default can exceed it.
 *
 * SPDX-License-Identifier: Apache-2.0
 */

#include <string.h>

#include "../../dprint.h"
#include "../../data_lump.h"
#include "../../mem/mem.h"
#include "../../ut.h"
#include "../../trim.h"
#include "../../parser/msg_parser.h"
#include "../../parser/parse_param.h"
#include "../../parser/contact/parse_contact.h"

#include "wic_tna_mod.h"

#define WIC_TNA_EXPIRES_MAX 0x7fffffff

/* digits only, at least one; saturates at WIC_TNA_EXPIRES_MAX */
static int wic_tna_parse_delta(str *v, int *out)
{
	long long n = 0;
	int i;

	if(v == NULL || v->s == NULL || v->len <= 0)
		return -1;
	for(i = 0; i < v->len; i++) {
		if(v->s[i] < '0' || v->s[i] > '9')
			return -1;
		if(n < WIC_TNA_EXPIRES_MAX)
			n = n * 10 + (v->s[i] - '0');
	}
	*out = (n > WIC_TNA_EXPIRES_MAX) ? WIC_TNA_EXPIRES_MAX : (int)n;
	return 0;
}

static int wic_tna_is_expires_name(str *name)
{
	return name->len == 7 && strncasecmp(name->s, "expires", 7) == 0;
}

/* an expires parameter's value, refusing quotes and empty values */
static int wic_tna_param_delta(struct sip_msg *msg, param_t *p, int *out)
{
	if(p->body.s == NULL || p->body.len <= 0) {
		LM_NOTICE("contact expires parameter without a value\n");
		return -1;
	}
	if(p->body.s > msg->buf && p->body.s[-1] == '"') {
		LM_NOTICE("contact expires parameter with a quoted value\n");
		return -1;
	}
	if(wic_tna_parse_delta(&p->body, out) < 0) {
		LM_NOTICE("contact expires parameter is not a number: %.*s\n",
				p->body.len, p->body.s);
		return -1;
	}
	return 0;
}

/* replace [s, s+len) of the message with the decimal value */
static int wic_tna_replace_number(struct sip_msg *msg, char *s, int len, int value)
{
	struct lump *l;
	char *num;
	char *txt;
	int nlen = 0;

	l = del_lump(msg, (int)(s - msg->buf), len, 0);
	if(l == NULL) {
		LM_ERR("cannot delete the old expiry\n");
		return -1;
	}
	num = int2str((unsigned long)value, &nlen);
	txt = (char *)pkg_malloc(nlen);
	if(txt == NULL) {
		LM_ERR("no more pkg memory\n");
		return -1;
	}
	memcpy(txt, num, nlen);
	if(insert_new_lump_after(l, txt, nlen, 0) == NULL) {
		LM_ERR("cannot insert the capped expiry\n");
		pkg_free(txt);
		return -1;
	}
	return 0;
}

static int wic_tna_append_expires(struct sip_msg *msg, int value)
{
	struct lump *anchor;
	char buf[32];
	char *txt;
	int len;

	anchor = anchor_lump(msg, msg->unparsed - msg->buf, 0);
	if(anchor == NULL) {
		LM_ERR("cannot anchor the Expires header\n");
		return -1;
	}
	len = snprintf(buf, sizeof(buf), "Expires: %d\r\n", value);
	if(len <= 0 || len >= (int)sizeof(buf))
		return -1;
	txt = (char *)pkg_malloc(len);
	if(txt == NULL) {
		LM_ERR("no more pkg memory\n");
		return -1;
	}
	memcpy(txt, buf, len);
	if(insert_new_lump_before(anchor, txt, len, 0) == NULL) {
		LM_ERR("cannot insert the Expires header\n");
		pkg_free(txt);
		return -1;
	}
	return 0;
}

int wic_tna_register_expiry(struct sip_msg *msg, int cap, int *requested)
{
	struct hdr_field *hf;
	struct hdr_field *expires_hf = NULL;
	contact_body_t *cb;
	contact_t *c;
	param_t *p;
	int expires_hdr = -1; /* the Expires header's value; -1: none */
	int star = 0;
	int any_contact = 0;
	int some_default = 0; /* a contact without an expires parameter */
	int max_req = 0;
	int n, v;
	str body;

	if(msg == NULL || msg->first_line.type != SIP_REQUEST)
		return -1;
	if(parse_headers(msg, HDR_EOH_F, 0) < 0) {
		LM_NOTICE("cannot parse the request's headers\n");
		return -1;
	}

	for(hf = msg->headers; hf != NULL; hf = hf->next) {
		if(hf->type != HDR_EXPIRES_T)
			continue;
		if(expires_hf != NULL) {
			LM_NOTICE("more than one Expires header\n");
			return -1;
		}
		expires_hf = hf;
		body = hf->body;
		trim(&body);
		if(wic_tna_parse_delta(&body, &expires_hdr) < 0) {
			LM_NOTICE("Expires is not a number: %.*s\n", hf->body.len,
					hf->body.s);
			return -1;
		}
	}

	for(hf = msg->headers; hf != NULL; hf = hf->next) {
		if(hf->type != HDR_CONTACT_T)
			continue;
		if(parse_contact(hf) < 0 || hf->parsed == NULL) {
			LM_NOTICE("Contact header does not parse: %.*s\n", hf->body.len,
					hf->body.s);
			return -1;
		}
		cb = (contact_body_t *)hf->parsed;
		if(cb->star) {
			star = 1;
			continue;
		}
		for(c = cb->contacts; c != NULL; c = c->next) {
			any_contact = 1;
			n = 0;
			for(p = c->params; p != NULL; p = p->next) {
				if(!wic_tna_is_expires_name(&p->name))
					continue;
				if(++n > 1) {
					LM_NOTICE("contact with two expires parameters\n");
					return -1;
				}
				if(wic_tna_param_delta(msg, p, &v) < 0)
					return -1;
				if(v > max_req)
					max_req = v;
			}
			if(n == 0) {
				if(expires_hdr < 0) {
					some_default = 1;
				} else if(expires_hdr > max_req) {
					max_req = expires_hdr;
				}
			}
		}
	}
	if(star) {
		/* RFC 3261 10.2.2: "*" only with Expires: 0, and alone */
		if(any_contact || expires_hdr != 0) {
			LM_NOTICE("Contact: * with other contacts or an Expires other "
					  "than 0\n");
			return -1;
		}
		if(requested != NULL)
			*requested = 0;
		return 0;
	}
	if(requested != NULL) {
		if(!any_contact)
			*requested = -1; /* a query: registers nothing */
		else
			*requested = some_default ? -1 : max_req;
	}
	if(cap < 0)
		return 0;

	/* the cap */
	for(hf = msg->headers; hf != NULL; hf = hf->next) {
		if(hf->type != HDR_CONTACT_T)
			continue;
		cb = (contact_body_t *)hf->parsed;
		for(c = cb->contacts; c != NULL; c = c->next) {
			for(p = c->params; p != NULL; p = p->next) {
				if(!wic_tna_is_expires_name(&p->name))
					continue;
				if(wic_tna_param_delta(msg, p, &v) < 0)
					return -1;
				if(v > cap
						&& wic_tna_replace_number(
								   msg, p->body.s, p->body.len, cap)
								   < 0)
					return -1;
			}
		}
	}
	if(expires_hf != NULL) {
		if(expires_hdr > cap) {
			body = expires_hf->body;
			trim(&body);
			if(wic_tna_replace_number(msg, body.s, body.len, cap) < 0)
				return -1;
		}
	} else if(some_default) {
		if(wic_tna_append_expires(msg, cap) < 0)
			return -1;
	}
	return 0;
}
