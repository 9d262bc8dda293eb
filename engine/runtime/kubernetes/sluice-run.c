/*
 * sluice-run: runs a step container's command inside its pod and leaves what the wait container
 * needs in the pod's shared directory (see engine/runtime/kubernetes/__init__.py, "capture design").
 *
 * A static program because step images may have no shell and no Python. The init container copies
 * it to /var/run/sluice/bin; the pod builder (engine/runtime/kubernetes/pods.py) puts it in front of
 * the template's command:
 *
 *   sluice-run --name NAME [--stdout] [--after A,B] [--stop-on C --grace SECONDS]
 *              [--save REL=PATH]... -- COMMAND [ARG]...
 *
 *   --name     the container's name: files go to $SLUICE_VAR_DIR/ctr/NAME (default /var/run/sluice)
 *   --stdout   also copy the command's stdout to ctr/NAME/stdout (the step's result)
 *   --after    wait until these containers have exited; when one of them did not succeed, do not run
 *              and record "skipped" (containerSet dependencies)
 *   --stop-on  stop the command (SIGTERM to its process group, SIGKILL after --grace seconds) once
 *              container C has exited, and exit 0 then (sidecars end with main)
 *   --save     after the command exits, copy PATH (file or directory, as seen by this container) to
 *              $SLUICE_VAR_DIR/outputs/REL; a missing PATH is left for the wait container to judge
 *
 * Finally it writes the exit code to ctr/NAME/exitcode (atomically, after the outputs are saved) and
 * exits with it. When the command cannot be started, ctr/NAME/error says why and the code is 127
 * (not found) or 126 (not executable), as a shell would report.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_SAVES 256
#define MAX_AFTER 64

static char var_dir[PATH_MAX] = "/var/run/sluice";
static pid_t child = -1;

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("sluice-run: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(125);
}

static long now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static int mkdirs(const char *path, mode_t mode) {
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return -1;
    for (char *p = buf + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(buf, mode) == -1 && errno != EEXIST) return -1;
            *p = '/';
        }
    }
    if (mkdir(buf, mode) == -1 && errno != EEXIST) return -1;
    return 0;
}

static void ctr_path(char *out, size_t n, const char *name, const char *file) {
    if (snprintf(out, n, "%s/ctr/%s/%s", var_dir, name, file) >= (int)n) die("path too long");
}

/* Write a small file atomically (write to a temporary name, then rename). */
static void write_file(const char *path, const char *text) {
    char tmp[PATH_MAX];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) die("path too long");
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd == -1) die("cannot write %s: %s", tmp, strerror(errno));
    size_t len = strlen(text);
    if (write(fd, text, len) != (ssize_t)len) die("cannot write %s: %s", tmp, strerror(errno));
    close(fd);
    if (rename(tmp, path) == -1) die("cannot rename %s: %s", tmp, strerror(errno));
}

/* The recorded exit of container NAME: 1 and its text when it has exited, 0 while it runs. */
static int exit_of(const char *name, char *text, size_t n) {
    char path[PATH_MAX];
    ctr_path(path, sizeof path, name, "exitcode");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) return 0;
    ssize_t got = read(fd, text, n - 1);
    close(fd);
    text[got > 0 ? got : 0] = '\0';
    return 1;
}

/* ------------------------------------------------------------------------------------- copying */

static int copy_path(const char *src, const char *dst);

static int copy_file(const char *src, const char *dst, mode_t mode) {
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in == -1) return -1;
    int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode & 07777);
    if (out == -1) {
        close(in);
        return -1;
    }
    char buf[65536];
    ssize_t got;
    int rc = 0;
    while ((got = read(in, buf, sizeof buf)) > 0) {
        for (ssize_t off = 0; off < got;) {
            ssize_t put = write(out, buf + off, (size_t)(got - off));
            if (put == -1) {
                if (errno == EINTR) continue;
                rc = -1;
                break;
            }
            off += put;
        }
        if (rc) break;
    }
    if (got == -1) rc = -1;
    close(in);
    if (close(out) == -1) rc = -1;
    return rc;
}

static int copy_dir(const char *src, const char *dst, mode_t mode) {
    if (mkdir(dst, (mode & 07777) | 0700) == -1 && errno != EEXIST) return -1;
    DIR *d = opendir(src);
    if (!d) return -1;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char s[PATH_MAX], t[PATH_MAX];
        if (snprintf(s, sizeof s, "%s/%s", src, e->d_name) >= (int)sizeof s ||
            snprintf(t, sizeof t, "%s/%s", dst, e->d_name) >= (int)sizeof t) {
            rc = -1;
            continue;
        }
        if (copy_path(s, t) == -1) rc = -1;
    }
    closedir(d);
    return rc;
}

