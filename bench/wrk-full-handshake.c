// LD_PRELOAD shim for wrk: makes every TLS connection a full handshake, and counts them.
//
// wrk reuses one SSL object per connection slot and, on reconnect, calls SSL_clear(), which
// keeps the last session: the next handshake is a TLS 1.3 resumption (PSK), several times
// cheaper for the server than a full ECDHE + ECDSA handshake. Servers that issue tickets (hitch,
// HAProxy, tlstap) would all be measured on resumptions, so "handshakes/s" would not be what
// DESIGN.md asks for. Dropping the session after SSL_clear() makes each connection a full
// handshake. Counting SSL_session_reused() after each completed SSL_connect() proves it: the
// report (to $WRK_FULL_HANDSHAKE_REPORT, else stderr) must say "resumed 0".
//
// Build: cc -shared -fPIC -O2 -o wrk-full-handshake.so wrk-full-handshake.c -ldl
// No OpenSSL headers needed: the three functions are declared here with their ABI.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct ssl_st SSL;
typedef struct ssl_session_st SSL_SESSION;
int SSL_set_session(SSL *ssl, SSL_SESSION *session);
int SSL_session_reused(const SSL *ssl);

static unsigned long handshakes;
static unsigned long resumed;

static void *realFunction(const char *name) {
  void *function = dlsym(RTLD_NEXT, name);
  if (function == NULL) {
    fprintf(stderr, "wrk-full-handshake: %s not found: %s\n", name, dlerror());
    abort();
  }
  return function;
}

int SSL_clear(SSL *ssl) {
  static int (*real)(SSL *);
  if (real == NULL) real = (int (*)(SSL *))realFunction("SSL_clear");
  int result = real(ssl);
  SSL_set_session(ssl, NULL);  // forget the session: no PSK offered on the next connect
  return result;
}

int SSL_connect(SSL *ssl) {
  static int (*real)(SSL *);
  if (real == NULL) real = (int (*)(SSL *))realFunction("SSL_connect");
  int result = real(ssl);
  if (result == 1) {
    __atomic_fetch_add(&handshakes, 1, __ATOMIC_RELAXED);
    if (SSL_session_reused(ssl)) __atomic_fetch_add(&resumed, 1, __ATOMIC_RELAXED);
  }
  return result;
}

__attribute__((destructor)) static void report(void) {
  const char *path = getenv("WRK_FULL_HANDSHAKE_REPORT");
  FILE *out = path != NULL ? fopen(path, "w") : NULL;
  fprintf(out != NULL ? out : stderr, "handshakes %lu resumed %lu\n",
          __atomic_load_n(&handshakes, __ATOMIC_RELAXED),
          __atomic_load_n(&resumed, __ATOMIC_RELAXED));
  if (out != NULL) fclose(out);
}
