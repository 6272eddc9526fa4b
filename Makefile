# SPDX-License-Identifier: Apache-2.0
# hm: CI pipelines in OCI containers.  Plain make; see README.md.

PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
DESTDIR ?=
BUILD ?= build
CC ?= cc
PKG_CONFIG ?= pkg-config
PKGS := libcurl yajl libarchive libseccomp libcap

WARN := -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wpointer-arith -Wmissing-prototypes \
	-Wstrict-prototypes -Wno-missing-field-initializers -Wno-unused-parameter \
	-Werror=implicit-function-declaration -Werror=return-type -Werror=incompatible-pointer-types
CFLAGS ?= -O2 -g
ALL_CFLAGS := -std=gnu11 -D_GNU_SOURCE -I. $(WARN) $(CFLAGS) $(shell $(PKG_CONFIG) --cflags $(PKGS)) -MMD -MP
LIBS := $(shell $(PKG_CONFIG) --libs $(PKGS))

ifeq ($(V),)
Q := @
QCC = @echo "  CC      $@";
QLD = @echo "  LD      $@";
QAR = @echo "  AR      $@";
endif

LIB_DIRS := lib pipeline sched engine oci runtime
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard $(d)/*.c)))
CMD_SRCS := $(sort $(wildcard cmd/*.c))
UNIT_SRCS := $(sort $(wildcard tests/unit/test-*.c))
FUZZ_SRCS := $(sort $(wildcard tests/fuzz/fuzz-*.c))

LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/%.o)
CMD_OBJS := $(CMD_SRCS:%.c=$(BUILD)/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)
HM := $(BUILD)/hm
LIBHM := $(BUILD)/libhm.a
INIT := $(BUILD)/hm-test-init
HM_OCI := $(BUILD)/hm-oci

all: $(HM) $(HM_OCI) $(INIT)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(QCC)$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(LIBHM): $(LIB_OBJS)
	$(QAR)rm -f $@ && ar rcs $@ $^

$(HM): $(CMD_OBJS) $(LIBHM)
	$(QLD)$(CC) $(ALL_CFLAGS) -o $@ $(CMD_OBJS) $(LIBHM) $(LIBS) $(LDFLAGS)

# The OCI runtime command line under its own name (`hm-oci ARGS` == `hm oci ARGS`).
# A hard link: callers that canonicalise the path (readlink -f) keep the name.
$(HM_OCI): $(HM)
	$(Q)rm -f $@ && ln $(HM) $@

# A static multitool for test bundles and security tests (no busybox needed).
$(INIT): tests/init.c
	@mkdir -p $(dir $@)
	$(QLD)$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -static -o $@ $< || \
		$(CC) -std=gnu11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -o $@ $<

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(BUILD)/tests/unit/tap.o $(LIBHM)
	$(QLD)$(CC) $(ALL_CFLAGS) -o $@ $< $(BUILD)/tests/unit/tap.o $(LIBHM) $(LIBS) $(LDFLAGS)

$(BUILD)/tests/unit/tap.o: tests/unit/tap.c
	@mkdir -p $(dir $@)
	$(QCC)$(CC) $(ALL_CFLAGS) -c -o $@ $<

units: $(UNIT_BINS)

# Unit tests only (no engines, no root needed).
unit: $(UNIT_BINS) $(HM)
	$(Q)tests/run-units.sh $(BUILD)

# ASan/UBSan build of everything, in its own build directory.
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build-asan \
		CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" \
		LDFLAGS="-fsanitize=address,undefined" all units

# The whole suite: unit tests (plain and ASan/UBSan), then integration tests
# against real Docker and Podman engines and the real kernel, started and
# stopped by the harness.  Needs root (it starts dockerd and podman).
check: all units asan lint
	$(Q)tests/run-all.sh

fuzz:
	$(Q)tests/fuzz/run.sh

bench: all
	$(Q)tests/bench/run.sh

conformance: all
	$(Q)tests/conformance/run.sh

install: $(HM)
	install -d $(DESTDIR)$(BINDIR)
	install -m 0755 $(HM) $(DESTDIR)$(BINDIR)/hm
	ln -sf hm $(DESTDIR)$(BINDIR)/hm-oci

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/hm $(DESTDIR)$(BINDIR)/hm-oci

lint:
	$(Q)tests/lint.sh

format:
	clang-format -i $(LIB_SRCS) $(CMD_SRCS) $(wildcard */*.h)

clean:
	rm -rf build build-asan

.PHONY: all units unit asan check fuzz bench conformance install uninstall lint format clean
-include $(LIB_OBJS:.o=.d) $(CMD_OBJS:.o=.d) $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/unit/%.d)
.SECONDARY:
