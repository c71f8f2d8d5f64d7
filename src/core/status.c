/* Status names and the per-thread error message buffer. */
#include "miser/core.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_msg[1024];

const char *miser_status_str(miser_status st)
{
    switch (st) {
    case MISER_OK: return "ok";
    case MISER_ERR_NOMEM: return "out of memory";
    case MISER_ERR_IO: return "I/O error";
    case MISER_ERR_FORMAT: return "malformed input";
    case MISER_ERR_INVALID: return "invalid argument";
    case MISER_ERR_UNSUPPORTED: return "unsupported";
    case MISER_ERR_RANGE: return "out of range";
    case MISER_ERR_INTERNAL: return "internal error";
    }
    return "unknown status";
}

miser_status miser_error_set(miser_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_msg, sizeof g_msg, fmt, ap);
    va_end(ap);
    return st;
}

miser_status miser_error_prefix(miser_status st, const char *fmt, ...)
{
    char prefix[256], old[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t ol = strnlen(g_msg, sizeof old - 1);
    memcpy(old, g_msg, ol);
    old[ol] = 0;
    if (old[0])
        snprintf(g_msg, sizeof g_msg, "%.250s: %.700s", prefix, old);
    else
        snprintf(g_msg, sizeof g_msg, "%s: %s", prefix, miser_status_str(st));
    return st;
}

const char *miser_error_message(void) { return g_msg; }
void miser_error_clear(void) { g_msg[0] = 0; }
