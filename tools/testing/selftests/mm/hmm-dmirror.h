/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The one test_hmm call the project's hmm selftests share: a command of
 * lib/test_hmm_uapi.h on a range of pages.
 */
#ifndef HMM_DMIRROR_H
#define HMM_DMIRROR_H

#include <errno.h>
#include <sys/ioctl.h>
#include <lib/test_hmm_uapi.h>

/*
 * Run one test_hmm command on @npages pages at @addr. @data is the bounce
 * buffer (data read or written, or the migrated copy). Returns 0 or -errno;
 * *@cpages is only meaningful on success.
 */
static inline int dmirror_cmd(int fd, unsigned long request, void *addr,
			      void *data, unsigned long npages,
			      unsigned long *cpages)
{
	struct hmm_dmirror_cmd cmd = {
		.addr = (unsigned long)addr,
		.ptr = (unsigned long)data,
		.npages = npages,
	};
	int ret;

	do {
		ret = ioctl(fd, request, &cmd);
	} while (ret && errno == EINTR);
	if (ret)
		return -errno;
	if (cpages)
		*cpages = cmd.cpages;
	return 0;
}

#endif /* HMM_DMIRROR_H */
