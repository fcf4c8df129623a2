/* SPDX-License-Identifier: MIT */
/* Runs inside the test guest (static, from build-guest.sh): prints the
 * address and contents of a buffer of its own once a second, so a MEMWRITE
 * through this process's cr3 can be seen from the process itself. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The marker lets the host recognise this process's page tables. */
static volatile char target[64] = "VMSIG-MW-TARGET:original";

int main(void)
{
        /* Write once so the page is private and writable, not a COW page. */
        target[sizeof(target) - 1] = '\0';
        for (;;) {
                char copy[sizeof(target)];
                for (size_t i = 0; i < sizeof(copy); i++)
                        copy[i] = target[i];
                copy[sizeof(copy) - 1] = '\0';
                printf("VMSIG-MW pid=%d addr=%p value=%s\n", (int)getpid(), (void *)target, copy);
                fflush(stdout);
                sleep(1);
        }
}
