#!/usr/bin/env python3
"""Whole-job phases with real tools, appended to a `holt-fs bench --json` file.

    fs_tool_phases.py DIR TARBALL JSON [--daemon-pid PID]

In DIR: `tar -xf TARBALL` (untar), `cp -a` of that tree (cp-a), `rm -rf`
of both (rm-rf). Each is one job of N files (N = the tarball's regular
files), so ops/s is files per second. CPU per op is the tool's user +
system time (from the child's rusage) plus the daemon's (from
/proc/PID/stat, when given), divided by N, in the same fields as the
bench's own phases, so fs_table.py shows them in the same tables.
"""
import json
import os
import resource
import subprocess
import sys
import tarfile
import time


def daemon_cpu_s(pid):
    if pid is None:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5); index 0 here is field 3.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(phase, argv, files, pid):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    d0, t0 = daemon_cpu_s(pid), time.monotonic()
    subprocess.run(argv, check=True)
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


def main():
    args = sys.argv[1:]
    pid = None
    if "--daemon-pid" in args:
        i = args.index("--daemon-pid")
        pid = int(args[i + 1])
        del args[i : i + 2]
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
    with open(out) as f:
        doc = json.load(f)
    doc["results"].extend(results)
    doc["tool_files"] = files
    with open(out, "w") as f:
        json.dump(doc, f, indent=1)


if __name__ == "__main__":
    main()
