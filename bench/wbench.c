/* wbench: the client scripts/bench runs against a wormfs mount and a native directory. It makes
 * the system calls and times them itself (clock_gettime(CLOCK_MONOTONIC)), and prints one line
 * of key=value pairs per run: ops, secs (wall time of the whole run, opens and closes included),
 * ops_s, mb_s (1e6 bytes/s), p50_us / p99_us / max_us (per operation), cpu_us_op (this process'
 * user + system CPU per operation, getrusage; all threads).
 *
 *   wbench append DIR SIZE N [THREADS [sync]]
 *       Each thread: open(DIR/append.T, O_WRONLY|O_CREAT|O_EXCL|O_APPEND), N writes of SIZE bytes,
 *       [fdatasync], close. ops = all writes; latency per write; close_us = the slowest thread's
 *       close() (with the fdatasync when `sync`): in wormfs the close seals.
 *   wbench create DIR N [THREADS [sync]]
 *       Each thread, in its own directory DIR/cT (made before the clock starts): N times
 *       open(DIR/cT/fNNNNNN, O_CREAT|O_EXCL|O_WRONLY|O_APPEND), write 1 KiB, [fdatasync], close.
 *       ops = files; latency per file, from the open to the return of close.
 *   wbench syslog SOCKET N DIR
 *       Sends N "<13>wbench: wbench-seq=..." datagrams to the unix socket SOCKET (SOCK_DGRAM,
 *       blocking), then polls the files under DIR until N complete lines with "wbench-seq=" are
 *       there. secs = first send to the poll that found the last line; send_secs = sending alone.
 *   wbench hold DIR N PID ro|append
 *       Opens DIR/f000000 .. N-1 (O_RDONLY, or O_WRONLY|O_APPEND) and keeps them open, reads
 *       VmRSS (rss_kb) and the open descriptors (daemon_fds) of process PID (the daemon), then
 *       closes them all (close_secs).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static double cpu_secs(void) {
    struct rusage r;
    getrusage(RUSAGE_SELF, &r);
    return r.ru_utime.tv_sec + r.ru_stime.tv_sec + (r.ru_utime.tv_usec + r.ru_stime.tv_usec) / 1e6;
}

static void die(const char *what, const char *path) {
    fprintf(stderr, "wbench: %s %s: %s\n", what, path, strerror(errno));
    exit(1);
}

static void usage(void) {
    fprintf(stderr, "usage: wbench append DIR SIZE N [THREADS [sync]] | create DIR N [THREADS [sync]] |\n"
                    "       syslog SOCKET N DIR | hold DIR N PID ro|append\n");
    exit(2);
}

static void write_all(int fd, const char *p, size_t len, const char *path) {
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            die("write", path);
        p += w;
        len -= (size_t)w;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The p-quantile (0..1) of v[0..n), sorted in place. */
static double quantile(double *v, size_t n, double p) {
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

static char payload[1 << 20];

struct job {
    int id, sync;
    const char *dir;
    size_t size;
    long n;
    double *lat, close_s;
};

static void *append_thread(void *arg) {
    struct job *j = arg;
    char path[4096];
    snprintf(path, sizeof path, "%s/append.%d", j->dir, j->id);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND, 0644);
    if (fd < 0)
        die("open", path);
    for (long i = 0; i < j->n; i++) {
        double t = now();
        write_all(fd, payload, j->size, path);
        j->lat[i] = now() - t;
    }
    double t = now();
    if (j->sync && fdatasync(fd) != 0)
        die("fdatasync", path);
    if (close(fd) != 0)
        die("close", path);
    j->close_s = now() - t;
    return NULL;
}

static void *create_thread(void *arg) {
    struct job *j = arg;
    char path[4096];
    for (long i = 0; i < j->n; i++) {
        snprintf(path, sizeof path, "%s/c%d/f%06ld", j->dir, j->id, i);
        double t = now();
        int fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_APPEND, 0644);
        if (fd < 0)
            die("open", path);
        write_all(fd, payload, 1024, path);
        if (j->sync && fdatasync(fd) != 0)
            die("fdatasync", path);
        if (close(fd) != 0)
            die("close", path);
        j->lat[i] = now() - t;
    }
    return NULL;
}

