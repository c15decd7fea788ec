"""Two heads on one backbone (``results/two_heads_rule.md``): the construction check and the ship gate.

    # the trained two-head adapter against the single heads it should equal (same code, data, seed)
    python benchmarks/two_heads.py --construction STUDENT --score-ref STUDENT_SOFT --map-ref STUDENT_UNION
    # the rule's ship clauses: 1-7 from the candidate's held-out runs tagged TAG (accuracy_TAG.json,
    # real_photos_TAG.json, as region_targets.py --ship reads them), 8 its multiply-adds against the
    # previous bundle's, 9 the precision variants' gates and the TensorRT-for-RTX builds of the bundle
    python benchmarks/two_heads.py --ship TAG --bundle models/default --previous OLD_BUNDLE

Each writes its JSON (``two_heads_construction.json``, ``two_heads_ship_TAG.json`` and .md) under
``results/``. STUDENT folders are ``efiqa train student`` outputs (adapter.pt + adapter.json).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from machine import stamp  # noqa: E402
from peers import count  # noqa: E402
from region_targets import clause_table, ship_gate  # noqa: E402

from efiqa.bundle import MODEL, load_bundle  # noqa: E402

RESULTS = HERE / "results"


def construction(student: Path, score_ref: Path, map_ref: Path) -> dict:
    """Each head of ``student`` against the single head it should equal, weight by weight, and the
    thresholds each should carry over (patch: the map head's; gradable: the score head's)."""
    both = torch.load(student / "adapter.pt", map_location="cpu", weights_only=True)
    meta = json.loads((student / "adapter.json").read_text())
    out = {}
    for head, ref, key in (("map", map_ref, "patch_threshold"), ("score", score_ref, "gradable_threshold")):
        single = torch.load(ref / "adapter.pt", map_location="cpu", weights_only=True)
        ref_meta = json.loads((ref / "adapter.json").read_text())
        mine = {k[len(head) + 1:]: v for k, v in both.items() if k.startswith(head + ".")}
        same_keys = set(mine) == set(single)
        diff = max(float((mine[k].double() - single[k].double()).abs().max()) for k in single) if same_keys else None
        out[head] = {"reference": str(ref), "reference_target": ref_meta.get("target"), "target": meta.get(
            "target" if head == "map" else "score_target"), "tensors": len(single), "same_keys": same_keys,
            "max_abs_weight_difference": diff, key: meta[key], f"reference_{key}": ref_meta[key],
            "identical": bool(same_keys and diff == 0.0 and meta[key] == ref_meta[key])}
    return {"benchmark": "two_heads_construction", "command": " ".join(["python", *sys.argv]),
            "machine": stamp(), "student": str(student), "heads": out,
            "identical": all(h["identical"] for h in out.values())}


def ship(tag: str, bundle: Path, previous: Path) -> dict:
    """Clauses 1-7 (:func:`region_targets.ship_gate`, the same bounds), then 8 (cost) and 9 (precision
    variants and engine builds of ``bundle``)."""
    verdict = ship_gate(tag)
    cost, precision = bundle_clauses(verdict, bundle, previous)
    verdict["clauses"]["8 multiply-adds at most 1.25 x the previous bundle's"] = cost
    verdict["clauses"]["9 FP16 and INT8 pass their gates; TensorRT-for-RTX engines build"] = precision
    verdict.update(benchmark="two_heads_ship", command=" ".join(["python", *sys.argv]), machine=stamp(),
                   passed=all(c["passed"] for c in verdict["clauses"].values()))
    return verdict


def bundle_clauses(verdict: dict, bundle: Path, previous: Path) -> tuple[dict, dict]:
    """The clauses judged on the candidate bundle itself: its multiply-adds against ``previous``'s
    (at most 1.25x), and its FP16 and INT8 variants' gates with the TensorRT-for-RTX engine builds
    (``engine_builds.json``) of this very bundle. ``verdict``: the held-out runs' gate, whose ONNX
    must be ``bundle``'s."""
    b, p = load_bundle(bundle), load_bundle(previous)
    if verdict["candidate_onnx_sha256"] != b.sha256:
        raise SystemExit(f"the runs tagged {verdict['tag']} are of ONNX {verdict['candidate_onnx_sha256'][:12]}…, "
                         f"not of {bundle} ({b.sha256[:12]}…)")
    flops = {}
    for name, x in (("candidate", b), ("previous", p)):  # bundle folders: their model.onnx as written
        params, fl = count(x.path / MODEL)
        flops[name] = {"params": params, "gflops": fl / 1e9}
    ratio = flops["candidate"]["gflops"] / flops["previous"]["gflops"]
    cost = {"value": {**flops, "ratio": ratio}, "passed": ratio <= 1.25}
    variants, graph = {}, {"fp32": b.sha256}  # graph: the ONNX each engine must be built from
    for precision in ("fp16", "int8"):
        folder = bundle.parent / f"{bundle.name}-{precision}"
        v = load_bundle(folder) if folder.exists() else None
        fid = (v.manifest.fidelity or {}) if v else {}
        mine = bool(v and v.manifest.variant_of == b.sha256)
        variants[precision] = {"bundle": str(folder), "variant_of_candidate": mine,
                               "passed": bool(fid.get("passed")), "pearson": fid.get("pearson"),
                               "gradable_agreement": fid.get("gradable_agreement"),
                               "patch_agreement": fid.get("patch_agreement"), "auroc": fid.get("auroc")}
        if precision == "int8":  # FP16 engines are built from a fresh cast (engine_builds.py), not the variant
            graph["int8"] = v.sha256 if mine else None
    ok = all(x["variant_of_candidate"] and x["passed"] for x in variants.values())
    builds = json.loads((RESULTS / "engine_builds.json").read_text())
    built = {r["precision"]: r.get("builds", 0) for r in builds["rows"] if builds["bundle_sha256"] == b.sha256
             and graph.get(r["precision"], r.get("onnx_sha256")) == r.get("onnx_sha256")}
    ok &= all(built.get(k, 0) > 0 for k in ("fp32", "fp16", "int8"))
    return cost, {"value": {"variants": variants, "engine_builds (of this bundle)": built}, "passed": bool(ok)}


