# EnterSandBox (agentbox) build.  `make` builds everything into build/,
# `make demo` installs what is missing and runs the quick-start example,
# `make test` runs every test, `make install PREFIX=... [DESTDIR=...]` and
# `make uninstall` install and remove it.  See README.md.

PYTHON      ?= /usr/bin/python3
PYCONFIG    ?= /usr/bin/python3-config
BUILD       ?= build
CC          ?= cc

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wno-format-truncation -Werror
CSTD    := -std=gnu17 -D_GNU_SOURCE
OPT     ?= -O2 -g
SAN     ?=
CFLAGS_ALL := $(CSTD) $(OPT) $(SAN) $(WARN) -fPIC -Iinclude -Isrc/lib -Isrc/dlp $(CFLAGS)
LDFLAGS_ALL := $(SAN) $(LDFLAGS)

PY_CFLAGS := $(patsubst -I%,-isystem %,$(filter -I%,$(shell $(PYCONFIG) --includes)))
PY_LIBS   := $(shell $(PYCONFIG) --embed --ldflags)
DEP_LIBS  := -ljansson -lseccomp -lsqlite3 -lcrypto -lpthread

LIB_SRC  := $(wildcard src/lib/*.c)
EXE_SRC  := $(wildcard src/executor/*.c)
D_SRC    := $(wildcard src/daemon/*.c src/daemon/*/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
EG_SRC   := $(wildcard src/egress/*.c)
DLP_SRC  := $(wildcard src/dlp/*.c)
UT_SRC   := $(wildcard tests/unit/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
EXE_OBJ  := $(EXE_SRC:%.c=$(BUILD)/obj/%.o)
D_OBJ    := $(D_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
EG_OBJ   := $(EG_SRC:%.c=$(BUILD)/obj/%.o)
DLP_OBJ  := $(DLP_SRC:%.c=$(BUILD)/obj/%.o)
# The sidecar (docs/egress.md): TLS, HTTP framing (Node's http-parser),
# gzip/deflate request bodies. The daemon reads the policy file (libyaml)
# and makes the egress CA (the sidecar's ca.c).
EG_LIBS  := -lssl -lcrypto -lhttp_parser -lz
D_LIBS   := -lyaml
# The DLP engine (docs/dlp.md): Hyperscan finds candidates, zlib inflates
# what was compressed. The sidecar, the daemon (the audit log's redactor)
# and the CLI (`agentbox dlp`) link it.
DLP_LIBS := -lhs -lz -lm
UT_OBJ   := $(UT_SRC:%.c=$(BUILD)/obj/%.o)

# `make install PREFIX=/usr/local DESTDIR=`: the programs in $PREFIX/bin, the
# library in $PREFIX/lib, the executor where agentboxd looks for it
# ($PREFIX/libexec/agentbox, see executor_dir in src/daemon/main.c), the
# header and the docs. The Python SDK is installed with pip (README.md).
PREFIX     ?= /usr/local
DESTDIR    ?=
BINDIR     := $(PREFIX)/bin
LIBDIR     := $(PREFIX)/lib
LIBEXECDIR := $(PREFIX)/libexec/agentbox
INCLUDEDIR := $(PREFIX)/include
DOCDIR     := $(PREFIX)/share/doc/agentbox
DOC_FILES  := README.md $(wildcard docs/*.md)
DESIGN_DOC_FILES := $(wildcard docs/design/*.md)

.PHONY: all deps demo test unit integration adversarial asan asan-build bench clean format \
        install uninstall fuzz fuzz-build fuzz-bins fuzz-smoke
all: $(BUILD)/libagentbox.so $(BUILD)/libagentbox-internal.a $(BUILD)/agentbox-executor \
     $(BUILD)/agentboxd $(BUILD)/agentbox $(BUILD)/agentbox-egress $(BUILD)/unit-tests \
     $(BUILD)/engine-tests $(BUILD)/egress-tests $(BUILD)/dlp-tests

HDRS := include/agentbox.h $(wildcard src/*/*.h src/*/*/*.h)

$(BUILD)/obj/%.o: %.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

# The daemon's parts (engine/, backend/, frontend/, record/) include each
# other's headers by their path under src/daemon.
$(BUILD)/obj/src/daemon/%.o: src/daemon/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc/daemon -c $< -o $@

$(BUILD)/obj/src/executor/%.o: src/executor/%.c $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PY_CFLAGS) -c $< -o $@

