/* A program that brings its own allocator (as a statically linked jemalloc
 * or tcmalloc does): it defines malloc and friends itself, so the
 * interposer's never run; the attribution must say so rather than report an
 * empty profile as if nothing was allocated (tests/test_attrib.c). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static _Alignas(16) unsigned char heap[64 << 20];
static size_t used;

void *malloc(size_t n)
{
    size_t at = (used + 15) & ~(size_t)15;
    if (n > sizeof heap - at) return NULL;
    used = at + n;
    return heap + at;
}
void free(void *p) { (void)p; }
void *calloc(size_t a, size_t b)
{
    if (b && a > SIZE_MAX / b) return NULL;
    return malloc(a * b); /* the arena is static: already zero */
}
void *realloc(void *p, size_t n)
{
    void *q = malloc(n);
    if (q && p) memcpy(q, p, n); /* may read past the old block, inside the arena */
    return q;
}

int main(void)
{
    char *p = malloc(10 << 20);
    if (!p) return 1;
    memset(p, 1, 10 << 20);
    return 0;
}
