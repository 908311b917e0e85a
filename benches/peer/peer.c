/*
 * Peer benchmark (issue #4, item 2): the same tokens through libjwt 1.x,
 * called the way Kamailio's jwt module calls it, and through wic-tna's C ABI
 * (wic_tna_verify, verified-token cache off), timed alternately in one
 * process so that the ratios do not depend on the machine's speed.
 *
 *   peer <dir> [rounds] [results-file]
 *
 * <dir> holds wic-tna.toml (verified_cache_size = 0) and, per algorithm,
 * <ALG>.jwt (the token) and <ALG>.key (the public key PEM, or the HMAC
 * secret) -- scripts/bench.sh prepares it.
 *
 * libjwt side, per REGISTER, as Kamailio's jwt module does it
 * (src/modules/jwt/jwt_mod.c, ki_jwt_verify with key_mode=1: the key file's
 * text is cached, libjwt is handed the PEM text every time and parses it
 * again): jwt_str_alg(alg); jwt_decode(&jwt, token, key_pem, key_len); then
 * the claim checks. Kamailio >= 5.6 does those with libjwt >= 1.12's
 * jwt_valid_* / jwt_validate (alg, exp, nbf, configured claims); Debian
 * bookworm has libjwt 1.10.2, which has no jwt_valid API, so the same
 * checks are made with jwt_get_alg / jwt_get_grant_int / jwt_get_grant, as
 * OpenSIPS auth_jwt and pre-5.6 Kamailio configurations read claims:
 * alg, exp and nbf with leeway, iss, aud, scope, and the impi / impu
 * claims read out. libjwt 1.10.2 knows neither PS256 nor EdDSA: those rows
 * are reported as not supported.
 *
 * wic-tna side: wic_tna_verify(ctx, "Bearer <token>", To, expires 600)
 * with every check on (signature, lifetime, aud, scope, identities and
 * pools, To IMPU in the token, TNA header built), result freed.
 *
 * Also timed, to explain libjwt's cost: OpenSSL's PEM_read_bio_PUBKEY of
 * the same key alone (what libjwt repeats on every call).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <jwt.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wic_tna.h"

#define ISS "https://wwsf.socialnet.example"
#define AUD "ims.example.net"
#define SCOPE "webrtc-ims-client-access-to-ims"
#define TO "sip:alice@socialnet.ims.example.net"
#define LEEWAY 30
#ifndef PEER_LIBJWT_VERSION
#define PEER_LIBJWT_VERSION "1.x"
#endif

struct algcase {
	const char *alg;
	char *token;
	size_t token_len;
	char *header; /* "Bearer <token>" */
	size_t header_len;
	unsigned char *key; /* PEM text or secret, as Kamailio caches it */
	size_t key_len;
	int is_pem;
};

static const wic_tna_ctx *g_ctx;
static volatile long g_sink;

static char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) != 0) {
		fclose(f);
		return NULL;
	}
	long n = ftell(f);
	rewind(f);
	char *buf = malloc((size_t)n + 1);
	if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	/* Kamailio trims the key text (trim(&kdata)); tokens end with a newline. */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' '))
		n--;
	buf[n] = '\0';
	*len = (size_t)n;
	return buf;
}

static double now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* One REGISTER's token check through libjwt, Kamailio-style. */
static int libjwt_verify(const struct algcase *c)
{
	jwt_alg_t valg = jwt_str_alg(c->alg);
	jwt_t *jwt = NULL;
	time_t now = time(NULL);
	int ok = 1;

	if (valg == JWT_ALG_INVAL)
		return 0;
	if (jwt_decode(&jwt, c->token, c->key, (int)c->key_len) != 0 || jwt == NULL)
		return 0;
	if (jwt_get_alg(jwt) != valg)
		ok = 0;
	errno = 0;
	long exp = jwt_get_grant_int(jwt, "exp");
	if (errno != 0 || exp + LEEWAY < now)
		ok = 0;
	errno = 0;
	long nbf = jwt_get_grant_int(jwt, "nbf");
	if (errno == 0 && nbf > now + LEEWAY)
		ok = 0;
	const char *iss = jwt_get_grant(jwt, "iss");
	if (!iss || strcmp(iss, ISS) != 0)
		ok = 0;
	const char *aud = jwt_get_grant(jwt, "aud");
	if (!aud || strcmp(aud, AUD) != 0)
		ok = 0;
	const char *scope = jwt_get_grant(jwt, "scope");
	if (!scope || !strstr(scope, SCOPE))
		ok = 0;
	const char *impi = jwt_get_grant(jwt, "impi");
	const char *impu = jwt_get_grant(jwt, "impu");
	if (!impi || !impu)
		ok = 0;
	else
		g_sink += (long)strlen(impi) + (long)strlen(impu);
	jwt_free(jwt);
	return ok;
}

