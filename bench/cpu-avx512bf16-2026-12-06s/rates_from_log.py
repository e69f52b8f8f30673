"""One-off (seventeenth session): the arithmetic rate of each side in a bench/zoo_speed.py log
written before that bench printed it: images/s (the log's summary) times zoo_speed's
`training_gflop` (6x the file's forward multiply-adds at 10 classes), against a measured float32
matrix-product rate given on the command line.

    .venv/bin/python bench/cpu-avx512bf16-2026-12-06s/rates_from_log.py LOG PEAK_GFLOPS
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.zoo_speed import training_gflop  # noqa: E402

text = Path(sys.argv[1]).read_text()
peak = float(sys.argv[2])
start = text.index('{\n "summary"')
summary = json.JSONDecoder().raw_decode(text[start:])[0]["summary"]
print(f"| network | GFLOP an image | ours, GFLOP/s | timm, GFLOP/s | ours / {peak:g} | timm / {peak:g} |")
print("|---|---|---|---|---|---|")
gflops = {network: training_gflop(network, None) for network in summary}  # each file read once
for network, row in sorted(summary.items(), key=lambda item: -(item[1].get("timm_images_per_second") or 0) * gflops[item[0]]):
    gflop = gflops[network]
    ours, timm = (row.get(f"{who}_images_per_second") for who in ("ours", "timm"))
    cells = [f"{gflop * v:.0f}" if v else "—" for v in (ours, timm)]
    shares = [f"{gflop * v / peak:.2f}" if v else "—" for v in (ours, timm)]
    print(f"| {network} | {gflop:.2f} | {cells[0]} | {cells[1]} | {shares[0]} | {shares[1]} |")
