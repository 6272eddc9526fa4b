/* SPDX-License-Identifier: Apache-2.0 */
/* Static multitool for test bundles (crun's tests/init.c idea); filled by the runtime work. */
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv)
{
        if (argc > 1 && !strcmp(argv[1], "true"))
                return 0;
        fprintf(stderr, "usage: init true\n");
        return 2;
}