/* One REGISTER's token check through wic-tna's C ABI. */
static int wic_verify(const struct algcase *c)
{
	wic_tna_result *res = NULL;
	if (wic_tna_verify(g_ctx, c->header, c->header_len, TO, strlen(TO), 600, &res) != WIC_TNA_STATUS_OK)
		return 0;
	int ok = wic_tna_result_accepted(res);
	wic_tna_str tna = wic_tna_result_tna_header(res);
	g_sink += (long)tna.len;
	wic_tna_result_free(res);
	return ok;
}

/* What libjwt repeats on every call for a public key: parse the PEM. */
static int pem_parse(const struct algcase *c)
{
	BIO *bio = BIO_new_mem_buf(c->key, (int)c->key_len);
	if (!bio)
		return 0;
	EVP_PKEY *pk = PEM_read_bio_PUBKEY(bio, NULL, NULL, NULL);
	BIO_free(bio);
	if (!pk)
		return 0;
	EVP_PKEY_free(pk);
	return 1;
}

typedef int (*verify_fn)(const struct algcase *);

static double block_ns(verify_fn f, const struct algcase *c, long n)
{
	double t = now_ns();
	for (long i = 0; i < n; i++) {
		if (!f(c)) {
			fprintf(stderr, "peer: %s: a verification failed during timing\n", c->alg);
			exit(1);
		}
	}
	return (now_ns() - t) / (double)n;
}

