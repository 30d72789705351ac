"""The helper that puts one container's process in its sandbox, or one `exec` into a running container.

The agent runs this file as a script (`python -I -S sandbox.py run SPEC_FILE REPORT_FD ERROR_FD`, `exec SOCKET_FD`),
never imports its side effects, and it imports nothing but the standard library, so that it starts fast and an
environment chosen by a pod (LD_PRELOAD, PYTHONPATH) never reaches a process that still has root's powers: the
container's environment is read from the spec (a file, or for `exec` the socket) and given only to the final execve.

`run`: new mount, PID and UTS namespaces (and a user namespace when the agent is not root), after joining the pod's
network namespace when the spec names one (`netns`, the bridge pod network); the parent reports the
child's PID and leaves, so the agent (a child subreaper) becomes the parent of the container's PID 1. The child
makes every mount private, mounts a fresh /proc and an empty /tmp and /var/tmp of its own, opens each volume's
source (a subPath resolved inside its volume, symlinks included, and checked again once open), hides the masked
paths (the agent's root and credentials, the server's data dir) under empty read-only tmpfs (or /dev/null for a
file), binds the volumes and /etc/hosts at their targets (read-only where asked), drops to the container's user and
groups, and executes the command (in a session of its own whose controlling terminal is its stdin, when the
spec says `tty`). A mount target that does not exist is created in an overlay of its nearest
existing parent, whose upper layer lives in memory, so the host's filesystem is not changed (a missing top-level
directory is the exception: it is created on the host, empty). Anything that fails before the command runs is
written to ERROR_FD, which closes on exec: the agent reads EOF when the command started.

`exec`: started before there is an exec to run (the agent keeps one waiting: the interpreter's start is most of an
exec's time), it waits on SOCKET_FD for its request: the container's pidfd and the command's stdin, stdout and
stderr (SCM_RIGHTS; they become the helper's own 0, 1 and 2), and the spec. Then it joins the container's
namespaces through the pidfd (no PID reuse race) and forks; the child takes the container's user, directory and
environment and executes the command; the parent passes SIGTERM, SIGINT and SIGHUP on and exits with the child's
status (128+N for a signal), as a runtime's exec does. The socket closing before a request comes ends it (status 0).

`local` (`python -I -S sandbox.py local SPEC_FILE ERROR_FD`, for `kubesat run`): the helper itself enters new mount
and UTS namespaces (and, when not root, a user namespace that maps the caller's own uid and gid to themselves, so
the command runs as the caller) and becomes the command: no fork and no PID namespace, so the caller's terminal,
process group and signals reach it as for any child. The spec sets the mounts as for `run`, usually without a
fresh /proc (`"proc": false`) or private directories; the signal mask the caller may have blocked is cleared
before the exec.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import json
import os
import signal
import socket
import stat
import sys
import termios
# os.execvpe looks the command up with os.get_exec_path, which imports warnings on first use: by then the helper
# is inside the container's mounts, where the interpreter's own library may not be, so it is imported here.
import warnings  # noqa: F401

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MNT_DETACH = 2
O_PATH = 0o10000000

# The C library's functions as the interpreter itself has them (dlopen of the program): ctypes.util.find_library
# would run `ldconfig -p`, about 40 ms at every container start and exec.
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxError(Exception):
    pass


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise SandboxError(f"{what}: {os.strerror(err)}")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    rc = _libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                     ctypes.c_ulong(flags), data.encode() if data else None)
    _check(rc, f"mount {target}")


def _unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), "unshare")


def _write(path: str, text: str) -> None:
    with open(path, "w") as f:
        f.write(text)


def _map_user(uid: int, gid: int, keep: bool = False) -> None:
    """In a fresh user namespace: root inside is the agent's own user outside (`keep`: the user stays itself)."""
    _write("/proc/self/setgroups", "deny")
    _write("/proc/self/uid_map", f"{uid if keep else 0} {uid} 1")
    _write("/proc/self/gid_map", f"{gid if keep else 0} {gid} 1")


# -- volumes -------------------------------------------------------------------------------------------------

def _inside(path: str, base: str) -> bool:
    return path == base or path.startswith(base.rstrip("/") + "/")


