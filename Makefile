# wic-tna: build and install.
#
#   make                      build the library and CLI (cargo, release)
#   make module               build the Kamailio module against Debian's Kamailio source
#   make install PREFIX=/usr DESTDIR=/tmp/stage
#   make deb                  Debian package for bookworm (dist/wic-tna_<version>_<arch>.deb)
#   make test                 every test (same as bash scripts/test-all.sh)
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
MODULE     ?= build/wic_tna/wic_tna.so
LIBSRC     ?= target/release/libwic_tna.so
BINSRC     ?= target/release/wic-tna

.PHONY: all build module install deb test clean

all: build

build:
	cargo build --release

module: build
	bash kamailio-example/module/build.sh

install: $(if $(CARGO_SKIP),,build)
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(LIBDIR)/pkgconfig \
	    $(DESTDIR)$(BINDIR) $(DESTDIR)$(SYSCONFDIR)/wic-tna $(DESTDIR)$(DOCDIR) $(DESTDIR)$(MANDIR)/man1
	# shared objects and the CLI by rename, never in place: a running
	# Kamailio keeps the inode it mapped (writing into it crashes it)
	install -m 0644 $(LIBSRC) $(DESTDIR)$(LIBDIR)/.libwic_tna.so.$(VERSION).new
	mv -f $(DESTDIR)$(LIBDIR)/.libwic_tna.so.$(VERSION).new $(DESTDIR)$(LIBDIR)/libwic_tna.so.$(VERSION)
	ln -sf libwic_tna.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libwic_tna.so.$(ABI)
	ln -sf libwic_tna.so.$(ABI) $(DESTDIR)$(LIBDIR)/libwic_tna.so
	install -m 0644 include/wic_tna.h $(DESTDIR)$(INCLUDEDIR)/wic_tna.h
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	    -e 's|@VERSION@|$(VERSION)|' wic-tna.pc.in > $(DESTDIR)$(LIBDIR)/pkgconfig/wic-tna.pc
	install -m 0755 $(BINSRC) $(DESTDIR)$(BINDIR)/.wic-tna.new
	mv -f $(DESTDIR)$(BINDIR)/.wic-tna.new $(DESTDIR)$(BINDIR)/wic-tna
	install -m 0644 config/wic-tna.toml $(DESTDIR)$(SYSCONFDIR)/wic-tna/wic-tna.toml.example
	install -m 0644 README.md SECURITY.md $(DESTDIR)$(DOCDIR)/
	install -d $(DESTDIR)$(DOCDIR)/doc
	install -m 0644 doc/protocol.md doc/ims.md $(DESTDIR)$(DOCDIR)/doc/
	cp -r kamailio-example opensips-example $(DESTDIR)$(DOCDIR)/
	find $(DESTDIR)$(DOCDIR) -name __pycache__ -prune -exec rm -rf {} +
	install -d $(DESTDIR)$(DATADIR)
	install -m 0644 kamailio-example/python/wic_tna_glue.py opensips-example/wic_tna_opensips.py $(DESTDIR)$(DATADIR)/
	install -m 0644 doc/wic-tna.1 $(DESTDIR)$(MANDIR)/man1/wic-tna.1
	if [ -f $(MODULE) ]; then install -d $(DESTDIR)$(KAMMODDIR) && \
	    install -m 0644 $(MODULE) $(DESTDIR)$(KAMMODDIR)/.wic_tna.so.new && \
	    mv -f $(DESTDIR)$(KAMMODDIR)/.wic_tna.so.new $(DESTDIR)$(KAMMODDIR)/wic_tna.so; fi

deb:
	bash scripts/build-deb.sh

test:
	bash scripts/test-all.sh

clean:
	cargo clean
	rm -rf build/wic_tna dist
