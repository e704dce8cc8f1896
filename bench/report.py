"""Printing the results: one table per scenario, the ratios, and each of the issue's targets as PASS/FAIL."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from bench.measure import RequestStats
from bench.scenarios import Measurement, ScenarioResult

MB = 1e6
#: Other processes using more than this share of the machine's CPU during a run skew it (warned).
BUSY_SHARE = 0.1
BUSY_MIN_S = 0.5
Printer = Callable[[str], None]


@dataclass(frozen=True)
class Check:
    """One target of the issue: ``value`` compared with ``limit`` by ``op`` (``<=`` or ``==``)."""

    what: str
    value: float
    limit: float
    op: str = "<="
    #: Why the figure does not count (a run it depends on failed); the check then fails.
    void: str = ""

    @property
    def ok(self) -> bool:
        """Whether the target is met."""
        if self.void:
            return False
        return self.value <= self.limit if self.op == "<=" else self.value == self.limit

    def line(self) -> str:
        """A printable line."""
        verdict = "PASS" if self.ok else "FAIL"
        text = f"  [{verdict}] {self.what}: {_num(self.value)} {self.op} {_num(self.limit)}"
        return text + (f" (void: {self.void})" if self.void else "")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        body = {"what": self.what, "value": self.value, "limit": self.limit, "op": self.op, "ok": self.ok}
        return body | ({"void": self.void} if self.void else {})


def _void(*runs: Measurement) -> str:
    return ", ".join(f"{m.name} exited {m.process.exit_code}" for m in runs if m.process.exit_code != 0)


def _num(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() and abs(x) >= 10 else f"{x:.3g}"


HEADER = (
    f"{'run':<22} {'wall s':>7} {'CPU s':>7} {'RSS MB':>7} {'src req':>8} {'src GET blob':>12} "
    f"{'src HEAD/GET man':>16} {'tgt req':>8} {'src MB read':>11} {'tgt MB stored':>13} {'reg CPU s':>9}"
    "  check"
)


def run_row(m: Measurement) -> str:
    """One table row."""
    p, s = m.process, m.source
    manifests = f"{s.get('HEAD manifest')}/{s.get('GET manifest')}"
    tgt_req = "+".join(str(t.total) for t in m.targets)
    stored = "+".join(f"{b / MB:.1f}" for b in m.stored)
    status = m.check if p.exit_code == 0 else f"exit {p.exit_code}; {m.check}"
    if len(m.samples) > 1:
        status += f" (median of {len(m.samples)}: {min(m.samples):.2f}..{max(m.samples):.2f} s)"
    return (
        f"{m.name:<22} {p.wall_s:>7.2f} {p.cpu_s:>7.2f} {p.peak_rss / MB:>7.1f} {s.total:>8} "
        f"{s.get('GET blob'):>12} {manifests:>16} {tgt_req:>8} {s.blob_bytes_sent / MB:>11.1f} "
        f"{stored:>13} {sum(m.registry_cpu):>9.2f}  {status}"
    )


def facts_line(facts: dict[str, Any]) -> str:
    """The corpus in one line."""
    return (
        f"{facts['repositories']} repositories, {facts['tags']} tags, {facts['manifests']} manifests, "
        f"{facts['distinct_blobs']} distinct blobs, {facts['unique_bytes'] / MB:.1f} MB unique, "
        f"{facts['referenced_bytes'] / MB:.1f} MB referenced"
    )


def print_table(runs: Sequence[Measurement], out: Printer) -> None:
    """The runs as a table, then each run's requests by method and kind (errors in brackets)."""
    out(HEADER)
    for m in runs:
        out(run_row(m))
    out("requests (method kind: count [answers >= 400]):")
    for m in runs:
        sides = [("source", m.source)] + [(f"target{i + 1}", t) for i, t in enumerate(m.targets)]
        out(f"  {m.name}: " + " | ".join(f"{side} {_counts(stats)}" for side, stats in sides))


def _counts(stats: RequestStats) -> str:
    parts = []
    for key, n in sorted(stats.counts.items()):
        errors = stats.errors.get(key, 0)
        parts.append(f"{key} {n}" + (f" [{errors}]" if errors else ""))
    return ", ".join(parts) or "none"


