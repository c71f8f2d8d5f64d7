/* libFuzzer target: the attribution file reader (attrib_image_parse), which
 * reads the per-process files the interposer writes (src/attrib/
 * attrib_format.h) and must treat them as untrusted: a process can die in
 * the middle of an update or scribble over its own mapping. The input's
 * first bytes become the header (magic, version and header size forced, so
 * the fuzzer spends its time on offsets, counts and records), the rest
 * follows it as the sections. Whatever it holds, the parser must return a
 * status without reading outside the buffer, a parsed image must only hold
 * stacks whose frame-tree walk ends at the root within 64 steps, each
 * interval must name a stack at most once (the collector sums per stack),
 * and nothing may leak.
 *
 * Seeds (tests/fuzz/seeds/fuzz_attrib, format 3: the frame tree, stack
 * records naming their innermost node, the varint stream of snapshot
 * records over several intervals, load maps) are written by
 * tests/attrib/fuzz_seeds.c: synthetic images and real ones the interposer
 * left, packed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attrib/attrib_format.h"
#include "miser/alloc.h"
#include "profiler/attrib.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t hn = size < sizeof(mattr_header) ? size : sizeof(mattr_header);
    size_t len = MATTR_HEADER_SIZE + (size - hn);
    uint8_t *buf = calloc(1, len);
    if (!buf) return 0;
    memcpy(buf, data, hn);
    memcpy(buf + MATTR_HEADER_SIZE, data + hn, size - hn);
    mattr_header *h = (mattr_header *)buf;
    h->magic = MATTR_MAGIC;
    h->version = MATTR_VERSION;
    h->header_size = MATTR_HEADER_SIZE;
    attrib_image im;
    if (attrib_image_parse(buf, len, &im) == MISER_OK) {
        for (size_t i = 0; i < im.nstacks; i++) {
            const attrib_stack_info *s = &im.stacks[i];
            uint64_t ips[MATTR_MAX_DEPTH];
            if (s->node >= im.nnodes || attrib_stack_ips(&im, i, ips) != s->depth || s->kind < 0 || s->kind > 2)
                abort();
        }
        uint64_t *seen = calloc(im.nstacks + 1, sizeof *seen);
        if (!seen) abort();
        for (size_t k = 0; k < im.nintervals; k++)
            for (size_t q = 0; q < im.intervals[k].nvals; q++) {
                uint32_t si = im.intervals[k].stack[q];
                if (si >= im.nstacks || seen[si] == k + 1) abort();
                seen[si] = k + 1;
            }
        free(seen);
        if (strlen(im.maps_all) > h->maps_len) abort();
        attrib_image_free(&im);
    }
    free(buf);
    if (miser_mem_total().current != 0) abort(); /* nothing may outlive a parse */
    return 0;
}
