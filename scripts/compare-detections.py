#!/usr/bin/env python3
"""Compares the detections of runs of one clip, frame by frame, from
inferpublish's JSON lines (docs/results-schema.json): standard library only,
so it runs on the GPU machine as it is (scripts/gpu/heavy.sh).

    python3 scripts/compare-detections.py NAME:RULE:REFERENCE.jsonl:VARIANT.jsonl ...

Per frame (matched by pts_ns, else seq) the objects pair up greedily by IoU
within a class (IoU >= 0.5); an object left over is "only in" one run. Prints
one markdown table row per comparison and exits with 1 if any fails its RULE:
- close: the same objects in >= 99 % of the frames and median IoU >= 0.95
  (another precision of the same model);
- equal: the same objects in every frame, lowest IoU >= 0.999, confidences
  within 0.001 (the same computation, replayed: CUDA graphs);
- same: the same objects in every frame, lowest IoU >= 0.99, confidences
  within 0.01 (the same model edited, run at another batch size).
"""
import json
import statistics
import sys

PAIR_IOU = 0.5
RULES = {
    "close": "same objects in >= 99 % of frames, median IoU >= 0.95",
    "equal": "same objects in every frame, IoU >= 0.999, confidence within 0.001",
    "same": "same objects in every frame, IoU >= 0.99, confidence within 0.01",
}


def frames(path):
    """Frame key -> [(class_id, confidence, (x1, y1, x2, y2))], in file order."""
    out = {}
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            key = record["pts_ns"] if record.get("pts_ns") is not None else record["seq"]
            out[key] = [(o["class_id"], o["confidence"],
                         (o["box"]["x"], o["box"]["y"],
                          o["box"]["x"] + o["box"]["w"], o["box"]["y"] + o["box"]["h"]))
                        for o in record["objects"]]
    return out


def iou(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def pair(ref, got):
    """Greedy same-class pairs by IoU: [(iou, confidence difference)], the
    counts left over in ref and in got."""
    candidates = sorted(((iou(r[2], g[2]), i, j) for i, r in enumerate(ref)
                         for j, g in enumerate(got) if r[0] == g[0]), reverse=True)
    used_r, used_g, pairs = set(), set(), []
    for overlap, i, j in candidates:
        if overlap < PAIR_IOU or i in used_r or j in used_g:
            continue
        used_r.add(i)
        used_g.add(j)
        pairs.append((overlap, abs(ref[i][1] - got[j][1])))
    return pairs, len(ref) - len(used_r), len(got) - len(used_g)


def compare(name, rule, reference, variant):
    """One table row (list of cells) and whether the rule holds."""
    ref, got = frames(reference), frames(variant)
    keys = sorted(set(ref) | set(got))
    missing = sum(1 for k in keys if k not in ref or k not in got)
    ious, diffs, only_ref, only_got, same_frames = [], [], 0, 0, 0
    for k in keys:
        pairs, left_r, left_g = pair(ref.get(k, []), got.get(k, []))
        ious += [p[0] for p in pairs]
        diffs += [p[1] for p in pairs]
        only_ref += left_r
        only_got += left_g
        same_frames += k in ref and k in got and left_r == 0 and left_g == 0
    n = len(keys)
    share = same_frames / n if n else 0.0
    median = statistics.median(ious) if ious else 0.0
    lowest = min(ious) if ious else 0.0
    largest = max(diffs) if diffs else 0.0
    if n == 0 or missing or not ious:
        ok = False
    elif rule == "close":
        ok = share >= 0.99 and median >= 0.95
    elif rule == "equal":
        ok = same_frames == n and lowest >= 0.999 and largest <= 0.001
    else:
        ok = same_frames == n and lowest >= 0.99 and largest <= 0.01
    cells = [name, str(n) + (f" ({missing} in one run only)" if missing else ""),
             f"{sum(map(len, ref.values()))} / {sum(map(len, got.values()))}", str(len(ious)),
             f"{same_frames} ({100 * share:.1f} %)", f"{median:.4f}", f"{lowest:.4f}",
             f"{largest:.4f}", f"{only_ref} / {only_got}", rule, "PASS" if ok else "FAIL"]
    return cells, ok


def main(args):
    if not args or any(a.count(":") < 3 for a in args):
        print(__doc__, file=sys.stderr)
        return 2
    print("| variant | frames | detections (reference / variant) | matched | frames with the same objects "
          "| median IoU | lowest IoU | largest confidence difference | only in reference / variant "
          "| rule | verdict |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---|")
    all_ok = True
    for a in args:
        name, rule, reference, variant = a.split(":", 3)
        if rule not in RULES:
            print(f"unknown rule {rule!r}: one of {', '.join(RULES)}", file=sys.stderr)
            return 2
        try:
            cells, ok = compare(name, rule, reference, variant)
        except (OSError, ValueError, KeyError) as e:
            cells, ok = [name] + [""] * 8 + [rule, f"FAIL ({type(e).__name__}: {e})"], False
        print("| " + " | ".join(cells) + " |")
        all_ok &= ok
    print()
    for rule, text in RULES.items():
        print(f"- {rule}: {text}")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
