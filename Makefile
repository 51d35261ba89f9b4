# vmstated build, test and install.
#
#   make build     both binaries into bin/
#   make test      gofmt check, go vet, cross-build check, go test -race ./...
#   make bench     benchmark suite: the daemon measured from outside against
#                  same-run references; updates docs/benchmarks.md (figures,
#                  not pass/fail; about 5 minutes)
#   make bench-go  the packages' go test benchmarks
#   make fuzz      bounded fuzz runs (FUZZTIME per target, default 30s)
#   make demo      run the daemon in the foreground on the demo VMs (no root)
#   make install   binaries, man pages and the service files; PREFIX (default
#                  /usr/local) and DESTDIR honoured
#   make uninstall remove what install put there
#   make clean

GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
SBINDIR  ?= $(PREFIX)/sbin
MANDIR   ?= $(PREFIX)/share/man
# The service files: systemd units on Linux, an rc.d script on FreeBSD
# (SERVICE=none installs neither).
OS       ?= $(shell uname -s)
SERVICE  ?= $(if $(filter Linux,$(OS)),systemd,$(if $(filter FreeBSD,$(OS)),rc.d,none))
SYSTEMDDIR ?= $(PREFIX)/lib/systemd/system
RCDIR    ?= $(PREFIX)/etc/rc.d
FUZZTIME ?= 30s

CMDS := $(notdir $(wildcard cmd/*))
# The daemon's unit and its companion that shuts the guests down at host
# shutdown.
UNITS := vmstated.service vmstated-guests.service

.PHONY: all build test vet fmt-check cross bench bench-go fuzz chaos demo install uninstall clean

all: build

build:
	@mkdir -p bin
	@for c in $(CMDS); do \
		echo "go build -o bin/$$c ./cmd/$$c"; \
		$(GO) build -o bin/$$c ./cmd/$$c || exit 1; \
	done

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# The bhyve driver and the peer-credential code have FreeBSD halves; make
# sure they keep compiling.
cross:
	GOOS=freebsd GOARCH=amd64 $(GO) build ./...

test: fmt-check vet cross
	$(GO) test -race -count=1 ./...

# BENCHFLAGS passes options to the suite, e.g. BENCHFLAGS=-short.
bench:
	$(GO) run ./bench/cmd/vmbench -doc docs/benchmarks.md -chart docs/benchmarks-latency.svg $(BENCHFLAGS)

bench-go:
	$(GO) test -run='^$$' -bench=. -benchmem ./...

# Kill the daemon with SIGKILL at random points while VMs cycle, and check
# that nothing is orphaned, lost or torn down twice. CHAOS_SEED replays a run.
CHAOS_SEED ?= 20261122
chaos:
	VMSTATED_CHAOS_SEED=$(CHAOS_SEED) $(GO) test -race -count=1 -v -run Chaos ./tests/chaos

# Every Fuzz* function in the tree, each for FUZZTIME.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$f for $(FUZZTIME)"; \
			$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

# The demo keeps everything under .demo/ and needs no root.
demo: build
	@sh examples/demo/run.sh $(CURDIR)/bin

# The service files name /usr/local; they get the real PREFIX.
install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 bin/vmstated $(DESTDIR)$(SBINDIR)/vmstated
	install -m 0755 bin/vmstatedctl $(DESTDIR)$(BINDIR)/vmstatedctl
	@for p in man/*.[0-9]; do \
		[ -f "$$p" ] || continue; \
		sec=$${p##*.}; \
		echo "install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$sec/"; \
		install -d $(DESTDIR)$(MANDIR)/man$$sec || exit 1; \
		install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$sec/ || exit 1; \
	done
	@case "$(SERVICE)" in \
	systemd) \
		install -d $(DESTDIR)$(SYSTEMDDIR) || exit 1; \
		for u in $(UNITS); do \
			echo "install -m 0644 examples/systemd/$$u $(DESTDIR)$(SYSTEMDDIR)/$$u"; \
			sed 's|/usr/local/|$(PREFIX)/|g' examples/systemd/$$u > $(DESTDIR)$(SYSTEMDDIR)/$$u && \
			chmod 0644 $(DESTDIR)$(SYSTEMDDIR)/$$u || exit 1; \
		done ;; \
	rc.d) \
		echo "install -m 0755 examples/rc.d/vmstated $(DESTDIR)$(RCDIR)/vmstated"; \
		install -d $(DESTDIR)$(RCDIR) && \
		sed 's|/usr/local/|$(PREFIX)/|g' examples/rc.d/vmstated > $(DESTDIR)$(RCDIR)/vmstated && \
		chmod 0755 $(DESTDIR)$(RCDIR)/vmstated ;; \
	none) ;; \
	*) echo "SERVICE=$(SERVICE): want systemd, rc.d or none" >&2; exit 1 ;; \
	esac

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vmstated $(DESTDIR)$(BINDIR)/vmstatedctl
	@for p in man/*.[0-9]; do \
		[ -f "$$p" ] || continue; \
		sec=$${p##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$sec/$$(basename $$p); \
	done
	rm -f $(addprefix $(DESTDIR)$(SYSTEMDDIR)/,$(UNITS)) $(DESTDIR)$(RCDIR)/vmstated

clean:
	rm -rf bin
	$(GO) clean -testcache
