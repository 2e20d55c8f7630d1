/*
 * pause: the process that holds a pod's namespaces open.
 *
 * It does nothing but wait. SIGINT and SIGTERM end it with status 0 (the runtime's way of
 * tearing the sandbox down); SIGCHLD reaps any child re-parented to it (it is PID 1 in the pod
 * when the PID namespace is shared), so no zombie outlives its parent. Written for this project:
 * a registry with the upstream pause image is not reachable here.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAUSE_VERSION "qframe-pause 1.0"

static void stop(int signo) {
    (void)signo;
    _exit(0);
}

static void reap(int signo) {
    (void)signo;
    int saved = errno;
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    errno = saved;
}

static int install(int signo, void (*handler)(int), int flags) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = handler;
    action.sa_flags = flags;
    sigemptyset(&action.sa_mask);
    return sigaction(signo, &action, NULL);
}

int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "-v") == 0) {
        puts(PAUSE_VERSION);
        return 0;
    }
    if (getpid() != 1) {
        /* Still fine (e.g. run by hand), but say so: reaping only matters as PID 1. */
        fputs("pause: not running as PID 1\n", stderr);
    }
    if (install(SIGINT, stop, 0) < 0 || install(SIGTERM, stop, 0) < 0 ||
        install(SIGCHLD, reap, SA_NOCLDSTOP | SA_RESTART) < 0) {
        perror("pause: sigaction");
        return 1;
    }
    for (;;) {
        pause();
    }
}