/* Runs THREADS jobs of `fn`, each with n operations; prints the summary line. */
static int run_threads(void *(*fn)(void *), const char *dir, size_t size, long n, int threads, int sync) {
    struct job jobs[64];
    pthread_t tid[64];
    if (threads < 1 || threads > 64 || n < 1)
        usage();
    double *lat = calloc((size_t)(n * threads), sizeof *lat);
    if (!lat)
        die("calloc", "");
    for (int t = 0; t < threads; t++) {
        jobs[t] = (struct job){.id = t, .sync = sync, .dir = dir, .size = size, .n = n, .lat = lat + t * n};
        if (fn == create_thread) {
            char d[4096];
            snprintf(d, sizeof d, "%s/c%d", dir, t);
            if (mkdir(d, 0755) != 0)
                die("mkdir", d);
        }
    }
    double c0 = cpu_secs(), t0 = now();
    for (int t = 0; t < threads; t++)
        if ((errno = pthread_create(&tid[t], NULL, fn, &jobs[t])) != 0)
            die("pthread_create", "");
    double close_s = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(tid[t], NULL);
        if (jobs[t].close_s > close_s)
            close_s = jobs[t].close_s;
    }
    double secs = now() - t0, cpu = cpu_secs() - c0;
    long ops = n * threads;
    size_t total = (size_t)ops * (fn == create_thread ? 1024 : size);
    printf("ops=%ld secs=%.6f ops_s=%.1f mb_s=%.2f p50_us=%.1f p99_us=%.1f max_us=%.1f close_us=%.1f "
           "cpu_us_op=%.3f\n",
           ops, secs, ops / secs, total / secs / 1e6, quantile(lat, ops, 0.5) * 1e6, quantile(lat, ops, 0.99) * 1e6,
           quantile(lat, ops, 1.0) * 1e6, close_s * 1e6, cpu / ops * 1e6);
    free(lat);
    return 0;
}

/* Complete lines with the marker in files under dir, read incrementally (each file's offset is
 * kept just past its last complete line). */
#define MARKER "wbench-seq="
struct seen {
    char path[4096];
    off_t off;
};
static struct seen seen[256];
static int nseen;
static char rbuf[1 << 20];

static long scan(const char *dir) {
    long count = 0;
    DIR *d = opendir(dir);
    if (!d)
        return 0; /* not created yet */
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (lstat(path, &st) != 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            count += scan(path);
            continue;
        }
        if (!S_ISREG(st.st_mode))
            continue;
        int k = 0;
        while (k < nseen && strcmp(seen[k].path, path) != 0)
            k++;
        if (k == nseen) {
            if (nseen == 256) {
                errno = ENFILE;
                die("too many files under", dir);
            }
            snprintf(seen[nseen++].path, sizeof seen[k].path, "%s", path);
        }
        int fd = open(path, O_RDONLY);
        if (fd < 0)
            continue;
        ssize_t r;
        while ((r = pread(fd, rbuf, sizeof rbuf, seen[k].off)) > 0) {
            char *nl = memrchr(rbuf, '\n', (size_t)r);
            if (!nl)
                break;
            for (char *p = rbuf; (p = memmem(p, (size_t)(nl - p), MARKER, sizeof MARKER - 1)) != NULL; p++)
                count++;
            seen[k].off += nl - rbuf + 1;
        }
        close(fd);
    }
    closedir(d);
    return count;
}