static int copy_path(const char *src, const char *dst) {
    struct stat st;
    if (lstat(src, &st) == -1) return -1;
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof target - 1);
        if (n == -1) return -1;
        target[n] = '\0';
        return symlink(target, dst);
    }
    if (S_ISDIR(st.st_mode)) return copy_dir(src, dst, st.st_mode);
    if (S_ISREG(st.st_mode)) return copy_file(src, dst, st.st_mode);
    return 0; /* sockets, fifos, devices: nothing to keep */
}

static void save_outputs(char **saves, int n) {
    for (int i = 0; i < n; i++) {
        char *eq = strchr(saves[i], '=');
        if (!eq) die("--save %s: expected REL=PATH", saves[i]);
        *eq = '\0';
        const char *rel = saves[i], *src = eq + 1;
        struct stat st;
        if (lstat(src, &st) == -1) continue; /* the wait container reports it, or uses the default */
        char dst[PATH_MAX], parent[PATH_MAX];
        if (snprintf(dst, sizeof dst, "%s/outputs/%s", var_dir, rel) >= (int)sizeof dst) die("path too long");
        snprintf(parent, sizeof parent, "%s", dst);
        char *slash = strrchr(parent, '/');
        if (slash) *slash = '\0';
        if (mkdirs(parent, 0755) == -1 || copy_path(src, dst) == -1)
            fprintf(stderr, "sluice-run: cannot save %s: %s\n", src, strerror(errno));
    }
}

/* --------------------------------------------------------------------------------------- exec */

/* execvp without its fallback of running a file that is not a program through /bin/sh: a container
   runtime execs directly, so "exec format error" must stay an error here too. Returns errno. */
static int exec_command(char **args) {
    const char *cmd = args[0];
    if (strchr(cmd, '/')) {
        execv(cmd, args);
        return errno;
    }
    const char *path = getenv("PATH");
    if (!path || !*path) path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    int seen_eacces = 0;
    for (const char *p = path;; p++) {
        const char *end = strchr(p, ':');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char full[PATH_MAX];
        if (snprintf(full, sizeof full, "%.*s/%s", (int)len, len ? p : ".", cmd) < (int)sizeof full) {
            execv(full, args);
            if (errno == EACCES) seen_eacces = 1;
            else if (errno != ENOENT && errno != ENOTDIR) return errno;
        }
        if (!end) break;
        p = end;
    }
    return seen_eacces ? EACCES : ENOENT;
}

/* ------------------------------------------------------------------------------------- signals */

static void forward(int sig) {
    if (child > 0) kill(-child, sig);
}

static void install_forwarding(void) {
    int sigs[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = forward;
    sa.sa_flags = SA_RESTART;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) sigaction(sigs[i], &sa, NULL);
}

/* ------------------------------------------------------------------------------------- main */