def _ratio(a: Measurement | None, b: Measurement | None, what: str, limit: float) -> list[Check]:
    if a is None or b is None or b.process.wall_s == 0:
        return []
    return [Check(f"{what} wall", a.process.wall_s / b.process.wall_s, limit, void=_void(a, b))]


def _noop_checks(m: Measurement | None, tags: int, label: str = "nothing changed") -> list[Check]:
    """The contract: an unchanged tag costs one manifest HEAD at the source and one at each target, and
    nothing else (no GET of any kind at the source: not manifests, blobs, tag lists or referrers)."""
    if m is None:
        return []
    void = _void(m)
    sides = [("source", m.source)] + [(f"target {i + 1}", t) for i, t in enumerate(m.targets)]
    checks = []
    for side, stats in sides:
        heads = stats.get("HEAD manifest")
        checks.append(Check(f"{label}: {side} manifest HEADs", heads, tags, "==", void))
        checks.append(Check(f"{label}: {side} requests besides those", stats.total - heads, 0, "==", void))
    checks.append(Check(f"{label}: source GETs of any kind", _gets(m.source), 0, "==", void))
    return checks


def _gets(stats: RequestStats) -> int:
    return sum(n for key, n in stats.counts.items() if key.startswith("GET "))


def _bytes_read(m: Measurement | None, unique: int) -> list[Check]:
    if m is None:
        return []
    return [
        Check(f"{m.name}: source blob bytes read == unique bytes", m.source.blob_bytes_sent, unique, "==")
    ]


def corpus_checks(result: ScenarioResult) -> list[Check]:
    """The issue's targets for scenario 1 that the runs present allow to evaluate."""
    r = result.run
    tags, unique = result.facts["tags"], result.facts["unique_bytes"]
    checks = _ratio(r("mirrord-cold"), r("skopeo-cold"), "cold: mirrord / skopeo", 0.35)
    checks += _ratio(r("mirrord-cold"), r("floor"), "cold: mirrord / floor", 1.25)
    checks += _ratio(r("mirrord-again"), r("skopeo-again"), "nothing changed: mirrord / skopeo", 0.05)
    checks += _noop_checks(r("mirrord-again"), tags)
    daemon = "nothing changed, daemon pass"
    checks += _ratio(r("mirrord-daemon-again"), r("skopeo-again"), f"{daemon}: mirrord / skopeo", 0.05)
    checks += _noop_checks(r("mirrord-daemon-again"), tags, daemon)
    checks += _ratio(r("mirrord-2targets-cold"), r("mirrord-cold"), "two targets / one target", 1.3)
    checks += _bytes_read(r("mirrord-cold"), unique) + _bytes_read(r("mirrord-2targets-cold"), unique)
    return checks


def small_checks(result: ScenarioResult) -> list[Check]:
    """Scenario ``small``: per-image cost against skopeo, and the nothing-changed contract."""
    r = result.run
    checks = _ratio(r("mirrord-cold"), r("skopeo-cold"), "cold: mirrord / skopeo", 0.25)
    checks += _noop_checks(r("mirrord-again"), result.facts["tags"])
    return checks + _bytes_read(r("mirrord-cold"), result.facts["unique_bytes"])


def info_ratios(result: ScenarioResult) -> list[str]:
    """Wall and CPU ratios mirrord/skopeo and mirrord/floor, for reading (not targets)."""
    lines = []
    for a, b in [
        ("mirrord-cold", "skopeo-cold"),
        ("mirrord-cold", "floor"),
        ("mirrord-again", "skopeo-again"),
        ("mirrord-daemon-again", "skopeo-again"),
        ("mirrord-2targets-cold", "mirrord-cold"),
        ("floor-2targets", "floor"),
        ("mirrord-2targets-cold", "floor-2targets"),
    ]:
        ma, mb = result.run(a), result.run(b)
        if ma and mb and mb.process.wall_s and mb.process.cpu_s:
            lines.append(
                f"  {a} / {b}: wall {ma.process.wall_s / mb.process.wall_s:.3f}, "
                f"CPU {ma.process.cpu_s / mb.process.cpu_s:.3f}"
            )
    startup, again = result.run("mirrord-startup"), result.run("mirrord-again")
    if startup and again and startup.process.exit_code == 0:
        lines.append(
            f"  mirrord-startup (interpreter + imports, no work) takes {startup.process.wall_s:.2f} s of "
            f"mirrord-again's {again.process.wall_s:.2f} s"
        )
    lines += _second_target_line(result)
    return lines


