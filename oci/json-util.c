/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/json-util.h"
#include "lib/util.h"

char **oci_json_strv(yajl_val v)
{
        if (!YAJL_IS_ARRAY(v))
                return NULL;
        char **r = xcalloc(v->u.array.len + 1, sizeof(char *));
        size_t n = 0;
        for (size_t i = 0; i < v->u.array.len; i++)
                if (YAJL_IS_STRING(v->u.array.values[i]))
                        r[n++] = xstrdup(YAJL_GET_STRING(v->u.array.values[i]));
        return r;
}
