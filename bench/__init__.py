"""The mirrord benchmark (``make bench`` = ``python -m bench``).

Seeds a deterministic corpus of multi-platform images into a local Debian ``docker-registry``, then
measures, each against a fresh target registry: the floor (every distinct blob copied once),
``skopeo sync --all`` and ``mirrord sync`` (cold, nothing changed, two targets). Each tool runs as a
child process; wall time, CPU time and peak RSS come from ``os.wait4``; requests and bytes come from
the registries' access logs and storage. Results are printed and written to ``bench/out/results.json``.

Modules: :mod:`bench.corpus` (the images and how to seed them), :mod:`bench.registries` (registry
processes), :mod:`bench.measure` (child processes and access logs), :mod:`bench.floor` (the floor
copier), :mod:`bench.tools` (skopeo and mirrord invocations), :mod:`bench.scenarios` and
:mod:`bench.report`.
"""

from __future__ import annotations