def write_ship(verdict: dict) -> None:
    tag = verdict["tag"]
    (RESULTS / f"two_heads_ship_{tag}.json").write_text(json.dumps(verdict, indent=2) + "\n")
    md = [f"# Two heads: the ship gate of candidate `{tag}`", "",
          f"Rule: `results/two_heads_rule.md`; runs: `accuracy_{tag}.json`, `real_photos_{tag}.json`, the variants' "
          f"manifests and `engine_builds.json`; candidate ONNX sha256 `{verdict['candidate_onnx_sha256'][:16]}…`. "
          f"Command: `{verdict['command']}`.", "", *clause_table(verdict)]
    (RESULTS / f"two_heads_ship_{tag}.md").write_text("\n".join(md) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--construction", type=Path, metavar="STUDENT")
    ap.add_argument("--score-ref", type=Path, metavar="STUDENT_SOFT")
    ap.add_argument("--map-ref", type=Path, metavar="STUDENT_UNION")
    ap.add_argument("--ship", metavar="TAG")
    ap.add_argument("--bundle", type=Path, default=Path("models/default"))
    ap.add_argument("--previous", type=Path, metavar="BUNDLE")
    args = ap.parse_args()
    if args.construction:
        if not (args.score_ref and args.map_ref):
            ap.error("--construction needs --score-ref and --map-ref")
        doc = construction(args.construction, args.score_ref, args.map_ref)
        (RESULTS / "two_heads_construction.json").write_text(json.dumps(doc, indent=2) + "\n")
        print(json.dumps(doc["heads"], indent=1), "\nidentical:", doc["identical"])
    elif args.ship:
        if not args.previous:
            ap.error("--ship needs --previous")
        verdict = ship(args.ship, args.bundle, args.previous)
        write_ship(verdict)
        print(json.dumps({k: c["passed"] for k, c in verdict["clauses"].items()}, indent=1), "\npassed:", verdict["passed"])
    else:
        ap.error("choose --construction or --ship")


if __name__ == "__main__":
    main()