def _second_target_line(result: ScenarioResult) -> list[str]:
    """How much a second target slows mirrord, next to how much it slows the floor on this machine."""
    runs = [result.run(n) for n in ("mirrord-2targets-cold", "mirrord-cold", "floor-2targets", "floor")]
    if any(m is None or not m.process.wall_s for m in runs):
        return []
    m2, m1, f2, f1 = (m.process.wall_s for m in runs if m is not None)
    return [
        f"  a second target: mirrord x{m2 / m1:.2f}, the floor x{f2 / f1:.2f} (the registries share the "
        "cores: each target registry does all of its work again)"
    ]


def big_checks(result: ScenarioResult) -> list[Check]:
    """Scenario 2: mirrord's peak RSS while copying the big layer, and bytes read once."""
    m = result.run("big-mirrord-cold")
    if m is None:
        return []
    rss = Check("big layer: mirrord peak RSS MB", m.process.peak_rss / MB, 150, void=_void(m))
    return [rss, *_bytes_read(m, result.facts["unique_bytes"])]


def big_lines(result: ScenarioResult) -> list[str]:
    """MB/s of each run of scenario 2."""
    unique = result.facts["unique_bytes"]
    return [
        f"  {m.name}: {unique / MB / m.process.wall_s:.1f} MB/s, peak RSS {m.process.peak_rss / MB:.1f} MB"
        for m in result.runs
        if m.process.wall_s
    ]


def scale_lines(result: ScenarioResult) -> tuple[list[str], list[Check]]:
    """Scenario 3: time against unique and referenced bytes per size, growth from the previous size
    (``x`` factors: if mirrord's time tracks unique bytes, its factor follows ``x unique``, not
    ``x refd``), and the bytes-read checks."""
    lines = [
        f"  {'repos':>5} {'tags':>5} {'unique MB':>10} {'refd MB':>9} {'floor s':>8} {'mirrord s':>9} "
        f"{'m/floor':>7} {'MB/s uniq':>9} {'x unique':>8} {'x refd':>7} {'x floor':>7} {'x mirrord':>9}"
    ]
    checks: list[Check] = []
    prev: tuple[float, float, float, float] | None = None
    for point in result.extra.get("points", []):
        floor, mirrord = result.run(point["floor"]), result.run(point["mirrord"])
        if floor is None or mirrord is None:
            continue
        now = (point["unique_bytes"], point["referenced_bytes"], floor.process.wall_s, mirrord.process.wall_s)
        growth = (
            "".join(f" {a / b:>{w}.2f}" for a, b, w in zip(now, prev, (8, 7, 7, 9), strict=True))
            if prev
            else ""
        )
        lines.append(
            f"  {point['repositories']:>5} {point['tags']:>5} {now[0] / MB:>10.1f} {now[1] / MB:>9.1f} "
            f"{now[2]:>8.2f} {now[3]:>9.2f} {now[3] / now[2]:>7.2f} {now[0] / MB / now[3]:>9.1f}{growth}"
        )
        prev = now
        checks += _bytes_read(mirrord, point["unique_bytes"])
    return lines, checks


#: How much the daemon's RSS may grow from its first nothing-changed pass to its last (flat).
RSS_GROWTH_MB = 5.0