# The library is built with hidden visibility: libagentbox.so exports only
# what include/agentbox.h marks AB_API (tests/integration/test_c_api.py
# checks). agentbox's own programs use internal functions too, so they link
# libagentbox-internal.a, the same objects as a static archive, and need no
# libagentbox.so at run time: an installed or copied bin/ works anywhere.
$(LIB_OBJ): CFLAGS_ALL += -fvisibility=hidden

$(BUILD)/libagentbox.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS)

$(BUILD)/libagentbox-internal.a: $(LIB_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

# The executor links the library objects in: it is started from a memfd
# copy (see src/daemon/zygote.c), so no path of this build shows inside
# sandboxes, and it must not need to find libagentbox.so.
# The audit log is the daemon's business: the executor does without it.
EXE_LIB_OBJ := $(filter-out $(BUILD)/obj/src/lib/audit%.o,$(LIB_OBJ))
$(BUILD)/agentbox-executor: $(EXE_OBJ) $(EXE_LIB_OBJ)
	$(CC) -o $@ $(EXE_OBJ) $(EXE_LIB_OBJ) $(LDFLAGS_ALL) $(PY_LIBS) -ljansson -lseccomp

$(BUILD)/agentboxd: $(D_OBJ) $(BUILD)/obj/src/egress/ca.o $(DLP_OBJ) $(BUILD)/libagentbox-internal.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS) $(D_LIBS) $(DLP_LIBS)

$(BUILD)/agentbox-egress: $(EG_OBJ) $(DLP_OBJ) $(BUILD)/libagentbox-internal.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS) $(EG_LIBS) $(DLP_LIBS)

$(BUILD)/agentbox: $(CLI_OBJ) $(DLP_OBJ) $(BUILD)/libagentbox-internal.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS) $(DLP_LIBS)

# Unit tests link the library objects directly so that internal (ab__)
# functions can be tested too.
$(BUILD)/unit-tests: $(UT_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS)