def open_source(base: str, sub_path: str) -> int:
    """An O_PATH descriptor of `base/sub_path`, which must stay inside `base` once symlinks are followed (a
    missing subPath is created as a directory, as the kubelet does)."""
    real_base = os.path.realpath(base)
    path = real_base
    if sub_path:
        path = os.path.realpath(os.path.join(real_base, sub_path))
        if not _inside(path, real_base):
            raise SandboxError(f"subPath {sub_path!r} points outside the volume")
        if not os.path.lexists(path):
            os.makedirs(path, mode=0o755, exist_ok=True)
    fd = os.open(path, O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    opened = os.readlink(f"/proc/self/fd/{fd}")
    if sub_path and not _inside(opened, real_base):
        os.close(fd)
        raise SandboxError(f"subPath {sub_path!r} points outside the volume")
    return fd


class Targets:
    """Creates mount targets without touching the host: in an overlay (upper layer in memory) of the nearest
    existing parent directory."""

    def __init__(self, scratch: str) -> None:
        self.scratch = scratch  # a directory on which a private tmpfs holds the overlays' upper layers
        self.overlaid: list[str] = []
        self.count = 0
        self.staged = False

    def ensure(self, target: str, is_dir: bool) -> None:
        if os.path.lexists(target):
            return
        parent = os.path.dirname(target.rstrip("/")) or "/"
        existing = parent
        while not os.path.isdir(existing):
            existing = os.path.dirname(existing) or "/"
        existing = os.path.realpath(existing)
        if existing != "/" and not any(_inside(existing, o) for o in self.overlaid):
            self._overlay(existing)
        os.makedirs(parent, mode=0o755, exist_ok=True)
        if is_dir:
            os.mkdir(target, 0o755)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY | os.O_CLOEXEC, 0o644))

    def _overlay(self, lower: str) -> None:
        if not self.staged:
            _mount("tmpfs", self.scratch, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700,size=1m")
            self.staged = True
        self.count += 1
        upper, work = f"{self.scratch}/{self.count}u", f"{self.scratch}/{self.count}w"
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        st = os.stat(lower)
        os.chmod(upper, stat.S_IMODE(st.st_mode))
        os.chown(upper, st.st_uid, st.st_gid)
        _mount("overlay", lower, "overlay", 0, f"lowerdir={lower},upperdir={upper},workdir={work}")
        self.overlaid.append(lower)

    def done(self) -> None:
        if self.staged:  # the overlays keep their layers; the staging mount itself goes
            _libc.umount2(self.scratch.encode(), MNT_DETACH)


def _mask(path: str) -> None:
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISDIR(st.st_mode):
        _mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k")
    else:
        _mount("/dev/null", path, None, MS_BIND)
        _mount(None, path, None, MS_BIND | MS_REMOUNT | MS_RDONLY)


def setup_mounts(spec: dict) -> None:  # type: ignore[type-arg]
    """Everything between the new namespaces and the command: see the module's docstring."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    for path in spec.get("detach", []):  # e.g. other pods' network namespaces, which this copy would keep alive
        _libc.umount2(path.encode(), MNT_DETACH)
    if spec.get("proc", True):
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    sources = []
    for m in spec["mounts"]:
        fd = open_source(m["source"], m.get("subPath", ""))
        is_dir = stat.S_ISDIR(os.fstat(fd).st_mode)
        sources.append((m, fd, is_dir))
    targets = Targets(spec["scratch"])
    private = [p for p in spec.get("private", []) if os.path.isdir(p) and not os.path.islink(p)]
    by_depth = sorted(sources, key=lambda s: s[0]["target"].count("/"))
    for m, _fd, is_dir in by_depth:
        if not any(_inside(m["target"], p) for p in private):
            targets.ensure(m["target"], is_dir)
    targets.done()
    for path in private:  # the container's own /tmp, as an image would give it
        _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777,size=25%")
        targets.overlaid.append(path)
    for m, _fd, is_dir in by_depth:
        if any(_inside(m["target"], p) for p in private):
            targets.ensure(m["target"], is_dir)
    for path in spec["masks"]:
        _mask(path)
    for m, fd, _is_dir in by_depth:
        flags = MS_BIND | (MS_REC if m.get("recursive") else 0)
        _mount(f"/proc/self/fd/{fd}", m["target"], None, flags)
        if m.get("readOnly"):
            _mount(None, m["target"], None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
        os.close(fd)


def _become(spec: dict) -> None:  # type: ignore[type-arg]
    if spec.get("userns"):
        return  # one user is mapped (the agent's own, as root inside): nothing to switch to
    uid, gid = int(spec["uid"]), int(spec["gid"])
    os.setgroups([int(g) for g in spec.get("groups", [])])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def _exec(spec: dict) -> None:  # type: ignore[type-arg]
    env = {str(k): str(v) for k, v in spec["env"].items()}
    if spec.get("cwd"):
        try:
            os.chdir(spec["cwd"])
        except OSError as e:
            raise SandboxError(f"chdir to cwd ({spec['cwd']!r}) set in config.json failed: {e.strerror}") from None
    argv = [str(a) for a in spec["argv"]]
    try:
        os.execvpe(argv[0], argv, env)
    except FileNotFoundError:
        raise SandboxError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
    except OSError as e:
        raise SandboxError(f'exec: "{argv[0]}": {e.strerror}') from None


def _fail(err_fd: int, message: str, code: int = 128) -> None:
    try:
        os.write(err_fd, message.encode()[:4096])
    finally:
        os._exit(code)


def _join_netns(path: str) -> None:
    """Enter the pod's network namespace (bridge pod network), shared by all its containers."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        _check(_libc.setns(ctypes.c_int(fd), ctypes.c_int(CLONE_NEWNET)), "setns (the pod's network)")
    finally:
        os.close(fd)