/* Calls of f that take about 20 ms. */
static long calibrate(verify_fn f, const struct algcase *c)
{
	long n = 1;
	for (;;) {
		double t = now_ns();
		for (long i = 0; i < n; i++)
			f(c);
		double el = now_ns() - t;
		if (el > 5e6 || n > (1L << 28))
			return (long)(n * 20e6 / el) + 1;
		n *= 2;
	}
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof *v, cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv)
{
	static const char *algs[] = {"HS256", "RS256", "PS256", "ES256", "EdDSA"};
	const int nalgs = (int)(sizeof algs / sizeof *algs);
	if (argc < 2) {
		fprintf(stderr, "usage: peer <dir> [rounds] [results-file]\n");
		return 2;
	}
	const char *dir = argv[1];
	int rounds = argc > 2 ? atoi(argv[2]) : 15;
	if (rounds < 1 || rounds > 1000)
		rounds = 15;
	FILE *out = NULL;
	if (argc > 3 && !(out = fopen(argv[3], "w"))) {
		perror(argv[3]);
		return 1;
	}

	char path[4096];
	wic_tna_shared *sh = NULL;
	wic_tna_ctx *ctx = NULL;
	snprintf(path, sizeof path, "%s/wic-tna.toml", dir);
	if (wic_tna_shared_new_anonymous(&sh) != WIC_TNA_STATUS_OK ||
	    wic_tna_ctx_new(path, strlen(path), sh, &ctx) != WIC_TNA_STATUS_OK) {
		char msg[1024];
		size_t ml = 0;
		wic_tna_last_error(msg, sizeof msg, &ml);
		fprintf(stderr, "peer: %s: %s\n", path, msg);
		return 1;
	}
	g_ctx = ctx;

	printf("peer: libjwt %s (Kamailio jwt module style: PEM text handed over on every call) vs wic_tna_verify (C ABI, cache off)\n",
	       PEER_LIBJWT_VERSION);
	printf("      alternating blocks of ~20 ms, %d rounds, median of per-round ratios\n", rounds);
	printf("%-6s %12s %12s %12s %14s\n", "alg", "libjwt us", "wic-tna us", "libjwt/wic", "PEM parse us");
	int failures = 0;
	for (int a = 0; a < nalgs; a++) {
		struct algcase c = {.alg = algs[a]};
		size_t n;
		snprintf(path, sizeof path, "%s/%s.jwt", dir, c.alg);
		c.token = read_file(path, &c.token_len);
		snprintf(path, sizeof path, "%s/%s.key", dir, c.alg);
		c.key = (unsigned char *)read_file(path, &c.key_len);
		if (!c.token || !c.key) {
			fprintf(stderr, "peer: %s: missing token or key in %s\n", c.alg, dir);
			return 1;
		}
		c.is_pem = strncmp((char *)c.key, "-----BEGIN", 10) == 0;
		n = c.token_len + 8;
		c.header = malloc(n);
		c.header_len = (size_t)snprintf(c.header, n, "Bearer %s", c.token);

		if (!wic_verify(&c)) {
			fprintf(stderr, "peer: %s: wic_tna_verify rejects the token\n", c.alg);
			failures++;
			continue;
		}
		int lib_ok = jwt_str_alg(c.alg) != JWT_ALG_INVAL && libjwt_verify(&c);
		long nw = calibrate(wic_verify, &c);
		double *wr = calloc((size_t)rounds, sizeof(double));
		if (!lib_ok) {
			for (int r = 0; r < rounds; r++)
				wr[r] = block_ns(wic_verify, &c, nw);
			double w = median(wr, rounds);
			printf("%-6s %12s %12.2f %12s %14s   (libjwt %s)\n", c.alg, "n/a", w / 1e3, "n/a", "n/a",
			       jwt_str_alg(c.alg) == JWT_ALG_INVAL ? "does not support the algorithm" : "rejects the token");
			if (jwt_str_alg(c.alg) != JWT_ALG_INVAL)
				failures++;
			if (out)
				fprintf(out, "peer.%s.wic.ns %.1f\npeer.%s.libjwt.supported 0\n", c.alg, w, c.alg);
			free(wr);
			continue;
		}
		long nl = calibrate(libjwt_verify, &c);
		long np = c.is_pem ? calibrate(pem_parse, &c) : 0;
		double *lr = calloc((size_t)rounds, sizeof(double));
		double *pr = calloc((size_t)rounds, sizeof(double));
		double *ratio = calloc((size_t)rounds, sizeof(double));
		for (int r = 0; r < rounds; r++) {
			/* Alternate the order too. */
			if (r % 2 == 0) {
				lr[r] = block_ns(libjwt_verify, &c, nl);
				wr[r] = block_ns(wic_verify, &c, nw);
			} else {
				wr[r] = block_ns(wic_verify, &c, nw);
				lr[r] = block_ns(libjwt_verify, &c, nl);
			}
			if (np)
				pr[r] = block_ns(pem_parse, &c, np);
			ratio[r] = lr[r] / wr[r];
		}
		double rm = median(ratio, rounds), l = median(lr, rounds), w = median(wr, rounds);
		double p = np ? median(pr, rounds) : 0;
		if (np)
			printf("%-6s %12.2f %12.2f %11.2fx %14.2f\n", c.alg, l / 1e3, w / 1e3, rm, p / 1e3);
		else
			printf("%-6s %12.2f %12.2f %11.2fx %14s\n", c.alg, l / 1e3, w / 1e3, rm, "(secret)");
		if (out)
			fprintf(out, "peer.%s.libjwt.supported 1\npeer.%s.libjwt.ns %.1f\npeer.%s.wic.ns %.1f\npeer.%s.ratio %.4f\npeer.%s.pem.ns %.1f\n",
			        c.alg, c.alg, l, c.alg, w, c.alg, rm, c.alg, p);
		free(lr);
		free(wr);
		free(pr);
		free(ratio);
		free(c.token);
		free(c.key);
		free(c.header);
	}
	if (out)
		fclose(out);
	wic_tna_ctx_free(ctx);
	wic_tna_shared_free(sh);
	return failures ? 1 : 0;
}
