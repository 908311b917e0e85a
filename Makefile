# wic-tna: build and install.
#
#   make                      build the library and CLI (cargo, release)
#   make module               build the Kamailio module against Debian's Kamailio source
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   make deb                  Debian packages for bookworm, with debhelper (dist/*.deb;
#                             scripts/build-deb.sh, debian/README.source)
#   make test                 every test (same as bash scripts/test-all.sh)
#
# `make install` installs what the packages install: the library built with
# its SONAME (build-soname: WIC_TNA_SONAME=1 in its own target directory,
# $(SONAME_TARGET_DIR), so that target/release stays unversioned for the
# tests that link it there) and, if `make module-sys` built it, the module
# linked against that library with no rpath. The library, the CLI and the
# module are stripped; their debug info goes to
# $(DEBUGDIR)/.build-id/xx/yyyy.debug (gdb finds it there for
# PREFIX=/usr). NOSTRIP=1 installs them unstripped (debian/rules: dh_strip
# makes the -dbgsym packages).
#
# Installed (FHS): $(LIBDIR)/libwic_tna.so.<abi> (+ .so link), $(INCLUDEDIR)/wic_tna.h,
# $(LIBDIR)/pkgconfig/wic-tna.pc, $(BINDIR)/wic-tna, $(KAMMODDIR)/wic_tna.so (if built),
# $(SYSCONFDIR)/wic-tna/wic-tna.toml.example, $(DOCDIR)/ (README, SECURITY, doc/protocol.md, doc/ims.md,
# Kamailio and OpenSIPS examples), $(DATADIR)/ (Python glue for app_python3 and OpenSIPS's python module),
# $(MANDIR)/man1/wic-tna.1.

VERSION    := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
ABI        := $(shell echo $(VERSION) | awk -F. '{ if ($$1 == 0) print "0." $$2; else print $$1 }')
MULTIARCH  := $(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch 2>/dev/null || echo "")
PREFIX     ?= /usr/local
DESTDIR    ?=
LIBDIR     ?= $(PREFIX)/lib$(if $(MULTIARCH),/$(MULTIARCH))
INCLUDEDIR ?= $(PREFIX)/include
BINDIR     ?= $(PREFIX)/bin
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
DOCDIR     ?= $(PREFIX)/share/doc/wic-tna
DATADIR    ?= $(PREFIX)/share/wic-tna
MANDIR     ?= $(PREFIX)/share/man
KAMMODDIR  ?= $(LIBDIR)/kamailio/modules
DEBUGDIR   ?= $(PREFIX)/lib/debug
SONAME_TARGET_DIR ?= target/soname
MODULE_SYS_DIR    ?= build/wic_tna-sys
MODULE     ?= $(MODULE_SYS_DIR)/wic_tna.so
LIBSRC     ?= $(SONAME_TARGET_DIR)/release/libwic_tna.so
BINSRC     ?= $(SONAME_TARGET_DIR)/release/wic-tna
CARGO_FLAGS ?=
NOSTRIP    ?=

# install_elf(src, dir, name, mode): by rename, never in place (a running
# Kamailio keeps the inode it mapped; writing into it crashes it);
# stripped, with the debug info under $(DEBUGDIR)/.build-id/ unless NOSTRIP.
define install_elf
	install -m $(4) $(1) $(2)/.$(3).new
	$(if $(NOSTRIP),,set -e; id=$$(readelf -n $(2)/.$(3).new | sed -n 's/^ *Build ID: *//p'); \
	  [ -n "$$id" ] || { echo "make install: $(1) has no build-id (needed for its debug file)" >&2; exit 1; }; \
	  d=$(DESTDIR)$(DEBUGDIR)/.build-id/$$(echo $$id | cut -c1-2); f=$$(echo $$id | cut -c3-).debug; \
	  install -d $$d; \
	  objcopy --only-keep-debug --compress-debug-sections $(2)/.$(3).new $$d/.$$f.new; \
	  chmod 0644 $$d/.$$f.new; mv -f $$d/.$$f.new $$d/$$f; \
	  objcopy --strip-unneeded --remove-section=.comment --remove-section=.note $(2)/.$(3).new)
	mv -f $(2)/.$(3).new $(2)/$(3)
endef

.PHONY: all build build-soname module module-sys install deb test clean

all: build

build:
	cargo build --release

module: build
	bash kamailio-example/module/build.sh

# The library with its SONAME (libwic_tna.so.$(ABI)), for installation.
build-soname:
	WIC_TNA_SONAME=1 CARGO_TARGET_DIR=$(SONAME_TARGET_DIR) cargo build --release $(CARGO_FLAGS)

# The module for installation: linked against the SONAME'd library, no rpath.
module-sys: $(if $(CARGO_SKIP),,build-soname)
	WIC_TNA_LIBDIR=$(abspath $(SONAME_TARGET_DIR))/release WIC_TNA_RPATH= \
	    WIC_TNA_MODULE_OUT=$(abspath $(MODULE_SYS_DIR)) bash kamailio-example/module/build.sh

install: $(if $(CARGO_SKIP),,build-soname)
	@readelf -d $(LIBSRC) | grep -q 'Library soname: \[libwic_tna.so.$(ABI)\]' || { \
	    echo "make install: $(LIBSRC) has no SONAME libwic_tna.so.$(ABI) (build it with 'make build-soname')" >&2; exit 1; }
	@if [ -f $(MODULE) ]; then \
	    if readelf -d $(MODULE) | grep -q 'RPATH\|RUNPATH'; then \
	        echo "make install: $(MODULE) has an rpath (build it with 'make module-sys')" >&2; exit 1; fi; \
	    readelf -d $(MODULE) | grep -q 'Shared library: \[libwic_tna.so.$(ABI)\]' || { \
	        echo "make install: $(MODULE) does not link libwic_tna.so.$(ABI) (build it with 'make module-sys')" >&2; exit 1; }; \
	else echo "make install: no module at $(MODULE) ('make module-sys' builds it); not installing one" >&2; fi
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/wic-tna $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1
	# shared objects and the CLI by rename, never in place: a running
	# Kamailio keeps the inode it mapped (writing into it crashes it)
	$(call install_elf,$(LIBSRC),$(DESTDIR)$(LIBDIR),libwic_tna.so.$(VERSION),0644)
	ln -sf libwic_tna.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libwic_tna.so.$(ABI)
	ln -sf libwic_tna.so.$(ABI) $(DESTDIR)$(LIBDIR)/libwic_tna.so
	install -m 0644 include/wic_tna.h $(DESTDIR)$(INCLUDEDIR)/wic_tna.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' wic-tna.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/wic-tna.pc
	$(call install_elf,$(BINSRC),$(DESTDIR)$(BINDIR),wic-tna,0755)
	install -m 0644 config/wic-tna.toml $(DESTDIR)$(SYSCONFDIR)/wic-tna/wic-tna.toml.example
	install -m 0644 README.md SECURITY.md $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(DOCDIR)/doc
	install -m 0644 doc/protocol.md doc/ims.md $(DESTDIR)$(DOCDIR)/doc/
	cp -r kamailio-example opensips-example $(DESTDIR)$(DOCDIR)/
	find $(DESTDIR)$(DOCDIR) -name __pycache__ -prune -exec rm -rf {} +
	install -d $(DESTDIR)$(DATADIR)
	install -m 0644 kamailio-example/python/wic_tna_glue.py opensips-example/wic_tna_opensips.py $(DESTDIR)$(DATADIR)/
	install -m 0644 doc/wic-tna.1 $(DESTDIR)$(MANDIR)/man1/wic-tna.1
	$(if $(wildcard $(MODULE)),install -d $(DESTDIR)$(KAMMODDIR))
	$(if $(wildcard $(MODULE)),$(call install_elf,$(MODULE),$(DESTDIR)$(KAMMODDIR),wic_tna.so,0644))

deb:
	bash scripts/build-deb.sh

test:
	bash scripts/test-all.sh

clean:
	cargo clean
	rm -rf build/wic_tna build/wic_tna-sys build/deb dist
