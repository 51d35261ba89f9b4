# vmstated build, test and install.
#
#   make build     both binaries into bin/
#   make test      gofmt check, go vet, cross-build check, go test -race ./...
#   make bench     benchmark suite: the daemon measured from outside against
#                  same-run references; updates docs/benchmarks.md (figures,
#                  not pass/fail; about 5 minutes)
#   make bench-go  the packages' go test benchmarks
#   make fuzz      bounded fuzz runs (FUZZTIME per target, default 30s)
#   make install   PREFIX (default /usr/local) and DESTDIR honoured
#   make clean

GO       ?= go
PREFIX   ?= /usr/local
DESTDIR  ?=
BINDIR   ?= $(PREFIX)/bin
SBINDIR  ?= $(PREFIX)/sbin
MANDIR   ?= $(PREFIX)/share/man
FUZZTIME ?= 30s

CMDS := $(notdir $(wildcard cmd/*))

.PHONY: all build test vet fmt-check cross bench bench-go fuzz chaos install uninstall clean

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
	VMSTATED_CHAOS=1 VMSTATED_CHAOS_SEED=$(CHAOS_SEED) $(GO) test -count=1 -v -run Chaos ./tests/chaos

# Every Fuzz* function in the tree, each for FUZZTIME.
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		dir=$$($(GO) list -f '{{.Dir}}' $$pkg); \
		for f in $$(grep -ho '^func Fuzz[A-Za-z0-9_]*' $$dir/*_test.go 2>/dev/null | sed 's/^func //'); do \
			echo "fuzz $$pkg $$f for $(FUZZTIME)"; \
			$(GO) test -run='^$$' -fuzz="^$$f\$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

install: build
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	@if [ -f bin/vmstated ]; then install -m 0755 bin/vmstated $(DESTDIR)$(SBINDIR)/vmstated; fi
	@if [ -f bin/vmstatedctl ]; then install -m 0755 bin/vmstatedctl $(DESTDIR)$(BINDIR)/vmstatedctl; fi
	@for p in man/*.[0-9]; do \
		[ -f "$$p" ] || continue; \
		sec=$${p##*.}; \
		install -d $(DESTDIR)$(MANDIR)/man$$sec; \
		install -m 0644 $$p $(DESTDIR)$(MANDIR)/man$$sec/; \
	done

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/vmstated $(DESTDIR)$(BINDIR)/vmstatedctl
	@for p in man/*.[0-9]; do \
		[ -f "$$p" ] || continue; \
		sec=$${p##*.}; rm -f $(DESTDIR)$(MANDIR)/man$$sec/$$(basename $$p); \
	done

clean:
	rm -rf bin
	$(GO) clean -testcache
