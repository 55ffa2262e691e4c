"""The Allreduce over a network: mpigd's benchmark across the hosts of a namespace
cluster (launch/netns-cluster.sh) with shaped links, and the alpha-beta model fitted to it.

For each link profile (unshaped veth; 10 Gbit/s; 1 Gbit/s; with MPIGD_NETEM=1 also 20 us
one-way and 10 Gbit/s, and 200 us and 1 Gbit/s, where the kernel has netem), brings up
HOSTS hosts with that shaping, runs ``mpigd bench run`` with one rank per host at
P = 1, 2, ..., HOSTS from the login host (MPI between hosts over TCP on the virtual
links), aggregates the records with ``mpigd bench report`` (which fits
``T(n, P) = lg P (alpha + n beta)`` to the message-size sweeps), and compares the model's
Allreduce with the measured one at each P, for 1, 64 (about an evaluation's message at
n = 64), 1,024 and 65,536 numbers. Root only; the cluster is taken down after each
profile. Writes OUT/PROFILE/ (records, report) and OUT/summary.md.

Usage: sudo python benchmarks/network.py OUT [--rows 200000] [--features 64] [--hosts 4]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "launch" / "netns-cluster.sh"
LAUNCHER = ROOT / "launch" / "netns-rsh"
#: Link profiles: (one-way latency in us, rate in Gbit/s). Latency needs the kernel's
#: netem, which this project's machine lacks: there only the rates are shaped, and the
#: latency is that of the hosts' TCP stacks on veth.
PROFILES = {"veth": (None, None), "10G": (None, 10), "1G": (None, 1)}
if os.environ.get("MPIGD_NETEM"):  # where the kernel has netem
    PROFILES |= {"20us-10G": (20, 10), "200us-1G": (200, 1)}


def cluster(*args) -> None:
    subprocess.run(["bash", str(CLUSTER), *map(str, args)], check=True)


def mpigd_on_hosts(hosts: list[str], folder: Path, *args) -> None:
    mpiexec = Path(sys.executable).parent / "mpiexec"
    subprocess.run(
        ["bash", str(CLUSTER), "login", "env", f"PATH={os.environ['PATH']}",
         "MPIGD_NUM_THREADS=1", str(mpiexec), "-launcher", "ssh", "-launcher-exec",
         str(LAUNCHER), "-hosts", ",".join(hosts), "-n", str(len(hosts)), sys.executable,
         "-m", "mpigd", *map(str, args)],
        check=True, cwd=folder, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--hosts", type=int, default=4)
    args = parser.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="mpigd-network-", dir="/tmp"))
    data = work / "data.h5"
    subprocess.run(
        [sys.executable, "-m", "mpigd", "data", "make", data, "--rows", str(args.rows),
         "--features", str(args.features), "--seed", "1", "--quiet"],
        check=True,
    )  # fmt: skip
    ranks = [p for p in (1, 2, 4, 8, 16) if p <= args.hosts]
    lines = [
        f"# Allreduce across hosts of a namespace cluster ({args.rows:,} x {args.features}, "
        "one rank per host, MPI over TCP on veth links)",
        "",
        "| links | alpha (fit) | beta (fit) | P | message | measured | model | model / measured |",
        "|---|---|---|---|---|---|---|---|",
    ]
    summary = {}
    for name, (latency, rate) in PROFILES.items():
        shaping = [] if latency is None else ["--latency", latency]
        shaping += [] if rate is None else ["--rate", rate]
        folder = out / name
        folder.mkdir(exist_ok=True)
        cluster("up", args.hosts, "--share", work, *shaping)
        try:
            for p in ranks:
                hosts = [f"node{i}" for i in range(1, p + 1)]
                mpigd_on_hosts(hosts, work, "bench", "run", data, "--out",
                               folder / f"strong-P{p}-run1.json", "--evals", 10)  # fmt: skip
        finally:
            cluster("down")
        subprocess.run(
            [sys.executable, "-m", "mpigd", "bench", "report", folder, "--out",
             folder / "strong"], check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        report = json.loads((folder / "strong.json").read_text())
        alpha, beta = (
            report["allreduce_model"]["alpha_s"],
            report["allreduce_model"]["beta_s_per_byte"],
        )
        rows = []
        for p in ranks[1:]:
            record = json.loads((folder / f"strong-P{p}-run1.json").read_text())
            sweep = {int(k): v for k, v in record["allreduce_sweep"].items()}
            for size in (1, 64, 1024, max(sweep)):  # 64 numbers: about an evaluation's
                measured = sweep[size]
                model = np.log2(p) * (alpha + 8 * size * beta)
                rows.append({"ranks": p, "numbers": size, "measured_s": measured, "model_s": model})
                shown, ratio = f"{measured * 1e6:.0f} us", f"{model / measured:.2f}"
                lines.append(
                    f"| {name} | {alpha * 1e6:.1f} us | {beta * 1e9:.3f} ns/B | {p} | "
                    f"{size * 8:,} B | {shown} | {model * 1e6:.0f} us | {ratio} |"
                )
        summary[name] = {"alpha_s": alpha, "beta_s_per_byte": beta, "points": rows,
                         "predictions": report.get("predictions")}  # fmt: skip
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