# Engine tests (docs/architecture.md, "Testing the engine"): the real engine
# against the in-memory backend of tests/engine/fake_backend.c and stubs of
# the rest of the daemon (daemon_stubs.c), run by the unit tests' runner.
# The fuzzer of the request path (fuzz_rpc) links the same support.
ENGINE_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard src/daemon/engine/*.c)) \
	       $(BUILD)/obj/src/daemon/backend/backend.o
ENGINE_SUPPORT_OBJ := $(BUILD)/obj/tests/engine/fake_backend.o \
		      $(BUILD)/obj/tests/engine/daemon_stubs.o
ET_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/engine/*.c))

$(BUILD)/obj/tests/engine/%.o: tests/engine/%.c $(HDRS) $(wildcard tests/engine/*.h) \
			       tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc/daemon -Itests/unit -c $< -o $@

$(BUILD)/engine-tests: $(ET_OBJ) $(BUILD)/obj/tests/unit/runner.o $(ENGINE_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS)

# The sidecar's own tests: tests/egress/*.c against its objects (not its
# main), run by the unit tests' runner.
EGT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/egress/*.c))

$(BUILD)/obj/tests/egress/%.o: tests/egress/%.c $(HDRS) tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc/egress -Itests/unit -c $< -o $@

$(BUILD)/egress-tests: $(EGT_OBJ) $(BUILD)/obj/tests/unit/runner.o \
		       $(filter-out $(BUILD)/obj/src/egress/main.o,$(EG_OBJ)) $(DLP_OBJ) \
		       $(BUILD)/libagentbox-internal.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS) $(EG_LIBS) $(DLP_LIBS)

# The DLP engine's tests: tests/dlp/*.c against its objects.
DLPT_OBJ := $(patsubst %.c,$(BUILD)/obj/%.o,$(wildcard tests/dlp/*.c))

$(BUILD)/obj/tests/dlp/%.o: tests/dlp/%.c $(HDRS) tests/unit/unit.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Itests/unit -c $< -o $@

$(BUILD)/dlp-tests: $(DLPT_OBJ) $(BUILD)/obj/tests/unit/runner.o $(DLP_OBJ) \
		    $(BUILD)/libagentbox-internal.a
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS) $(DLP_LIBS)

deps:
	@sh scripts/deps.sh

demo: deps all
	AGENTBOX_BIN=$(CURDIR)/$(BUILD) PYTHONPATH=$(CURDIR)/python $(PYTHON) examples/quickstart.py

unit: $(BUILD)/unit-tests $(BUILD)/engine-tests $(BUILD)/egress-tests $(BUILD)/dlp-tests
	$(BUILD)/unit-tests
	$(BUILD)/engine-tests
	$(BUILD)/egress-tests
	$(BUILD)/dlp-tests

integration: all
	AGENTBOX_BIN=$(CURDIR)/$(BUILD) PYTHONPATH=$(CURDIR)/python \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration tests/adversarial

test: deps all asan-build fuzz-build
	@sh scripts/run-tests.sh $(BUILD) build-asan $(FUZZ_BUILD)

# Sanitizer build (ASan + UBSan, any finding aborts) of everything; `make
# asan` runs the unit tests with it, `make test` also the integration tests.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
asan-build:
	$(MAKE) BUILD=build-asan SAN="$(SAN_FLAGS)" OPT="-O1 -g" all

asan: asan-build
	ASAN_OPTIONS=detect_leaks=0 build-asan/unit-tests
	ASAN_OPTIONS=detect_leaks=0 build-asan/engine-tests
	ASAN_OPTIONS=detect_leaks=0 build-asan/egress-tests
	ASAN_OPTIONS=detect_leaks=0 build-asan/dlp-tests

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBEXECDIR) \
	  $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(DOCDIR)/design
	install -m 0755 $(BUILD)/agentbox $(BUILD)/agentboxd $(DESTDIR)$(BINDIR)/
	install -m 0755 $(BUILD)/libagentbox.so $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(BUILD)/agentbox-executor $(BUILD)/agentbox-egress $(DESTDIR)$(LIBEXECDIR)/
	install -m 0644 include/agentbox.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(DOC_FILES) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(DESIGN_DOC_FILES) $(DESTDIR)$(DOCDIR)/design/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/agentbox $(DESTDIR)$(BINDIR)/agentboxd \
	  $(DESTDIR)$(LIBDIR)/libagentbox.so $(DESTDIR)$(LIBEXECDIR)/agentbox-executor \
	  $(DESTDIR)$(LIBEXECDIR)/agentbox-egress \
	  $(DESTDIR)$(INCLUDEDIR)/agentbox.h
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

# libFuzzer harnesses (docs/fuzzing.md): tests/fuzz/fuzz_<target>.c, built
# with clang into build-fuzz/ together with their own ASan+UBSan build of the
# library. `make fuzz` runs each for FUZZ_SECONDS, `make fuzz-smoke` (part
# of `make test`) for FUZZ_SMOKE_SECONDS. New inputs go to
# build-fuzz/corpus/<target>, never into the repository's seed corpora.
FUZZ_BUILD   ?= build-fuzz
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 5
FUZZ_TARGETS ?= frame path router limits routes audit rpc utf8 term policy egress_http egress_event \
		dlp inspect
FUZZ_SAN := -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined \
	    -fno-omit-frame-pointer
FUZZ_COMMON_OBJ := $(BUILD)/obj/tests/fuzz/fuzz_common.o
# The request path of the daemon: the JSON-RPC front end and the engine,
# against the fake backend and stubs of the engine tests.
FUZZ_RPC_OBJ := $(BUILD)/obj/src/daemon/frontend/conn.o $(BUILD)/obj/src/daemon/frontend/rpc.o \
		$(ENGINE_OBJ) $(ENGINE_SUPPORT_OBJ)

$(BUILD)/obj/tests/fuzz/%.o: tests/fuzz/%.c tests/fuzz/fuzz.h $(wildcard tests/engine/*.h) $(HDRS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc/daemon -Itests/engine -Itests/fuzz -c $< -o $@

$(BUILD)/fuzz_%: $(BUILD)/obj/tests/fuzz/fuzz_%.o $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS)

$(BUILD)/fuzz_rpc: $(BUILD)/obj/tests/fuzz/fuzz_rpc.o $(FUZZ_RPC_OBJ) $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS)

# The daemon's egress policy (rules, the YAML policy file, host names).
$(BUILD)/fuzz_policy: $(BUILD)/obj/tests/fuzz/fuzz_policy.o $(BUILD)/obj/src/daemon/egress/policy.o \
		      $(DLP_OBJ) $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS) $(D_LIBS) $(DLP_LIBS)

# What the egress sidecar tells the daemon (src/daemon/egress/state.c), with
# the rest of the daemon stubbed in the harness itself.
$(BUILD)/fuzz_egress_event: $(BUILD)/obj/tests/fuzz/fuzz_egress_event.o \
			    $(BUILD)/obj/src/daemon/egress/state.o \
			    $(BUILD)/obj/src/daemon/egress/policy.o $(DLP_OBJ) $(FUZZ_COMMON_OBJ) \
			    $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS) $(D_LIBS) $(DLP_LIBS)

# The CLI's terminal escaping.
$(BUILD)/fuzz_term: $(BUILD)/obj/tests/fuzz/fuzz_term.o $(BUILD)/obj/src/cli/term.o \
		    $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS)

# The egress sidecar's request path (its HTTP framing, host syntax and
# inspector), against the sidecar's own objects.
$(BUILD)/fuzz_egress_http: $(BUILD)/obj/tests/fuzz/fuzz_egress_http.o $(BUILD)/obj/src/egress/http.o \
			   $(BUILD)/obj/src/egress/addr.o $(BUILD)/obj/src/egress/inspect.o \
			   $(BUILD)/obj/src/egress/policy.o $(DLP_OBJ) $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS) $(EG_LIBS) $(DLP_LIBS)

# Time travel: the answers of inspections (docs/time-travel.md).
$(BUILD)/fuzz_inspect: $(BUILD)/obj/tests/fuzz/fuzz_inspect.o \
		       $(BUILD)/obj/src/daemon/engine/history_check.o $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS)

# The DLP engine: detectors, normaliser and decoders (docs/dlp.md).
$(BUILD)/fuzz_dlp: $(BUILD)/obj/tests/fuzz/fuzz_dlp.o $(DLP_OBJ) $(FUZZ_COMMON_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) -fsanitize=fuzzer $(DEP_LIBS) $(DLP_LIBS)

fuzz-bins: $(FUZZ_TARGETS:%=$(BUILD)/fuzz_%)

fuzz-build:
	@command -v $(FUZZ_CC) >/dev/null 2>&1 || { \
	  echo "make fuzz: $(FUZZ_CC) not found; the fuzzers need Debian's clang:" \
	       "apt-get install clang (or make deps)" >&2; exit 1; }
	@test -f "$$($(FUZZ_CC) -print-file-name=libclang_rt.fuzzer-x86_64.a)" || { \
	  echo "make fuzz: $(FUZZ_CC) has no libFuzzer runtime; install Debian package" \
	       "libclang-rt-dev (or make deps)" >&2; exit 1; }
	@# clang warns where gcc does not: on libseccomp's argument macros and on
	@# the v*printf inside error.c's format-checked wrappers.
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) SAN="$(FUZZ_SAN)" OPT="-O1 -g" \
	  CFLAGS="-Wno-unknown-warning-option -Wno-format-nonliteral -Wno-missing-field-initializers $(CFLAGS)" fuzz-bins

fuzz: fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SECONDS) $(FUZZ_BUILD) $(FUZZ_TARGETS)

fuzz-smoke: fuzz-build
	@sh scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) $(FUZZ_BUILD) $(FUZZ_TARGETS)

bench: all
	@sh bench/run.sh $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h \
	  tests/engine/*.c tests/engine/*.h tests/egress/*.c tests/fuzz/*.c tests/fuzz/*.h

clean:
	rm -rf build build-asan build-fuzz
