/* SPDX-License-Identifier: MIT */
/* libFuzzer harness for libvgpu-perception's region parser: page tags, the
 * header, slot headers, the control block, all guest-controlled. Input:
 *   u8 mode | guest RAM image (whole pages)
 * mode: bit0 pread mode (VMIE_RAM_NO_MMAP through a memfd), bit1 verify
 * checksums, bit2 split layout (upper half of the image at 4 GiB). The image
 * is wrapped in place in mapped mode, so ASan sees any read past its end.
 * Every call must return; a frame returned as good must fit the buffer and
 * agree with its slot's checksum when verifying. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vgpu/perception.h>
#include <vmie/vmie.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define BUF_CAP (1u << 20)

static void exercise(struct vmie_ram *ram, unsigned flags)
{
        struct vgpu_perception_options o = {.flags = flags, .rescan_min_ms = 1, .stale_ms = 100000};
        struct vgpu_perception *p = NULL;
        struct vgpu_frame_info fi;
        struct vgpu_producer_info pi;
        static uint8_t buf[BUF_CAP];

        if (vgpu_perception_new(ram, &o, &p) < 0)
                abort();
        (void)vgpu_perception_discover(p);
        for (int i = 0; i < 2; i++) {
                int r = vgpu_perception_read(p, buf, sizeof(buf), &fi);
                if (r == 0 && (fi.data_len > sizeof(buf) || ((flags & VGPU_PERCEPTION_VERIFY) &&
                                                             vgpu_checksum(buf, fi.data_len) != fi.checksum)))
                        abort();
                const struct iovec *sp;
                size_t n, total = 0;
                if (vgpu_perception_map(p, &sp, &n, &fi) == 0) {
                        for (size_t k = 0; k < n; k++) {
                                total += sp[k].iov_len;
                                volatile uint8_t first = *(const uint8_t *)sp[k].iov_base;
                                volatile uint8_t last = ((const uint8_t *)sp[k].iov_base)[sp[k].iov_len - 1];
                                (void)first;
                                (void)last;
                        }
                        if (total != fi.data_len)
                                abort();
                        /* VERIFY summed the spans in place: the static
                         * bytes must match the checksum handed out. */
                        if ((flags & VGPU_PERCEPTION_VERIFY) && total <= sizeof(buf)) {
                                size_t off = 0;
                                for (size_t k = 0; k < n; k++) {
                                        memcpy(buf + off, sp[k].iov_base, sp[k].iov_len);
                                        off += sp[k].iov_len;
                                }
                                if (vgpu_checksum(buf, total) != fi.checksum)
                                        abort();
                        }
                        (void)vgpu_perception_still_valid(p, &fi);
                }
        }
        if (vgpu_perception_producer(p, &pi) == 0) {
                struct vgpu_control c;
                uint64_t gpa;
                uint32_t seq;
                if (vgpu_perception_control(p, VGPU_OP_FULL_FRAME, NULL, &c, &gpa, &seq) == 0) {
                        if (gpa < pi.page0_gpa || gpa + sizeof(c) > pi.page0_gpa + VGPU_PAGE_SIZE)
                                abort();
                        (void)vgpu_perception_control_ack(p, seq, NULL);
                }
        }
        (void)vgpu_perception_wait(p, UINT64_MAX, 0, 2, NULL);
        vgpu_perception_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 + 4096)
                return 0;
        uint8_t mode = data[0];
        const uint8_t *img = data + 1;
        size_t isz = (size - 1) & ~(size_t)4095;
        struct vmie_range r[2] = {{.gpa = 0x1000, .len = isz, .file_offset = 0}};
        size_t n = 1;
        unsigned flags = (mode & 2) ? VGPU_PERCEPTION_VERIFY : 0;
        struct vmie_ram *ram = NULL;

        if ((mode & 4) && isz >= 2 * 4096) {
                uint64_t half = (isz / 2) & ~0xfffull;
                r[0].len = half;
                r[1] = (struct vmie_range){.gpa = 1ull << 32, .len = isz - half, .file_offset = half};
                n = 2;
        }
        if (mode & 1) {
                int fd = memfd_create("fuzz-vgpu", MFD_CLOEXEC);
                if (fd < 0)
                        abort();
                if (write(fd, img, isz) != (ssize_t)isz)
                        abort();
                if (vmie_ram_open_fd(fd, r, n, VMIE_RAM_NO_MMAP, &ram) == 0)
                        exercise(ram, flags);
                close(fd);
        } else if (vmie_ram_wrap(img, isz, r, n, 0, &ram) == 0) {
                exercise(ram, flags);
        }
        vmie_ram_free(ram);
        return 0;
}