int main(int argc, char **argv) {
    const char *name = NULL, *stop_on = NULL;
    char *after[MAX_AFTER];
    char *saves[MAX_SAVES];
    int n_after = 0, n_saves = 0, capture = 0, grace = 10, i;

    const char *env_dir = getenv("SLUICE_VAR_DIR");
    if (env_dir && *env_dir) snprintf(var_dir, sizeof var_dir, "%s", env_dir);

    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else if (!strcmp(argv[i], "--name") && i + 1 < argc) {
            name = argv[++i];
        } else if (!strcmp(argv[i], "--stdout")) {
            capture = 1;
        } else if (!strcmp(argv[i], "--after") && i + 1 < argc) {
            for (char *tok = strtok(argv[++i], ","); tok && n_after < MAX_AFTER; tok = strtok(NULL, ","))
                after[n_after++] = tok;
        } else if (!strcmp(argv[i], "--stop-on") && i + 1 < argc) {
            stop_on = argv[++i];
        } else if (!strcmp(argv[i], "--grace") && i + 1 < argc) {
            grace = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--save") && i + 1 < argc) {
            if (n_saves == MAX_SAVES) die("too many --save");
            saves[n_saves++] = argv[++i];
        } else {
            die("unknown argument %s", argv[i]);
        }
    }
    if (!name || !*name || strchr(name, '/')) die("--name is required (a container name)");
    if (i >= argc) die("no command after --");

    char dir[PATH_MAX], path[PATH_MAX], text[64];
    if (snprintf(dir, sizeof dir, "%s/ctr/%s", var_dir, name) >= (int)sizeof dir) die("path too long");
    if (mkdirs(dir, 0755) == -1) die("cannot create %s: %s", dir, strerror(errno));

    /* containerSet: run only after every dependency has succeeded. */
    for (int a = 0; a < n_after; a++) {
        while (!exit_of(after[a], text, sizeof text)) sleep_ms(50);
        if (strcmp(text, "0") != 0) {
            ctr_path(path, sizeof path, name, "exitcode");
            write_file(path, "skipped");
            return 0;
        }
    }

    int pipefd[2] = {-1, -1};
    int out_fd = -1;
    if (capture) {
        if (pipe2(pipefd, O_CLOEXEC) == -1) die("pipe: %s", strerror(errno));
        ctr_path(path, sizeof path, name, "stdout");
        out_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (out_fd == -1) die("cannot write %s: %s", path, strerror(errno));
    }
    /* The child reports an exec failure through this pipe (closed on a successful exec). */
    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC) == -1) die("pipe: %s", strerror(errno));

    install_forwarding();
    child = fork();
    if (child == -1) die("fork: %s", strerror(errno));
    if (child == 0) {
        setpgid(0, 0); /* its own group, so a stop reaches its children too */
        if (capture) dup2(pipefd[1], STDOUT_FILENO);
        int err = exec_command(&argv[i]);
        if (write(errpipe[1], &err, sizeof err) < 0) {
        }
        _exit(err == ENOENT ? 127 : 126);
    }
    setpgid(child, child);
    close(errpipe[1]);
    int exec_err = 0;
    if (read(errpipe[0], &exec_err, sizeof exec_err) == (ssize_t)sizeof exec_err) {
        char msg[PATH_MAX + 128];
        snprintf(msg, sizeof msg, "exec: \"%s\": %s", argv[i],
                 exec_err == ENOENT   ? (strchr(argv[i], '/') ? "no such file or directory"
                                                               : "executable file not found in $PATH")
                 : exec_err == EACCES ? "permission denied"
                 : exec_err == ENOEXEC ? "exec format error"
                                       : strerror(exec_err));
        ctr_path(path, sizeof path, name, "error");
        write_file(path, msg);
        fprintf(stderr, "sluice-run: %s\n", msg);
    }
    close(errpipe[0]);
    if (capture) close(pipefd[1]);

    int stopped = 0;
    long stop_deadline_ms = -1;
    int status = 0, done = 0;
    char buf[65536];
    while (!done) {
        if (capture && pipefd[0] != -1) {
            struct pollfd pfd = {pipefd[0], POLLIN, 0};
            int r = poll(&pfd, 1, 100);
            if (r > 0) {
                ssize_t got = read(pipefd[0], buf, sizeof buf);
                if (got > 0) {
                    for (ssize_t off = 0; off < got;) {
                        ssize_t put = write(STDOUT_FILENO, buf + off, (size_t)(got - off));
                        if (put <= 0) break;
                        off += put;
                    }
                    if (write(out_fd, buf, (size_t)got) != got) {
                    }
                    continue;
                }
                if (got == 0 || (got == -1 && errno != EINTR && errno != EAGAIN)) {
                    close(pipefd[0]);
                    pipefd[0] = -1;
                }
            }
        } else {
            sleep_ms(100);
        }
        pid_t w = waitpid(child, &status, WNOHANG);
        if (w == child) {
            /* Drain what is left in the pipe; a background process may still hold it open, so
               never block on it. */
            if (capture && pipefd[0] != -1) fcntl(pipefd[0], F_SETFL, O_NONBLOCK);
            while (capture && pipefd[0] != -1) {
                ssize_t got = read(pipefd[0], buf, sizeof buf);
                if (got <= 0) break;
                if (write(STDOUT_FILENO, buf, (size_t)got) < 0) {
                }
                if (write(out_fd, buf, (size_t)got) != got) {
                }
            }
            done = 1;
            break;
        }
        if (stop_on && !stopped && exit_of(stop_on, text, sizeof text)) {
            stopped = 1;
            kill(-child, SIGTERM);
            stop_deadline_ms = now_ms() + (long)grace * 1000;
        }
        if (stopped && stop_deadline_ms >= 0 && now_ms() >= stop_deadline_ms) {
            kill(-child, SIGKILL);
            stop_deadline_ms = -1;
        }
    }
    if (out_fd != -1) close(out_fd);

    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (stopped) code = 0; /* a sidecar stopped because main is done has done its job */
    save_outputs(saves, n_saves);
    snprintf(text, sizeof text, "%d", code);
    ctr_path(path, sizeof path, name, "exitcode");
    write_file(path, text);
    return code;
}
