/* GPU memory through NVML, loaded at run time with dlopen so that miser
 * never needs the NVIDIA driver to build or run. Only the handful of entry
 * points used here are declared, with the layouts of nvml.h. */
#include "internal.h"

#include <dlfcn.h>
#include <pthread.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef void *nvmlDevice_t;
/* nvmlProcessInfo_v1_t and the v2/v3 layout (two extra unsigned ints). */
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; } proc_v1;
typedef struct { unsigned int pid; unsigned long long usedGpuMemory; unsigned int gi, ci; } proc_v2;

static struct {
    int tried, ok;
    nvmlReturn_t (*init)(void);
    nvmlReturn_t (*count)(unsigned int *);
    nvmlReturn_t (*handle)(unsigned int, nvmlDevice_t *);
    nvmlReturn_t (*procs_v1)(nvmlDevice_t, unsigned int *, proc_v1 *);
    nvmlReturn_t (*procs_v3)(nvmlDevice_t, unsigned int *, proc_v2 *);
} g;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void load(void)
{
    void *h = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) h = dlopen("libnvidia-ml.so", RTLD_NOW | RTLD_LOCAL);
    if (!h) return;
    *(void **)&g.init = dlsym(h, "nvmlInit_v2");
    *(void **)&g.count = dlsym(h, "nvmlDeviceGetCount_v2");
    *(void **)&g.handle = dlsym(h, "nvmlDeviceGetHandleByIndex_v2");
    *(void **)&g.procs_v3 = dlsym(h, "nvmlDeviceGetComputeRunningProcesses_v3");
    *(void **)&g.procs_v1 = dlsym(h, "nvmlDeviceGetComputeRunningProcesses");
    if (!g.init || !g.count || !g.handle || (!g.procs_v3 && !g.procs_v1) || g.init() != 0) return;
    g.ok = 1;
}

int nvml_available(void)
{
    pthread_once(&g_once, load);
    return g.ok;
}

int64_t nvml_used_kb_for_pids(const pid_t *pids, size_t n)
{
    if (!nvml_available()) return -1;
    unsigned int ndev = 0;
    if (g.count(&ndev) != 0) return -1;
    unsigned long long total = 0;
    for (unsigned int d = 0; d < ndev; d++) {
        nvmlDevice_t dev;
        if (g.handle(d, &dev) != 0) continue;
        enum { MAXP = 256 };
        unsigned int cnt = MAXP;
        if (g.procs_v3) {
            proc_v2 info[MAXP];
            if (g.procs_v3(dev, &cnt, info) != 0) continue;
            for (unsigned int i = 0; i < cnt && i < MAXP; i++)
                for (size_t k = 0; k < n; k++)
                    if (info[i].pid == (unsigned int)pids[k] && info[i].usedGpuMemory != ~0ull)
                        total += info[i].usedGpuMemory;
        } else {
            proc_v1 info[MAXP];
            if (g.procs_v1(dev, &cnt, info) != 0) continue;
            for (unsigned int i = 0; i < cnt && i < MAXP; i++)
                for (size_t k = 0; k < n; k++)
                    if (info[i].pid == (unsigned int)pids[k] && info[i].usedGpuMemory != ~0ull)
                        total += info[i].usedGpuMemory;
        }
    }
    return (int64_t)(total / 1024);
}
