/* SPDX-License-Identifier: MIT */
/* Windows side of the producer core: VirtualLock'ed memory, BCrypt random
 * nonce, QueryPerformanceCounter clock. */

#include "region_os.h"

#include <errno.h>
#include <stdio.h>
#include <windows.h>

#include <bcrypt.h>

#define WS_MARGIN (4u << 20) /* working-set headroom beyond the locked bytes */

int vgpu_os_alloc_pinned(size_t len, void **ret)
{
        void *mem = VirtualAlloc(NULL, len, MEM_RESERVE | MEM_COMMIT, PAGE_READWRITE);
        if (!mem)
                return -ENOMEM;
        /* VirtualLock can lock only what fits the minimum working set: grow
         * it by the region first. Locked pages stay resident at a fixed
         * physical address. */
        HANDLE self = GetCurrentProcess();
        SIZE_T wmin, wmax;
        if (GetProcessWorkingSetSize(self, &wmin, &wmax))
                SetProcessWorkingSetSize(self, wmin + len + WS_MARGIN, wmax + len + WS_MARGIN);
        if (!VirtualLock(mem, len)) {
                DWORD e = GetLastError();
                VirtualFree(mem, 0, MEM_RELEASE);
                return e == ERROR_WORKING_SET_QUOTA || e == ERROR_NOT_ENOUGH_MEMORY ? -ENOMEM : -EPERM;
        }
        *ret = mem;
        return 0;
}

void vgpu_os_free_pinned(void *mem, size_t len)
{
        if (!mem)
                return;
        VirtualUnlock(mem, len);
        VirtualFree(mem, 0, MEM_RELEASE);
}

int vgpu_os_random(void *buf, size_t len)
{
        if (len > ULONG_MAX)
                return -EINVAL;
        NTSTATUS st = BCryptGenRandom(NULL, buf, (ULONG)len, BCRYPT_USE_SYSTEM_PREFERRED_RNG);
        return st >= 0 ? 0 : -EIO;
}

uint64_t vgpu_os_now_ns(void)
{
        static LARGE_INTEGER freq;
        LARGE_INTEGER c;
        if (!freq.QuadPart)
                QueryPerformanceFrequency(&freq);
        QueryPerformanceCounter(&c);
        uint64_t f = (uint64_t)freq.QuadPart, v = (uint64_t)c.QuadPart;
        return v / f * 1000000000ull + v % f * 1000000000ull / f;
}

uint32_t vgpu_os_pid(void)
{
        return (uint32_t)GetCurrentProcessId();
}

void vgpu_os_sleep_ns(uint64_t ns)
{
        /* Millisecond resolution: main_windows.c sets timeBeginPeriod(1). */
        uint64_t ms = (ns + 999999) / 1000000;
        Sleep(ms > 0xfffffffe ? 0xfffffffe : (DWORD)ms);
}

int vgpu_os_replace_file(const char *tmp, const char *path)
{
        if (MoveFileExA(tmp, path, MOVEFILE_REPLACE_EXISTING | MOVEFILE_WRITE_THROUGH))
                return 0;
        DeleteFileA(tmp);
        return -EIO;
}
