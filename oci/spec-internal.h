/* SPDX-License-Identifier: Apache-2.0 */
/* Private helpers shared by oci/spec*.c (not for runtime/). */
#ifndef HM_OCI_SPEC_INTERNAL_H
#define HM_OCI_SPEC_INTERNAL_H

#include "oci/spec.h"

const char *oci_cap_to_name(int cap);
int oci_ns_type_from_string(const char *s);
int oci_seccomp_action_from_string(const char *s);
int oci_seccomp_op_from_string(const char *s);

#endif
