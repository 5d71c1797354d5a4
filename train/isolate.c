#include "train/isolate.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct shared_head {
    int done; // set by the child as its last act: anything else is a crash
    int status;
    char message[1024];
} shared_head;

// The payload follows the head at a 64-byte boundary.
#define HEAD_BYTES ((sizeof(shared_head) + 63) & ~(size_t)63)

lc_status lc_isolated_call(const char *path, size_t bytes, lc_isolated_fn fn, void *ctx, void **out) {
    *out = NULL;
    size_t total = HEAD_BYTES + bytes;
    unsigned char *mem = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) return lc_error(LC_STATUS_RUNTIME, "%s: cannot map %zu bytes to read it", path, bytes);
    shared_head *head = (shared_head *)mem;
    fflush(stdout);
    fflush(stderr);
    // A SIGCHLD inherited as ignored makes the system reap the child itself,
    // and waitpid could never report it: default handling while it runs.
    struct sigaction dfl, old_chld;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(SIGCHLD, &dfl, &old_chld);
    pid_t pid = fork();
    if (pid < 0) {
        sigaction(SIGCHLD, &old_chld, NULL);
        munmap(mem, total);
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot start the reader process", path);
    }
    if (pid == 0) {
        // The child says nothing itself (its result travels in shared memory);
        // a crash report from a sanitizer must not reach the user's terminal.
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0) dup2(null, 2);
        lc_status st = fn(ctx, mem + HEAD_BYTES);
        snprintf(head->message, sizeof head->message, "%s", st ? lc_error_message() : "");
        head->status = (int)st;
        head->done = 1;
        _exit(0); // no atexit handlers: the parent owns every resource
    }
    int wst = 0;
    pid_t got;
    while ((got = waitpid(pid, &wst, 0)) < 0 && errno == EINTR) {
    }
    int wait_errno = errno;
    sigaction(SIGCHLD, &old_chld, NULL);
    if (got < 0) {
        munmap(mem, total);
        return lc_error(LC_STATUS_RUNTIME, "%s: cannot wait for the reader process: %s", path, strerror(wait_errno));
    }
    if (!WIFEXITED(wst) || !head->done) {
        // A crash inside the library (a sanitizer turns it into an exit).
        munmap(mem, total);
        return lc_error(LC_STATUS_INPUT, "%s: the HDF5 library crashed reading it (%s %d): the file is damaged or "
                        "was crafted to attack it", path, WIFSIGNALED(wst) ? "signal" : "exit status",
                        WIFSIGNALED(wst) ? WTERMSIG(wst) : WEXITSTATUS(wst));
    }
    lc_status st = (lc_status)head->status;
    if (st) {
        lc_error(st, "%s", head->message);
        munmap(mem, total);
        return st;
    }
    *out = mem + HEAD_BYTES;
    return LC_STATUS_OK;
}

void lc_isolated_free(void *out, size_t bytes) {
    if (out) munmap((unsigned char *)out - HEAD_BYTES, HEAD_BYTES + bytes);
}