def run(spec: dict, report_fd: int, err_fd: int) -> None:  # type: ignore[type-arg]
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS
    try:
        if spec.get("netns"):
            _join_netns(spec["netns"])
        if spec.get("userns"):
            uid, gid = os.getuid(), os.getgid()
            _unshare(CLONE_NEWUSER | flags)
            _map_user(uid, gid)
        else:
            _unshare(flags)
        pid = os.fork()
    except (OSError, SandboxError) as e:
        _fail(err_fd, f"could not create the sandbox: {e}")
        return
    if pid:
        os.write(report_fd, str(pid).encode())
        os._exit(0)
    os.close(report_fd)
    os.set_inheritable(err_fd, False)
    fcntl.fcntl(err_fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    try:
        if spec.get("tty"):  # its stdin, stdout and stderr are a pseudo-terminal: make it the controlling one
            os.setsid()
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        host = spec.get("hostname", "").encode()[:64]
        if host:
            _libc.sethostname(host, len(host))
        setup_mounts(spec)
        _become(spec)
        _exec(spec)
    except SandboxError as e:
        _fail(err_fd, str(e))
    except OSError as e:
        _fail(err_fd, f"could not set up the sandbox: {e}")


def local(spec: dict, err_fd: int) -> None:  # type: ignore[type-arg]
    """`local`: see the module's docstring. Exits 127 when the command is not found, 126 for any other failure
    before it runs (the reason on ERROR_FD)."""
    fcntl.fcntl(err_fd, fcntl.F_SETFD, fcntl.FD_CLOEXEC)
    try:
        flags = CLONE_NEWNS | CLONE_NEWUTS
        if spec.get("userns"):
            uid, gid = os.getuid(), os.getgid()
            _unshare(CLONE_NEWUSER | flags)
            _map_user(uid, gid, keep=True)
        else:
            _unshare(flags)
        host = spec.get("hostname", "").encode()[:64]
        if host:
            _libc.sethostname(host, len(host))
        setup_mounts(spec)
        _become(spec)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _exec(spec)
    except SandboxError as e:
        _fail(err_fd, str(e), 127 if "executable file not found" in str(e) else 126)
    except OSError as e:
        _fail(err_fd, f"could not set up the sandbox: {e}", 126)


# -- exec ---------------------------------------------------------------------------------------------------

def _forward(child: int) -> None:
    def handler(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, handler)


def receive(sock_fd: int) -> tuple[dict, int]:  # type: ignore[type-arg]
    """`exec`'s request: the spec's length (4 bytes, big-endian) carrying the four descriptors, then the spec (JSON).
    Returns the spec and the pidfd, with the command's streams in place as 0, 1 and 2."""
    sock = socket.socket(fileno=sock_fd)
    try:
        head, fds, _flags, _addr = socket.recv_fds(sock, 4, 4, socket.MSG_CMSG_CLOEXEC)
    except OSError:
        os._exit(126)
    if not head:
        os._exit(0)  # no request: the agent stopped, or had no use for this helper
    if len(head) != 4 or len(fds) != 4:
        os._exit(126)
    size = int.from_bytes(head, "big")
    payload = bytearray()
    while len(payload) < size:
        chunk = sock.recv(min(size - len(payload), 1 << 20))
        if not chunk:
            os._exit(126)
        payload += chunk
    sock.close()
    pidfd, *stdio = fds
    for target, fd in enumerate(stdio):
        os.dup2(fd, target)
    for fd in stdio:
        os.close(fd)
    return json.loads(payload), pidfd


def execute(spec: dict, pidfd: int) -> None:  # type: ignore[type-arg]
    flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | (CLONE_NEWUSER if spec.get("userns") else 0) | \
        (CLONE_NEWNET if spec.get("netns") else 0)
    try:
        _check(_libc.setns(ctypes.c_int(pidfd), ctypes.c_int(flags)), "setns")
        os.close(pidfd)
        child = os.fork()
    except (OSError, SandboxError) as e:
        sys.stderr.write(f"error executing command in container: {e}\n")
        os._exit(126)
    if child == 0:
        try:
            os.setsid()
            if spec.get("tty"):
                fcntl.ioctl(0, termios.TIOCSCTTY, 0)
            _become(spec)
            _exec(spec)
        except SandboxError as e:
            sys.stderr.write(f"{e}\n")
            os._exit(127 if "not found" in str(e) else 126)
        except OSError as e:
            sys.stderr.write(f"error executing command in container: {e}\n")
            os._exit(126)
    _forward(child)
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            os._exit(1)
        except InterruptedError:
            continue
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def main(argv: list[str]) -> None:
    mode = argv[1]
    if mode == "exec":
        execute(*receive(int(argv[2])))
        return
    spec_file = argv[2]
    with open(spec_file) as f:
        spec = json.load(f)
    try:
        os.unlink(spec_file)  # it holds the container's environment: read once, then gone
    except OSError as e:
        if e.errno != errno.ENOENT:
            raise
    if mode == "run":
        run(spec, int(argv[3]), int(argv[4]))
    else:
        local(spec, int(argv[3]))


if __name__ == "__main__":
    main(sys.argv)
