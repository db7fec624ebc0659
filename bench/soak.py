"""`python -m bench soak --minutes N`: every service's memory while 2,000 cars stream.

The platform of `bench chaos` (embedded servers, grid, ingestion, pricing worker) with
no faults, and a fleet of `--cars` cars at one status per second on greenlane.client.
Every `--every` seconds the resident memory (RSS, from /proc) of each process group is
sampled: each service, the simulator, Valkey, PostgreSQL (the postmaster and its
backends) and Tansu. Growth is measured after a warm-up: the mean of the last three
samples against the mean of the first three after `--warmup` seconds (target < 10 %;
the embedded broker keeps every record in memory, so its growth is shown but is data).
Exits 1 when a process grows past the target or is left behind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.platform import Platform, leftovers, mark_run

console = Console(stderr=True)
# The embedded broker (Tansu, memory storage) keeps every record in memory by design:
# its growth is the data, not a leak. It is shown, not held to the target.
RETAINS_DATA = {"tansu": "in-memory broker: keeps every record"}
_PAGE = os.sysconf("SC_PAGE_SIZE")


def group_rss(pgid: int) -> int:
    """Bytes resident in every process of a process group (spawn makes one per child)."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[2]) != pgid:  # fields after the name: state, ppid, pgrp, ...
                continue
            total += int((entry / "statm").read_text().split()[1]) * _PAGE
        except (OSError, IndexError, ValueError):
            continue
    return total


@dataclass
class Series:
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds, bytes)

    def window(self, since: float) -> list[int]:
        return [b for t, b in self.samples if t >= since]

    def growth(self, warmup: float) -> tuple[float, float, float] | None:
        """(MB after warm-up, MB at the end, growth %), or None with too few samples."""
        kept = self.window(warmup)
        if len(kept) < 6:
            return None
        first, last = sum(kept[:3]) / 3, sum(kept[-3:]) / 3
        return first / 1e6, last / 1e6, (last - first) / first * 100 if first else 0.0


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="greenlane-soak-"))
    mark_run(workdir)
    platform = Platform(workdir)
    series: dict[str, Series] = {}
    result: dict[str, Any] = {
        "minutes": args.minutes,
        "cars": args.cars,
        "load_average_at_start": os.getloadavg()[0],
    }
    try:
        console.log(f"starting the platform in {workdir}")
        await platform.start()
        platform.start_simulator(args.cars, 1.0, workdir / "acks.txt")
        loop = asyncio.get_running_loop()
        start = loop.time()
        end = start + args.minutes * 60
        console.log(f"{args.cars} cars streaming; sampling RSS every {args.every:g} s")
        while loop.time() < end:
            now = loop.time() - start
            pids = platform.service_pids()
            if platform.simulator is not None and platform.simulator.poll() is None:
                pids["simulator"] = platform.simulator.pid
            for name, pid in pids.items():
                series.setdefault(name, Series()).samples.append((now, group_rss(pid)))
            await asyncio.sleep(args.every)
        await asyncio.to_thread(platform.stop_simulator)
        with contextlib.suppress(OSError, ValueError, IndexError):
            text = (workdir / "simulator-summary.json").read_text().strip().splitlines()[-1]
            result["simulator"] = json.loads(text)
    finally:
        await platform.stop()
    result["load_average_at_end"] = os.getloadavg()[0]
    result["leftovers"] = leftovers(workdir)
    result["processes"] = {}
    for name, s in series.items():
        g = s.growth(args.warmup)
        result["processes"][name] = {
            "samples": len(s.samples),
            "max_mb": round(max(b for _, b in s.samples) / 1e6, 1),
            # (seconds, MB): a backlog's bulge and a leak's slope look different here.
            "series": [(round(t, 1), round(b / 1e6, 1)) for t, b in s.samples],
            **(
                {
                    "after_warmup_mb": round(g[0], 1),
                    "end_mb": round(g[1], 1),
                    "growth_pct": round(g[2], 1),
                }
                if g
                else {}
            ),
        }
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def report(result: dict[str, Any], to_stderr: bool) -> bool:
    out = Console(stderr=to_stderr, width=130)
    table = Table(
        title=f"Soak: {result['cars']} cars x 1/s for {result['minutes']:g} min "
        "(RSS per process group)",
        title_justify="left",
    )
    for col in ("process", "after warm-up", "end", "max", "growth", "< 10 %"):
        table.add_column(col, justify="left" if col == "process" else "right")
    ok = True
    for name, p in sorted(result["processes"].items()):
        growth = p.get("growth_pct")
        good = growth is not None and growth < 10
        if name in RETAINS_DATA:
            verdict = f"n/a ({RETAINS_DATA[name]})"
        else:
            ok = ok and good
            verdict = "[green]yes[/green]" if good else "[red]no[/red]"
        table.add_row(
            name,
            f"{p['after_warmup_mb']:.1f} MB" if "after_warmup_mb" in p else "-",
            f"{p['end_mb']:.1f} MB" if "end_mb" in p else "-",
            f"{p['max_mb']:.1f} MB",
            f"{growth:+.1f} %" if growth is not None else "too short",
            verdict,
        )
    out.print(table)
    sim = result.get("simulator") or {}
    if sim:
        out.print(
            f"simulator: {sim.get('accepted', 0):,} acknowledged "
            f"({sim.get('answered_per_s', 0):,.0f}/s), {sim.get('errors', 0)} broken streams, "
            f"{sim.get('resent', 0)} resent, p99 {sim.get('latency_ms', {}).get('p99')} ms"
        )
    if result["leftovers"]:
        ok = False
        out.print(f"[red]left behind:[/red] {result['leftovers']}")
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench soak",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="minutes of streaming (10)")
    parser.add_argument("--cars", type=int, default=2000, help="cars at 1 status/s (2000)")
    parser.add_argument(
        "--warmup", type=float, default=60.0, help="seconds before growth counts (60)"
    )
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples (5)")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON object")
    parser.add_argument("--quick", action="store_true", help="2 minutes, 500 cars, 30 s warm-up")
    args = parser.parse_args(argv)
    if args.quick:
        args.minutes, args.cars, args.warmup = 2.0, 500, 30.0
    for name in ("minutes", "every"):
        if not getattr(args, name) > 0:
            parser.error(f"--{name}: must be above 0")
    if args.warmup < 0 or args.warmup >= args.minutes * 60:
        parser.error("--warmup: must be at least 0 and shorter than the run")
    if args.cars < 1:
        parser.error("--cars: must be at least 1")
    try:
        result = asyncio.run(run(args))
    except Exception as exc:
        console.print(f"[red]the soak could not run:[/red] {type(exc).__name__}: {exc}")
        return 2
    ok = report(result, to_stderr=args.json)
    if args.json:
        print(json.dumps({**result, "ok": ok}))  # noqa: T201 - the CLI's output
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
