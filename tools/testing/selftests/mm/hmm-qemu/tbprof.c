// SPDX-License-Identifier: GPL-2.0
/*
 * tbprof: a QEMU TCG plugin that counts the guest kernel instructions
 * executed inside marked windows, per translation block.
 *
 * A window opens when the guest executes the first instruction at address
 * on= (a user-space marker function of hmm-bench) and closes at off=. Every
 * kernel translation block executed while a window is open adds its
 * instruction count to its own counter. At exit the plugin writes
 *
 *   # windows N
 *   VADDR NINSNS EXECUTED_INSTRUCTIONS
 *
 * to out=, one line per (block address, block length) that ran. Mapping
 * the addresses to kernel symbols is profile-report.py's job. Under
 * -icount shift=0 an instruction is a nanosecond of guest time, so these
 * counts are the kernel's share of the time hmm-bench measured.
 *
 * qemu-plugin-api.h declares the little of QEMU's plugin API (version 1,
 * as in QEMU 7.2) this needs, so no QEMU source or development package is
 * required.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin-api.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT int qemu_plugin_version = 1;

/* ---- the profile ------------------------------------------------------- */

#define KERNEL_BASE	0xffffffff80000000ULL
#define NBUCKETS	65536U

struct block {
	uint64_t vaddr;
	uint64_t ninsns;
	uint64_t executed;	/* instructions, inside windows */
	struct block *next;
};

static struct block *buckets[NBUCKETS];
static uint64_t open_addr, close_addr, windows;
static bool in_window;
static const char *out_path;

/* One block per address and length: a block can be retranslated shorter. */
static struct block *block_of(uint64_t vaddr, uint64_t ninsns)
{
	unsigned int h = (unsigned int)((vaddr >> 2) ^ (vaddr >> 18) ^ ninsns) &
			 (NBUCKETS - 1);
	struct block *b;

	for (b = buckets[h]; b; b = b->next)
		if (b->vaddr == vaddr && b->ninsns == ninsns)
			return b;
	b = calloc(1, sizeof(*b));
	if (!b) {
		perror("tbprof");
		exit(1);
	}
	b->vaddr = vaddr;
	b->ninsns = ninsns;
	b->next = buckets[h];
	buckets[h] = b;
	return b;
}

static void marker_executed(unsigned int vcpu, void *userdata)
{
	struct block *b = userdata;

	if (b->vaddr == open_addr) {
		in_window = true;
		windows++;
	} else {
		in_window = false;
	}
}

static void kernel_block_executed(unsigned int vcpu, void *userdata)
{
	struct block *b = userdata;

	if (in_window)
		b->executed += b->ninsns;
}

static void block_translated(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
	uint64_t vaddr = qemu_plugin_tb_vaddr(tb);
	struct block *b;

	if (vaddr == open_addr || vaddr == close_addr) {
		b = block_of(vaddr, 0);
		qemu_plugin_register_vcpu_tb_exec_cb(tb, marker_executed,
						     QEMU_PLUGIN_CB_NO_REGS, b);
	} else if (vaddr >= KERNEL_BASE) {
		b = block_of(vaddr, qemu_plugin_tb_n_insns(tb));
		qemu_plugin_register_vcpu_tb_exec_cb(tb, kernel_block_executed,
						     QEMU_PLUGIN_CB_NO_REGS, b);
	}
}

static void write_profile(qemu_plugin_id_t id, void *userdata)
{
	FILE *f = fopen(out_path, "w");
	unsigned int i;
	struct block *b;

	if (!f) {
		perror(out_path);
		return;
	}
	fprintf(f, "# windows %llu\n", (unsigned long long)windows);
	for (i = 0; i < NBUCKETS; i++)
		for (b = buckets[i]; b; b = b->next)
			if (b->executed)
				fprintf(f, "%llx %llu %llu\n",
					(unsigned long long)b->vaddr,
					(unsigned long long)b->ninsns,
					(unsigned long long)b->executed);
	fclose(f);
}

EXPORT int qemu_plugin_install(qemu_plugin_id_t id,
			       const struct qemu_info_t *info,
			       int argc, char **argv)
{
	int i;

	for (i = 0; i < argc; i++) {
		if (!strncmp(argv[i], "out=", 4))
			out_path = argv[i] + 4;
		else if (!strncmp(argv[i], "on=", 3))
			open_addr = strtoull(argv[i] + 3, NULL, 16);
		else if (!strncmp(argv[i], "off=", 4))
			close_addr = strtoull(argv[i] + 4, NULL, 16);
	}
	if (!out_path || !open_addr || !close_addr) {
		fprintf(stderr, "tbprof: needs out=FILE,on=ADDR,off=ADDR\n");
		return 1;
	}
	qemu_plugin_register_vcpu_tb_trans_cb(id, block_translated);
	qemu_plugin_register_atexit_cb(id, write_profile, NULL);
	return 0;
}
