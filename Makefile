# Builds libreswan-dbus with cargo, installs it with its bus, systemd and polkit files and its
# man pages, and packs the same tree into a Debian package. make only wraps cargo and copies
# files; tests/install.rs checks what lands where.
#
#   make                 cargo build --release
#   make install         copy everything under $(DESTDIR)$(PREFIX); builds nothing, so that
#                        `make && sudo make install` leaves no root-owned files in target/
#   make uninstall       remove exactly what install copies
#   make deb             build, then $(TARGET_DIR)/libreswan-dbus_VERSION_ARCH.deb
#   make package         the .deb from binaries already built in $(BUILD_DIR)
#
# Variables: PREFIX (/usr), DESTDIR, UNITDIR (systemd's unit directory as pkg-config says,
# else $(PREFIX)/lib/systemd/system), CARGO, TARGET_DIR ($CARGO_TARGET_DIR or target),
# BUILD_DIR (where the binaries are), STRIP, DEB_COMPRESSION (xz), DEB_MAINTAINER.

PREFIX ?= /usr
DESTDIR ?=
CARGO ?= cargo
TARGET_DIR ?= $(if $(CARGO_TARGET_DIR),$(CARGO_TARGET_DIR),target)
BUILD_DIR ?= $(TARGET_DIR)/release
STRIP ?= strip
DEB_COMPRESSION ?= xz
DEB_MAINTAINER ?= libreswan-dbus maintainers <root@localhost>

ifeq ($(origin UNITDIR),undefined)
UNITDIR := $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null)
ifeq ($(UNITDIR),)
UNITDIR := $(PREFIX)/lib/systemd/system
endif
endif

BINDIR = $(PREFIX)/bin
LIBEXECDIR = $(PREFIX)/libexec
DATADIR = $(PREFIX)/share
DBUSDIR = $(DATADIR)/dbus-1
POLKITDIR = $(DATADIR)/polkit-1/actions
MANDIR = $(DATADIR)/man
DOCDIR = $(DATADIR)/doc/libreswan-dbus

VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' Cargo.toml | head -n 1)
DEB_ROOT = $(TARGET_DIR)/deb-root
DEB_ARCH = $(shell dpkg --print-architecture)
DEB = $(TARGET_DIR)/libreswan-dbus_$(VERSION)_$(DEB_ARCH).deb

# Every installed file, for uninstall; install below writes exactly these.
INSTALLED = \
	$(LIBEXECDIR)/libreswan-dbus \
	$(BINDIR)/libreswan-dbusctl \
	$(DBUSDIR)/system.d/org.libreswan.conf \
	$(DBUSDIR)/system-services/org.libreswan.service \
	$(DBUSDIR)/interfaces/org.libreswan.Manager.xml \
	$(DBUSDIR)/interfaces/org.libreswan.Connection.xml \
	$(UNITDIR)/libreswan-dbus.service \
	$(POLKITDIR)/org.libreswan.policy \
	$(DOCDIR)/examples/50-libreswan-dbus.rules \
	$(MANDIR)/man8/libreswan-dbus.8.gz \
	$(MANDIR)/man1/libreswan-dbusctl.1.gz

# The unit and the activation file name the daemon by its installed path.
SET_DAEMON_PATH = sed 's|/usr/libexec/libreswan-dbus|$(LIBEXECDIR)/libreswan-dbus|'

.PHONY: all build install uninstall deb package clean-deb

all: build

build:
	$(CARGO) build --release

install:
	@for program in libreswan-dbus libreswan-dbusctl; do \
	    if [ ! -x "$(BUILD_DIR)/$$program" ]; then \
	        echo "make install: $(BUILD_DIR)/$$program is missing; run make first" >&2; \
	        exit 1; \
	    fi; \
	done
	install -D -m 0755 $(BUILD_DIR)/libreswan-dbus $(DESTDIR)$(LIBEXECDIR)/libreswan-dbus
	install -D -m 0755 $(BUILD_DIR)/libreswan-dbusctl $(DESTDIR)$(BINDIR)/libreswan-dbusctl
	install -D -m 0644 dbus/org.libreswan.conf $(DESTDIR)$(DBUSDIR)/system.d/org.libreswan.conf
	install -d $(DESTDIR)$(DBUSDIR)/system-services $(DESTDIR)$(UNITDIR)
	$(SET_DAEMON_PATH) dbus/org.libreswan.service \
	    > $(DESTDIR)$(DBUSDIR)/system-services/org.libreswan.service
	$(SET_DAEMON_PATH) systemd/libreswan-dbus.service > $(DESTDIR)$(UNITDIR)/libreswan-dbus.service
	chmod 0644 $(DESTDIR)$(DBUSDIR)/system-services/org.libreswan.service \
	    $(DESTDIR)$(UNITDIR)/libreswan-dbus.service
	install -D -m 0644 -t $(DESTDIR)$(DBUSDIR)/interfaces \
	    dbus/org.libreswan.Manager.xml dbus/org.libreswan.Connection.xml
	install -D -m 0644 polkit/org.libreswan.policy $(DESTDIR)$(POLKITDIR)/org.libreswan.policy
	install -D -m 0644 polkit/examples/50-libreswan-dbus.rules \
	    $(DESTDIR)$(DOCDIR)/examples/50-libreswan-dbus.rules
	install -d $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1
	gzip -9n < man/libreswan-dbus.8 > $(DESTDIR)$(MANDIR)/man8/libreswan-dbus.8.gz
	gzip -9n < man/libreswan-dbusctl.1 > $(DESTDIR)$(MANDIR)/man1/libreswan-dbusctl.1.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/libreswan-dbus.8.gz \
	    $(DESTDIR)$(MANDIR)/man1/libreswan-dbusctl.1.gz

# Shared directories (dbus-1, polkit-1, man) stay; only our own documentation directory goes.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null || true

deb: build
	$(MAKE) package

# The package holds exactly the tree `make install PREFIX=/usr` writes, binaries stripped, plus
# the control file and the maintainer scripts of packaging/debian.
package:
	rm -rf $(DEB_ROOT)
	$(MAKE) install DESTDIR=$(abspath $(DEB_ROOT)) PREFIX=/usr
	$(STRIP) --strip-unneeded $(DEB_ROOT)/usr/libexec/libreswan-dbus \
	    $(DEB_ROOT)/usr/bin/libreswan-dbusctl
	install -d $(DEB_ROOT)/DEBIAN
	install -m 0755 -t $(DEB_ROOT)/DEBIAN \
	    packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm
	libc=$$(objdump -T $(DEB_ROOT)/usr/libexec/libreswan-dbus $(DEB_ROOT)/usr/bin/libreswan-dbusctl \
	    | sed -n 's/.*GLIBC_\([0-9][0-9.]*\).*/\1/p' | sort -uV | tail -n 1); \
	size=$$(du -sk --exclude=DEBIAN $(DEB_ROOT) | cut -f 1); \
	sed -e 's|@VERSION@|$(VERSION)|' -e 's|@ARCH@|$(DEB_ARCH)|' \
	    -e "s|@LIBC@|$$libc|" -e "s|@SIZE@|$$size|" -e 's|@MAINTAINER@|$(DEB_MAINTAINER)|' \
	    packaging/debian/control.in > $(DEB_ROOT)/DEBIAN/control
	dpkg-deb --root-owner-group -Z$(DEB_COMPRESSION) --build $(DEB_ROOT) $(DEB)

clean-deb:
	rm -rf $(DEB_ROOT) $(DEB)
