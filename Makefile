# SPDX-License-Identifier: GPL-2.0
#
# Entry point of the device-memory migration / HMM rewrite. Everything
# generated goes under build/; the work is done by the workbench scripts in
# tools/testing/selftests/mm/hmm-qemu/ (see README.md).

HQ := tools/testing/selftests/mm/hmm-qemu

.PHONY: all run test debug-test bench profile callers check clean help

all: help

help:
	@echo "make run         build the patched kernel, boot it, run the migration demo"
	@echo "make test        KUnit + hmm selftests in QEMU, THP=madvise and THP=always"
	@echo "make debug-test  the same on a KASAN + lockdep kernel"
	@echo "make bench       stock vs patched throughput under -icount (table + plot)"
	@echo "make profile     where the kernel instructions of a migration go, per symbol"
	@echo "make callers     compile in-tree callers (nouveau, amdkfd, test_hmm, ...)"
	@echo "make check       checkpatch --strict, kernel-doc, W=1 and sparse on our files"
	@echo "make clean       remove build/"

run test debug-test bench profile callers check:
	@$(HQ)/harness.sh $@

clean:
	rm -rf build
