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
CFLAGS_ALL := $(CSTD) $(OPT) $(SAN) $(WARN) -fPIC -Iinclude -Isrc/lib $(CFLAGS)
LDFLAGS_ALL := $(SAN) $(LDFLAGS)

PY_CFLAGS := $(patsubst -I%,-isystem %,$(filter -I%,$(shell $(PYCONFIG) --includes)))
PY_LIBS   := $(shell $(PYCONFIG) --embed --ldflags)
DEP_LIBS  := -ljansson -lseccomp -lsqlite3 -lcrypto

LIB_SRC  := $(wildcard src/lib/*.c)
EXE_SRC  := $(wildcard src/executor/*.c)
D_SRC    := $(wildcard src/daemon/*.c)
CLI_SRC  := $(wildcard src/cli/*.c)
UT_SRC   := $(wildcard tests/unit/*.c)

LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
EXE_OBJ  := $(EXE_SRC:%.c=$(BUILD)/obj/%.o)
D_OBJ    := $(D_SRC:%.c=$(BUILD)/obj/%.o)
CLI_OBJ  := $(CLI_SRC:%.c=$(BUILD)/obj/%.o)
UT_OBJ   := $(UT_SRC:%.c=$(BUILD)/obj/%.o)

# The programs find libagentbox.so next to themselves (the build tree) or in
# ../lib (an installed or copied bin/ + lib/ pair), wherever the tree is.
RPATH := -Wl,-rpath,'$$ORIGIN' -Wl,-rpath,'$$ORIGIN/../lib'

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
        install uninstall
all: $(BUILD)/libagentbox.so $(BUILD)/agentbox-executor $(BUILD)/agentboxd \
     $(BUILD)/agentbox $(BUILD)/unit-tests

$(BUILD)/obj/%.o: %.c include/agentbox.h $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/obj/src/executor/%.o: src/executor/%.c include/agentbox.h $(wildcard src/*/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $(PY_CFLAGS) -c $< -o $@

$(BUILD)/libagentbox.so: $(LIB_OBJ)
	$(CC) -shared -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS)

# The executor links the library objects in: it is started from a memfd
# copy (see src/daemon/zygote.c), so no path of this build shows inside
# sandboxes, and it must not need to find libagentbox.so.
# The audit log is the daemon's business: the executor does without it.
EXE_LIB_OBJ := $(filter-out %/audit.o,$(LIB_OBJ))
$(BUILD)/agentbox-executor: $(EXE_OBJ) $(EXE_LIB_OBJ)
	$(CC) -o $@ $(EXE_OBJ) $(EXE_LIB_OBJ) $(LDFLAGS_ALL) $(PY_LIBS) -ljansson -lseccomp

$(BUILD)/agentboxd: $(D_OBJ) $(BUILD)/libagentbox.so
	$(CC) -o $@ $(D_OBJ) $(LDFLAGS_ALL) $(RPATH) -L$(BUILD) -lagentbox $(DEP_LIBS)

$(BUILD)/agentbox: $(CLI_OBJ) $(BUILD)/libagentbox.so
	$(CC) -o $@ $(CLI_OBJ) $(LDFLAGS_ALL) $(RPATH) -L$(BUILD) -lagentbox $(DEP_LIBS)

# Unit tests link the library objects directly so that internal (ab__)
# functions can be tested too.
$(BUILD)/unit-tests: $(UT_OBJ) $(LIB_OBJ)
	$(CC) -o $@ $^ $(LDFLAGS_ALL) $(DEP_LIBS)

deps:
	@sh scripts/deps.sh

demo: deps all
	AGENTBOX_BIN=$(CURDIR)/$(BUILD) PYTHONPATH=$(CURDIR)/python $(PYTHON) examples/quickstart.py

unit: $(BUILD)/unit-tests
	$(BUILD)/unit-tests

integration: all
	AGENTBOX_BIN=$(CURDIR)/$(BUILD) PYTHONPATH=$(CURDIR)/python \
	  $(PYTHON) -m pytest -q -p no:cacheprovider tests/integration tests/adversarial

test: deps all asan-build
	@sh scripts/run-tests.sh $(BUILD) build-asan

# Sanitizer build (ASan + UBSan, any finding aborts) of everything; `make
# asan` runs the unit tests with it, `make test` also the integration tests.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
asan-build:
	$(MAKE) BUILD=build-asan SAN="$(SAN_FLAGS)" OPT="-O1 -g" all

asan: asan-build
	ASAN_OPTIONS=detect_leaks=0 build-asan/unit-tests

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(LIBEXECDIR) \
	  $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(DOCDIR)/design
	install -m 0755 $(BUILD)/agentbox $(BUILD)/agentboxd $(DESTDIR)$(BINDIR)/
	install -m 0755 $(BUILD)/libagentbox.so $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(BUILD)/agentbox-executor $(DESTDIR)$(LIBEXECDIR)/
	install -m 0644 include/agentbox.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 0644 $(DOC_FILES) $(DESTDIR)$(DOCDIR)/
	install -m 0644 $(DESIGN_DOC_FILES) $(DESTDIR)$(DOCDIR)/design/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/agentbox $(DESTDIR)$(BINDIR)/agentboxd \
	  $(DESTDIR)$(LIBDIR)/libagentbox.so $(DESTDIR)$(LIBEXECDIR)/agentbox-executor \
	  $(DESTDIR)$(INCLUDEDIR)/agentbox.h
	rm -rf $(DESTDIR)$(DOCDIR)
	-rmdir $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

bench: all
	@sh bench/run.sh $(BUILD)

format:
	clang-format -i include/*.h src/*/*.c src/*/*.h tests/unit/*.c tests/unit/*.h

clean:
	rm -rf build build-asan
