# event_sourcing: PGXS build.
#
# The version lives only in event_sourcing.control; it is passed to C with -D.
# `make demo` and `make test` work on a fresh Debian 12 machine: they install
# what is missing first, so they must not need pg_config to parse this file.

EXTENSION = event_sourcing
EXTVERSION = $(shell sed -n "s/^default_version *= *'\([^']*\)'.*/\1/p" $(EXTENSION).control)

MODULE_big = event_sourcing
OBJS = \
	src/event_sourcing.o \
	src/catalog.o \
	src/validate.o \
	src/uuidv7.o \
	src/batch.o \
	src/append.o \
	src/import.o \
	src/lifecycle.o \
	src/retention.o \
	src/subscription.o \
	src/subscription_read.o \
	src/position.o \
	src/head_cache.o \
	src/mark.o \
	src/read.o \
	src/immutable.o \
	src/callback.o \
	src/inline.o \
	src/snapshot.o \
	src/aggregate.o \
	src/upcast.o \
	src/audit.o \
	src/wait.o \
	src/projection.o \
	src/projection_def.o \
	src/projection_run.o \
	src/worker.o \
	src/launcher.o

DATA = $(wildcard event_sourcing--*.sql)

PG_CPPFLAGS = -I$(srcdir)/src -DEXTVERSION=\"$(EXTVERSION)\"
# -Wno-unused-parameter: the server's own headers (bufpage.h, ilist.h) and
# every fmgr callback trip it.
PG_CFLAGS = -Wall -Wextra -Werror -Wno-unused-parameter

# pg_regress (sql/ + expected/)
REGRESS = setup append read aggregate upcast projection errors robustness security inline import head_cache lifecycle subscription commands
REGRESS_OPTS = --inputdir=. 

# isolation specs (test/isolation/specs + test/isolation/expected)
ISOLATION = append_race read_out_of_order idempotent_race execute_race wait_wakeup projection_run_race projection_rebuild_race rebuild_nonowner idle_appender savepoint_reappend prepared_appender readers_appenders sequence_lock_no_stall import_race head_cache lifecycle_race subscription_race
ISOLATION_OPTS = --inputdir=test/isolation

# Perl TAP (PostgreSQL::Test::Cluster); run as a non-root user
TAP_TESTS = 1
PROVE_TESTS = test/t/*.pl

EXTRA_CLEAN = output_iso tmp_check tmp_check_iso results regression.diffs regression.out

# No LLVM bitcode: it needs clang at build time and buys nothing here.
override with_llvm := no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs 2>/dev/null)
ifneq ($(PGXS),)
include $(PGXS)
# PGXS tracks no header dependencies: every object depends on the shared ones.
# (After the include, so that the default goal stays PGXS's "all".)
$(OBJS): src/event_sourcing.h src/compat.h src/subscription.h
else
all:
	@echo "pg_config not found: run 'make demo' or 'make test' (they install it), or set PG_CONFIG" >&2; exit 1
endif

.PHONY: demo test
# Everything end to end in a throwaway cluster, installing what is missing.
demo:
	bash scripts/demo.sh
test:
	bash scripts/test.sh
