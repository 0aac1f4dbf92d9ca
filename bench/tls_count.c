/*
 * tls_count.so: an LD_PRELOAD shim for wrk (which links OpenSSL's libssl dynamically) that
 * counts full and resumed TLS handshakes, and can forbid resumption.
 *
 * Why: wrk keeps one SSL object per connection slot and, on reconnect, calls SSL_shutdown()
 * then SSL_clear(), which keeps the SSL_SESSION; the next SSL_connect() offers it, so with
 * `Connection: close` wrk measures *resumed* handshakes whenever the server resumes.
 *
 * Environment:
 *   TLS_COUNT_OUT=FILE     at exit, write "full=N resumed=N version=V cipher=C group=G" to FILE
 *                          (version, cipher and group of the first handshake)
 *   TLS_COUNT_NO_RESUME=1  drop the cached session before every handshake (forces full ones)
 *
 * Built by bench/wrk with `cc -shared -fPIC -O2 -o tls_count.so tls_count.c -ldl`.
 * Only a benchmark aid: never linked into terminus.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
typedef struct ssl_cipher_st SSL_CIPHER;

static int (*real_connect)(SSL *);
static int (*p_session_reused)(const SSL *);
static int (*p_in_before)(const SSL *);
static int (*p_set_session)(SSL *, SSL_SESSION *);
static const char *(*p_get_version)(const SSL *);
static const SSL_CIPHER *(*p_get_current_cipher)(const SSL *);
static const char *(*p_cipher_name)(const SSL_CIPHER *);
static long (*p_ctrl)(SSL *, int, long, void *);
static const char *(*p_nid2sn)(int);
#define CTRL_GET_NEGOTIATED_GROUP 134 /* SSL_CTRL_GET_NEGOTIATED_GROUP, OpenSSL 3.0 */

static unsigned long n_full, n_resumed;
static int no_resume;
static char version[32], cipher[64], group[32];

static void resolve(void) {
    if (real_connect) return;
    real_connect = (int (*)(SSL *))dlsym(RTLD_NEXT, "SSL_connect");
    p_session_reused = (int (*)(const SSL *))dlsym(RTLD_DEFAULT, "SSL_session_reused");
    p_in_before = (int (*)(const SSL *))dlsym(RTLD_DEFAULT, "SSL_in_before");
    p_set_session = (int (*)(SSL *, SSL_SESSION *))dlsym(RTLD_DEFAULT, "SSL_set_session");
    p_get_version = (const char *(*)(const SSL *))dlsym(RTLD_DEFAULT, "SSL_get_version");
    p_get_current_cipher =
        (const SSL_CIPHER *(*)(const SSL *))dlsym(RTLD_DEFAULT, "SSL_get_current_cipher");
    p_cipher_name = (const char *(*)(const SSL_CIPHER *))dlsym(RTLD_DEFAULT, "SSL_CIPHER_get_name");
    p_ctrl = (long (*)(SSL *, int, long, void *))dlsym(RTLD_DEFAULT, "SSL_ctrl");
    p_nid2sn = (const char *(*)(int))dlsym(RTLD_DEFAULT, "OBJ_nid2sn");
    const char *nr = getenv("TLS_COUNT_NO_RESUME");
    no_resume = nr && *nr && strcmp(nr, "0") != 0;
}

int SSL_connect(SSL *s) {
    resolve();
    if (!real_connect) return -1;
    /* SSL_clear() leaves the object "before" the handshake with the old session attached. */
    if (no_resume && p_in_before && p_set_session && p_in_before(s)) p_set_session(s, NULL);
    int r = real_connect(s);
    if (r == 1) {
        if (p_session_reused && p_session_reused(s))
            __atomic_add_fetch(&n_resumed, 1, __ATOMIC_RELAXED);
        else
            __atomic_add_fetch(&n_full, 1, __ATOMIC_RELAXED);
        if (!version[0] && p_get_version) {
            snprintf(version, sizeof version, "%s", p_get_version(s));
            const SSL_CIPHER *c = p_get_current_cipher ? p_get_current_cipher(s) : NULL;
            snprintf(cipher, sizeof cipher, "%s", c && p_cipher_name ? p_cipher_name(c) : "?");
            long nid = p_ctrl ? p_ctrl(s, CTRL_GET_NEGOTIATED_GROUP, 0, NULL) : 0;
            const char *g = nid > 0 && p_nid2sn ? p_nid2sn((int)nid) : NULL;
            snprintf(group, sizeof group, "%s", g ? g : "?");
        }
    }
    return r;
}

__attribute__((destructor)) static void report(void) {
    const char *out = getenv("TLS_COUNT_OUT");
    if (!out || !*out) return;
    FILE *f = fopen(out, "w");
    if (!f) return;
    fprintf(f, "full=%lu resumed=%lu version=%s cipher=%s group=%s\n", n_full, n_resumed,
            version[0] ? version : "-", cipher[0] ? cipher : "-", group[0] ? group : "-");
    fclose(f);
}
