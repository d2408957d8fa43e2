#!/usr/bin/env python3
"""Whole-job phases with real tools, appended to a `holt-fs bench --json` file.

    fs_tool_phases.py DIR TARBALL JSON [--daemon-pid PID] [--git-runs N]

In DIR: `tar -xf TARBALL` (untar), `cp -a` of that tree (cp-a), `rm -rf`
of both (rm-rf). Each is one job of N files (N = the tarball's regular
files), so ops/s is files per second. Then git-status: the tarball
unpacked once more and committed to a new git repository (git init, add
-A, commit; not timed), then `git status` run --git-runs times (default
3) on that checkout, ops = runs x N; skipped, with a message, when git is
not installed. CPU per op is the tool's user + system time (from the
child's rusage) plus the daemon's (from /proc/PID/stat, when given),
divided by the ops, in the same fields as the bench's own phases, so
fs_table.py shows them in the same tables.
"""
import json
import os
import resource
import shutil
import subprocess
import sys
import tarfile
import time

GIT_RUNS_DEFAULT = 3
# Settings of the checkout's git commands: an identity for the commit, no
# background gc, no untracked cache or fsmonitor, so every filesystem gets
# the same git work.
GIT = [
    "git", "-c", "user.name=holt-bench", "-c", "user.email=holt-bench@localhost", "-c", "gc.auto=0",
    "-c", "core.untrackedCache=false", "-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false",
]


def daemon_cpu_s(pid):
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(phase, argvs, files, pid):
    """Run each of `argvs` (one command, or a list of them) in turn, timed as one job of `files` ops."""
    if isinstance(argvs[0], str):
        argvs = [argvs]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    d0, t0 = daemon_cpu_s(pid), time.monotonic()
    for argv in argvs:
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    secs = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    daemon = daemon_cpu_s(pid) - d0
    return {
        "phase": phase,
        "threads": 1,
        "ops": files,
        "secs": round(secs, 6),
        "ops_per_s": round(files / secs, 1),
        "client_cpu_us_per_op": round(client / files * 1e6, 3),
        "daemon_cpu_us_per_op": round(daemon / files * 1e6, 3),
    }


def git_status(top, tarball, files, runs, pid):
    """The git-status phase, or None (with a message) without git."""
    if shutil.which("git") is None:
        print("fs_tool_phases.py: git is not installed: skipping the git-status phase", file=sys.stderr)
        return None
    checkout = os.path.join(top, "checkout")
    os.mkdir(checkout)
    git = GIT + ["-C", checkout]
    for argv in (["tar", "-xf", tarball, "-C", checkout], git + ["init", "-q"], git + ["add", "-A"],
                 git + ["commit", "-q", "-m", "tree"]):
        subprocess.run(argv, check=True)
    result = timed("git-status", [git + ["status", "--porcelain"]] * runs, runs * files, pid)
    subprocess.run(["rm", "-rf", checkout], check=True)
    return result


def take_option(args, name, default, parse):
    if name not in args:
        return default
    i = args.index(name)
    value = parse(args[i + 1])
    del args[i : i + 2]
    return value


def main():
    args = sys.argv[1:]
    pid = take_option(args, "--daemon-pid", None, int)
    git_runs = take_option(args, "--git-runs", GIT_RUNS_DEFAULT, int)
    if len(args) != 3:
        sys.exit(__doc__)
    top, tarball, out = args
    with tarfile.open(tarball) as t:
        files = sum(1 for m in t if m.isfile())
    tree, copy = os.path.join(top, "untar"), os.path.join(top, "copy")
    os.mkdir(tree)
    results = [
        timed("untar", ["tar", "-xf", tarball, "-C", tree], files, pid),
        timed("cp-a", ["cp", "-a", tree, copy], files, pid),
        timed("rm-rf", ["rm", "-rf", tree, copy], 2 * files, pid),
    ]
    status = git_status(top, tarball, files, git_runs, pid) if git_runs > 0 else None
    if status:
        results.append(status)
    with open(out) as f:
        doc = json.load(f)
    doc["results"].extend(results)
    doc["tool_files"] = files
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
