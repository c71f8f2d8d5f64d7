/* JSON helpers shared by the test files that read miser's or a reference's
 * JSON output (header-only, as support.h). */
#ifndef MISER_TESTS_JSON_SUPPORT_H
#define MISER_TESTS_JSON_SUPPORT_H

#include <cjson/cJSON.h>
#include <criterion/criterion.h>

#include "support.h"

/* The parsed file (the caller cJSON_Deletes it); fails the test when the
 * file is missing or not JSON. */
static inline cJSON *test_read_json(const char *path)
{
    char *t = test_read_file(path, NULL);
    cr_assert(t, "%s not written", path);
    cJSON *j = cJSON_Parse(t);
    free(t);
    cr_assert(j, "%s is not JSON", path);
    return j;
}

#endif
