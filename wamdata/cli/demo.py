"""``wamdata demo``: the toy world end to end (ingest, native formats, validate, a LAM labeled and measured)."""

from __future__ import annotations

import argparse
from typing import Any

from wamdata.cli.output import format_table, human_bytes


def add_parser(sub: argparse._SubParsersAction) -> None:
    demo = sub.add_parser("demo", help="toy-world episodes -> shards -> stats -> validate, with a summary")
    demo.add_argument("--config", help="pipeline YAML (default: the packaged pipelines/demo.yaml)")
    demo.add_argument("--out", help="dataset folder (default: the config's out)")
    demo.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    from wamdata.cluster import RaySession
    from wamdata.sources.toyworld import load_config

    config = load_config(args.config)
    with RaySession(None):  # one Ray for every stage, instead of one started and stopped per stage
        return demo_stages(config, args)


def demo_stages(config: dict[str, Any], args: argparse.Namespace) -> int:
    from wamdata.toy.demo import run_demo, run_native_ingest

    result = run_demo(config, out=args.out, progress=not args.quiet)
    summary = result.summary
    rows = []
    for name, s in summary.by_source.items():
        source = config["sources"][name]
        rows.append([name, source["kind"], source["embodiment"], s.episodes, s.steps, s.frames,
                     "yes" if source["with_actions"] else "no", s.shards, human_bytes(s.bytes)])
    t = summary.total
    rows.append(["total", "", "", t.episodes, t.steps, t.frames, "", t.shards, human_bytes(t.bytes)])
    print(f"\nwamdata demo: wrote {summary.root} ({config['name']})")
    print(format_table(["source", "kind", "embodiment", "episodes", "steps", "frames", "actions", "shards",
                        "bytes"], rows))
    seconds = result.seconds
    total_s = sum(seconds.values())
    print(f"bytes per frame: {t.bytes / max(t.frames, 1):.0f}   "
          f"write: {seconds['write']:.1f} s ({t.frames / seconds['write']:.0f} frames/s, generate+encode+stats)   "
          f"validate: {seconds['validate']:.1f} s   total: {total_s:.1f} s")
    if result.problems:
        print(f"validate: {len(result.problems)} problem(s)")
        for p in result.problems:
            print(f"  {p}")
        return 1
    print(f"validate: ok ({t.episodes} episodes, {t.shards} shards, every sample decoded)")
    native = run_native_ingest(config, out=args.out, progress=not args.quiet)
    if not native:
        return 0
    print("\nthe toy world written as native files, then `wamdata ingest`ed (Ray Data) and validated:")
    rows = [[n.format, str(n.input), str(n.summary.root), n.summary.total.episodes, n.summary.total.frames,
             n.quarantined, f"{n.seconds:.1f} s", "ok" if not n.problems else f"{len(n.problems)} problem(s)"]
            for n in native]
    print(format_table(["format", "input", "dataset", "episodes", "frames", "quarantined", "time", "validate"],
                       rows))
    for n in native:
        for p in n.problems:
            print(f"  {p}")
    if any(n.problems or n.quarantined for n in native):
        return 1
    return demo_labeling(config, args)


def demo_labeling(config: dict[str, Any], args: argparse.Namespace) -> int:
    from wamdata.cli.label import log_printer
    from wamdata.labeling.evaluate import format_quality
    from wamdata.toy.demo import run_demo_labeling

    labeling = config.get("labeling")
    if not labeling:
        return 0
    print(f"\ntraining a latent action model on the video of {', '.join(labeling['train_sources'])} "
          f"(no actions used), then labeling and measuring it:")
    result = run_demo_labeling(config, out=args.out, progress=not args.quiet,
                               on_log=None if args.quiet else log_printer())
    applied = result.applied
    print(f"checkpoint {result.checkpoint} ({result.train_windows} train windows, {result.seconds['train']:.0f} s)")
    print(f"label apply: {applied.labelled} episodes, {applied.frames} frames -> {applied.folder} "
          f"({result.seconds['apply']:.1f} s)")
    print(format_quality(result.quality))
    return 0
