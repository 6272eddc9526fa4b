/* SPDX-License-Identifier: Apache-2.0 */
/* yajl helpers shared by oci/'s image and store code (not for runtime/, which never sees yajl). */
#ifndef HM_OCI_JSON_UTIL_H
#define HM_OCI_JSON_UTIL_H

#include <yajl/yajl_tree.h>

/* The string members of a JSON array as a NULL-terminated vector (others skipped); NULL if v is no array. */
char **oci_json_strv(yajl_val v);

#endif