def tags_lines(result: ScenarioResult) -> tuple[list[str], list[Check]]:
    """Scenarios ``tags`` / ``tags10k``: nothing changed against the bare HEAD loop (wall and CPU, one
    run), mirrord CPU and requests per tag, the daemon's RSS after each pass, and the checks."""
    r, tags = result.run, result.facts["tags"]
    cold, again, loop = r("mirrord-cold"), r("mirrord-again"), r("mirrord-headloop")
    daemon, startup = r("mirrord-daemon-again"), r("mirrord-startup")
    lines: list[str] = []
    checks: list[Check] = []
    if again and loop and loop.process.wall_s and loop.process.cpu_s:
        void = _void(again, loop)
        wall, cpu = again.process.wall_s / loop.process.wall_s, again.process.cpu_s / loop.process.cpu_s
        checks.append(Check("nothing changed: mirrord / bare HEAD loop wall", wall, 1.2, void=void))
        checks.append(Check("nothing changed: mirrord / bare HEAD loop CPU", cpu, 1.3, void=void))
        if daemon:
            lines.append(
                f"  daemon pass / bare HEAD loop: wall {daemon.process.wall_s / loop.process.wall_s:.3f}, "
                f"CPU {daemon.process.cpu_s / loop.process.cpu_s:.3f} (the loop pays its start-up too)"
            )
    fixed = startup.process.cpu_s if startup and startup.process.exit_code == 0 else 0.0
    for m in (cold, again, daemon, loop):
        if m is None:
            continue
        requests = m.source.total + sum(t.total for t in m.targets)
        own = f" ({1000 * max(m.process.cpu_s - fixed, 0) / tags:.2f} without start-up)"
        own = own if m in (cold, again) else ""
        lines.append(
            f"  {m.name}: {1000 * m.process.cpu_s / tags:.2f} ms CPU per tag{own}, "
            f"{requests / tags:.2f} requests per tag, {1000 * m.process.wall_s / tags:.2f} ms wall per tag"
        )
    if cold:
        ms = 1000 * cold.process.cpu_s / tags
        checks.append(Check("cold: mirrord CPU ms per tag", ms, 2.0, void=_void(cold)))
        checks += _bytes_read(cold, result.facts["unique_bytes"])
    checks += _noop_checks(again, tags)
    checks += _noop_checks(daemon, tags, "nothing changed, daemon pass")
    if daemon and daemon.rss_samples:
        rss = [b / MB for b in daemon.rss_samples]
        lines.append("  daemon RSS MB after each pass: " + ", ".join(f"{x:.1f}" for x in rss))
        checks.append(Check("daemon RSS growth over the passes MB", rss[-1] - rss[0], RSS_GROWTH_MB))
    return lines, checks


def _warn_load(runs: Sequence[Measurement], out: Printer) -> None:
    cpus = os.cpu_count() or 1
    busy = [
        f"{m.name} {m.other_cpu:.1f} s"
        for m in runs
        if m.other_cpu > BUSY_SHARE * cpus * m.process.wall_s and m.other_cpu > BUSY_MIN_S
    ]
    if busy:
        out(f"warning: other processes used CPU during: {', '.join(busy)} (of {cpus} CPUs x wall);")
        out("         they shared the cores, so those times are inflated and the ratios noisy")


def print_result(result: ScenarioResult, out: Printer = print) -> list[Check]:
    """Print one scenario; the checks it evaluated."""
    out("")
    out(f"== scenario {result.name} ==")
    if "repositories" in result.facts:
        out(facts_line(result.facts))
    print_table(result.runs, out)
    checks: list[Check] = []
    if result.name in ("corpus", "small"):
        out("ratios:")
        for line in info_ratios(result):
            out(line)
        checks = corpus_checks(result) if result.name == "corpus" else small_checks(result)
    elif result.name == "big":
        for line in big_lines(result):
            out(line)
        checks = big_checks(result)
    elif result.name in ("scale", "tags", "tags10k"):
        lines, checks = scale_lines(result) if result.name == "scale" else tags_lines(result)
        for line in lines:
            out(line)
    if checks:
        out("targets:")
    for check in checks:
        out(check.line())
    _warn_load(result.runs, out)
    failed = [m.name for m in result.runs if m.process.exit_code != 0]
    if failed:
        out(f"runs that failed (see bench/out/logs/): {', '.join(failed)}")
    return checks
