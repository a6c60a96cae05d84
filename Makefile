# Build and install the C library: header, shared library (with SONAME), static library, a
# pkg-config file and the starttls(3) manual page.
#
#   make                       # cargo build --release
#   make install PREFIX=/usr/local   (DESTDIR supported)
#   make uninstall PREFIX=/usr/local
#
# Then: cc examples-c/smtp_client.c -o smtp_client $(pkg-config --cflags --libs starttls)

PREFIX       ?= /usr/local
LIBDIR       ?= $(PREFIX)/lib
INCLUDEDIR   ?= $(PREFIX)/include
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
MANDIR       ?= $(PREFIX)/share/man
PROFILE      ?= release
CARGO        ?= cargo
TARGET_DIR   ?= target

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
OUT     := $(TARGET_DIR)/$(if $(filter release,$(PROFILE)),release,debug)

.PHONY: all build install uninstall

all: build

build:
	$(CARGO) build --lib $(if $(filter release,$(PROFILE)),--release,)

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PKGCONFIGDIR) \
	    $(DESTDIR)$(MANDIR)/man3
	install -m 0644 man/starttls.3 $(DESTDIR)$(MANDIR)/man3/starttls.3
	install -m 0755 $(OUT)/libstarttls.so $(DESTDIR)$(LIBDIR)/libstarttls.so.$(VERSION)
	ln -sf libstarttls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libstarttls.so.$(MAJOR)
	ln -sf libstarttls.so.$(MAJOR) $(DESTDIR)$(LIBDIR)/libstarttls.so
	install -m 0644 $(OUT)/libstarttls.a $(DESTDIR)$(LIBDIR)/libstarttls.a
	install -m 0644 include/starttls.h $(DESTDIR)$(INCLUDEDIR)/starttls.h
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|g' -e 's|@VERSION@|$(VERSION)|g' \
	    starttls.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/starttls.pc

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libstarttls.so.$(VERSION) $(DESTDIR)$(LIBDIR)/libstarttls.so.$(MAJOR) \
	      $(DESTDIR)$(LIBDIR)/libstarttls.so $(DESTDIR)$(LIBDIR)/libstarttls.a \
	      $(DESTDIR)$(INCLUDEDIR)/starttls.h $(DESTDIR)$(PKGCONFIGDIR)/starttls.pc \
	      $(DESTDIR)$(MANDIR)/man3/starttls.3