static int syslog_mode(const char *sock, long n, const char *dir) {
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    snprintf(a.sun_path, sizeof a.sun_path, "%s", sock);
    int s = socket(AF_UNIX, SOCK_DGRAM, 0);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0)
        die("connect", sock);
    double c0 = cpu_secs(), t0 = now();
    for (long i = 1; i <= n; i++) {
        char m[256];
        int len = snprintf(m, sizeof m, "<13>wbench: " MARKER "%07ld the quick brown fox jumps over the lazy dog", i);
        while (send(s, m, (size_t)len, 0) < 0) {
            if (errno != EINTR && errno != ENOBUFS && errno != EAGAIN)
                die("send", sock);
            usleep(100);
        }
    }
    double sent = now() - t0, last = t0;
    long count = 0; /* scan() returns the lines that appeared since its last call */
    while (last - t0 < 300) {
        count += scan(dir);
        last = now();
        if (count >= n)
            break;
        usleep(1000);
    }
    if (count < n) {
        fprintf(stderr, "wbench: only %ld of %ld messages reached %s in 300 s\n", count, n, dir);
        return 1;
    }
    double secs = last - t0;
    printf("ops=%ld secs=%.6f ops_s=%.1f send_secs=%.6f lines=%ld cpu_us_op=%.3f\n", n, secs, n / secs, sent, count,
           (cpu_secs() - c0) / n * 1e6);
    return 0;
}

static long vm_rss_kb(const char *pid) {
    char path[64], line[256];
    long kb = -1;
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        die("open", path);
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static long count_fds(const char *pid) {
    char path[64];
    long n = 0;
    snprintf(path, sizeof path, "/proc/%s/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        die("open", path);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int hold_mode(const char *dir, long n, const char *pid, int flags) {
    struct rlimit rl = {.rlim_cur = (rlim_t)n + 64, .rlim_max = (rlim_t)n + 64};
    struct rlimit old;
    getrlimit(RLIMIT_NOFILE, &old);
    if (old.rlim_max > rl.rlim_max)
        rl.rlim_max = old.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        die("setrlimit", "RLIMIT_NOFILE");
    int *fds = calloc((size_t)n, sizeof *fds);
    if (!fds)
        die("calloc", "");
    long before = vm_rss_kb(pid), fds_before = count_fds(pid);
    double t0 = now();
    for (long i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/f%06ld", dir, i);
        if ((fds[i] = open(path, flags)) < 0)
            die("open", path);
    }
    double secs = now() - t0;
    long rss = vm_rss_kb(pid), fds_held = count_fds(pid);
    t0 = now();
    for (long i = 0; i < n; i++)
        if (close(fds[i]) != 0)
            die("close", dir);
    double close_s = now() - t0;
    printf("ops=%ld secs=%.6f ops_s=%.1f rss_before_kb=%ld rss_kb=%ld daemon_fds_before=%ld daemon_fds=%ld "
           "close_secs=%.6f\n",
           n, secs, n / secs, before, rss, fds_before, fds_held, close_s);
    free(fds);
    return 0;
}

int main(int argc, char **argv) {
    memset(payload, 'x', sizeof payload);
    for (size_t i = 99; i < sizeof payload; i += 100)
        payload[i] = '\n';
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        usage();
    const char *mode = argv[1];
    int threads = argc > 5 ? atoi(argv[5]) : 1, sync = argc > 6 && strcmp(argv[6], "sync") == 0;
    if (strcmp(mode, "append") == 0 && argc >= 5) {
        size_t size = strtoul(argv[3], NULL, 10);
        if (size < 1 || size > sizeof payload)
            usage();
        return run_threads(append_thread, argv[2], size, atol(argv[4]), threads, sync);
    }
    if (strcmp(mode, "create") == 0 && argc >= 4) {
        threads = argc > 4 ? atoi(argv[4]) : 1;
        sync = argc > 5 && strcmp(argv[5], "sync") == 0;
        return run_threads(create_thread, argv[2], 1024, atol(argv[3]), threads, sync);
    }
    if (strcmp(mode, "syslog") == 0 && argc == 5)
        return syslog_mode(argv[2], atol(argv[3]), argv[4]);
    if (strcmp(mode, "hold") == 0 && argc == 6)
        return hold_mode(argv[2], atol(argv[3]), argv[4], strcmp(argv[5], "ro") == 0 ? O_RDONLY : O_WRONLY | O_APPEND);
    usage();
    return 2;
}
