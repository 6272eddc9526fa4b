/* SPDX-License-Identifier: Apache-2.0 */
/* Shared between the engine runner's files; not for other modules. */
#ifndef HM_ENGINE_INTERNAL_H
#define HM_ENGINE_INTERNAL_H

#include <stdbool.h>

#include "engine/engine.h"
#include "lib/error.h"

enum eng_kind { ENG_ANY, ENG_DOCKER, ENG_PODMAN };

/* What answered /_ping, and where. */
struct eng_found {
        enum eng_kind kind;
        char *version; /* "20.10.24+dfsg1", "4.3.1" */
        char *socket;  /* absolute path */
        char *origin;  /* "--socket", "$DOCKER_HOST", "default" ... */
        char *prefix;  /* "/v1.41" */
};

void eng_found_release(struct eng_found *f);
const char *eng_kind_name(enum eng_kind k);
int eng_discover(const struct engine_options *opts, struct eng_found *ret, hm_error_t *err);

#endif
